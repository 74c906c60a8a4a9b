//! Decoding rows of any backend: the [`Cols`] trait reads one column of a SQLite or PostgreSQL row
//! with the types both schemas share (TEXT, 64-bit integers), so a row type can have one decoder
//! outside the per-backend SQL of [`crate::sql`], and a bad stored JSON value becomes
//! [`Error::Corrupt`] in one place.

use crate::Error;
use berth_types::Status;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use serde_json::Value;
use sqlx::Row;

/// One column of a row, by name. Integers are 64-bit in both schemas (`INTEGER` in SQLite,
/// `BIGINT` in PostgreSQL), JSON is text.
pub(crate) trait Cols {
    /// A TEXT column.
    fn text(&self, col: &str) -> Result<String, Error>;
    /// A nullable TEXT column.
    fn opt_text(&self, col: &str) -> Result<Option<String>, Error>;
    /// An integer column.
    fn int(&self, col: &str) -> Result<i64, Error>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, Error>;
}

macro_rules! cols_for {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, col: &str) -> Result<String, Error> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, Error> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64, Error> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, Error> {
                Ok(self.try_get(col)?)
            }
        }
    };
}
cols_for!(sqlx::sqlite::SqliteRow);
cols_for!(sqlx::postgres::PgRow);

pub(crate) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        table,
        detail: e.to_string(),
    }
}

/// A JSON text column.
pub(crate) fn json_col(r: &impl Cols, col: &str, table: &'static str) -> Result<Value, Error> {
    serde_json::from_str(&r.text(col)?).map_err(|e| corrupt(table, e))
}

/// A nullable JSON text column.
pub(crate) fn opt_json_col(
    r: &impl Cols,
    col: &str,
    table: &'static str,
) -> Result<Option<Value>, Error> {
    r.opt_text(col)?
        .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(table, e)))
        .transpose()
}

/// A status column.
pub(crate) fn status(r: &impl Cols, col: &str, table: &'static str) -> Result<Status, Error> {
    let s = r.text(col)?;
    Status::parse(&s).ok_or_else(|| Error::Corrupt {
        table,
        detail: format!("unknown status {s:?}"),
    })
}

/// A version number (or any u32) stored as an integer.
pub(crate) fn u32_col(r: &impl Cols, col: &str) -> Result<u32, Error> {
    Ok(r.int(col)? as u32)
}

/// A nullable version number.
pub(crate) fn opt_u32_col(r: &impl Cols, col: &str) -> Result<Option<u32>, Error> {
    Ok(r.opt_int(col)?.map(|v| v as u32))
}

pub(crate) fn runtime_row(r: &impl Cols) -> Result<Runtime, Error> {
    Ok(Runtime {
        id: r.text("id")?,
        name: r.text("name")?,
        latest_version: u32_col(r, "latest_version")?,
        deleting: r.int("deleting")? != 0,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn version_row(r: &impl Cols) -> Result<RuntimeVersion, Error> {
    Ok(RuntimeVersion {
        runtime_id: r.text("runtime_id")?,
        version: u32_col(r, "version")?,
        spec: json_col(r, "spec", "runtime_versions")?,
        status: status(r, "status", "runtime_versions")?,
        failure_reason: r.opt_text("failure_reason")?,
        artifact_digest: r.opt_text("artifact_digest")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn endpoint_row(r: &impl Cols) -> Result<Endpoint, Error> {
    Ok(Endpoint {
        runtime_id: r.text("runtime_id")?,
        name: r.text("name")?,
        id: r.text("id")?,
        description: r.opt_text("description")?,
        live_version: opt_u32_col(r, "live_version")?,
        target_version: opt_u32_col(r, "target_version")?,
        status: status(r, "status", "endpoints")?,
        failure_reason: r.opt_text("failure_reason")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

/// The response JSON of an idempotency row, with the key it was read by.
pub(crate) fn idempotency_row(
    r: &impl Cols,
    operation: &str,
    token: &str,
) -> Result<crate::Idempotency, Error> {
    Ok(crate::Idempotency {
        operation: operation.to_owned(),
        token: token.to_owned(),
        request_hash: r.text("request_hash")?,
        response: json_col(r, "response", "idempotency")?,
        created_at: r.int("created_at")?,
    })
}
