//! AgentCore Memory wire shapes, typed: the requests `berth_memory::Memory` takes and the
//! responses it returns, member by member as the botocore models name them
//! (`bedrock-agentcore-control` for memory resources, `bedrock-agentcore` for events, records and
//! extraction jobs), plus Berth's native context call.
//!
//! The server validates a request's raw JSON against the model first, then deserialises it into
//! one of these; members Berth does not act on are not declared (serde skips them). Responses
//! skip absent members and serialise timestamps as the models say: every memory timestamp has no
//! `timestampFormat`, so it is epoch seconds ([`epoch`]). Member order is the order AgentCore's
//! documentation lists and Berth has always sent.
//!
//! Document-typed members (event `blob`, `json.content`), strategy configurations Berth stores
//! and echoes, and user metadata maps are data, not shapes Berth interprets: they stay JSON
//! values.

use berth_types::EpochMillis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Serialises epoch milliseconds as epoch seconds (a JSON number, fractional when needed).
pub mod epoch {
    use berth_types::{EpochMillis, epoch_seconds};
    use serde::Serializer;

    /// For `EpochMillis` members.
    pub fn serialize<S: Serializer>(ms: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(epoch_seconds(*ms))
    }

    /// For `Option<EpochMillis>` members (with `skip_serializing_if = "Option::is_none"`).
    pub mod option {
        use super::*;

        /// Serialises `Some` as epoch seconds, `None` as null.
        pub fn serialize<S: Serializer>(ms: &Option<EpochMillis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_f64(epoch_seconds(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

/// A timestamp as clients send it: epoch seconds (boto3 sends fractional numbers) or an
/// ISO 8601 / RFC 3339 string (some SDKs, and numbers sent as strings). Berth parses it where it
/// knows the member's name, so a bad value is reported against that member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WireTime {
    /// Epoch seconds.
    Seconds(f64),
    /// Text: a number of seconds or an RFC 3339 time.
    Text(String),
}

/// User metadata (`MetadataMap`, `MemoryRecordMetadataMap`): stored and echoed as sent, in the
/// order sent; filters read its values.
pub type Metadata = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Memory resources (bedrock-agentcore-control).

/// `MemoryStrategyInput`: a union, exactly one strategy type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemoryStrategyInput {
    /// `SEMANTIC`.
    #[serde(rename = "semanticMemoryStrategy")]
    Semantic(StrategyInput),
    /// `SUMMARIZATION`.
    #[serde(rename = "summaryMemoryStrategy")]
    Summary(StrategyInput),
    /// `USER_PREFERENCE`.
    #[serde(rename = "userPreferenceMemoryStrategy")]
    UserPreference(StrategyInput),
    /// `EPISODIC`.
    #[serde(rename = "episodicMemoryStrategy")]
    Episodic(StrategyInput),
    /// `CUSTOM`.
    #[serde(rename = "customMemoryStrategy")]
    Custom(StrategyInput),
}

impl MemoryStrategyInput {
    /// The `MemoryStrategyType` the strategy becomes, and its members.
    pub fn parts(&self) -> (&'static str, &StrategyInput) {
        match self {
            Self::Semantic(s) => ("SEMANTIC", s),
            Self::Summary(s) => ("SUMMARIZATION", s),
            Self::UserPreference(s) => ("USER_PREFERENCE", s),
            Self::Episodic(s) => ("EPISODIC", s),
            Self::Custom(s) => ("CUSTOM", s),
        }
    }
}

/// The members of the five `*MemoryStrategyInput` shapes (each type has a subset; the model
/// check already refused members a type does not have).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyInput {
    /// Unique within the memory.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Namespace templates (the older member name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Namespace templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_templates: Option<Vec<String>>,
    /// `CustomConfigurationInput` (custom strategies), stored in output shape and echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    /// `EpisodicReflectionConfigurationInput` (episodic strategies), echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflection_configuration: Option<Value>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_record_schema: Option<Value>,
    /// Expiry of the strategy's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_expiry_specification: Option<RecordExpirySpecification>,
}

impl StrategyInput {
    /// `namespaceTemplates`, else `namespaces`.
    pub fn templates(&self) -> Option<&Vec<String>> {
        self.namespace_templates
            .as_ref()
            .or(self.namespaces.as_ref())
    }
}

/// `RecordExpirySpecification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordExpirySpecification {
    /// Days a record lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_expiry_duration_days: Option<i64>,
    /// What happens at expiry (Berth deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// `IndexedKey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedKey {
    /// Metadata key.
    pub key: String,
    /// `MetadataValueType`.
    #[serde(rename = "type")]
    pub value_type: String,
}

/// `NamespaceKeyEntry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceKeyEntry {
    /// The variable's name.
    pub key: String,
    /// `NamespaceKeyValidation`, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<Value>,
}

