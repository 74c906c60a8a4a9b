//! Control-plane wire shapes: the typed parts of a runtime's configuration and the JSON bodies of
//! responses, built from the store's records.

pub mod ops;

use berth_types::records::{Endpoint, Runtime, RuntimeVersion};
use berth_types::{Partition, Status, iso8601};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Configuration of one runtime version, in AgentCore member names. Members Berth acts on are
/// typed; the rest are kept verbatim (they were validated against the model) and echoed back.
/// `ops::CreateAgentRuntime` and `ops::UpdateAgentRuntime` flatten it: every member that is not
/// about the call (`agentRuntimeName`, `clientToken`, `tags`, ...) lands here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeSpec {
    /// What to run.
    pub agent_runtime_artifact: Artifact,
    /// IAM role ARN (recorded; Berth has no IAM).
    pub role_arn: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Session idle timeout and maximum lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_configuration: Option<Lifecycle>,
    /// Environment of the agent process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// `PUBLIC` (egress allowed) or `VPC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    /// HTTP, MCP, A2A or AGUI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_configuration: Option<Value>,
    /// Which custom request headers reach the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_configuration: Option<Value>,
    /// Everything else from the request, verbatim (members sent as `null` are dropped, as if
    /// absent).
    #[serde(flatten, deserialize_with = "non_null")]
    pub other: Map<String, Value>,
}

/// Reads a map, leaving out `null` values.
fn non_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    let mut m = Map::<String, Value>::deserialize(d)?;
    m.retain(|_, v| !v.is_null());
    Ok(m)
}

impl RuntimeSpec {
    /// Headers allow-listed to reach the agent.
    pub fn header_allowlist(&self) -> Vec<String> {
        self.request_header_configuration
            .as_ref()
            .and_then(|c| c.get("requestHeaderAllowlist"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The server protocol with its port and path, defaults filled in from the model's
    /// documentation (`ServerPort`/`ServerPath`): HTTP and AGUI 8080 `/invocations`, MCP 8000
    /// `/mcp`, A2A 9000 `/`. No `protocolConfiguration` is HTTP.
    pub fn protocol(&self) -> Protocol {
        let c = self.protocol_configuration.as_ref();
        let kind = match c
            .and_then(|c| c.get("serverProtocol"))
            .and_then(Value::as_str)
        {
            Some("MCP") => ServerProtocol::Mcp,
            Some("A2A") => ServerProtocol::A2a,
            Some("AGUI") => ServerProtocol::Agui,
            _ => ServerProtocol::Http,
        };
        let (port, path) = kind.defaults();
        Protocol {
            kind,
            port: c
                .and_then(|c| c.get("port"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(port),
            path: c
                .and_then(|c| c.get("path"))
                .and_then(Value::as_str)
                .map_or_else(|| path.to_owned(), str::to_owned),
        }
    }

    /// Rules on `protocolConfiguration` beyond the model's ranges: port 8443 is reserved.
    pub fn check_protocol(&self) -> Result<(), crate::ApiError> {
        let port = self
            .protocol_configuration
            .as_ref()
            .and_then(|c| c.get("port"))
            .and_then(Value::as_u64);
        if port == Some(RESERVED_PORT) {
            return Err(crate::ApiError::field(
                "protocolConfiguration.port",
                "Port 8443 is reserved and cannot be used",
            ));
        }
        Ok(())
    }

    /// True when the network mode lets the agent reach the internet.
    pub fn public_network(&self) -> bool {
        self.network_configuration
            .as_ref()
            .and_then(|n| n.get("networkMode"))
            .and_then(Value::as_str)
            .is_none_or(|m| m == "PUBLIC")
    }
}

/// The port AgentCore reserves (`ServerPort`'s documentation).
const RESERVED_PORT: u64 = 8443;

/// `ServerProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerProtocol {
    /// Plain HTTP (`POST /invocations`, JSON or SSE).
    Http,
    /// Model Context Protocol, streamable HTTP.
    Mcp,
    /// Agent-to-agent, JSON-RPC 2.0.
    A2a,
    /// AG-UI (HTTP with AG-UI events).
    Agui,
}

impl ServerProtocol {
    /// The model's default port and path.
    pub fn defaults(self) -> (u16, &'static str) {
        match self {
            Self::Http | Self::Agui => (8080, "/invocations"),
            Self::Mcp => (8000, "/mcp"),
            Self::A2a => (9000, "/"),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Mcp => "MCP",
            Self::A2a => "A2A",
            Self::Agui => "AGUI",
        }
    }
}

/// Where a version's agent serves: its protocol, port and path (defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The protocol.
    pub kind: ServerProtocol,
    /// The port the agent listens on inside its sandbox.
    pub port: u16,
    /// The path invocations are sent to.
    pub path: String,
}

/// `AgentRuntimeArtifact`: a union of code or a container image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Artifact {
    /// A zip in S3 plus an interpreter and entry point.
    CodeConfiguration(CodeConfiguration),
    /// A container image (needs the container backend).
    ContainerConfiguration {
        /// Image reference.
        #[serde(rename = "containerUri")]
        container_uri: String,
    },
}

/// `CodeConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeConfiguration {
    /// Where the zip lives.
    pub code: Code,
    /// `PYTHON_3_10` .. `PYTHON_3_14`, `NODE_22`.
    pub runtime: String,
    /// The file to run (and optionally a second element: its argument).
    pub entry_point: Vec<String>,
}

/// `Code` union: only S3 today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Code {
    /// Bucket and key (AgentCore calls the key `prefix`).
    pub s3: S3Location,
}

