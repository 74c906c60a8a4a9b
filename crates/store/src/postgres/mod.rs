//! The shared backend: one PostgreSQL database that several server nodes use at once, with its
//! migrations in `migrations/postgres/`. The stores' SQL is shared with SQLite ([`crate::sql`]);
//! this module holds what is PostgreSQL's own: the pool and its connection settings, and the
//! dialect its children pass to the shared SQL (locks, JSON functions).
//!
//! One pool serves reads and writes. Every `apply` is one transaction committed with
//! `synchronous_commit=on` (on disk, and on a synchronous standby when one is configured, before
//! the caller answers). Unlike SQLite, PostgreSQL lets writers run side by side, so each
//! read-then-write takes a lock or is a conditional statement (see "The store" in ARCHITECTURE.md).

mod authz;
mod eval;
mod eval_data;
mod identity;
mod memory;
mod nodes;
mod secrets;
mod traffic;

use crate::Error;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// Connections per node; PostgreSQL's default `max_connections` (100) leaves room for several.
const POOL_SIZE: u32 = 10;

/// PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names and migrates it (several nodes starting
    /// at once are serialised by the migrator's advisory lock).
    pub async fn open(url: &str) -> Result<Self, Error> {
        let opts = PgConnectOptions::from_str(url)?
            .options([("synchronous_commit", "on")])
            .application_name("berth");
        // One connection first: a wrong host or credentials fail at once, where the pool would
        // retry until its acquire timeout.
        PgConnection::connect_with(&opts).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for other stores sharing this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool reads go through (the one pool: the shared SQL of [`crate::sql`] asks for it).
    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// The pool single-statement writes go through.
    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a write transaction (`READ COMMITTED`; what must not interleave locks or writes
    /// conditionally).
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, Error> {
        Ok(self.pool.begin().await?)
    }
}

crate::sql::control::control_sql!(crate::PgStore, sqlx::Postgres);
