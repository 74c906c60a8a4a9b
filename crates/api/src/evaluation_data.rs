//! The wire shapes of AgentCore Evaluations' datasets (`bedrock-agentcore-control`) and batch
//! evaluations (`bedrock-agentcore`): one `Deserialize` struct per operation's input, one
//! `Serialize` struct per output, members named exactly as the botocore models name them,
//! absent optional members skipped.
//!
//! Dataset timestamps have no `timestampFormat` (epoch seconds, [`crate::memory::epoch`]); batch
//! evaluation timestamps are `iso8601` strings. Examples are free-form JSON documents
//! (`SensitiveJson`) and stay [`Value`]s.

use crate::memory::epoch;
use berth_types::EpochMillis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Resource tags (`TagsMap`).
pub type Tags = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------
// Datasets (control plane).

/// `DataSourceType`: where a dataset's examples come from. The model marks it a structure with
/// two optional members; exactly one must be set (checked by the domain).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceType {
    /// Examples in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_examples: Option<InlineExamplesSource>,
    /// A JSONL object in Berth's S3-compatible artifact store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_source: Option<S3Source>,
}

/// `InlineExamplesSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineExamplesSource {
    /// 1 to 1000 example documents.
    pub examples: Vec<Value>,
}

/// `S3Source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// `s3://bucket/key` of a JSONL file, one example per line.
    pub s3_uri: String,
}

/// `CreateDatasetRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDataset {
    /// Idempotency token.
    pub client_token: Option<String>,
    /// `[a-zA-Z][a-zA-Z0-9_]{0,47}`, unique.
    pub dataset_name: String,
    /// Up to 200 characters.
    pub description: Option<String>,
    /// The first examples of the DRAFT.
    pub source: Option<DataSourceType>,
    /// `AGENTCORE_EVALUATION_PREDEFINED_V1`, `AGENTCORE_EVALUATION_SIMULATED_V1` or
    /// `THIRD_PARTY_EVALUATION_V1`.
    pub schema_type: Option<String>,
    /// Echoed.
    pub kms_key_arn: Option<String>,
    /// Resource tags.
    pub tags: Option<Tags>,
}

/// `CreateDatasetResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDatasetOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DatasetStatus`.
    pub status: String,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
}

/// `GetDatasetRequest` (also the input of `DeleteDataset`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetRef {
    /// The dataset.
    pub dataset_id: String,
    /// `DRAFT` or a version number; DRAFT when absent.
    pub dataset_version: Option<String>,
}

/// `ExampleCountByField`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExampleCountByField {
    /// Examples with `turns`.
    pub turns: i64,
    /// Examples with `input`.
    pub input: i64,
    /// Examples with `actor_profile`.
    pub actor_profile: i64,
}

/// `GetDatasetResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetDatasetOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// The version described.
    pub dataset_version: String,
    /// The dataset's name.
    pub dataset_name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `DatasetStatus`.
    pub status: String,
    /// `MODIFIED` when the DRAFT differs from the latest numbered version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_status: Option<String>,
    /// Why the dataset failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The examples' schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Examples in this version.
    pub example_count: i64,
    /// Examples per field.
    pub example_count_by_field: ExampleCountByField,
    /// A time-limited URL of the version's examples as JSONL, fetchable without signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// When `download_url` stops working.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "epoch::option::serialize"
    )]
    pub download_url_expires_at: Option<EpochMillis>,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub updated_at: EpochMillis,
    /// Resource tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `UpdateDatasetRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDataset {
    /// The dataset.
    pub dataset_id: String,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// The new description.
    pub description: Option<String>,
}

/// `UpdateDatasetResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDatasetOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
}

/// `DeleteDatasetResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteDatasetOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DELETING` for the dataset, `ACTIVE` after deleting one version.
    pub status: String,
    /// The version deleted (`DRAFT` for the whole dataset).
    pub dataset_version: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub updated_at: EpochMillis,
}

/// `ExampleCountByFieldCondition`: examples having any of `anyOf`, counted, within bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExampleCountByFieldCondition {
    /// `TURNS`, `INPUT`, `ACTOR_PROFILE`.
    pub any_of: Option<Vec<String>>,
    /// Lower bound, inclusive.
    pub min: Option<i64>,
    /// Upper bound, inclusive.
    pub max: Option<i64>,
}

/// `ListDatasetsFilter` / `ListDatasetVersionsFilter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountFilter {
    /// Every condition must hold.
    pub example_count_by_field: Option<Vec<ExampleCountByFieldCondition>>,
}

