//! The SQLite trace store: `traces.db` in the data dir, WAL, `synchronous=FULL` (an export is
//! acknowledged only once it is on disk), one writer connection, one transaction per export.
//! Its SQL is shared with PostgreSQL ([`crate::postgres`]): `sql/` is compiled once per backend
//! with this module's [`Db`], [`Store`] and dialect items.

use crate::Error;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::Path;

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct SqliteTraceStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteTraceStore {
    /// Opens (creating if needed) the store at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let opts = SqliteConnectOptions::new().filename(path);
        let (writer, reader) =
            berth_store::open_pools::<Error>(opts, &sqlx::migrate!("./migrations/sqlite")).await?;
        Ok(Self { writer, reader })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction: the one writer connection serialises them, and `BEGIN IMMEDIATE`
    /// takes the database's write lock before the first read (a transaction that reads first
    /// cannot wait for the lock later: another process's commit in between fails it at once).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, Error> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

type Db = sqlx::Sqlite;
type Store = SqliteTraceStore;

/// The column that orders `traces` rows of equal start (paging tokens, retention's batches).
const TRACE_ROW: &str = "rowid";

/// `SUM` of an integer column as a 64-bit integer: `total()` never fails on overflow, and the
/// cast saturates.
fn sum_int(col: &str) -> String {
    format!("CAST(total({col}) AS INTEGER)")
}

/// The byte length of a text column.
fn octets(col: &str) -> String {
    format!("length(CAST({col} AS BLOB))")
}

// The one SQL text, compiled for this backend (and again for the other): deliberate.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