/// `CreateMemory` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateMemoryRequest {
    /// Idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Memory name (unique).
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Recorded (Berth does not use KMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_arn: Option<String>,
    /// Recorded (Berth has no IAM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_execution_role_arn: Option<String>,
    /// Days events live [90].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_expiry_duration: Option<u32>,
    /// Strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_strategies: Option<Vec<MemoryStrategyInput>>,
    /// Metadata keys to index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_keys: Option<Vec<IndexedKey>>,
    /// Custom namespace variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_keys: Option<Vec<NamespaceKeyEntry>>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_delivery_resources: Option<Value>,
    /// Tags (part of the request, so part of the idempotency check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `GetMemory` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMemoryRequest {
    /// The memory.
    pub memory_id: String,
}

/// `ListMemories` input.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMemoriesRequest {
    /// Page size.
    pub max_results: Option<u32>,
    /// Cursor.
    pub next_token: Option<String>,
}

/// `ModifyMemoryStrategies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModifyMemoryStrategies {
    /// New strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_memory_strategies: Option<Vec<MemoryStrategyInput>>,
    /// Changes to existing strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modify_memory_strategies: Option<Vec<ModifyMemoryStrategyInput>>,
    /// Strategies to remove.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_memory_strategies: Option<Vec<DeleteMemoryStrategyInput>>,
}

/// `ModifyMemoryStrategyInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModifyMemoryStrategyInput {
    /// The strategy.
    pub memory_strategy_id: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Namespace templates (the older member name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Namespace templates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_templates: Option<Vec<String>>,
    /// `ModifyStrategyConfiguration` (already in output shape), echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_record_schema: Option<Value>,
    /// Expiry of the strategy's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_expiry_specification: Option<RecordExpirySpecification>,
}

impl ModifyMemoryStrategyInput {
    /// `namespaceTemplates`, else `namespaces`.
    pub fn templates(&self) -> Option<&Vec<String>> {
        self.namespace_templates
            .as_ref()
            .or(self.namespaces.as_ref())
    }
}

/// `DeleteMemoryStrategyInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMemoryStrategyInput {
    /// The strategy.
    pub memory_strategy_id: String,
}

/// `UpdateMemory` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMemoryRequest {
    /// Idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The memory.
    pub memory_id: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Days events live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_expiry_duration: Option<u32>,
    /// Recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_execution_role_arn: Option<String>,
    /// Strategy changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_strategies: Option<ModifyMemoryStrategies>,
    /// Metadata keys to add to the index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub add_indexed_keys: Option<Vec<IndexedKey>>,
    /// Replaces the custom namespace variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_keys: Option<Vec<NamespaceKeyEntry>>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_delivery_resources: Option<Value>,
}

/// `DeleteMemory` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMemoryRequest {
    /// Idempotency token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The memory.
    pub memory_id: String,
}

/// `MemoryStrategy` (output), which is also how Berth stores a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStrategy {
    /// Name and a random suffix.
    pub strategy_id: String,
    /// Unique within the memory.
    pub name: String,
    /// `MemoryStrategyType`.
    #[serde(rename = "type")]
    pub strategy_type: String,
    /// Namespace templates.
    pub namespaces: Vec<String>,
    /// The same templates.
    pub namespace_templates: Vec<String>,
    /// `CREATING` or `ACTIVE`.
    pub status: String,
    /// Epoch seconds.
    pub created_at: f64,
    /// Epoch seconds.
    pub updated_at: f64,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_record_schema: Option<Value>,
    /// Expiry of the strategy's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_expiry_duration_days: Option<i64>,
    /// `StrategyConfiguration`: `{"type": ..., "extraction"?: ..., ...}` as AgentCore answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
}

