//! Storage of AgentCore Evaluations' control plane: evaluators and online evaluation configs,
//! with the idempotency tokens of their writes.
//!
//! The domain (`berth-eval`) owns every rule and the typed shapes; this module only stores and
//! queries rows, each resource's members beyond its keys as one JSON `spec`.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;
use std::sync::Arc;

pub use crate::memory::TokenRow;

/// A custom evaluator (the `Builtin.*` catalogue is code, not rows).
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluatorRow {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `TOOL_CALL`, `TRACE` or `SESSION`.
    pub level: String,
    /// `CREATING`, `ACTIVE`, `UPDATING`, `DELETING`, ...
    pub status: String,
    /// Everything else, in the domain's own JSON shape (description, evaluatorConfig, ...).
    pub spec: Value,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// An online evaluation config.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineConfigRow {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `CREATING`, `ACTIVE`, `UPDATING`, `DELETING`, ...
    pub status: String,
    /// `ENABLED` or `DISABLED`.
    pub execution_status: String,
    /// Why the config failed.
    pub failure_reason: Option<String>,
    /// Everything else, in the domain's own JSON shape (rule, dataSourceConfig, evaluators, ...).
    pub spec: Value,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Storage of the evaluations control plane.
///
/// Every write that carries a [`TokenRow`] stores it in the same transaction as the row, and
/// fails with `AlreadyExists("client token")` if the token was taken meanwhile.
#[async_trait]
pub trait EvalStore: Send + Sync + 'static {
    /// Inserts an evaluator (fails with `AlreadyExists("evaluator name")`).
    async fn insert_evaluator(
        &self,
        e: &EvaluatorRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error>;
    /// Replaces an evaluator row.
    async fn put_evaluator(&self, e: &EvaluatorRow, token: Option<&TokenRow>) -> Result<(), Error>;
    /// An evaluator by id.
    async fn evaluator(&self, id: &str) -> Result<Option<EvaluatorRow>, Error>;
    /// Evaluators in creation order after the cursor `(created_at, id)`.
    async fn list_evaluators(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<EvaluatorRow>, Error>;
    /// Evaluators in a status (for recovery at start).
    async fn evaluators_in_status(&self, status: &str) -> Result<Vec<EvaluatorRow>, Error>;
    /// Removes an evaluator; false when there was none.
    async fn delete_evaluator(&self, id: &str) -> Result<bool, Error>;

    /// Inserts an online evaluation config (fails with `AlreadyExists("online evaluation
    /// config name")`).
    async fn insert_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error>;
    /// Replaces an online evaluation config row.
    async fn put_online_config(
        &self,
        c: &OnlineConfigRow,
        token: Option<&TokenRow>,
    ) -> Result<(), Error>;
    /// An online evaluation config by id.
    async fn online_config(&self, id: &str) -> Result<Option<OnlineConfigRow>, Error>;
    /// Online evaluation configs in creation order after the cursor `(created_at, id)`.
    async fn page_online_configs(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<OnlineConfigRow>, Error>;
    /// Every online evaluation config, in creation order (the online evaluation loop reads them).
    async fn list_online_configs(&self) -> Result<Vec<OnlineConfigRow>, Error>;
    /// Online evaluation configs in a status (for recovery at start).
    async fn online_configs_in_status(&self, status: &str) -> Result<Vec<OnlineConfigRow>, Error>;
    /// Removes an online evaluation config; false when there was none.
    async fn delete_online_config(&self, id: &str) -> Result<bool, Error>;

    /// The remembered answer to `operation` with client token `token`.
    async fn eval_token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error>;
}

/// Opens the evaluations store a URL names (see [`crate::open_all`]).
pub async fn open(url: &str) -> Result<Arc<dyn EvalStore>, Error> {
    Ok(crate::open_all(url).await?.eval)
}