/// `ListDatasetsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasets {
    /// Count conditions.
    pub filter: Option<CountFilter>,
    /// From the previous page.
    pub next_token: Option<String>,
    /// 1..100.
    pub max_results: Option<u32>,
}

/// `DatasetSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSummary {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// The dataset's name.
    pub dataset_name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `DatasetStatus`.
    pub status: String,
    /// `MODIFIED` or `UNMODIFIED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_status: Option<String>,
    /// The examples' schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    /// Examples in the DRAFT.
    pub example_count: i64,
    /// Examples per field.
    pub example_count_by_field: ExampleCountByField,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub updated_at: EpochMillis,
}

/// `ListDatasetsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasetsOutput {
    /// One page.
    pub datasets: Vec<DatasetSummary>,
    /// The next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `CreateDatasetVersionRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDatasetVersion {
    /// The dataset.
    pub dataset_id: String,
    /// Idempotency token.
    pub client_token: Option<String>,
}

/// `CreateDatasetVersionResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDatasetVersionOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DatasetStatus`.
    pub status: String,
    /// The new version's number.
    pub dataset_version: String,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub created_at: EpochMillis,
}

/// `ListDatasetVersionsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasetVersions {
    /// The dataset.
    pub dataset_id: String,
    /// Count conditions.
    pub filter: Option<CountFilter>,
    /// From the previous page.
    pub next_token: Option<String>,
    /// 1..100.
    pub max_results: Option<u32>,
}

/// `DatasetVersionSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetVersionSummary {
    /// `DRAFT` or a number.
    pub dataset_version: String,
    /// Examples in the version.
    pub example_count: i64,
    /// Examples per field.
    pub example_count_by_field: ExampleCountByField,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
}

/// `ListDatasetVersionsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasetVersionsOutput {
    /// One page, DRAFT first, then newest first.
    pub versions: Vec<DatasetVersionSummary>,
    /// The next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `AddDatasetExamplesRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddDatasetExamples {
    /// The dataset.
    pub dataset_id: String,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// The examples to add.
    pub source: DataSourceType,
}

/// `AddDatasetExamplesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddDatasetExamplesOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DatasetStatus`.
    pub status: String,
    /// How many were added.
    pub added_count: i64,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
    /// The added examples' ids, in request order.
    pub example_ids: Vec<String>,
}

/// `UpdateDatasetExamplesRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDatasetExamples {
    /// The dataset.
    pub dataset_id: String,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// Replacement documents, each naming the example it replaces.
    pub examples: Vec<Value>,
}

/// `UpdateDatasetExamplesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateDatasetExamplesOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DatasetStatus`.
    pub status: String,
    /// How many were replaced.
    pub updated_count: i64,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
}

/// `DeleteDatasetExamplesRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteDatasetExamples {
    /// The dataset.
    pub dataset_id: String,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// The examples to delete.
    pub example_ids: Vec<String>,
}

/// `DeleteDatasetExamplesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteDatasetExamplesOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// `DatasetStatus`.
    pub status: String,
    /// How many were deleted.
    pub deleted_count: i64,
    /// Epoch seconds.
    #[serde(with = "epoch_de")]
    pub updated_at: EpochMillis,
}

/// `ListDatasetExamplesFilter`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListExamplesFilter {
    /// Dataset generation ids (Berth generates none: such a filter matches nothing).
    pub generation_ids: Option<Vec<String>>,
    /// Each condition: the example has any of the fields.
    pub example_fields: Option<Vec<ExampleCountByFieldCondition>>,
}

/// `ListDatasetExamplesRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasetExamples {
    /// The dataset.
    pub dataset_id: String,
    /// `DRAFT` or a number; DRAFT when absent (or the token's version).
    pub dataset_version: Option<String>,
    /// Field conditions.
    pub filter: Option<ListExamplesFilter>,
    /// 1..1000.
    pub max_results: Option<u32>,
    /// From the previous page; pins the version.
    pub next_token: Option<String>,
}

/// `ListDatasetExamplesResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDatasetExamplesOutput {
    /// The dataset's ARN.
    pub dataset_arn: String,
    /// The dataset's id.
    pub dataset_id: String,
    /// The version listed.
    pub dataset_version: String,
    /// The example documents.
    pub examples: Vec<Value>,
    /// The next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Epoch-second timestamps read back (stored idempotent responses are deserialised).
mod epoch_de {
    use berth_types::EpochMillis;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
        crate::memory::epoch::serialize(ms, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<EpochMillis, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok((secs * 1000.0).round() as EpochMillis)
    }
}

// ---------------------------------------------------------------------------------------------
// Batch evaluations (data plane).

/// `Evaluator` (a batch's evaluator reference).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorRef {
    /// `Builtin.X`, `ThirdParty.X.Y` or a custom evaluator's id.
    pub evaluator_id: String,
}

