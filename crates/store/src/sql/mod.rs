//! SQL both backends run as written, so each store trait has one implementation.
//!
//! SQLite (3.35+) and PostgreSQL share the statements Berth needs: `$n` placeholders, `INSERT ...
//! ON CONFLICT (key) DO UPDATE SET col = excluded.col` / `DO NOTHING`, `RETURNING`, row-value
//! comparisons for keyset paging, `IS NOT DISTINCT FROM`, `CAST(.. AS BIGINT)`. The schemas agree
//! on column types (64-bit integers, TEXT JSON, BLOB/BYTEA) and byte-wise text order, and rows
//! decode through [`crate::cols`].
//!
//! Each file here defines a macro expanding to one trait impl (or a set of functions) for one
//! backend; the backend module invokes it with its store and sqlx database types. The store type
//! provides `reader()` and `writer()` (pools) and `begin()` (a write transaction that serialises
//! what must be serialised on that backend). Statements whose dialect differs are functions the
//! backend module defines next to the invocation (each macro's docs name them): macro bodies
//! resolve those names at the call site.

pub(crate) mod authz;
pub(crate) mod control;
pub(crate) mod eval;
pub(crate) mod eval_data;
pub(crate) mod identity;
pub(crate) mod nodes;
pub(crate) mod secrets;
pub(crate) mod traffic;

use crate::Error;

/// Whether a database error is a unique-key violation (on either backend).
pub(crate) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `res`, with a unique violation turned into `AlreadyExists(what)`.
pub(crate) fn or_exists<T>(res: Result<T, sqlx::Error>, what: &'static str) -> Result<T, Error> {
    match res {
        Err(e) if unique_violation(&e) => Err(Error::AlreadyExists(what)),
        other => Ok(other?),
    }
}
