//! AgentCore Evaluations control-plane wire shapes, typed: evaluators and online evaluation
//! configs (`bedrock-agentcore-control`), member by member as the botocore model names them.
//!
//! The evaluator configuration and level are the engine's types ([`crate::evaluation`]): the
//! same shapes `Evaluate` acts on. Every timestamp here has no `timestampFormat` in the model, so
//! it is epoch seconds on the wire ([`crate::memory::epoch`]). Members Berth does not act on are
//! still declared so they are stored and echoed; responses skip absent members.

use crate::evaluation::{EvaluatorConfig, EvaluatorLevel};
use crate::memory::epoch;
use berth_types::EpochMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `TagsMap`.
pub type Tags = BTreeMap<String, String>;

/// `EvaluatorStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvaluatorStatus {
    /// Usable.
    Active,
    /// Just created; becomes `Active`.
    Creating,
    /// Creation failed.
    CreateFailed,
    /// Just updated; becomes `Active`.
    Updating,
    /// The update failed.
    UpdateFailed,
    /// Being deleted; then Get answers 404.
    Deleting,
}

/// `EvaluatorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvaluatorType {
    /// One of the `Builtin.*` catalogue.
    Builtin,
    /// A third-party evaluator (Berth has none).
    ThirdParty,
    /// An `llmAsAJudge` evaluator.
    Custom,
    /// A `codeBased` evaluator.
    CustomCode,
    /// A `derived` evaluator.
    CustomDerived,
}

/// `Provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Provider {
    /// The built-in catalogue.
    #[serde(rename = "AWS")]
    Aws,
    /// DeepEval.
    DeepEval,
    /// AutoEval.
    AutoEval,
    /// The caller's own evaluators.
    Custom,
}

/// `CreateEvaluatorRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEvaluatorRequest {
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// `[a-zA-Z][a-zA-Z0-9_]{0,47}`.
    pub evaluator_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How the evaluator scores.
    pub evaluator_config: EvaluatorConfig,
    /// What one result covers.
    pub level: EvaluatorLevel,
    /// Stored and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `CreateEvaluatorResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEvaluatorResponse {
    /// `arn:aws:bedrock-agentcore:<region>:<account>:evaluator/<id>`.
    pub evaluator_arn: String,
    /// `<name>-<10 alphanumerics>`.
    pub evaluator_id: String,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// `CREATING`.
    pub status: EvaluatorStatus,
}

/// `GetEvaluatorRequest`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetEvaluatorRequest {
    /// A custom evaluator's id or `Builtin.*`.
    pub evaluator_id: String,
    /// `ALL_DATA` (default) or `METADATA_ONLY` (no instructions in the config).
    #[serde(default)]
    pub included_data: Option<String>,
}

/// `GetEvaluatorResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetEvaluatorResponse {
    /// The evaluator's ARN (`arn:aws:bedrock-agentcore:::evaluator/Builtin.X` for built-ins).
    pub evaluator_arn: String,
    /// Its id.
    pub evaluator_id: String,
    /// Its name (the id, for built-ins).
    pub evaluator_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How it scores.
    pub evaluator_config: EvaluatorConfig,
    /// Built-in or custom, and which kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator_type: Option<EvaluatorType>,
    /// Who provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// What one result covers.
    pub level: EvaluatorLevel,
    /// Lifecycle state.
    pub status: EvaluatorStatus,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// Last change.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// True for built-ins: they cannot be updated or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_for_modification: Option<bool>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

/// `UpdateEvaluatorRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEvaluatorRequest {
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Which evaluator.
    pub evaluator_id: String,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator_config: Option<EvaluatorConfig>,
    /// New level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<EvaluatorLevel>,
    /// New key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

/// `UpdateEvaluatorResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateEvaluatorResponse {
    /// Its ARN.
    pub evaluator_arn: String,
    /// Its id.
    pub evaluator_id: String,
    /// The update's time.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// `UPDATING`.
    pub status: EvaluatorStatus,
}

