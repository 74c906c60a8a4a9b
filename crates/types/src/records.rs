//! Durable records of the control plane, as the store keeps them.

use crate::{EpochMillis, Status};
use serde::{Deserialize, Serialize};

/// An agent runtime: a name and a growing list of immutable versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Unique among live runtimes.
    pub name: String,
    /// Highest version ever created (versions are never renumbered).
    pub latest_version: u32,
    /// Set once `DeleteAgentRuntime` was accepted; teardown is in flight.
    pub deleting: bool,
    /// When it was created.
    pub created_at: EpochMillis,
    /// When anything about it last changed.
    pub updated_at: EpochMillis,
}

/// One immutable version of a runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeVersion {
    /// Owning runtime id.
    pub runtime_id: String,
    /// 1, 2, ...
    pub version: u32,
    /// The configuration this version was created with (AgentCore wire member names).
    pub spec: serde_json::Value,
    /// Build state.
    pub status: Status,
    /// Why the build failed, quoting the build error.
    pub failure_reason: Option<String>,
    /// Content address of the built artifact once READY.
    pub artifact_digest: Option<String>,
    /// When it was created.
    pub created_at: EpochMillis,
    /// When its status last changed.
    pub updated_at: EpochMillis,
}

/// A named, addressable way into a runtime (`DEFAULT` or one the user created).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Owning runtime id.
    pub runtime_id: String,
    /// Endpoint name (`DEFAULT` for the implicit one).
    pub name: String,
    /// `<name>-<10 alphanumerics>`, as AgentCore reports endpoint ids.
    pub id: String,
    /// Free text.
    pub description: Option<String>,
    /// Version serving now.
    pub live_version: Option<u32>,
    /// Version being rolled to (equal to live when settled).
    pub target_version: Option<u32>,
    /// Lifecycle state.
    pub status: Status,
    /// Why the last transition failed.
    pub failure_reason: Option<String>,
    /// When it was created.
    pub created_at: EpochMillis,
    /// When it last changed.
    pub updated_at: EpochMillis,
}

/// Name of the endpoint every runtime has and that tracks the latest version.
pub const DEFAULT_ENDPOINT: &str = "DEFAULT";
