//! The embedded backend: one SQLite file in WAL mode, with its migrations in
//! `migrations/sqlite/`. The stores' SQL is shared with PostgreSQL ([`crate::sql`]); this module
//! holds what is SQLite's own: the pools, the write transaction, FTS5 for memory, and the dialect
//! its children pass to the shared SQL.
//!
//! Writes go through a single connection (SQLite has one writer; queueing in the pool is cheaper
//! than lock upgrades failing with SQLITE_BUSY), reads through a small pool. Every write
//! transaction starts with `BEGIN IMMEDIATE`: it takes the database's write lock before its first
//! read, so a read-then-write inside it (the audit head, the extraction cursor) cannot interleave
//! with another writer, even one in another process sharing the file.

mod authz;
mod eval;
mod eval_data;
mod identity;
mod memory;
mod nodes;
mod secrets;
mod traffic;

use crate::Error;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Berth's SQLite settings over `opts` (created if missing, WAL, `synchronous=FULL`: a commit is on
/// disk before a 2xx, even across power loss; a 10 s busy timeout), as one writer connection,
/// migrated with `migrator`, and a pool of four read-only ones. Every SQLite database Berth keeps
/// opens through here (the control/memory store, the trace store).
pub async fn open_pools<E>(
    opts: SqliteConnectOptions,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(SqlitePool, SqlitePool), E>
where
    E: From<sqlx::Error> + From<sqlx::migrate::MigrateError>,
{
    let opts = opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .before_acquire(end_abandoned_transaction)
        .connect_with(opts.clone())
        .await?;
    migrator.run(&writer).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .before_acquire(end_abandoned_transaction)
        .connect_with(opts.read_only(true))
        .await?;
    Ok((writer, reader))
}

/// Rolls back a transaction a connection came back to the pool in, before it is used again.
///
/// sqlx's `begin_with` (the `BEGIN IMMEDIATE` of every write) waits once more after its `BEGIN`
/// has run and before a `Transaction` owns it. A caller dropped there (a request whose client
/// left) hands the connection back still inside that transaction, with nothing to end it, and
/// every later `begin_with` on it fails ("non-zero transaction depth"): with one writer
/// connection, every write of the store.
fn end_abandoned_transaction(
    conn: &mut sqlx::SqliteConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    use sqlx::TransactionManager;
    use sqlx::sqlite::SqliteTransactionManager as Manager;
    Box::pin(async move {
        if Manager::get_transaction_depth(conn) > 0 {
            tracing::warn!(
                "a store connection came back inside an abandoned transaction; rolled back"
            );
            while Manager::get_transaction_depth(conn) > 0 {
                Manager::rollback(conn).await?;
            }
        }
        Ok(true)
    })
}

/// SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with(path, "").await
    }

    /// Like [`SqliteStore::open`], with the driver options of a `sqlite://PATH?OPTIONS` URL.
    pub async fn open_with(path: &Path, options: &str) -> Result<Self, Error> {
        let url = crate::StoreUrl::Sqlite {
            path: path.to_owned(),
            options: options.to_owned(),
        };
        let opts = SqliteConnectOptions::from_str(&url.to_string())?.foreign_keys(true);
        let (writer, reader) =
            open_pools::<Error>(opts, &sqlx::migrate!("./migrations/sqlite")).await?;
        Ok(Self { writer, reader })
    }

    /// The write pool, for other stores sharing this database file.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The read pool, for other stores sharing this database file.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Starts a write transaction holding the database's write lock from its first statement.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, Error> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

crate::sql::control::control_sql!(crate::SqliteStore, sqlx::Sqlite);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sqlx::TransactionManager;
    use sqlx::sqlite::SqliteTransactionManager;

    /// What a caller dropped inside `begin_with` leaves: the `BEGIN IMMEDIATE` ran, no
    /// `Transaction` owns it, and the connection goes back to the pool. The next write must
    /// still work, and the abandoned transaction's work must not be committed by it.
    #[tokio::test]
    async fn a_connection_back_inside_an_abandoned_transaction_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap();
        {
            let mut conn = store.writer().acquire().await.unwrap();
            SqliteTransactionManager::begin(&mut conn, Some("BEGIN IMMEDIATE".into()))
                .await
                .unwrap();
            sqlx::query("CREATE TABLE abandoned (x)")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let mut tx = store.begin().await.unwrap();
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'abandoned'")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(left, 0, "the abandoned transaction's table was kept");
        tx.commit().await.unwrap();
    }
}