/// `ListEvaluatorsRequest` (query-string members on a POST).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEvaluatorsRequest {
    /// Where the previous page ended.
    #[serde(default)]
    pub next_token: Option<String>,
    /// Page size, 1..100.
    #[serde(default)]
    pub max_results: Option<u32>,
}

/// `EvaluatorSummary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorSummary {
    /// Its ARN.
    pub evaluator_arn: String,
    /// Its id.
    pub evaluator_id: String,
    /// Its name.
    pub evaluator_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Built-in or custom.
    pub evaluator_type: EvaluatorType,
    /// Who provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// What one result covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<EvaluatorLevel>,
    /// Lifecycle state.
    pub status: EvaluatorStatus,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// Last change.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// True for built-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_for_modification: Option<bool>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
}

/// `ListEvaluatorsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEvaluatorsResponse {
    /// One page.
    pub evaluators: Vec<EvaluatorSummary>,
    /// More pages follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteEvaluatorRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteEvaluatorRequest {
    /// Which evaluator.
    pub evaluator_id: String,
}

/// `DeleteEvaluatorResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteEvaluatorResponse {
    /// Its ARN.
    pub evaluator_arn: String,
    /// Its id.
    pub evaluator_id: String,
    /// `DELETING`.
    pub status: EvaluatorStatus,
}

// ---------------------------------------------------------------------------------------------
// Online evaluation configs

/// `OnlineEvaluationConfigStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnlineConfigStatus {
    /// In effect.
    Active,
    /// Just created; becomes `Active`.
    Creating,
    /// Creation failed.
    CreateFailed,
    /// Just updated; becomes `Active`.
    Updating,
    /// The update failed.
    UpdateFailed,
    /// Being deleted; then Get answers 404.
    Deleting,
    /// Failing at run time (`failureReason` says why).
    Error,
}

/// `OnlineEvaluationExecutionStatus`: whether the online evaluation loop samples for a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Sessions are sampled and scored.
    Enabled,
    /// Nothing is sampled.
    Disabled,
}

/// `Rule`: which sessions are evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// How many sessions.
    pub sampling_config: SamplingConfig,
    /// All must hold for a session to be sampled (at most 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<Filter>>,
    /// When a session counts as finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_config: Option<SessionConfig>,
}

/// `SamplingConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingConfig {
    /// 0.01..100.
    pub sampling_percentage: f64,
}

/// `SessionConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionConfig {
    /// A session quiet this long (1..1440 minutes) is finished.
    pub session_timeout_minutes: u32,
}

/// `Filter`: a condition on a span attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// The attribute.
    pub key: String,
    /// The comparison.
    pub operator: FilterOperator,
    /// The operand.
    pub value: FilterValue,
}

/// `FilterOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterOperator {
    /// `==`.
    Equals,
    /// `!=`.
    NotEquals,
    /// `>`.
    GreaterThan,
    /// `<`.
    LessThan,
    /// `>=`.
    GreaterThanOrEqual,
    /// `<=`.
    LessThanOrEqual,
    /// Substring.
    Contains,
    /// Not a substring.
    NotContains,
}

/// `FilterValue` (a union).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FilterValue {
    /// Text.
    #[serde(rename = "stringValue")]
    String(String),
    /// A number.
    #[serde(rename = "doubleValue")]
    Double(f64),
    /// A flag.
    #[serde(rename = "booleanValue")]
    Boolean(bool),
}

/// `DataSourceConfig` (a union): where the evaluated sessions' spans are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSourceConfig {
    /// Log groups of the CloudWatch Logs API (Berth's trace store).
    #[serde(rename = "cloudWatchLogs")]
    CloudWatchLogs(CloudWatchLogsInputConfig),
}