/// `Memory` (output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryDescription {
    /// `arn:aws:bedrock-agentcore:REGION:ACCOUNT:memory/ID`.
    pub arn: String,
    /// Memory id.
    pub id: String,
    /// Memory name.
    pub name: String,
    /// Days events live.
    pub event_expiry_duration: u32,
    /// `CREATING`, `ACTIVE`, `FAILED`, `DELETING` (`UPDATING` while strategies change).
    pub status: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize", deserialize_with = "de_seconds")]
    pub created_at: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize", deserialize_with = "de_seconds")]
    pub updated_at: EpochMillis,
    /// Strategies.
    pub strategies: Vec<MemoryStrategy>,
    /// Why the memory failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_arn: Option<String>,
    /// Recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_execution_role_arn: Option<String>,
    /// Indexed metadata keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_keys: Option<Vec<IndexedKey>>,
    /// Custom namespace variables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_keys: Option<Vec<NamespaceKeyEntry>>,
    /// Echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_delivery_resources: Option<Value>,
}

/// Reads epoch seconds back into milliseconds (idempotent replays deserialise a stored response).
fn de_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EpochMillis, D::Error> {
    let s = f64::deserialize(d)?;
    Ok((s * 1000.0).round() as EpochMillis)
}

/// `CreateMemory`, `GetMemory`, `UpdateMemory` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryResponse {
    /// The memory.
    pub memory: MemoryDescription,
}

/// `MemorySummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemorySummary {
    /// Memory ARN.
    pub arn: String,
    /// Memory id.
    pub id: String,
    /// Status.
    pub status: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub updated_at: EpochMillis,
}

/// `ListMemories` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMemoriesResponse {
    /// One page.
    pub memories: Vec<MemorySummary>,
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteMemory` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMemoryResponse {
    /// The memory.
    pub memory_id: String,
    /// `DELETING`.
    pub status: String,
}

// ---------------------------------------------------------------------------------------------
// Events (bedrock-agentcore).

/// `PayloadType`: one item of an event's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadItem {
    /// A conversational message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversational: Option<Conversational>,
    /// `MemoryDocument`: any JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<Value>,
    /// `MemoryJsonData`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonData>,
}

/// `Conversational`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversational {
    /// `Content` (a union; `text` is its one member).
    pub content: Content,
    /// `USER`, `ASSISTANT`, `TOOL`, `OTHER`.
    pub role: String,
}

/// `Content` / `MemoryContent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// The text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `MemoryJsonData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonData {
    /// `MemoryJsonDataContent`: any JSON.
    pub content: Value,
}

/// `Branch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Branch {
    /// Branch name.
    pub name: String,
    /// The event the branch forks from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_event_id: Option<String>,
}

/// `ExtractionConfig`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractionConfig {
    /// Values of custom namespace variables.
    pub namespace_variables: Option<Map<String, Value>>,
}

/// `CreateEvent` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session; a new one when absent.
    pub session_id: Option<String>,
    /// When the event happened.
    pub event_timestamp: WireTime,
    /// The payload.
    pub payload: Vec<PayloadItem>,
    /// Branch the event belongs to.
    pub branch: Option<Branch>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// User metadata.
    pub metadata: Option<Metadata>,
    /// Namespace variables for extraction.
    pub extraction_config: Option<ExtractionConfig>,
}

/// The members that name one event (`GetEvent`, `DeleteEvent` input).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventKey {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// Event.
    pub event_id: String,
}

/// `GetEvent` input.
pub type GetEventRequest = EventKey;
/// `DeleteEvent` input.
pub type DeleteEventRequest = EventKey;

/// `EventMetadataFilterExpression` / `MemoryMetadataFilterExpression`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataFilter {
    /// The key compared.
    pub left: LeftExpression,
    /// `EQUALS_TO`, `EXISTS`, `NOT_EXISTS`, ... (records have more).
    pub operator: String,
    /// The value compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right: Option<RightExpression>,
}

/// `LeftExpression` / `MemoryRecordLeftExpression`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftExpression {
    /// Metadata key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_key: Option<String>,
}

