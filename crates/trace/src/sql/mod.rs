//! The trace store's SQL, compiled once per backend: `sqlite.rs` and `postgres.rs` each mount
//! this directory as their module `sql`, defining before it `Db` (the sqlx database), `Store`
//! (the store type, with `reader()`, `writer()` and `begin()`) and the few dialect items whose
//! text differs (`TRACE_ROW`, `sum_int`, `octets`). Everything else is one statement for both:
//! `$n` placeholders, `ON CONFLICT`, `RETURNING`, row-value `IN`, `CASE` where SQLite's
//! two-argument `min`/`max` and PostgreSQL's `least`/`greatest` differ.

use super::{Db, Store, TRACE_ROW, octets, sum_int};

mod export;
mod logs;
mod online;
mod scores;
mod traces;
mod usage;