/// `CloudWatchLogsInputConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchLogsInputConfig {
    /// Log groups (at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group_names: Option<Vec<String>>,
    /// Log group name prefixes (1..5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group_name_prefixes: Option<Vec<String>>,
    /// Exactly one service name (`<agent>.<endpoint>` as ADOT names it).
    pub service_names: Vec<String>,
}

/// `EvaluatorReference` (a union).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EvaluatorReference {
    /// An evaluator id (custom or `Builtin.*`).
    #[serde(rename = "evaluatorId")]
    EvaluatorId(String),
}

impl EvaluatorReference {
    /// The evaluator id referred to.
    pub fn id(&self) -> &str {
        match self {
            Self::EvaluatorId(id) => id,
        }
    }
}

/// `Insight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Insight {
    /// Which insight.
    pub insight_id: String,
}

/// `ClusteringConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusteringConfig {
    /// `DAILY`, `WEEKLY`, `MONTHLY`.
    pub frequencies: Vec<String>,
}

/// `OutputConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputConfig {
    /// Where results are written.
    pub cloud_watch_config: CloudWatchOutputConfig,
}

/// `CloudWatchOutputConfig`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchOutputConfig {
    /// The results' log group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_group_name: Option<String>,
    /// The metrics' namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_namespace: Option<String>,
    /// `DEDICATED_LOG_GROUP` or `SOURCE_LOG_GROUP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_destination: Option<String>,
}

/// `CreateOnlineEvaluationConfigRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOnlineConfigRequest {
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Unique name.
    pub online_evaluation_config_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which sessions.
    pub rule: Rule,
    /// Where their spans are.
    pub data_source_config: DataSourceConfig,
    /// Which evaluators score them (at most 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorReference>>,
    /// Stored and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<Vec<Insight>>,
    /// Stored and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering_config: Option<ClusteringConfig>,
    /// Where results go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Stored and echoed.
    pub evaluation_execution_role_arn: String,
    /// `ENABLED` at once, or `DISABLED`.
    pub enable_on_create: bool,
    /// Stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `CreateOnlineEvaluationConfigResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOnlineConfigResponse {
    /// `arn:aws:bedrock-agentcore:<region>:<account>:online-evaluation-config/<id>`.
    pub online_evaluation_config_arn: String,
    /// `<name>-<10 alphanumerics>`.
    pub online_evaluation_config_id: String,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// Where results go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// `CREATING`.
    pub status: OnlineConfigStatus,
    /// Enabled or not.
    pub execution_status: ExecutionStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `GetOnlineEvaluationConfigRequest` and `DeleteOnlineEvaluationConfigRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineConfigIdRequest {
    /// Which config.
    pub online_evaluation_config_id: String,
}

/// `GetOnlineEvaluationConfigResponse`: a config, whole. [`crate::evaluation_resources`]'s
/// consumers (the online evaluation loop) read configs in this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineConfig {
    /// Its ARN.
    pub online_evaluation_config_arn: String,
    /// Its id.
    pub online_evaluation_config_id: String,
    /// Its name.
    pub online_evaluation_config_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which sessions.
    pub rule: Rule,
    /// Where their spans are.
    pub data_source_config: DataSourceConfig,
    /// Which evaluators score them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorReference>>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<Vec<Insight>>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering_config: Option<ClusteringConfig>,
    /// Where results go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_execution_role_arn: Option<String>,
    /// Lifecycle state.
    pub status: OnlineConfigStatus,
    /// Enabled or not.
    pub execution_status: ExecutionStatus,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// Last change.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `UpdateOnlineEvaluationConfigRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOnlineConfigRequest {
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Which config.
    pub online_evaluation_config_id: String,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// New data source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_config: Option<DataSourceConfig>,
    /// New evaluators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorReference>>,
    /// New insights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<Vec<Insight>>,
    /// New clustering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering_config: Option<ClusteringConfig>,
    /// New output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// New role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_execution_role_arn: Option<String>,
    /// Enable or disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_status: Option<ExecutionStatus>,
}

/// `UpdateOnlineEvaluationConfigResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOnlineConfigResponse {
    /// Its ARN.
    pub online_evaluation_config_arn: String,
    /// Its id.
    pub online_evaluation_config_id: String,
    /// The update's time.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// `UPDATING`.
    pub status: OnlineConfigStatus,
    /// Enabled or not.
    pub execution_status: ExecutionStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `ListOnlineEvaluationConfigsRequest` (query-string members on a POST).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOnlineConfigsRequest {
    /// Where the previous page ended.
    #[serde(default)]
    pub next_token: Option<String>,
    /// Page size, 1..100.
    #[serde(default)]
    pub max_results: Option<u32>,
}

/// `OnlineEvaluationConfigSummary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineConfigSummary {
    /// Its ARN.
    pub online_evaluation_config_arn: String,
    /// Its id.
    pub online_evaluation_config_id: String,
    /// Its name.
    pub online_evaluation_config_name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lifecycle state.
    pub status: OnlineConfigStatus,
    /// Enabled or not.
    pub execution_status: ExecutionStatus,
    /// Creation time.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
    /// Last change.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<Vec<Insight>>,
    /// As created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering_config: Option<ClusteringConfig>,
}

/// `ListOnlineEvaluationConfigsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOnlineConfigsResponse {
    /// One page.
    pub online_evaluation_configs: Vec<OnlineConfigSummary>,
    /// More pages follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteOnlineEvaluationConfigResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOnlineConfigResponse {
    /// Its ARN.
    pub online_evaluation_config_arn: String,
    /// Its id.
    pub online_evaluation_config_id: String,
    /// `DELETING`.
    pub status: OnlineConfigStatus,
}

/// Epoch milliseconds as epoch seconds on the wire, both ways: responses are also stored (for
/// idempotent replays) and read back.
mod epoch_de {
    use berth_types::EpochMillis;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
        super::epoch::serialize(ms, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EpochMillis, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok((secs * 1000.0).round() as EpochMillis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn online_configs_read_and_write_the_models_member_names() {
        let v = json!({
            "onlineEvaluationConfigName": "cfg", "evaluationExecutionRoleArn": "arn:aws:iam::1:role/r",
            "enableOnCreate": true,
            "rule": {"samplingConfig": {"samplingPercentage": 12.5},
                     "filters": [{"key": "k", "operator": "NotContains", "value": {"booleanValue": true}}],
                     "sessionConfig": {"sessionTimeoutMinutes": 15}},
            "dataSourceConfig": {"cloudWatchLogs": {"serviceNames": ["agent.DEFAULT"]}},
            "evaluators": [{"evaluatorId": "Builtin.Helpfulness"}]});
        let r: CreateOnlineConfigRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            r.rule.filters.as_ref().unwrap()[0].value,
            FilterValue::Boolean(true)
        );
        assert_eq!(
            r.evaluators.as_ref().unwrap()[0].id(),
            "Builtin.Helpfulness"
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        let s = serde_json::to_value(ExecutionStatus::Disabled).unwrap();
        assert_eq!(s, "DISABLED");
    }

    #[test]
    fn timestamps_are_epoch_seconds_both_ways() {
        let r = DeleteOnlineConfigResponse {
            online_evaluation_config_arn: "a".into(),
            online_evaluation_config_id: "i".into(),
            status: OnlineConfigStatus::Deleting,
        };
        assert_eq!(serde_json::to_value(&r).unwrap()["status"], "DELETING");
        let u = UpdateEvaluatorResponse {
            evaluator_arn: "a".into(),
            evaluator_id: "i".into(),
            updated_at: 1_700_000_000_250,
            status: EvaluatorStatus::Updating,
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v["updatedAt"], 1_700_000_000.25);
        assert_eq!(
            serde_json::from_value::<UpdateEvaluatorResponse>(v).unwrap(),
            u
        );
    }
}