/// `RightExpression` / `MemoryRecordRightExpression`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RightExpression {
    /// `MetadataValue` / `MemoryRecordMetadataValue`, compared with the stored metadata value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_value: Option<Value>,
}

/// `BranchFilter`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchFilter {
    /// Branch name.
    pub name: String,
    /// Also the events of the branch's ancestors up to its root.
    pub include_parent_branches: Option<bool>,
}

/// `FilterInput` (`ListEvents`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventFilter {
    /// Branch.
    pub branch: Option<BranchFilter>,
    /// Metadata conditions.
    pub event_metadata: Option<Vec<MetadataFilter>>,
}

/// `ListEvents` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEventsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// Include payloads [true].
    pub include_payloads: Option<bool>,
    /// Filters.
    pub filter: Option<EventFilter>,
    /// Page size.
    pub max_results: Option<u32>,
    /// Cursor.
    pub next_token: Option<String>,
}

/// `ListSessions` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Page size.
    pub max_results: Option<u32>,
    /// Cursor.
    pub next_token: Option<String>,
}

/// `ListActors` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActorsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Page size.
    pub max_results: Option<u32>,
    /// Cursor.
    pub next_token: Option<String>,
}

/// `Event` (output).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Memory id.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// Event id.
    pub event_id: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub event_timestamp: EpochMillis,
    /// The payload (absent when `includePayloads` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<PayloadItem>>,
    /// Branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// User metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// `CreateEvent`, `GetEvent` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventResponse {
    /// The event.
    pub event: Event,
}

/// `DeleteEvent` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteEventResponse {
    /// The deleted event.
    pub event_id: String,
}

/// `ListEvents` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEventsResponse {
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Newest first.
    pub events: Vec<Event>,
}

/// `SessionSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// Session.
    pub session_id: String,
    /// Actor.
    pub actor_id: String,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
}

/// `ListSessions` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsResponse {
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Most recently active first.
    pub session_summaries: Vec<SessionSummary>,
}

/// `ActorSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorSummary {
    /// Actor.
    pub actor_id: String,
}

/// `ListActors` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListActorsResponse {
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// By actor id.
    pub actor_summaries: Vec<ActorSummary>,
}

// ---------------------------------------------------------------------------------------------
// Records.

/// `MemoryRecordCreateInput`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecordCreateInput {
    /// The caller's name for this item, echoed in the outcome.
    pub request_identifier: String,
    /// Exactly one namespace.
    pub namespaces: Vec<String>,
    /// The record's text.
    pub content: Content,
    /// The record's time.
    pub timestamp: WireTime,
    /// Strategy [`external`].
    pub memory_strategy_id: Option<String>,
    /// User metadata.
    pub metadata: Option<Metadata>,
}

/// `BatchCreateMemoryRecords` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchCreateMemoryRecordsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Records.
    pub records: Vec<MemoryRecordCreateInput>,
    /// Expiry of the records.
    pub record_expiry_specification: Option<RecordExpirySpecification>,
}

/// `MemoryRecordUpdateInput`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecordUpdateInput {
    /// The record.
    pub memory_record_id: String,
    /// The record's new time.
    pub timestamp: Option<WireTime>,
    /// New text.
    pub content: Option<Content>,
    /// New namespace (exactly one).
    pub namespaces: Option<Vec<String>>,
    /// New strategy.
    pub memory_strategy_id: Option<String>,
    /// New metadata.
    pub metadata: Option<Metadata>,
}

/// `BatchUpdateMemoryRecords` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchUpdateMemoryRecordsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Updates.
    pub records: Vec<MemoryRecordUpdateInput>,
    /// New expiry of the records.
    pub record_expiry_specification: Option<RecordExpirySpecification>,
}

/// `MemoryRecordDeleteInput`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecordDeleteInput {
    /// The record.
    pub memory_record_id: String,
}

/// `BatchDeleteMemoryRecords` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchDeleteMemoryRecordsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Records.
    pub records: Vec<MemoryRecordDeleteInput>,
}

/// `GetMemoryRecord`, `DeleteMemoryRecord` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordKey {
    /// Memory id or ARN.
    pub memory_id: String,
    /// The record.
    pub memory_record_id: String,
    /// When given, the record must be in it.
    pub namespace: Option<String>,
}

