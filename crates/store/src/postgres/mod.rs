//! The shared backend: one PostgreSQL database that several server nodes use at once, with its
//! migrations in `migrations/postgres/`. Everything PostgreSQL-specific (SQL dialect, locking, row
//! types) is in this module and its children; the traits and row types it implements are
//! backend-neutral, and rows decode through the same [`crate::cols`] functions as SQLite's.
//!
//! One pool serves reads and writes. Every `apply` is one transaction committed with
//! `synchronous_commit=on` (on disk, and on a synchronous standby when one is configured, before
//! the caller answers). Unlike SQLite, PostgreSQL lets writers run side by side, so each
//! read-then-write takes a lock or is a conditional statement (see "The store" in ARCHITECTURE.md).

mod eval;
mod eval_data;
mod identity;
mod memory;
mod secrets;

use crate::cols::{endpoint_row, idempotency_row, runtime_row, version_row};
use crate::{
    AccessKeyRow, AssignmentRow, AuditRow, ControlStore, DrainRow, Error, HealthRow, Idempotency,
    PolicyRow, ResourcePolicyRow, RoleRow, RolloutRow, RuntimeCursor, Write,
};
use async_trait::async_trait;
use berth_types::EpochMillis;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
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
}

/// What a part of the backend not written yet answers.
fn not_yet(what: &'static str) -> Error {
    Error::Db(sqlx::Error::Protocol(format!(
        "{what} is not implemented on postgresql yet"
    )))
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `res`, with a unique violation turned into `AlreadyExists(what)`.
fn or_exists<T>(res: Result<T, sqlx::Error>, what: &'static str) -> Result<T, Error> {
    match res {
        Err(e) if unique_violation(&e) => Err(Error::AlreadyExists(what)),
        other => Ok(other?),
    }
}

const ENDPOINT_COLS: &str = "INSERT INTO endpoints (runtime_id, name, id, description, \
    live_version, target_version, status, failure_reason, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
const PUT_ENDPOINT_SET: &str = " ON CONFLICT (runtime_id, name) DO UPDATE SET id = EXCLUDED.id, \
    description = EXCLUDED.description, live_version = EXCLUDED.live_version, \
    target_version = EXCLUDED.target_version, status = EXCLUDED.status, \
    failure_reason = EXCLUDED.failure_reason, created_at = EXCLUDED.created_at, \
    updated_at = EXCLUDED.updated_at";

async fn write_endpoint(
    tx: &mut sqlx::PgConnection,
    replace: bool,
    e: &Endpoint,
) -> Result<(), sqlx::Error> {
    let sql = if replace {
        format!("{ENDPOINT_COLS}{PUT_ENDPOINT_SET}")
    } else {
        ENDPOINT_COLS.to_owned()
    };
    sqlx::query(&sql)
        .bind(&e.runtime_id)
        .bind(&e.name)
        .bind(&e.id)
        .bind(&e.description)
        .bind(e.live_version.map(i64::from))
        .bind(e.target_version.map(i64::from))
        .bind(e.status.as_str())
        .bind(&e.failure_reason)
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(tx)
        .await
        .map(drop)
}

#[async_trait]
impl ControlStore for PgStore {
    async fn apply(&self, writes: Vec<Write>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for w in &writes {
            match w {
                Write::InsertRuntime(r) => {
                    let res = sqlx::query(
                        "INSERT INTO runtimes (id, name, latest_version, deleting, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&r.id)
                    .bind(&r.name)
                    .bind(i64::from(r.latest_version))
                    .bind(i64::from(r.deleting))
                    .bind(r.created_at)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await;
                    or_exists(res, "runtime name")?;
                }
                Write::UpdateRuntime {
                    runtime: r,
                    expect_latest,
                } => {
                    // A row-locking UPDATE re-checks its WHERE after a concurrent writer commits.
                    let n = sqlx::query(
                        "UPDATE runtimes SET latest_version = $1, deleting = $2, updated_at = $3 \
                         WHERE id = $4 AND latest_version = $5",
                    )
                    .bind(i64::from(r.latest_version))
                    .bind(i64::from(r.deleting))
                    .bind(r.updated_at)
                    .bind(&r.id)
                    .bind(i64::from(*expect_latest))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        return Err(Error::Precondition("runtime"));
                    }
                }
                Write::PutVersion(v) => {
                    sqlx::query(
                        "INSERT INTO runtime_versions (runtime_id, version, spec, status, \
                         failure_reason, artifact_digest, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (runtime_id, version) DO UPDATE SET spec = EXCLUDED.spec, \
                         status = EXCLUDED.status, failure_reason = EXCLUDED.failure_reason, \
                         artifact_digest = EXCLUDED.artifact_digest, \
                         created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
                    )
                    .bind(&v.runtime_id)
                    .bind(i64::from(v.version))
                    .bind(v.spec.to_string())
                    .bind(v.status.as_str())
                    .bind(&v.failure_reason)
                    .bind(&v.artifact_digest)
                    .bind(v.created_at)
                    .bind(v.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Write::InsertEndpoint(e) => {
                    or_exists(write_endpoint(&mut tx, false, e).await, "endpoint name")?
                }
                Write::PutEndpoint(e) => write_endpoint(&mut tx, true, e).await?,
                Write::DeleteEndpoint { runtime_id, name } => {
                    sqlx::query("DELETE FROM endpoints WHERE runtime_id = $1 AND name = $2")
                        .bind(runtime_id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    return Err(not_yet("traffic"));
                }
                Write::DeleteVersion {
                    runtime_id,
                    version,
                } => {
                    sqlx::query(
                        "DELETE FROM runtime_versions WHERE runtime_id = $1 AND version = $2",
                    )
                    .bind(runtime_id)
                    .bind(i64::from(*version))
                    .execute(&mut *tx)
                    .await?;
                    return Err(not_yet("traffic"));
                }
                Write::DeleteRuntime { runtime_id, arn } => {
                    sqlx::query("DELETE FROM tags WHERE resource_arn = $1 OR resource_arn LIKE $2")
                        .bind(arn)
                        .bind(format!("{arn}/%"))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM runtimes WHERE id = $1")
                        .bind(runtime_id)
                        .execute(&mut *tx)
                        .await?;
                    return Err(not_yet("authz"));
                }
                Write::PutTags { arn, tags } => {
                    for (k, v) in tags {
                        sqlx::query(
                            "INSERT INTO tags (resource_arn, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (resource_arn, key) DO UPDATE SET value = EXCLUDED.value",
                        )
                        .bind(arn)
                        .bind(k)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                Write::RemoveTags { arn, keys } => {
                    for k in keys {
                        sqlx::query("DELETE FROM tags WHERE resource_arn = $1 AND key = $2")
                            .bind(arn)
                            .bind(k)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Write::PutIdempotency(i) => {
                    let res = sqlx::query(
                        "INSERT INTO idempotency (operation, token, request_hash, response, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&i.operation)
                    .bind(&i.token)
                    .bind(&i.request_hash)
                    .bind(i.response.to_string())
                    .bind(i.created_at)
                    .execute(&mut *tx)
                    .await;
                    or_exists(res, "client token")?;
                }
                _ => return Err(not_yet("traffic and authz writes")),
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn runtime(&self, id: &str) -> Result<Option<Runtime>, Error> {
        sqlx::query("SELECT * FROM runtimes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(runtime_row)
            .transpose()
    }

    async fn list_runtimes(
        &self,
        after: Option<&RuntimeCursor>,
        limit: u32,
    ) -> Result<Vec<Runtime>, Error> {
        let rows = match after {
            None => sqlx::query("SELECT * FROM runtimes ORDER BY created_at, id LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
            Some(c) => sqlx::query(
                "SELECT * FROM runtimes WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3",
            )
            .bind(c.created_at)
            .bind(&c.id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?,
        };
        rows.iter().map(runtime_row).collect()
    }

    async fn version(
        &self,
        runtime_id: &str,
        version: u32,
    ) -> Result<Option<RuntimeVersion>, Error> {
        sqlx::query("SELECT * FROM runtime_versions WHERE runtime_id = $1 AND version = $2")
            .bind(runtime_id)
            .bind(i64::from(version))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(version_row)
            .transpose()
    }

    async fn list_versions(
        &self,
        runtime_id: &str,
        below: Option<u32>,
        limit: u32,
    ) -> Result<Vec<RuntimeVersion>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM runtime_versions WHERE runtime_id = $1 AND version < $2 \
             ORDER BY version DESC LIMIT $3",
        )
        .bind(runtime_id)
        .bind(below.map_or(i64::MAX, i64::from))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    async fn unfinished_versions(&self) -> Result<Vec<RuntimeVersion>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM runtime_versions WHERE status IN ('CREATING', 'UPDATING') \
             ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    async fn deleting_runtimes(&self) -> Result<Vec<String>, Error> {
        Ok(
            sqlx::query_scalar("SELECT id FROM runtimes WHERE deleting = 1")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn endpoint(&self, runtime_id: &str, name: &str) -> Result<Option<Endpoint>, Error> {
        sqlx::query("SELECT * FROM endpoints WHERE runtime_id = $1 AND name = $2")
            .bind(runtime_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(endpoint_row)
            .transpose()
    }

    async fn list_endpoints(
        &self,
        runtime_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM endpoints WHERE runtime_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(runtime_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_row).collect()
    }

    async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, Error> {
        Ok(
            sqlx::query_as("SELECT key, value FROM tags WHERE resource_arn = $1 ORDER BY key")
                .bind(arn)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn idempotency(
        &self,
        operation: &str,
        token: &str,
    ) -> Result<Option<Idempotency>, Error> {
        sqlx::query(
            "SELECT request_hash, response, created_at FROM idempotency WHERE operation = $1 AND token = $2",
        )
        .bind(operation)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| idempotency_row(&r, operation, token))
        .transpose()
    }

    async fn policy(&self, _runtime_id: &str, _endpoint: &str) -> Result<Option<PolicyRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn assignment(
        &self,
        _runtime_id: &str,
        _session_id: &str,
    ) -> Result<Option<AssignmentRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn assignment_counts(
        &self,
        _runtime_id: &str,
        _endpoint: &str,
    ) -> Result<Vec<(u32, u64)>, Error> {
        Err(not_yet("traffic"))
    }

    async fn drains(&self, _runtime_id: &str, _endpoint: &str) -> Result<Vec<DrainRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn expired_drains(&self, _now: EpochMillis) -> Result<Vec<DrainRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn rollout(&self, _id: &str) -> Result<Option<RolloutRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn active_rollouts(&self) -> Result<Vec<RolloutRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn rollouts(
        &self,
        _runtime_id: &str,
        _endpoint: &str,
        _limit: u32,
    ) -> Result<Vec<RolloutRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn health(
        &self,
        _runtime_id: &str,
        _endpoint: &str,
        _from: EpochMillis,
        _to: EpochMillis,
    ) -> Result<Vec<HealthRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn audit(
        &self,
        _resource: Option<&str>,
        _after_seq: i64,
        _limit: u32,
    ) -> Result<Vec<AuditRow>, Error> {
        Err(not_yet("traffic"))
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, Error> {
        Err(not_yet("traffic"))
    }

    async fn role(&self, _name: &str) -> Result<Option<RoleRow>, Error> {
        Err(not_yet("authz"))
    }

    async fn roles(&self) -> Result<Vec<RoleRow>, Error> {
        Err(not_yet("authz"))
    }

    async fn access_key(&self, _id: &str) -> Result<Option<AccessKeyRow>, Error> {
        Err(not_yet("authz"))
    }

    async fn access_keys(&self) -> Result<Vec<AccessKeyRow>, Error> {
        Err(not_yet("authz"))
    }

    async fn resource_policy(&self, _arn: &str) -> Result<Option<ResourcePolicyRow>, Error> {
        Err(not_yet("authz"))
    }
}
