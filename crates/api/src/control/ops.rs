//! Typed requests and responses of the AgentCore control-plane operations Berth serves.
//!
//! Member names are the botocore model's (`bedrock-agentcore-control`), camelCase on the wire.
//! The server validates a request's raw JSON against the model first (`model::Model::input`)
//! and then reads it into one of these types, so a type here never sees a value the model
//! refuses; `Control` takes and returns them. Responses serialize member by member in the
//! order Berth has always sent them; timestamps are ISO 8601 strings made by
//! [`berth_types::iso8601`], so their format stays the one clients already parse.
//!
//! Requests also derive `Serialize`: the canonical JSON of a request (without its
//! `clientToken`) is what an idempotency token binds to.

use super::RuntimeSpec;
use berth_types::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `TagsMap`: tag keys to values.
pub type Tags = BTreeMap<String, String>;

/// `CreateAgentRuntimeRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRuntime {
    /// The runtime's name, unique in the account.
    pub agent_runtime_name: String,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Tags to put on the new runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Not a member of this operation: accepted and ignored, so it never becomes part of the
    /// configuration (the model lets unknown members through).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_id: Option<serde_json::Value>,
    /// The configuration of version 1 (every other member).
    #[serde(flatten)]
    pub spec: RuntimeSpec,
}

/// `UpdateAgentRuntimeRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAgentRuntime {
    /// The runtime.
    pub agent_runtime_id: String,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Not a member of this operation (a Create body sent as an Update carries it): accepted
    /// and ignored, so it never becomes part of the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_name: Option<serde_json::Value>,
    /// Not a member of this operation: accepted and ignored, like `agentRuntimeName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Value>,
    /// The configuration of the new version (every other member).
    #[serde(flatten)]
    pub spec: RuntimeSpec,
}

/// `GetAgentRuntimeRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAgentRuntime {
    /// The runtime.
    pub agent_runtime_id: String,
    /// One version (`?version=`); the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_version: Option<String>,
}

/// `ListAgentRuntimesRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentRuntimes {
    /// Page size (1..=100, 10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Cursor from a previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteAgentRuntimeRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAgentRuntime {
    /// The runtime.
    pub agent_runtime_id: String,
    /// Delete only this version (`?version=`); the whole runtime when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_version: Option<String>,
    /// Idempotency token (accepted; deletion is idempotent by nature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `ListAgentRuntimeVersionsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentRuntimeVersions {
    /// The runtime.
    pub agent_runtime_id: String,
    /// Page size (1..=100, 10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Cursor from a previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `CreateAgentRuntimeEndpointRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRuntimeEndpoint {
    /// The runtime.
    pub agent_runtime_id: String,
    /// The endpoint's name, unique in the runtime.
    pub name: String,
    /// The version it serves; the runtime's latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_version: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Tags to put on the new endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// `GetAgentRuntimeEndpointRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAgentRuntimeEndpoint {
    /// The runtime.
    pub agent_runtime_id: String,
    /// The endpoint.
    pub endpoint_name: String,
}

/// `UpdateAgentRuntimeEndpointRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAgentRuntimeEndpoint {
    /// The runtime.
    pub agent_runtime_id: String,
    /// The endpoint.
    pub endpoint_name: String,
    /// The version to serve from now on; unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_version: Option<String>,
    /// New free text; unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `ListAgentRuntimeEndpointsRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentRuntimeEndpoints {
    /// The runtime.
    pub agent_runtime_id: String,
    /// Page size (1..=100, 10 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// Cursor from a previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteAgentRuntimeEndpointRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAgentRuntimeEndpoint {
    /// The runtime.
    pub agent_runtime_id: String,
    /// The endpoint.
    pub endpoint_name: String,
    /// Idempotency token (accepted; deletion is idempotent by nature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `TagResourceRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagResource {
    /// A runtime or endpoint ARN.
    pub resource_arn: String,
    /// Tags to add or overwrite.
    pub tags: Tags,
}

/// `UntagResourceRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UntagResource {
    /// A runtime or endpoint ARN.
    pub resource_arn: String,
    /// Keys to remove (`?tagKeys=`).
    pub tag_keys: Vec<String>,
}

/// `ListTagsForResourceRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResource {
    /// A runtime or endpoint ARN.
    pub resource_arn: String,
}

/// `WorkloadIdentityDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityDetails {
    /// The runtime's workload identity.
    pub workload_identity_arn: String,
}

/// `CreateAgentRuntimeResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRuntimeOutput {
    /// The runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its workload identity.
    pub workload_identity_details: WorkloadIdentityDetails,
    /// Its id.
    pub agent_runtime_id: String,
    /// Always `"1"`.
    pub agent_runtime_version: String,
    /// ISO 8601.
    pub created_at: String,
    /// `CREATING`.
    pub status: Status,
}

/// `UpdateAgentRuntimeResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAgentRuntimeOutput {
    /// The runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its id.
    pub agent_runtime_id: String,
    /// Its workload identity.
    pub workload_identity_details: WorkloadIdentityDetails,
    /// The new version.
    pub agent_runtime_version: String,
    /// When the runtime was created, ISO 8601.
    pub created_at: String,
    /// Now, ISO 8601.
    pub last_updated_at: String,
    /// `UPDATING`.
    pub status: Status,
}

/// `GetAgentRuntimeResponse`: one version of a runtime with its full configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAgentRuntimeOutput {
    /// The runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its name.
    pub agent_runtime_name: String,
    /// Its id.
    pub agent_runtime_id: String,
    /// The version shown.
    pub agent_runtime_version: String,
    /// When the version was created, ISO 8601.
    pub created_at: String,
    /// When the version last changed, ISO 8601.
    pub last_updated_at: String,
    /// The version's status (`DELETING` while the runtime is being deleted).
    pub status: Status,
    /// The runtime's workload identity.
    pub workload_identity_details: WorkloadIdentityDetails,
    /// The version's configuration, lifecycle and network defaults filled in.
    #[serde(flatten)]
    pub spec: RuntimeSpec,
    /// Why the build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `AgentRuntime`: an item of `ListAgentRuntimes` / `ListAgentRuntimeVersions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRuntime {
    /// The runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its id.
    pub agent_runtime_id: String,
    /// The version listed.
    pub agent_runtime_version: String,
    /// The runtime's name.
    pub agent_runtime_name: String,
    /// When the version last changed, ISO 8601.
    pub last_updated_at: String,
    /// The version's status (`DELETING` while the runtime is being deleted).
    pub status: Status,
    /// Required in the model's summary shape; AWS sends `""` when there is none.
    pub description: String,
}

/// `ListAgentRuntimesResponse` and `ListAgentRuntimeVersionsResponse` (the same members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentRuntimesOutput {
    /// One page.
    pub agent_runtimes: Vec<AgentRuntime>,
    /// Present when there is another page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteAgentRuntimeResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAgentRuntimeOutput {
    /// `DELETING`.
    pub status: Status,
    /// The runtime.
    pub agent_runtime_id: String,
    /// The version deleted, when only one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_runtime_version: Option<String>,
}

/// `CreateAgentRuntimeEndpointResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAgentRuntimeEndpointOutput {
    /// The version it serves.
    pub target_version: String,
    /// The endpoint's ARN.
    pub agent_runtime_endpoint_arn: String,
    /// Its runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its runtime's id.
    pub agent_runtime_id: String,
    /// Its name.
    pub endpoint_name: String,
    /// `READY` when the version is already built, else `CREATING`.
    pub status: Status,
    /// ISO 8601.
    pub created_at: String,
}

/// `AgentRuntimeEndpoint` (list item) and `GetAgentRuntimeEndpointResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRuntimeEndpoint {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub agent_runtime_endpoint_arn: String,
    /// Its runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its status (`DELETING` while the runtime is being deleted, on Get).
    pub status: Status,
    /// Its unique id.
    pub id: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub last_updated_at: String,
    /// The version serving now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
    /// The version it is moving to (or serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why its target failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// `UpdateAgentRuntimeEndpointResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAgentRuntimeEndpointOutput {
    /// The endpoint's ARN.
    pub agent_runtime_endpoint_arn: String,
    /// Its runtime's ARN.
    pub agent_runtime_arn: String,
    /// Its status.
    pub status: Status,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub last_updated_at: String,
    /// The version serving now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_version: Option<String>,
    /// The version it is moving to (or serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
}

impl From<AgentRuntimeEndpoint> for UpdateAgentRuntimeEndpointOutput {
    fn from(e: AgentRuntimeEndpoint) -> Self {
        Self {
            agent_runtime_endpoint_arn: e.agent_runtime_endpoint_arn,
            agent_runtime_arn: e.agent_runtime_arn,
            status: e.status,
            created_at: e.created_at,
            last_updated_at: e.last_updated_at,
            live_version: e.live_version,
            target_version: e.target_version,
        }
    }
}

/// `ListAgentRuntimeEndpointsResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentRuntimeEndpointsOutput {
    /// One page.
    pub runtime_endpoints: Vec<AgentRuntimeEndpoint>,
    /// Present when there is another page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteAgentRuntimeEndpointResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteAgentRuntimeEndpointOutput {
    /// `DELETING`.
    pub status: Status,
    /// The runtime.
    pub agent_runtime_id: String,
    /// The endpoint.
    pub endpoint_name: String,
}

/// `ListTagsForResourceResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsOutput {
    /// The resource's tags.
    pub tags: Tags,
}

/// A response with no members (`TagResource`, `UntagResource`, ...): `{}` on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}