/// `S3Location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Object key of the zip.
    pub prefix: String,
    /// Object version, if pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// `LifecycleConfiguration`, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// A session idle (`Healthy`) this long is ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_runtime_session_timeout: Option<u64>,
    /// A session never lives longer than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<u64>,
}

/// AgentCore's defaults: 15 minutes idle, 8 hours lifetime.
pub const DEFAULT_IDLE_SECS: u64 = 900;
/// See [`DEFAULT_IDLE_SECS`].
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 28_800;

impl Lifecycle {
    /// The effective (idle, max lifetime) in seconds.
    pub fn effective(this: Option<&Lifecycle>) -> (u64, u64) {
        (
            this.and_then(|l| l.idle_runtime_session_timeout)
                .unwrap_or(DEFAULT_IDLE_SECS),
            this.and_then(|l| l.max_lifetime)
                .unwrap_or(DEFAULT_MAX_LIFETIME_SECS),
        )
    }
}

/// `GetAgentRuntimeResponse` for one version. A version whose stored configuration no longer
/// reads as a [`RuntimeSpec`] is an error (the store holds only what [`RuntimeSpec`] wrote).
pub fn runtime_version_body(
    p: &Partition,
    rt: &Runtime,
    v: &RuntimeVersion,
) -> Result<ops::GetAgentRuntimeOutput, serde_json::Error> {
    let mut spec: RuntimeSpec = serde_json::from_value(v.spec.clone())?;
    let (idle, max) = Lifecycle::effective(spec.lifecycle_configuration.as_ref());
    spec.lifecycle_configuration = Some(Lifecycle {
        idle_runtime_session_timeout: Some(idle),
        max_lifetime: Some(max),
    });
    if spec.network_configuration.is_none() {
        spec.network_configuration = Some(json!({"networkMode": "PUBLIC"}));
    }
    Ok(ops::GetAgentRuntimeOutput {
        agent_runtime_arn: p.runtime_arn(&rt.id),
        agent_runtime_name: rt.name.clone(),
        agent_runtime_id: rt.id.clone(),
        agent_runtime_version: v.version.to_string(),
        created_at: iso8601(v.created_at),
        last_updated_at: iso8601(v.updated_at),
        status: if rt.deleting {
            Status::Deleting
        } else {
            v.status
        },
        workload_identity_details: ops::WorkloadIdentityDetails {
            workload_identity_arn: p.workload_identity_arn(&rt.name),
        },
        spec,
        failure_reason: v.failure_reason.clone(),
    })
}

