//! The PostgreSQL trace store: the database of `--store postgres://...`, shared by every node of
//! an installation, so a trace or score recorded through one node is read through any other.
//!
//! Its tables live in their own schema, [`SCHEMA`] (every connection's `search_path`), migrated
//! from `migrations/postgres/` with the migrator's bookkeeping table in that schema too: the
//! control store's `_sqlx_migrations` and tables in `public` are never seen, so neither version
//! numbers nor table names clash. Its SQL is shared with SQLite (`sql/`).
//!
//! Durability as SQLite's: every connection commits with `synchronous_commit=on` and each insert
//! is one transaction. Writers on several nodes run at once, so every write transaction
//! ([`PgTraceStore::begin`]) first takes one transaction-scoped advisory lock: trace rows are
//! folded, usage accumulated and retention measured by one writer at a time, as with SQLite's
//! single writer, and `spans.seq`/`logs.seq` become visible in increasing order (the OTLP
//! exporter's cursor never passes a row that commits later). Single-statement writes (log group
//! and stream creation, cursors) are `ON CONFLICT` upserts and take no lock.

use crate::Error;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The schema of the trace tables.
pub const SCHEMA: &str = "berth_trace";

/// Connections per node (beside the control store's pool).
const POOL_SIZE: u32 = 8;

/// The advisory lock key of trace writes (`berth_trace` in ASCII, as a number).
const WRITE_LOCK: i64 = 0x6265_7274_685f_7472;

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct PgTraceStore {
    pool: PgPool,
}

impl PgTraceStore {
    /// Connects to the database a `postgres://` URL names, creates [`SCHEMA`] if needed and
    /// migrates it (nodes starting at once are serialised by an advisory lock and the migrator's).
    pub async fn open(url: &str) -> Result<Self, Error> {
        let opts = PgConnectOptions::from_str(url)?
            .options([("synchronous_commit", "on"), ("search_path", SCHEMA)])
            .application_name("berth-trace");
        let mut conn = PgConnection::connect_with(&opts).await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool (its connections' `search_path` is [`SCHEMA`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// A write transaction holding the trace store's write lock (see the module docs).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

type Db = sqlx::Postgres;
type Store = PgTraceStore;

/// The column that orders `traces` rows of equal start (an identity column: PostgreSQL has no
/// rowid).
const TRACE_ROW: &str = "seq";

/// `SUM` of an integer column as a 64-bit integer (PostgreSQL sums `BIGINT` as `NUMERIC`).
fn sum_int(col: &str) -> String {
    format!("CAST(coalesce(sum({col}), 0) AS BIGINT)")
}

/// The byte length of a text column.
fn octets(col: &str) -> String {
    format!("octet_length({col})")
}

// The one SQL text, compiled for this backend (and again for the other): deliberate.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
