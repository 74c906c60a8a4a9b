//! Rows of the traffic layer (policies, session assignments, drains, rollouts, health buckets)
//! and the hash-chained audit log: backend-neutral types and the chain's hashing. Each backend's
//! SQL lives in its own module (`sqlite/traffic.rs`).
//!
//! The domain (`berth-control`) owns every rule; policies, rules and rollout specs are stored as
//! the domain's JSON so this module never needs to understand them.

use berth_types::EpochMillis;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The routing of an endpoint beyond its live version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRow {
    /// Owning runtime.
    pub runtime_id: String,
    /// Endpoint name.
    pub endpoint: String,
    /// The domain's weights (JSON array); empty means all new sessions go to the live version.
    pub weights: Value,
    /// The domain's routing rules (JSON array), evaluated before the weights.
    pub rules: Value,
    /// The live version before the last change of the live version (what a rollback returns to).
    pub previous_version: Option<u32>,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Which version a session was routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRow {
    /// Runtime.
    pub runtime_id: String,
    /// Session id.
    pub session_id: String,
    /// Endpoint the session was routed through.
    pub endpoint: String,
    /// The version it runs.
    pub version: u32,
    /// When it was first routed.
    pub created_at: EpochMillis,
}

/// A version draining off an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRow {
    /// Runtime.
    pub runtime_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// The version leaving.
    pub version: u32,
    /// When its remaining sessions are stopped.
    pub deadline: EpochMillis,
    /// When it began draining.
    pub created_at: EpochMillis,
}

/// A rollout's durable state.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    /// `ro-<alnum>`.
    pub id: String,
    /// Runtime.
    pub runtime_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// The stable version rolled away from.
    pub from_version: u32,
    /// The version rolled to.
    pub to_version: u32,
    /// `RUNNING`, `PAUSED`, `COMPLETED`, `ABORTED`. Only the first two count as active.
    pub state: String,
    /// Index into the spec's steps.
    pub step_index: u32,
    /// When the current step began.
    pub step_started_at: EpochMillis,
    /// The domain's spec (steps, interval, thresholds).
    pub spec: Value,
    /// The last analysis, for status.
    pub analysis: Option<Value>,
    /// Why it ended or holds.
    pub reason: Option<String>,
    /// Who started it.
    pub created_by: String,
    /// When it started.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Health of one (endpoint, version) in one time bucket. Writing one adds it to what the bucket
/// already holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthRow {
    /// Runtime.
    pub runtime_id: String,
    /// Endpoint (or the version qualifier an invocation named).
    pub endpoint: String,
    /// Version.
    pub version: u32,
    /// Start of the bucket, epoch ms.
    pub bucket_start: EpochMillis,
    /// Invocations answered (any outcome).
    pub invocations: u64,
    /// Invocations the agent answered with a 5xx.
    pub errors_5xx: u64,
    /// Invocations that failed with RuntimeClientError (424) other than timeouts.
    pub errors_424: u64,
    /// Invocations that timed out (the agent did not start or answer in time).
    pub timeouts: u64,
    /// Sessions routed to this version for the first time.
    pub new_sessions: u64,
    /// Sum of latencies in ms.
    pub latency_sum_ms: u64,
    /// Count per latency bucket (the bounds are the domain's).
    pub latency_counts: Vec<u64>,
}

/// An audit entry to append; the store assigns its sequence number and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// When.
    pub at: EpochMillis,
    /// Who: an access key id, or `rollout-controller`.
    pub actor: String,
    /// What: an operation name such as `UpdateAgentRuntimeEndpoint` or `rollout.abort`.
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// State before (JSON; null when created).
    pub before: Value,
    /// State after (JSON; null when deleted).
    pub after: Value,
    /// The request that caused it, if any.
    pub request_id: Option<String>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// 1, 2, ... without gaps.
    pub seq: i64,
    /// When.
    pub at: EpochMillis,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which resource.
    pub resource: String,
    /// Canonical JSON text of the state before.
    pub before: String,
    /// Canonical JSON text of the state after.
    pub after: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Hash of the previous entry ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// `sha256(prev_hash || "\n" || canonical content)`, hex.
    pub hash: String,
}

/// The `prev_hash` of the first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// JSON text with object keys sorted at every level, so equal values hash equally whatever order
/// their maps were built in.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// The hash of an audit entry: `sha256(prev_hash || "\n" || content)` where the content is every
/// field but the hashes, serialised as one JSON array so no two different entries share a
/// preimage. `row.hash` itself is ignored.
pub fn audit_hash(row: &AuditRow) -> String {
    let content = serde_json::json!([
        row.seq,
        row.at,
        row.actor,
        row.action,
        row.resource,
        row.before,
        row.after,
        row.request_id
    ])
    .to_string();
    let mut h = Sha256::new();
    h.update(row.prev_hash.as_bytes());
    h.update(b"\n");
    h.update(content.as_bytes());
    hex::encode(h.finalize())
}

/// Walks an audit log in sequence order, checking it link by link.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    prev_hash: String,
    next_seq: i64,
    checked: u64,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_owned(),
            next_seq: 1,
            checked: 0,
        }
    }
}

impl ChainCheck {
    /// Checks the next entry: no gap in the sequence, linked to its predecessor, hash intact.
    pub fn next(&mut self, row: &AuditRow) -> Result<(), String> {
        if row.seq != self.next_seq {
            return Err(format!(
                "entry {} is missing (the log jumps from {} to {})",
                self.next_seq,
                self.next_seq - 1,
                row.seq
            ));
        }
        if row.prev_hash != self.prev_hash {
            return Err(format!(
                "entry {} does not link to entry {}: it was edited or an entry before it was replaced",
                row.seq,
                row.seq - 1
            ));
        }
        if audit_hash(row) != row.hash {
            return Err(format!(
                "entry {} was edited: its content no longer matches its hash",
                row.seq
            ));
        }
        self.prev_hash = row.hash.clone();
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Checks the end of the log against the recorded head (catches a deleted tail).
    pub fn finish(&self, head: Option<(i64, String)>) -> Result<u64, String> {
        let last = self.next_seq - 1;
        match head {
            None if last == 0 => Ok(0),
            None => Err("the audit head is missing although entries exist".to_owned()),
            Some((seq, hash)) => {
                if seq != last {
                    return Err(format!(
                        "the log ends at entry {last} but {seq} entries were written: entries were deleted"
                    ));
                }
                if hash != self.prev_hash {
                    return Err(format!("entry {seq} does not match the recorded head"));
                }
                Ok(self.checked)
            }
        }
    }

    /// Entries checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}