/// `SessionFilterConfig`: a time window (ISO 8601 on the wire).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    /// Sessions with spans at or after this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Sessions with spans at or before this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// `SessionTraceIds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTraceIds {
    /// The session.
    pub session_id: String,
    /// Its traces to evaluate.
    pub trace_ids: Vec<String>,
}

/// `CloudWatchFilterConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchFilterConfig {
    /// Only these sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_ids: Option<Vec<String>>,
    /// Only sessions with spans in this window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Only these traces of these sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_trace_ids: Option<Vec<SessionTraceIds>>,
}

/// `CloudWatchLogsSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchLogsSource {
    /// Exactly one `<runtimeName>.<endpointName>`.
    pub service_names: Vec<String>,
    /// Log groups to read (Berth reads its trace store; echoed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group_names: Option<Vec<String>>,
    /// Log group prefixes (echoed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group_name_prefixes: Option<Vec<String>>,
    /// Which sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_config: Option<CloudWatchFilterConfig>,
}

/// `DataSourceConfig`: a union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSourceConfig {
    /// Sessions from the trace store.
    #[serde(rename = "cloudWatchLogs")]
    CloudWatchLogs(CloudWatchLogsSource),
    /// Sessions an online evaluation config captured (kept as sent).
    #[serde(rename = "onlineEvaluationConfigSource")]
    OnlineEvaluationConfigSource(Value),
}

/// `EvaluationContent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationContent {
    /// The text.
    pub text: String,
}

/// `GroundTruthTurnInput`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruthTurnInput {
    /// The prompt of the turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `GroundTruthTurn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroundTruthTurn {
    /// What the turn sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<GroundTruthTurnInput>,
    /// What the agent should answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_response: Option<EvaluationContent>,
}

/// `EvaluationExpectedTrajectory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExpectedTrajectory {
    /// Tool names in order.
    #[serde(default)]
    pub tool_names: Vec<String>,
}

/// `InlineGroundTruth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineGroundTruth {
    /// Session-level assertions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assertions: Option<Vec<EvaluationContent>>,
    /// The expected tool trajectory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_trajectory: Option<ExpectedTrajectory>,
    /// Per-turn expectations, turn i for the session's i-th trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turns: Option<Vec<GroundTruthTurn>>,
}

/// `GroundTruthSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruthSource {
    /// Ground truth in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineGroundTruth>,
}

/// `SessionMetadataShape`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMetadata {
    /// The session.
    pub session_id: String,
    /// The scenario it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_scenario_id: Option<String>,
    /// Its ground truth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<GroundTruthSource>,
    /// Free metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `EvaluationMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationMetadata {
    /// Per-session ground truth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_metadata: Option<Vec<SessionMetadata>>,
}

/// `CloudWatchOutputConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudWatchOutputConfig {
    /// Where results are written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_group_name: Option<String>,
    /// The stream within it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream_name: Option<String>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_namespace: Option<String>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_destination: Option<String>,
}

/// `OutputConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputConfig {
    /// CloudWatch Logs destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_watch_config: Option<CloudWatchOutputConfig>,
}

/// `DatasetSource` (a batch's dataset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// The dataset.
    pub dataset_id: String,
    /// `DRAFT` or a number; DRAFT when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_version: Option<String>,
}

/// `AgentCoreRuntimeInvocation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCoreRuntimeInvocation {
    /// `...:runtime/<id>/runtime-endpoint/<name>`.
    pub agent_runtime_endpoint_arn: String,
    /// The payload sent per turn; `{{input}}` is replaced by the turn's input as JSON text
    /// (`{"prompt": "{{input}}"}`-style templates get the text itself when the input is a
    /// string). Absent: `{"prompt": <input>}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_template: Option<String>,
}

/// `AgentInvocationConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInvocationConfig {
    /// A Berth runtime endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_core_runtime: Option<AgentCoreRuntimeInvocation>,
}

/// `DatasetExecutionConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetExecutionConfig {
    /// The scenarios.
    pub dataset: DatasetSource,
    /// Who runs them.
    pub agent_invocation: AgentInvocationConfig,
}

/// `StartBatchEvaluationRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBatchEvaluation {
    /// `[a-zA-Z][a-zA-Z0-9_]{0,47}`.
    pub batch_evaluation_name: String,
    /// Up to 10 evaluators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorRef>>,
    /// Insights (Berth runs none; echoed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insights: Option<Value>,
    /// Where sessions come from.
    pub data_source_config: DataSourceConfig,
    /// Idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Ground truth per session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_metadata: Option<EvaluationMetadata>,
    /// Resource tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where per-result events go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Run a dataset's scenarios against a runtime first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_execution_config: Option<DatasetExecutionConfig>,
}

