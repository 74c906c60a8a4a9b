//! Decoding columns of SQLite rows: the one place a bad stored value becomes [`Error::Corrupt`].

use crate::Error;
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(super) fn corrupt(table: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        table,
        detail: e.to_string(),
    }
}

/// A JSON text column.
pub(super) fn json_col(r: &SqliteRow, col: &str, table: &'static str) -> Result<Value, Error> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(table, e))
}

/// A nullable JSON text column.
pub(super) fn opt_json_col(
    r: &SqliteRow,
    col: &str,
    table: &'static str,
) -> Result<Option<Value>, Error> {
    let s: Option<String> = r.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(table, e)))
        .transpose()
}
