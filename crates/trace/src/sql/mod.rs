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

/// The attribution filters traces and usage are narrowed by, each an ` AND column = value`.
fn push_attribution(
    q: &mut sqlx::QueryBuilder<'_, Db>,
    runtime_id: Option<&String>,
    version: Option<u32>,
    endpoint: Option<&String>,
    session_id: Option<&String>,
    actor: Option<&String>,
) {
    let text = [
        (" AND runtime_id = ", runtime_id),
        (" AND endpoint = ", endpoint),
        (" AND session_id = ", session_id),
        (" AND actor = ", actor),
    ];
    for (clause, value) in text {
        if let Some(v) = value {
            q.push(clause).push_bind(v.clone());
        }
    }
    if let Some(v) = version {
        q.push(" AND version = ").push_bind(i64::from(v));
    }
}