/// `GetMemoryRecord` input.
pub type GetMemoryRecordRequest = RecordKey;
/// `DeleteMemoryRecord` input.
pub type DeleteMemoryRecordRequest = RecordKey;

/// `ListMemoryRecords` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMemoryRecordsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Namespace prefix.
    pub namespace_path: Option<String>,
    /// Strategy.
    pub memory_strategy_id: Option<String>,
    /// Page size.
    pub max_results: Option<u32>,
    /// Cursor.
    pub next_token: Option<String>,
    /// Metadata conditions.
    pub metadata_filters: Option<Vec<MetadataFilter>>,
}

/// `SearchCriteria`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchCriteria {
    /// The query text.
    pub search_query: String,
    /// Strategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_strategy_id: Option<String>,
    /// Results wanted [10].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Metadata conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_filters: Option<Vec<MetadataFilter>>,
}

/// `RetrieveMemoryRecords` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrieveMemoryRecordsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Namespace prefix.
    pub namespace_path: Option<String>,
    /// What to search for.
    pub search_criteria: SearchCriteria,
    /// Cursor.
    pub next_token: Option<String>,
    /// Page size.
    pub max_results: Option<u32>,
}

/// `MemoryRecord` / `MemoryRecordSummary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecord {
    /// Record id.
    pub memory_record_id: String,
    /// The text.
    pub content: Content,
    /// Strategy.
    pub memory_strategy_id: String,
    /// The record's one namespace.
    pub namespaces: Vec<String>,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub created_at: EpochMillis,
    /// Epoch seconds.
    #[serde(serialize_with = "epoch::serialize")]
    pub timestamp: EpochMillis,
    /// User metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Epoch seconds.
    #[serde(
        serialize_with = "epoch::option::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<EpochMillis>,
    /// Relevance in [0, 1] (retrieval only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// `GetMemoryRecord` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetMemoryRecordResponse {
    /// The record.
    pub memory_record: MemoryRecord,
}

/// `DeleteMemoryRecord` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMemoryRecordResponse {
    /// The deleted record.
    pub memory_record_id: String,
}

/// `ListMemoryRecords`, `RetrieveMemoryRecords` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecordsPage {
    /// One page.
    pub memory_record_summaries: Vec<MemoryRecord>,
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `MemoryRecordOutput`: the outcome of one item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryRecordOutput {
    /// Record id.
    pub memory_record_id: String,
    /// `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// The caller's name for the item (creates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_identifier: Option<String>,
    /// HTTP-style code of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// `BatchCreate/Update/DeleteMemoryRecords` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecordsResponse {
    /// Items that succeeded.
    pub successful_records: Vec<MemoryRecordOutput>,
    /// Items that failed.
    pub failed_records: Vec<MemoryRecordOutput>,
}

// ---------------------------------------------------------------------------------------------
// Extraction jobs.

/// `ExtractionJobFilterInput`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractionJobFilter {
    /// Strategy.
    pub strategy_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
    /// Actor.
    pub actor_id: Option<String>,
    /// `PENDING`, `SUCCEEDED`, `FAILED`.
    pub status: Option<String>,
}

/// `ListMemoryExtractionJobs` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMemoryExtractionJobsRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// Page size.
    pub max_results: Option<u32>,
    /// Filters.
    pub filter: Option<ExtractionJobFilter>,
    /// Cursor.
    pub next_token: Option<String>,
}

/// `ExtractionJob`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractionJobRef {
    /// The job.
    pub job_id: String,
}

/// `StartMemoryExtractionJob` input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMemoryExtractionJobRequest {
    /// Memory id or ARN.
    pub memory_id: String,
    /// The job to run again.
    pub extraction_job: ExtractionJobRef,
}

/// `MessageMetadata`: one message a job extracts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    /// The event.
    pub event_id: String,
    /// The message's index in the event's payload.
    pub message_index: u32,
}

/// `ExtractionJobMessages`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractionJobMessages {
    /// Messages.
    pub messages_list: Vec<MessageRef>,
}