/// `StartBatchEvaluationResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBatchEvaluationOutput {
    /// The id.
    pub batch_evaluation_id: String,
    /// The ARN.
    pub batch_evaluation_arn: String,
    /// The name.
    pub batch_evaluation_name: String,
    /// The evaluators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorRef>>,
    /// `BatchEvaluationStatus`.
    pub status: String,
    /// ISO 8601.
    pub created_at: String,
    /// Where results go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Resource tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `EvaluatorStatistics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorStatistics {
    /// Mean of the results' values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average_score: Option<f64>,
}

/// `EvaluatorSummary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorSummary {
    /// The evaluator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_id: Option<String>,
    /// Its dimension, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_dimension_name: Option<String>,
    /// Aggregates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<EvaluatorStatistics>,
    /// Results with a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_evaluated: Option<i64>,
    /// Results with an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_failed: Option<i64>,
}

/// `EvaluationJobResults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationJobResults {
    /// Sessions every evaluator scored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_sessions_completed: Option<i64>,
    /// Sessions not done yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_sessions_in_progress: Option<i64>,
    /// Sessions that could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_sessions_failed: Option<i64>,
    /// All sessions selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_number_of_sessions: Option<i64>,
    /// Sessions skipped (no spans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_sessions_ignored: Option<i64>,
    /// Per evaluator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluator_summaries: Option<Vec<EvaluatorSummary>>,
}

/// `DatasetDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetDetails {
    /// The dataset.
    pub dataset_id: String,
    /// The version run.
    pub dataset_version: String,
}

/// `AgentCoreRuntimeInvocationDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCoreRuntimeInvocationDetails {
    /// The endpoint.
    pub agent_runtime_endpoint_arn: String,
    /// The runtime version the endpoint served.
    pub agent_runtime_version: String,
    /// The template used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_template: Option<String>,
}

/// `AgentInvocationDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInvocationDetails {
    /// The runtime endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_core_runtime: Option<AgentCoreRuntimeInvocationDetails>,
}

/// `DatasetExecutionDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetExecutionDetails {
    /// The dataset.
    pub dataset: DatasetDetails,
    /// The agent.
    pub agent_invocation: AgentInvocationDetails,
}

/// `GetBatchEvaluationResponse` (without the insight members Berth does not produce).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetBatchEvaluationOutput {
    /// The id.
    pub batch_evaluation_id: String,
    /// The ARN.
    pub batch_evaluation_arn: String,
    /// The name.
    pub batch_evaluation_name: String,
    /// `BatchEvaluationStatus`.
    pub status: String,
    /// ISO 8601.
    pub created_at: String,
    /// The evaluators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorRef>>,
    /// Where sessions came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_source_config: Option<DataSourceConfig>,
    /// Where results went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// The summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_results: Option<EvaluationJobResults>,
    /// At most one error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Vec<String>>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// The dataset run, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_execution_details: Option<DatasetExecutionDetails>,
}

/// The input of Get/Stop/DeleteBatchEvaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEvaluationRef {
    /// The batch evaluation.
    pub batch_evaluation_id: String,
}

/// `ListBatchEvaluationsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListBatchEvaluations {
    /// 1..100.
    pub max_results: Option<u32>,
    /// From the previous page.
    pub next_token: Option<String>,
}

/// `BatchEvaluationSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEvaluationSummary {
    /// The id.
    pub batch_evaluation_id: String,
    /// The ARN.
    pub batch_evaluation_arn: String,
    /// The name.
    pub batch_evaluation_name: String,
    /// `BatchEvaluationStatus`.
    pub status: String,
    /// ISO 8601.
    pub created_at: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The evaluators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluators: Option<Vec<EvaluatorRef>>,
    /// The summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_results: Option<EvaluationJobResults>,
    /// At most one error message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Vec<String>>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// `ListBatchEvaluationsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListBatchEvaluationsOutput {
    /// One page, newest first.
    pub batch_evaluations: Vec<BatchEvaluationSummary>,
    /// The next page, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `StopBatchEvaluationResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopBatchEvaluationOutput {
    /// The id.
    pub batch_evaluation_id: String,
    /// The ARN.
    pub batch_evaluation_arn: String,
    /// `STOPPING`, or the final status when it had already ended.
    pub status: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `DeleteBatchEvaluationResponse`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBatchEvaluationOutput {
    /// The id.
    pub batch_evaluation_id: String,
    /// The ARN.
    pub batch_evaluation_arn: String,
    /// `DELETING`.
    pub status: String,
}
