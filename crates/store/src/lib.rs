//! Durable state of a Berth server behind one trait, so the embedded SQLite backend and a
//! PostgreSQL backend (several server nodes sharing one database) are interchangeable.
//!
//! Architecture Invariant: every write of a request happens in one transaction through
//! [`ControlStore::apply`], committed with `synchronous=FULL` before the caller answers 2xx.

mod authz;
mod cols;
pub mod eval;
pub mod eval_data;
pub mod identity;
pub mod memory;
pub mod nodes;
mod postgres;
pub mod secrets;
mod sql;
mod sqlite;
pub use sqlite::open_pools;
mod traffic;
mod url;

use async_trait::async_trait;
use berth_types::EpochMillis;
use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use std::sync::Arc;

pub use authz::{AccessKeyRow, ResourcePolicyRow, RoleRow};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use traffic::{
    AssignmentRow, AuditRecord, AuditRow, ChainCheck, DrainRow, GENESIS_HASH, HealthRow, PolicyRow,
    RolloutRow, audit_hash, canonical_json,
};
pub use url::{StoreUrl, redact};

/// Store errors. Conflicts are expected outcomes the domain maps to AgentCore exceptions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique key (runtime name, endpoint name, idempotency token) is already taken.
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    /// A compare-and-set precondition failed: someone else wrote first; re-read and retry.
    #[error("concurrent modification of {0}")]
    Precondition(&'static str),
    /// The store URL is not understood (see [`StoreUrl::parse`]).
    #[error("store url {url:?}: {reason}")]
    BadUrl {
        /// The URL, any password redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed at start.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// One write inside a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert a new runtime; fails with `AlreadyExists("runtime name")` if the name is taken.
    InsertRuntime(Runtime),
    /// Replace a runtime row if its `latest_version` still equals `expect_latest`.
    UpdateRuntime {
        /// The new row.
        runtime: Runtime,
        /// Compare-and-set guard.
        expect_latest: u32,
    },
    /// Insert or replace a version row.
    PutVersion(RuntimeVersion),
    /// Insert a new endpoint; fails with `AlreadyExists("endpoint name")` if taken.
    InsertEndpoint(Endpoint),
    /// Insert or replace an endpoint row.
    PutEndpoint(Endpoint),
    /// Delete one endpoint.
    DeleteEndpoint {
        /// Owning runtime.
        runtime_id: String,
        /// Endpoint name.
        name: String,
    },
    /// Delete one version.
    DeleteVersion {
        /// Owning runtime.
        runtime_id: String,
        /// Version number.
        version: u32,
    },
    /// Delete a runtime with its versions, endpoints, and the tags and resource policies of all
    /// their ARNs.
    DeleteRuntime {
        /// Runtime id.
        runtime_id: String,
        /// The runtime's ARN; tags on it and on `{arn}/...` go too.
        arn: String,
    },
    /// Set tags on a resource (upsert per key).
    PutTags {
        /// Resource ARN.
        arn: String,
        /// Keys and values.
        tags: Vec<(String, String)>,
    },
    /// Remove tag keys from a resource.
    RemoveTags {
        /// Resource ARN.
        arn: String,
        /// Keys to remove.
        keys: Vec<String>,
    },
    /// Remember the response to an idempotent request; fails with
    /// `AlreadyExists("client token")` if the token was used meanwhile.
    PutIdempotency(Idempotency),
    /// Insert or replace an endpoint's traffic policy.
    PutPolicy(PolicyRow),
    /// Record a session's version: with `replace`, overwrite any assignment of the session;
    /// without, keep an existing one (the first router wins).
    PutAssignment {
        /// The assignment.
        assignment: AssignmentRow,
        /// Overwrite an existing assignment.
        replace: bool,
    },
    /// Forget the assignments of one version on one endpoint (its drain ended).
    DeleteAssignments {
        /// Runtime.
        runtime_id: String,
        /// Endpoint.
        endpoint: String,
        /// Version.
        version: u32,
    },
    /// Forget assignments made before a time.
    ExpireAssignments {
        /// Cut-off, epoch ms.
        before: EpochMillis,
    },
    /// Insert or replace a drain.
    PutDrain(DrainRow),
    /// Remove a drain.
    DeleteDrain {
        /// Runtime.
        runtime_id: String,
        /// Endpoint.
        endpoint: String,
        /// Version.
        version: u32,
    },
    /// Insert a new rollout; fails with `AlreadyExists("active rollout")` if the endpoint has
    /// one in progress.
    InsertRollout(RolloutRow),
    /// Replace a rollout row.
    PutRollout(RolloutRow),
    /// Replace a rollout row if the stored row is still the one the caller read (same state,
    /// step and `updated_at`); fails with `Precondition("rollout")` otherwise, writing nothing.
    /// Rollout analysis runs its signals without any lock and commits through this, so an
    /// operator's pause or another node's analysis in between wins over a stale verdict.
    UpdateRollout {
        /// The new row.
        rollout: RolloutRow,
        /// The row as it was read.
        expect: RolloutGuard,
    },
    /// Add counts to a health bucket (created if absent).
    AddHealth(HealthRow),
    /// Remove health buckets that started before a time.
    PruneHealth {
        /// Cut-off, epoch ms.
        before: EpochMillis,
    },
    /// Append to the hash-chained audit log.
    AppendAudit(AuditRecord),
    /// Creates or replaces a role (by name), keeping its creation time.
    PutRole(RoleRow),
    /// Deletes a role; runtimes naming it fall back to the default role.
    DeleteRole {
        /// The role name.
        name: String,
    },
    /// Records a new access key; fails with `AlreadyExists` when the id is taken.
    InsertAccessKey(AccessKeyRow),
    /// Marks an access key revoked (a no-op when it already is).
    RevokeAccessKey {
        /// The access key id.
        id: String,
        /// When it was revoked.
        at: EpochMillis,
    },
    /// Creates or replaces the resource policy of an ARN.
    PutResourcePolicy(ResourcePolicyRow),
    /// Deletes the resource policy of an ARN (a no-op when there is none); with `children`,
    /// also those of every ARN under it (`{arn}/...`: a runtime's endpoints).
    DeleteResourcePolicy {
        /// The resource's ARN.
        arn: String,
        /// Also the ARNs under it.
        children: bool,
    },
}

/// What a conditional rollout write compares against: the row as the writer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutGuard {
    /// The state read (`RUNNING`, `PAUSED`, ...).
    pub state: String,
    /// The step read.
    pub step_index: u32,
    /// The `updated_at` read; every rollout write sets it.
    pub updated_at: EpochMillis,
}