/// `ExtractionJobMetadata`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractionJobMetadata {
    /// Job id (the model spells it `jobID`).
    #[serde(rename = "jobID")]
    pub job_id: String,
    /// Messages.
    pub messages: ExtractionJobMessages,
    /// Status.
    pub status: String,
    /// Strategy.
    pub strategy_id: String,
    /// Session.
    pub session_id: String,
    /// Actor.
    pub actor_id: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `ListMemoryExtractionJobs` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMemoryExtractionJobsResponse {
    /// Cursor of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Jobs.
    pub jobs: Vec<ExtractionJobMetadata>,
}

/// `StartMemoryExtractionJob` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMemoryExtractionJobResponse {
    /// The job.
    pub job_id: String,
}

// ---------------------------------------------------------------------------------------------
// Native context call.

/// Berth's context call (`POST /berth/v1/memories/{memoryId}/actors/{actorId}/context`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextRequest {
    /// Memory id or ARN (path).
    pub memory_id: String,
    /// Actor (path).
    pub actor_id: String,
    /// Records relevant to this text; none without it.
    pub query: Option<String>,
    /// Most recent events of the last session [10, at most 100].
    pub max_turns: Option<i64>,
    /// Records [5, at most 100].
    pub top_k: Option<i64>,
    /// Namespace prefix searched instead of the strategies' namespaces.
    pub namespace_path: Option<String>,
}

/// What the context call answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextResponse {
    /// Memory id.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Recent events of the last session, oldest first.
    pub turns: Vec<Event>,
    /// Relevant records, best first.
    pub records: Vec<MemoryRecord>,
    /// The last session, if the actor has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_read_model_member_names() {
        let r: CreateMemoryRequest = serde_json::from_value(json!({
            "name": "m", "eventExpiryDuration": 7,
            "memoryStrategies": [{"summaryMemoryStrategy": {"name": "s",
                                  "namespaceTemplates": ["/x/{actorId}/"]}}],
            "namespaceKeys": [{"key": "tenant"}]
        }))
        .unwrap();
        assert_eq!(r.event_expiry_duration, Some(7));
        let strategies = r.memory_strategies.unwrap();
        let (kind, s) = strategies[0].parts();
        assert_eq!((kind, s.name.as_str()), ("SUMMARIZATION", "s"));
        assert_eq!(s.templates().unwrap(), &["/x/{actorId}/"]);
        assert_eq!(r.namespace_keys.unwrap()[0].key, "tenant");
        let e: CreateEventRequest = serde_json::from_value(json!({
            "memoryId": "m", "actorId": "a", "eventTimestamp": 1.5,
            "payload": [{"blob": [1]}, {"conversational": {"role": "USER",
                                                          "content": {"text": "hi"}}}]
        }))
        .unwrap();
        assert_eq!(e.event_timestamp, WireTime::Seconds(1.5));
        assert_eq!(e.payload[0].blob, Some(json!([1])));
        assert_eq!(
            e.payload[1]
                .conversational
                .as_ref()
                .unwrap()
                .content
                .text
                .as_deref(),
            Some("hi")
        );
        assert!(
            serde_json::from_value::<MemoryStrategyInput>(json!({"semanticMemoryStrategy": {}}))
                .is_err()
        );
    }

    #[test]
    fn responses_use_epoch_seconds_and_skip_absent_members() {
        let r = MemoryRecord {
            memory_record_id: "r".into(),
            content: Content {
                text: Some("t".into()),
            },
            memory_strategy_id: "s".into(),
            namespaces: vec!["/n/".into()],
            created_at: 1_700_000_000_500,
            timestamp: 1_700_000_000_000,
            metadata: None,
            expires_at: None,
            score: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"memoryRecordId":"r","content":{"text":"t"},"memoryStrategyId":"s","namespaces":["/n/"],"createdAt":1700000000.5,"timestamp":1700000000.0}"#
        );
        let j = ExtractionJobMetadata {
            job_id: "j".into(),
            messages: ExtractionJobMessages {
                messages_list: vec![],
            },
            status: "PENDING".into(),
            strategy_id: "s".into(),
            session_id: "x".into(),
            actor_id: "a".into(),
            failure_reason: None,
        };
        assert_eq!(serde_json::to_value(&j).unwrap()["jobID"], "j");
    }
}