/// `AgentRuntime` list item.
pub fn runtime_summary(p: &Partition, rt: &Runtime, v: &RuntimeVersion) -> ops::AgentRuntime {
    ops::AgentRuntime {
        agent_runtime_arn: p.runtime_arn(&rt.id),
        agent_runtime_id: rt.id.clone(),
        agent_runtime_version: v.version.to_string(),
        agent_runtime_name: rt.name.clone(),
        last_updated_at: iso8601(v.updated_at),
        status: if rt.deleting {
            Status::Deleting
        } else {
            v.status
        },
        // `description` is required in the model's summary shape; AWS sends it even when empty.
        description: v
            .spec
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

/// `AgentRuntimeEndpoint` / `GetAgentRuntimeEndpointResponse`.
pub fn endpoint_body(p: &Partition, e: &Endpoint) -> ops::AgentRuntimeEndpoint {
    ops::AgentRuntimeEndpoint {
        name: e.name.clone(),
        agent_runtime_endpoint_arn: p.endpoint_arn(&e.runtime_id, &e.name),
        agent_runtime_arn: p.runtime_arn(&e.runtime_id),
        status: e.status,
        id: e.id.clone(),
        created_at: iso8601(e.created_at),
        last_updated_at: iso8601(e.updated_at),
        live_version: e.live_version.map(|v| v.to_string()),
        target_version: e.target_version.map(|v| v.to_string()),
        description: e.description.clone(),
        failure_reason: e.failure_reason.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(protocol: Option<Value>) -> RuntimeSpec {
        let mut input = json!({
            "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": "x"}},
            "roleArn": "arn:aws:iam::123456789012:role/r",
        });
        if let Some(p) = protocol {
            input["protocolConfiguration"] = p;
        }
        serde_json::from_value(input).unwrap()
    }

    #[test]
    fn protocol_defaults_follow_the_model() {
        let p = |v: Option<Value>| {
            let p = spec(v).protocol();
            (p.kind.as_str(), p.port, p.path)
        };
        assert_eq!(p(None), ("HTTP", 8080, "/invocations".into()));
        for (name, port, path) in [
            ("HTTP", 8080, "/invocations"),
            ("AGUI", 8080, "/invocations"),
            ("MCP", 8000, "/mcp"),
            ("A2A", 9000, "/"),
        ] {
            assert_eq!(
                p(Some(json!({"serverProtocol": name}))),
                (name, port, path.into())
            );
        }
        assert_eq!(
            p(Some(
                json!({"serverProtocol": "MCP", "port": 9100, "path": "/tools"})
            )),
            ("MCP", 9100, "/tools".into())
        );
    }

    #[test]
    fn port_8443_is_reserved() {
        assert!(
            spec(Some(json!({"serverProtocol": "MCP", "port": 8443})))
                .check_protocol()
                .is_err()
        );
        assert!(
            spec(Some(json!({"serverProtocol": "MCP", "port": 8444})))
                .check_protocol()
                .is_ok()
        );
        assert!(spec(None).check_protocol().is_ok());
    }

    #[test]
    fn a_create_request_keeps_call_members_out_of_the_configuration() {
        let req: ops::CreateAgentRuntime = serde_json::from_value(json!({
            "agentRuntimeName": "a",
            "clientToken": "t",
            "tags": {"k": "v"},
            "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": "x"}},
            "roleArn": "arn:aws:iam::123456789012:role/r",
            "description": null,
            "platformVersion": "1",
            "hooksConfiguration": null,
        }))
        .unwrap();
        assert_eq!(req.agent_runtime_name, "a");
        assert_eq!(req.client_token.as_deref(), Some("t"));
        assert_eq!(req.tags.unwrap().get("k").map(String::as_str), Some("v"));
        assert_eq!(req.spec.description, None);
        // Members Berth only echoes are kept verbatim; `null` ones are dropped, as if absent.
        assert_eq!(
            serde_json::to_value(&req.spec.other).unwrap(),
            json!({"platformVersion": "1"})
        );
        let missing = serde_json::from_value::<ops::CreateAgentRuntime>(json!({
            "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": "x"}},
            "roleArn": "r",
        }))
        .unwrap_err();
        assert!(
            missing.to_string().contains("agentRuntimeName"),
            "{missing}"
        );
    }

    #[test]
    fn responses_serialize_in_model_member_names_and_skip_absent_members() {
        let p = Partition {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        };
        let e = Endpoint {
            runtime_id: "rt-1".into(),
            name: "prod".into(),
            id: "prod-abc".into(),
            description: None,
            live_version: None,
            target_version: Some(2),
            status: Status::Creating,
            failure_reason: None,
            created_at: 0,
            updated_at: 1,
        };
        let body = serde_json::to_value(endpoint_body(&p, &e)).unwrap();
        assert_eq!(
            body,
            json!({
                "name": "prod",
                "agentRuntimeEndpointArn": "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/rt-1/runtime-endpoint/prod",
                "agentRuntimeArn": "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/rt-1",
                "status": "CREATING",
                "id": "prod-abc",
                "createdAt": "1970-01-01T00:00:00.000Z",
                "lastUpdatedAt": "1970-01-01T00:00:00.001Z",
                "targetVersion": "2",
            })
        );
        let update = serde_json::to_value(ops::UpdateAgentRuntimeEndpointOutput::from(
            endpoint_body(&p, &e),
        ))
        .unwrap();
        for gone in ["name", "id", "description", "failureReason"] {
            assert!(update.get(gone).is_none(), "{gone} in {update}");
        }
        assert_eq!(serde_json::to_string(&ops::Empty {}).unwrap(), "{}");
    }
}