impl RolloutGuard {
    /// The guard that matches `row` as it is stored.
    pub fn of(row: &RolloutRow) -> Self {
        Self {
            state: row.state.clone(),
            step_index: row.step_index,
            updated_at: row.updated_at,
        }
    }
}

/// A remembered idempotent request.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotency {
    /// Operation name, e.g. `CreateAgentRuntime`.
    pub operation: String,
    /// The client token.
    pub token: String,
    /// Hash of the request parameters, to detect reuse with different parameters.
    pub request_hash: String,
    /// The JSON response that was sent.
    pub response: serde_json::Value,
    /// When it was recorded.
    pub created_at: EpochMillis,
}

/// Keyset cursor for listing runtimes in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCursor {
    /// Creation time of the last runtime seen.
    pub created_at: EpochMillis,
    /// Id of the last runtime seen.
    pub id: String,
}

/// The control plane's storage.
#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// Applies all writes atomically and durably, or none of them.
    async fn apply(&self, writes: Vec<Write>) -> Result<(), Error>;
    /// A runtime by id.
    async fn runtime(&self, id: &str) -> Result<Option<Runtime>, Error>;
    /// Runtimes in creation order after `after`, at most `limit`.
    async fn list_runtimes(
        &self,
        after: Option<&RuntimeCursor>,
        limit: u32,
    ) -> Result<Vec<Runtime>, Error>;
    /// One version.
    async fn version(
        &self,
        runtime_id: &str,
        version: u32,
    ) -> Result<Option<RuntimeVersion>, Error>;
    /// Versions newest first, below `below` when given, at most `limit`.
    async fn list_versions(
        &self,
        runtime_id: &str,
        below: Option<u32>,
        limit: u32,
    ) -> Result<Vec<RuntimeVersion>, Error>;
    /// Versions of all runtimes whose status is transitional (CREATING/UPDATING), for recovery at start.
    async fn unfinished_versions(&self) -> Result<Vec<RuntimeVersion>, Error>;
    /// Ids of runtimes marked for deletion, for recovery at start.
    async fn deleting_runtimes(&self) -> Result<Vec<String>, Error>;
    /// One endpoint.
    async fn endpoint(&self, runtime_id: &str, name: &str) -> Result<Option<Endpoint>, Error>;
    /// Endpoints of a runtime by name after `after`, at most `limit`.
    async fn list_endpoints(
        &self,
        runtime_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Endpoint>, Error>;
    /// Tags of a resource, by key.
    async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, Error>;
    /// A remembered idempotent request.
    async fn idempotency(&self, operation: &str, token: &str)
    -> Result<Option<Idempotency>, Error>;
    /// An endpoint's traffic policy.
    async fn policy(&self, runtime_id: &str, endpoint: &str) -> Result<Option<PolicyRow>, Error>;
    /// The version a session was routed to.
    async fn assignment(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Option<AssignmentRow>, Error>;
    /// Sessions assigned per version on an endpoint, by version.
    async fn assignment_counts(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<Vec<(u32, u64)>, Error>;
    /// Versions draining off an endpoint.
    async fn drains(&self, runtime_id: &str, endpoint: &str) -> Result<Vec<DrainRow>, Error>;
    /// Drains of every endpoint whose deadline is at or before `now`.
    async fn expired_drains(&self, now: EpochMillis) -> Result<Vec<DrainRow>, Error>;
    /// One rollout.
    async fn rollout(&self, id: &str) -> Result<Option<RolloutRow>, Error>;
    /// Rollouts in progress (running or paused) on any endpoint.
    async fn active_rollouts(&self) -> Result<Vec<RolloutRow>, Error>;
    /// Rollouts of an endpoint, newest first, at most `limit`.
    async fn rollouts(
        &self,
        runtime_id: &str,
        endpoint: &str,
        limit: u32,
    ) -> Result<Vec<RolloutRow>, Error>;
    /// Health buckets of an endpoint starting in `[from, to)`, by version then time.
    async fn health(
        &self,
        runtime_id: &str,
        endpoint: &str,
        from: EpochMillis,
        to: EpochMillis,
    ) -> Result<Vec<HealthRow>, Error>;
    /// Audit entries after `after_seq` in sequence order, at most `limit`; with `resource`,
    /// only entries about that ARN or ARNs under it.
    async fn audit(
        &self,
        resource: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>, Error>;
    /// The last audit entry written: its sequence number and hash.
    async fn audit_head(&self) -> Result<Option<(i64, String)>, Error>;
    /// A role by name.
    async fn role(&self, name: &str) -> Result<Option<RoleRow>, Error>;
    /// Every role, by name.
    async fn roles(&self) -> Result<Vec<RoleRow>, Error>;
    /// An access key by id, active or revoked.
    async fn access_key(&self, id: &str) -> Result<Option<AccessKeyRow>, Error>;
    /// Every access key, oldest first.
    async fn access_keys(&self) -> Result<Vec<AccessKeyRow>, Error>;
    /// The resource policy of an ARN.
    async fn resource_policy(&self, arn: &str) -> Result<Option<ResourcePolicyRow>, Error>;
}

/// Opens the store a URL names (`sqlite://PATH`, `postgres://...`) and runs its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn ControlStore>, Error> {
    Ok(open_all(url).await?.control)
}

/// Every store over one database, sharing its connection pools: SQLite allows one writer per
/// file, so two pools on one file would queue on its lock instead of on the pool.
#[derive(Clone)]
pub struct Stores {
    /// Runtimes, versions, endpoints, traffic, audit.
    pub control: Arc<dyn ControlStore>,
    /// Memories, events, records, extraction jobs.
    pub memory: Arc<dyn memory::MemoryStore>,
    /// Evaluators and online evaluation configs.
    pub eval: Arc<dyn eval::EvalStore>,
    /// Evaluation datasets and batch evaluations.
    pub eval_data: Arc<dyn eval_data::EvalDataStore>,
    /// Workload identities and credential providers (secrets sealed by the token vault).
    pub identity: Arc<dyn identity::IdentityStore>,
    /// Secrets (`berth secrets`), sealed by the token vault.
    pub secrets: Arc<dyn secrets::SecretStore>,
    /// The nodes of the installation, session owners and background jobs' leases.
    pub nodes: Arc<dyn nodes::NodeStore>,
}

/// Opens the database a URL names once, for every store, and runs its migrations.
pub async fn open_all(url: &str) -> Result<Stores, Error> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite { path, options } => {
            Stores::of(Arc::new(SqliteStore::open_with(&path, &options).await?))
        }
        StoreUrl::Postgres { url } => Stores::of(Arc::new(PgStore::open(&url).await?)),
    })
}

impl Stores {
    /// Every store served by one backend value.
    fn of<S>(s: Arc<S>) -> Self
    where
        S: ControlStore
            + memory::MemoryStore
            + eval::EvalStore
            + eval_data::EvalDataStore
            + identity::IdentityStore
            + secrets::SecretStore
            + nodes::NodeStore,
    {
        Self {
            control: s.clone(),
            memory: s.clone(),
            eval: s.clone(),
            eval_data: s.clone(),
            identity: s.clone(),
            secrets: s.clone(),
            nodes: s,
        }
    }
}
