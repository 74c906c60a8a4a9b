//! Traffic policy of an endpoint: which version a NEW session runs.
//!
//! ```text
//! new session --assignment?--> its version (durable; survives restarts and ended sandboxes)
//!             --rules (in order: user id, actor, allow-listed header)--> the rule's version
//!             --weights (hash of the session id into 10 000 buckets)--> a version
//! ```
//!
//! The first routing of a session writes its assignment; later routings read it first, so a
//! session stays on its version for life whatever happens to the weights. Weighted choice hashes
//! the session id, so it needs no coordination between nodes and the split is exact in
//! expectation. Versions that leave an endpoint's routing drain: their live sessions keep
//! running until they end or the drain deadline passes, when the controller stops them.
//!
//! Architecture Invariant: the endpoint row's `live_version` is the stable version and
//! `target_version` the version being rolled to; the policy row only adds weights and rules.
//! An empty weight list means "everything to the live version", so endpoints without a policy
//! route exactly as before.

use crate::audit::{self, Caller};
use crate::rollout::{self, RolloutState};
use crate::{Control, Resolved, internal};
use berth_api::control::RuntimeSpec;
use berth_api::{ApiError, ErrorKind};
use berth_store::{AssignmentRow, DrainRow, PolicyRow, Write};
use berth_types::records::{DEFAULT_ENDPOINT, Endpoint, Runtime};
use berth_types::{EpochMillis, Status, Version, iso8601, now_millis, random_alnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// Number of hash buckets a session id falls into; weights are percentages, so each percent is
/// 100 buckets.
pub const BUCKETS: u32 = 10_000;

/// Most versions one split may name.
const MAX_SPLIT: usize = 16;
/// Most routing rules on one endpoint.
const MAX_RULES: usize = 50;

/// One version's share of new sessions, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The version.
    pub version: u32,
    /// Percent of new sessions (0..=100; a split sums to 100).
    pub weight: u32,
}

/// What a routing rule matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Match {
    /// `X-Amzn-Bedrock-AgentCore-Runtime-User-Id` equals this.
    UserId(String),
    /// The signing access key id of the invoking caller equals this.
    Actor(String),
    /// A request header allow-listed by the runtime (`requestHeaderAllowlist`) equals `value`.
    Header {
        /// Header name (compared case-insensitively).
        name: String,
        /// Exact value.
        value: String,
    },
}

/// Sends matching new sessions to one version, before the weights are consulted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `rule-<8 alphanumerics>`.
    pub id: String,
    /// What it matches.
    #[serde(rename = "match")]
    pub matches: Match,
    /// The version matching sessions run.
    pub version: u32,
}

/// Everything the routing decision needs about an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutingPolicy {
    /// The endpoint's live (stable) version: where sessions go when no weight or rule applies.
    pub live: u32,
    /// Weights in version order; empty means all to `live`. Zero weights keep a version in the
    /// routing (not draining) without sending it new sessions.
    pub weights: Vec<Split>,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
}

impl RoutingPolicy {
    /// Versions this policy can send sessions to (or keeps from draining).
    pub fn versions(&self) -> BTreeSet<u32> {
        let mut out: BTreeSet<u32> = if self.weights.is_empty() {
            [self.live].into()
        } else {
            self.weights.iter().map(|s| s.version).collect()
        };
        out.extend(self.rules.iter().map(|r| r.version));
        out
    }

    /// The weights in force, with the implicit 100% to `live` spelled out.
    pub fn effective_weights(&self) -> Vec<Split> {
        if self.weights.is_empty() {
            vec![Split {
                version: self.live,
                weight: 100,
            }]
        } else {
            self.weights.clone()
        }
    }
}

/// What the routing decision knows about a new session's first request.
#[derive(Clone, Copy)]
pub struct RouteRequest<'a> {
    /// The session id.
    pub session_id: &'a str,
    /// `X-Amzn-Bedrock-AgentCore-Runtime-User-Id`, if sent.
    pub user_id: Option<&'a str>,
    /// The access key id that signed the request.
    pub actor: Option<&'a str>,
    /// Request header lookup by lower-case name.
    pub header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
}

fn no_header<'x>(_: &str) -> Option<&'x str> {
    None
}

impl<'a> RouteRequest<'a> {
    /// A request carrying only a session id.
    pub fn session(session_id: &'a str) -> Self {
        Self {
            session_id,
            user_id: None,
            actor: None,
            header: &no_header,
        }
    }
}

impl std::fmt::Debug for RouteRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteRequest")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// Why a version was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The session was routed before (durable assignment).
    Assignment,
    /// The rule at this index matched.
    Rule(usize),
    /// The weights, with the session's hash bucket.
    Weight(u32),
    /// The qualifier named a version directly.
    Qualifier,
}

/// The routing decision for a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The version to run.
    pub version: u32,
    /// Why.
    pub by: DecidedBy,
}

/// The hash bucket (0..[`BUCKETS`]) of a session id. Stable across processes, nodes and
/// releases: it is part of the durable behaviour (the same session id always lands in the same
/// bucket), so it must never change.
pub fn session_bucket(session_id: &str) -> u32 {
    let d = Sha256::digest(session_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 2^64 is not a multiple of 10 000, but the bias is below 1e-15 per bucket.
    (u64::from_be_bytes(b) % u64::from(BUCKETS)) as u32
}

/// The routing decision for a session that has no assignment yet: the first matching rule,
/// else the weights. Pure and allocation-free; this is what `bench/` times.
pub fn decide(policy: &RoutingPolicy, req: &RouteRequest<'_>) -> Decision {
    for (i, r) in policy.rules.iter().enumerate() {
        let hit = match &r.matches {
            Match::UserId(u) => req.user_id == Some(u.as_str()),
            Match::Actor(a) => req.actor == Some(a.as_str()),
            Match::Header { name, value } => (req.header)(name) == Some(value.as_str()),
        };
        if hit {
            return Decision {
                version: r.version,
                by: DecidedBy::Rule(i),
            };
        }
    }
    let bucket = session_bucket(req.session_id);
    let mut upper = 0u32;
    for s in &policy.weights {
        upper += s.weight * (BUCKETS / 100);
        if bucket < upper {
            return Decision {
                version: s.version,
                by: DecidedBy::Weight(bucket),
            };
        }
    }
    Decision {
        version: policy.live,
        by: DecidedBy::Weight(bucket),
    }
}

/// Where a new session goes, and whether this call routed it for the first time.
#[derive(Debug, Clone)]
pub struct Routed {
    /// Runtime, endpoint and version.
    pub resolved: Resolved,
    /// Why this version.
    pub by: DecidedBy,
    /// True when this call assigned the session (it had no assignment on this endpoint).
    pub new_session: bool,
}

/// The stored policy, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    pub weights: Vec<Split>,
    pub rules: Vec<Rule>,
    pub previous: Option<u32>,
}

impl Policy {
    pub(crate) fn of(row: Option<PolicyRow>) -> Result<Self, ApiError> {
        let Some(row) = row else {
            return Ok(Self::default());
        };
        let corrupt = |e: serde_json::Error| {
            warn!(runtime_id = %row.runtime_id, endpoint = %row.endpoint, error = %e, "unreadable traffic policy");
            ApiError::internal_because(format_args!("unreadable traffic policy: {e}"))
        };
        Ok(Self {
            weights: serde_json::from_value(row.weights.clone()).map_err(corrupt)?,
            rules: serde_json::from_value(row.rules.clone()).map_err(corrupt)?,
            previous: row.previous_version,
        })
    }
}

/// An endpoint with its traffic state, read together.
#[derive(Debug, Clone)]
pub(crate) struct EndpointState {
    pub runtime: Runtime,
    pub endpoint: Endpoint,
    pub policy: Policy,
    pub drains: Vec<DrainRow>,
}

impl EndpointState {
    pub fn live(&self) -> Result<u32, ApiError> {
        self.endpoint.live_version.ok_or_else(|| {
            ApiError::conflict(format!(
                "endpoint {} of agent runtime {} has no live version yet",
                self.endpoint.name, self.runtime.id
            ))
        })
    }

    pub fn routing(&self) -> RoutingPolicy {
        RoutingPolicy {
            live: self.endpoint.live_version.unwrap_or(0),
            weights: self.policy.weights.clone(),
            rules: self.policy.rules.clone(),
        }
    }
}

/// The routing an endpoint moves to.
#[derive(Debug, Clone)]
pub(crate) struct Next {
    pub live: u32,
    pub target: u32,
    pub weights: Vec<Split>,
    pub rules: Vec<Rule>,
}

/// `PUT .../endpoints/{endpoint}/traffic`: new weights and how long versions leaving drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetTraffic {
    /// Each version's share of new sessions, sorted by version, summing to 100.
    pub weights: Vec<Split>,
    /// Drain deadline of versions leaving (default: the server's).
    pub drain_seconds: Option<u64>,
}

impl SetTraffic {
    /// Reads the native API body: `{"weights": {"1": 90, "2": 10}, "drainSeconds"?: 600}`, or
    /// weights as `[{"version", "weight"}]` (see [`parse_weights`]).
    pub fn from_json(input: &Value) -> Result<Self, ApiError> {
        Ok(Self {
            weights: parse_weights(input.get("weights"))?,
            drain_seconds: drain_seconds(input)?,
        })
    }
}

/// `POST .../endpoints/{endpoint}/traffic/rules`: a routing rule to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRule {
    /// What it matches.
    pub matches: Match,
    /// The version matching sessions run.
    pub version: u32,
    /// Drain deadline of versions leaving (default: the server's).
    pub drain_seconds: Option<u64>,
}

impl AddRule {
    /// Reads the native API body: `{"match": {"userId": "alice"}, "version": 2}`; `match` may
    /// also be `{"actor": KEY}` or `{"header": {"name", "value"}}`.
    pub fn from_json(input: &Value) -> Result<Self, ApiError> {
        let matches: Match = serde_json::from_value(input.get("match").cloned().unwrap_or(Value::Null)).map_err(|e| {
            ApiError::field("match", format!("match must be one of {{\"userId\": ...}}, {{\"actor\": ...}}, {{\"header\": {{\"name\": ..., \"value\": ...}}}}: {e}"))
        })?;
        let version = input
            .get("version")
            .and_then(version_of)
            .ok_or_else(|| ApiError::field("version", "version must be a version number"))?;
        Ok(Self {
            matches,
            version,
            drain_seconds: drain_seconds(input)?,
        })
    }
}

/// `POST .../endpoints/{endpoint}/rollback`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollback {
    /// Drain deadline of the version leaving (default: the server's).
    pub drain_seconds: Option<u64>,
}

impl Rollback {
    /// Reads the native API body: `{"drainSeconds"?: 600}`.
    pub fn from_json(input: &Value) -> Result<Self, ApiError> {
        Ok(Self {
            drain_seconds: drain_seconds(input)?,
        })
    }
}

/// The traffic state of an endpoint (`GET .../traffic`, and the answer of every change).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// The runtime.
    pub runtime_id: String,
    /// The endpoint.
    pub endpoint: String,
    /// The endpoint's status.
    pub status: Status,
    /// The stable version (`null` before the first build).
    pub live_version: Option<u32>,
    /// The version it is moving to.
    pub target_version: Option<u32>,
    /// The version live before the current one (what a rollback goes to).
    pub previous_version: Option<u32>,
    /// Effective weights of new sessions (empty before the first build).
    pub weights: Vec<Split>,
    /// Routing rules, in evaluation order.
    pub rules: Vec<Rule>,
    /// Versions leaving, with their deadlines.
    pub draining: Vec<Draining>,
    /// Sessions assigned per version.
    pub sessions: Vec<Assigned>,
    /// The rollout in progress (`null` when none).
    pub rollout: Option<rollout::Rollout>,
}

/// A version leaving an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draining {
    /// The version.
    pub version: u32,
    /// When its remaining sessions are stopped, ISO 8601.
    pub deadline: String,
}

/// How many sessions are assigned to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Assigned {
    /// The version.
    pub version: u32,
    /// Its sessions.
    pub assigned: u64,
}

/// The answer of adding a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleAdded {
    /// The rule, with its new id.
    pub rule: Rule,
}

/// The answer of removing a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRemoved {
    /// The id removed.
    pub removed: String,
}

/// The wire shape of a routing state (audit before/after, API answers).
fn routing_body(
    live: Option<u32>,
    target: Option<u32>,
    weights: &[Split],
    rules: &[Rule],
) -> Value {
    json!({ "liveVersion": live, "targetVersion": target, "weights": weights, "rules": rules })
}

impl Control {
    /// Reads an endpoint and its traffic state, refusing runtimes being deleted.
    pub(crate) async fn endpoint_state(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<EndpointState, ApiError> {
        let runtime = self.live_runtime(runtime_id).await?;
        if runtime.deleting {
            return Err(ApiError::conflict(format!(
                "agent runtime {runtime_id} is being deleted"
            )));
        }
        let ep = self.endpoint_of(&runtime, endpoint).await?;
        let store = &self.inner.store;
        let policy = Policy::of(
            store
                .policy(&runtime.id, &ep.name)
                .await
                .map_err(internal)?,
        )?;
        let drains = store
            .drains(&runtime.id, &ep.name)
            .await
            .map_err(internal)?;
        Ok(EndpointState {
            runtime,
            endpoint: ep,
            policy,
            drains,
        })
    }

    /// Like [`Control::endpoint_state`], for the operations that change routing, which the
    /// DEFAULT endpoint does not support.
    async fn mutable_state(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<EndpointState, ApiError> {
        if endpoint == DEFAULT_ENDPOINT {
            return Err(ApiError::field(
                "endpointName",
                "the DEFAULT endpoint always serves the latest version; create a named endpoint to split traffic, add rules, roll out or roll back",
            ));
        }
        self.endpoint_state(runtime_id, endpoint).await
    }

    /// A version that can serve new sessions, or a validation error naming `field`.
    pub(crate) async fn ready_version(
        &self,
        runtime_id: &str,
        version: u32,
        field: &str,
    ) -> Result<berth_types::records::RuntimeVersion, ApiError> {
        let v = self
            .inner
            .store
            .version(runtime_id, version)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::field(
                    field,
                    format!("agent runtime {runtime_id} has no version {version}"),
                )
            })?;
        if v.status != Status::Ready {
            return Err(ApiError::field(
                field,
                format!(
                    "version {version} is {} and cannot serve sessions",
                    v.status.as_str()
                ),
            ));
        }
        Ok(v)
    }

    pub(crate) fn drain_ms(&self, drain_seconds: Option<u64>) -> i64 {
        let secs = drain_seconds.unwrap_or(self.inner.options.drain_seconds);
        i64::try_from(secs.saturating_mul(self.inner.options.second_ms)).unwrap_or(i64::MAX)
    }

    /// The writes that move an endpoint from `st` to `next`: the endpoint row, the policy row,
    /// drains for versions leaving the routing and the end of drains for versions returning.
    pub(crate) fn transition(
        &self,
        st: &EndpointState,
        next: &Next,
        drain_ms: i64,
        now: EpochMillis,
    ) -> Vec<Write> {
        let mut ep = st.endpoint.clone();
        let previous = match ep.live_version {
            Some(old) if old != next.live => Some(old),
            _ => st.policy.previous,
        };
        ep.live_version = Some(next.live);
        ep.target_version = Some(next.target);
        ep.status = Status::Ready;
        ep.failure_reason = None;
        ep.updated_at = now;
        let mut writes = vec![Write::PutEndpoint(ep)];
        writes.extend(self.policy_writes(
            st,
            next.live,
            &next.weights,
            &next.rules,
            previous,
            drain_ms,
            now,
        ));
        writes
    }

    /// The policy row and drain changes for a new routing (the endpoint row is the caller's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn policy_writes(
        &self,
        st: &EndpointState,
        live: u32,
        weights: &[Split],
        rules: &[Rule],
        previous: Option<u32>,
        drain_ms: i64,
        now: EpochMillis,
    ) -> Vec<Write> {
        let (rt, name) = (&st.runtime.id, &st.endpoint.name);
        let before = st.routing().versions();
        let after = RoutingPolicy {
            live,
            weights: weights.to_vec(),
            rules: rules.to_vec(),
        }
        .versions();
        let mut writes = vec![Write::PutPolicy(PolicyRow {
            runtime_id: rt.clone(),
            endpoint: name.clone(),
            weights: serde_json::to_value(weights).unwrap_or_default(),
            rules: serde_json::to_value(rules).unwrap_or_default(),
            previous_version: previous,
            updated_at: now,
        })];
        if st.endpoint.live_version.is_some() {
            for v in before.difference(&after) {
                writes.push(Write::PutDrain(DrainRow {
                    runtime_id: rt.clone(),
                    endpoint: name.clone(),
                    version: *v,
                    deadline: now.saturating_add(drain_ms),
                    created_at: now,
                }));
            }
        }
        for d in st.drains.iter().filter(|d| after.contains(&d.version)) {
            writes.push(Write::DeleteDrain {
                runtime_id: rt.clone(),
                endpoint: name.clone(),
                version: d.version,
            });
        }
        writes
    }

    /// Asks the deployer to keep every version of a routing warm, so moving traffic (a rollback
    /// above all) never waits for a cold start.
    pub(crate) async fn warm(&self, runtime: &Runtime, versions: &BTreeSet<u32>) {
        for v in versions {
            if let Ok(Some(rv)) = self.inner.store.version(&runtime.id, *v).await
                && rv.status == Status::Ready
            {
                self.inner.deployer.warm(runtime, &rv).await;
            }
        }
    }

    /// Routes a new session (one without a live sandbox) of `runtime_id` through `qualifier`:
    /// its durable assignment if it has one on this endpoint, else the rules, else the weights;
    /// a first routing is recorded so the session keeps its version for life.
    pub async fn route(
        &self,
        runtime_id: &str,
        qualifier: Option<&str>,
        req: &RouteRequest<'_>,
    ) -> Result<Routed, ApiError> {
        let q = qualifier.unwrap_or(DEFAULT_ENDPOINT);
        let store = &self.inner.store;
        let Some(ep) = store.endpoint(runtime_id, q).await.map_err(internal)? else {
            // A version number (or an unknown endpoint): exactly what `resolve` does.
            let resolved = self.resolve(runtime_id, qualifier).await?;
            return Ok(Routed {
                resolved,
                by: DecidedBy::Qualifier,
                new_session: false,
            });
        };
        let Some(live) = ep.live_version else {
            let resolved = self.resolve(runtime_id, qualifier).await?;
            return Ok(Routed {
                resolved,
                by: DecidedBy::Qualifier,
                new_session: false,
            });
        };
        let rt = self.live_runtime(runtime_id).await?;
        if rt.deleting {
            return Err(ApiError::not_found(format!(
                "agent runtime {runtime_id} is being deleted"
            )));
        }
        let existing = store
            .assignment(&rt.id, req.session_id)
            .await
            .map_err(internal)?;
        if let Some(a) = existing.as_ref().filter(|a| a.endpoint == ep.name)
            && let Some(v) = store
                .version(&rt.id, a.version)
                .await
                .map_err(internal)?
                .filter(|v| v.status == Status::Ready)
        {
            return Ok(Routed {
                resolved: Resolved {
                    runtime: rt,
                    endpoint: ep.name,
                    version: v,
                },
                by: DecidedBy::Assignment,
                new_session: false,
            });
        }
        let policy = Policy::of(store.policy(&rt.id, &ep.name).await.map_err(internal)?)?;
        let routing = RoutingPolicy {
            live,
            weights: policy.weights,
            rules: policy.rules,
        };
        let decision = decide(&routing, req);
        let v = store
            .version(&rt.id, decision.version)
            .await
            .map_err(internal)?
            .filter(|v| v.status == Status::Ready)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "version {} of agent runtime {runtime_id} is not ready",
                    decision.version
                ))
            })?;
        let now = now_millis();
        let assignment = AssignmentRow {
            runtime_id: rt.id.clone(),
            session_id: req.session_id.to_owned(),
            endpoint: ep.name.clone(),
            version: v.version,
            created_at: now,
        };
        // An assignment on another endpoint (or to a version gone) is replaced; otherwise the
        // first of two concurrent first invocations wins and the other follows it.
        let replace = existing.is_some();
        store
            .apply(vec![Write::PutAssignment {
                assignment,
                replace,
            }])
            .await
            .map_err(internal)?;
        let mut resolved = Resolved {
            runtime: rt,
            endpoint: ep.name,
            version: v,
        };
        if !replace
            && let Some(won) = store
                .assignment(&resolved.runtime.id, req.session_id)
                .await
                .map_err(internal)?
            && won.version != resolved.version.version
            && let Some(v) = store
                .version(&resolved.runtime.id, won.version)
                .await
                .map_err(internal)?
        {
            resolved.version = v;
            return Ok(Routed {
                resolved,
                by: DecidedBy::Assignment,
                new_session: false,
            });
        }
        self.inner.health.new_session_at(
            &resolved.runtime.id,
            &resolved.endpoint,
            resolved.version.version,
            now,
        );
        Ok(Routed {
            resolved,
            by: decision.by,
            new_session: true,
        })
    }

    /// The traffic state of an endpoint: live and target versions, weights, rules, drains,
    /// assigned sessions per version and the rollout in progress.
    pub async fn traffic(&self, runtime_id: &str, endpoint: &str) -> Result<Traffic, ApiError> {
        let st = self.endpoint_state(runtime_id, endpoint).await?;
        self.traffic_body(&st).await
    }

    pub(crate) async fn traffic_body(&self, st: &EndpointState) -> Result<Traffic, ApiError> {
        let store = &self.inner.store;
        let counts = store
            .assignment_counts(&st.runtime.id, &st.endpoint.name)
            .await
            .map_err(internal)?;
        let active = self
            .active_rollout(&st.runtime.id, &st.endpoint.name)
            .await?;
        let routing = st.routing();
        Ok(Traffic {
            runtime_id: st.runtime.id.clone(),
            endpoint: st.endpoint.name.clone(),
            status: st.endpoint.status,
            live_version: st.endpoint.live_version,
            target_version: st.endpoint.target_version,
            previous_version: st.policy.previous,
            weights: if st.endpoint.live_version.is_some() {
                routing.effective_weights()
            } else {
                vec![]
            },
            rules: st.policy.rules.clone(),
            draining: st
                .drains
                .iter()
                .map(|d| Draining {
                    version: d.version,
                    deadline: iso8601(d.deadline),
                })
                .collect(),
            sessions: counts
                .iter()
                .map(|&(version, assigned)| Assigned { version, assigned })
                .collect(),
            rollout: active.as_ref().map(rollout::body),
        })
    }

    /// Sets the weights of an endpoint. New sessions follow at once; sessions already routed
    /// keep their version; versions leaving drain. A rollout in progress is superseded.
    pub async fn set_traffic(
        &self,
        runtime_id: &str,
        endpoint: &str,
        req: SetTraffic,
    ) -> Result<Traffic, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.mutable_state(runtime_id, endpoint).await?;
        let live = st.live()?;
        let weights = req.weights;
        for s in &weights {
            self.ready_version(&st.runtime.id, s.version, "weights")
                .await?;
        }
        let nonzero: Vec<Split> = weights.iter().copied().filter(|s| s.weight > 0).collect();
        let next = if let [only] = nonzero.as_slice() {
            Next {
                live: only.version,
                target: only.version,
                weights: vec![],
                rules: st.policy.rules.clone(),
            }
        } else {
            let stable = if nonzero.iter().any(|s| s.version == live) {
                live
            } else {
                // The heaviest version becomes stable (ties: the older one).
                nonzero
                    .iter()
                    .max_by_key(|s| (s.weight, std::cmp::Reverse(s.version)))
                    .map_or(live, |s| s.version)
            };
            let target = nonzero
                .iter()
                .filter(|s| s.version != stable)
                .map(|s| s.version)
                .max()
                .unwrap_or(stable);
            Next {
                live: stable,
                target,
                weights: nonzero,
                rules: st.policy.rules.clone(),
            }
        };
        let drain = self.drain_ms(req.drain_seconds);
        let now = now_millis();
        let mut writes = self.transition(&st, &next, drain, now);
        writes.extend(
            self.supersede_rollout(&st, "traffic weights set", now)
                .await?,
        );
        let arn = self
            .inner
            .partition
            .endpoint_arn(&st.runtime.id, &st.endpoint.name);
        writes.push(audit::entry(
            "traffic.set",
            &arn,
            routing_body(
                st.endpoint.live_version,
                st.endpoint.target_version,
                &st.routing().effective_weights(),
                &st.policy.rules,
            ),
            routing_body(
                Some(next.live),
                Some(next.target),
                &RoutingPolicy {
                    live: next.live,
                    weights: next.weights.clone(),
                    rules: vec![],
                }
                .effective_weights(),
                &next.rules,
            ),
        ));
        self.inner.store.apply(writes).await.map_err(internal)?;
        info!(runtime_id = %st.runtime.id, endpoint = %st.endpoint.name, live = next.live, target = next.target, "traffic set");
        let versions = RoutingPolicy {
            live: next.live,
            weights: next.weights,
            rules: next.rules,
        }
        .versions();
        // Warming may start sandboxes: slow work stays outside the write lock.
        drop(_g);
        self.warm(&st.runtime, &versions).await;
        self.traffic(runtime_id, endpoint).await
    }

    /// Adds a routing rule; a header rule needs a header the version allow-lists. Rules are
    /// evaluated in the order they were added.
    pub async fn add_rule(
        &self,
        runtime_id: &str,
        endpoint: &str,
        req: AddRule,
    ) -> Result<RuleAdded, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.mutable_state(runtime_id, endpoint).await?;
        let live = st.live()?;
        let AddRule {
            matches,
            version,
            drain_seconds,
        } = req;
        let v = self
            .ready_version(&st.runtime.id, version, "version")
            .await?;
        let matches = match matches {
            Match::UserId(u) if u.is_empty() => {
                return Err(ApiError::field(
                    "match.userId",
                    "the user id must not be empty",
                ));
            }
            Match::Actor(a) if a.is_empty() => {
                return Err(ApiError::field(
                    "match.actor",
                    "the actor must not be empty",
                ));
            }
            Match::Header { name, value } => {
                let name = name.to_ascii_lowercase();
                let allowed = |spec: &Value| {
                    serde_json::from_value::<RuntimeSpec>(spec.clone())
                        .map(|s| {
                            s.header_allowlist()
                                .iter()
                                .any(|h| h.eq_ignore_ascii_case(&name))
                        })
                        .unwrap_or(false)
                };
                if !allowed(&v.spec) {
                    return Err(ApiError::field(
                        "match.header.name",
                        format!(
                            "header {name} is not in the requestHeaderAllowlist of version {version}; only allow-listed headers can route"
                        ),
                    ));
                }
                Match::Header { name, value }
            }
            other => other,
        };
        if st.policy.rules.len() >= MAX_RULES {
            return Err(ApiError::new(
                ErrorKind::ServiceQuotaExceeded,
                format!("an endpoint can have at most {MAX_RULES} routing rules"),
            ));
        }
        let rule = Rule {
            id: format!("rule-{}", random_alnum(8)),
            matches,
            version,
        };
        let mut rules = st.policy.rules.clone();
        rules.push(rule.clone());
        self.change_rules(_g, &st, live, rules, "traffic.rule.add", drain_seconds)
            .await?;
        Ok(RuleAdded { rule })
    }

    /// Removes a routing rule by id.
    pub async fn remove_rule(
        &self,
        runtime_id: &str,
        endpoint: &str,
        rule_id: &str,
    ) -> Result<RuleRemoved, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.mutable_state(runtime_id, endpoint).await?;
        let live = st.live()?;
        if !st.policy.rules.iter().any(|r| r.id == rule_id) {
            return Err(ApiError::not_found(format!(
                "endpoint {endpoint} has no routing rule {rule_id}"
            )));
        }
        let rules: Vec<Rule> = st
            .policy
            .rules
            .iter()
            .filter(|r| r.id != rule_id)
            .cloned()
            .collect();
        self.change_rules(_g, &st, live, rules, "traffic.rule.remove", None)
            .await?;
        Ok(RuleRemoved {
            removed: rule_id.to_owned(),
        })
    }

    /// Writes `rules` as the endpoint's routing rules, then, with the write lock (`_g`) released,
    /// warms their versions.
    async fn change_rules(
        &self,
        _g: tokio::sync::MutexGuard<'_, ()>,
        st: &EndpointState,
        live: u32,
        rules: Vec<Rule>,
        action: &str,
        drain_seconds: Option<u64>,
    ) -> Result<(), ApiError> {
        let now = now_millis();
        let drain = self.drain_ms(drain_seconds);
        let mut writes = self.policy_writes(
            st,
            live,
            &st.policy.weights,
            &rules,
            st.policy.previous,
            drain,
            now,
        );
        let arn = self
            .inner
            .partition
            .endpoint_arn(&st.runtime.id, &st.endpoint.name);
        writes.push(audit::entry(
            action,
            &arn,
            json!({ "rules": st.policy.rules }),
            json!({ "rules": rules }),
        ));
        self.inner.store.apply(writes).await.map_err(internal)?;
        let versions: BTreeSet<u32> = rules.iter().map(|r| r.version).collect();
        // Warming may start sandboxes: slow work stays outside the write lock.
        drop(_g);
        self.warm(&st.runtime, &versions).await;
        Ok(())
    }

    /// Moves an endpoint back in one call: during a split or rollout, to 100% of the stable
    /// version (the rollout is aborted); otherwise to the version that was live before the
    /// current one. Effective for new sessions at once; sessions already routed keep their
    /// version and drain.
    pub async fn rollback(
        &self,
        runtime_id: &str,
        endpoint: &str,
        req: Rollback,
    ) -> Result<Traffic, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.mutable_state(runtime_id, endpoint).await?;
        let live = st.live()?;
        let to = if !st.policy.weights.is_empty() || st.endpoint.target_version != Some(live) {
            live
        } else {
            let prev = st.policy.previous.ok_or_else(|| {
                ApiError::conflict(format!(
                    "endpoint {endpoint} has no previous version to roll back to"
                ))
            })?;
            self.ready_version(&st.runtime.id, prev, "previousVersion")
                .await?;
            prev
        };
        let caller = Caller::current();
        let now = now_millis();
        let next = Next {
            live: to,
            target: to,
            weights: vec![],
            rules: st.policy.rules.clone(),
        };
        let mut writes = self.transition(&st, &next, self.drain_ms(req.drain_seconds), now);
        writes.extend(
            self.supersede_rollout(&st, &format!("rolled back by {}", caller.actor), now)
                .await?,
        );
        let arn = self
            .inner
            .partition
            .endpoint_arn(&st.runtime.id, &st.endpoint.name);
        writes.push(audit::entry(
            "rollback",
            &arn,
            routing_body(
                st.endpoint.live_version,
                st.endpoint.target_version,
                &st.routing().effective_weights(),
                &st.policy.rules,
            ),
            routing_body(
                Some(to),
                Some(to),
                &[Split {
                    version: to,
                    weight: 100,
                }],
                &next.rules,
            ),
        ));
        self.inner.store.apply(writes).await.map_err(internal)?;
        info!(runtime_id = %st.runtime.id, endpoint = %st.endpoint.name, from = live, to, "rolled back");
        // Warming may start sandboxes: slow work stays outside the write lock.
        drop(_g);
        self.warm(&st.runtime, &[to].into()).await;
        self.traffic(runtime_id, endpoint).await
    }

    /// Aborts the endpoint's rollout in progress, if any, because an operator changed the
    /// routing by hand (the caller writes the new routing itself).
    pub(crate) async fn supersede_rollout(
        &self,
        st: &EndpointState,
        reason: &str,
        now: EpochMillis,
    ) -> Result<Vec<Write>, ApiError> {
        let Some(mut r) = self
            .active_rollout(&st.runtime.id, &st.endpoint.name)
            .await?
        else {
            return Ok(vec![]);
        };
        let before = rollout::record(&r);
        r.state = RolloutState::Aborted.as_str().to_owned();
        r.reason = Some(reason.to_owned());
        r.updated_at = now;
        let arn = self
            .inner
            .partition
            .endpoint_arn(&st.runtime.id, &st.endpoint.name);
        let audit = audit::entry("rollout.abort", &arn, before, rollout::record(&r));
        Ok(vec![Write::PutRollout(r), audit])
    }

    /// The writes that keep the traffic state consistent when `UpdateAgentRuntimeEndpoint` (or a
    /// finished build) moved `old` to `new`: the endpoint serves 100% of its live version from
    /// now on (weights cleared, rules kept), versions leaving drain, a rollout is superseded.
    pub(crate) async fn endpoint_moved(
        &self,
        old: &Endpoint,
        new: &Endpoint,
        reason: &str,
    ) -> Result<Vec<Write>, ApiError> {
        let store = &self.inner.store;
        let runtime = self.live_runtime(&old.runtime_id).await?;
        let policy = Policy::of(
            store
                .policy(&old.runtime_id, &old.name)
                .await
                .map_err(internal)?,
        )?;
        let drains = store
            .drains(&old.runtime_id, &old.name)
            .await
            .map_err(internal)?;
        let st = EndpointState {
            runtime,
            endpoint: old.clone(),
            policy,
            drains,
        };
        let Some(live) = new.live_version else {
            return Ok(vec![]);
        };
        if st.policy.weights.is_empty() && old.live_version == new.live_version {
            return Ok(vec![]);
        }
        let previous = match old.live_version {
            Some(o) if o != live => Some(o),
            _ => st.policy.previous,
        };
        let now = now_millis();
        let mut writes = self.policy_writes(
            &st,
            live,
            &[],
            &st.policy.rules,
            previous,
            self.drain_ms(None),
            now,
        );
        writes.extend(self.supersede_rollout(&st, reason, now).await?);
        Ok(writes)
    }
}

/// A version number from JSON: a number or a numeric string.
pub(crate) fn version_of(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| Version::parse(&n.to_string()).is_some()),
        Value::String(s) => Version::parse(s).map(|v| v.0),
        _ => None,
    }
}

fn drain_seconds(input: &Value) -> Result<Option<u64>, ApiError> {
    match input.get("drainSeconds") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::field(
                "drainSeconds",
                "drainSeconds must be a non-negative integer",
            )
        }),
    }
}

/// Parses and checks weights: `{"1": 90, "2": 10}` or `[{"version": 1, "weight": 90}, ...]`,
/// each 0..=100, summing to 100, at most 16 versions, each named once. Sorted by version.
pub fn parse_weights(v: Option<&Value>) -> Result<Vec<Split>, ApiError> {
    let bad = |m: String| ApiError::field("weights", m);
    let pairs: Vec<(Value, Value)> = match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, w)| (Value::String(k.clone()), w.clone()))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                (
                    s.get("version").cloned().unwrap_or(Value::Null),
                    s.get("weight").cloned().unwrap_or(Value::Null),
                )
            })
            .collect(),
        _ => {
            return Err(bad(
                "weights must map versions to percentages, e.g. {\"1\": 90, \"2\": 10}".into(),
            ));
        }
    };
    if pairs.is_empty() || pairs.len() > MAX_SPLIT {
        return Err(bad(format!("a split names 1 to {MAX_SPLIT} versions")));
    }
    let mut out: Vec<Split> = Vec::with_capacity(pairs.len());
    for (k, w) in pairs {
        let version = version_of(&k).ok_or_else(|| bad(format!("{k} is not a version number")))?;
        let weight = w.as_u64().filter(|w| *w <= 100).ok_or_else(|| {
            bad(format!(
                "the weight of version {version} must be an integer from 0 to 100"
            ))
        })? as u32;
        if out.iter().any(|s| s.version == version) {
            return Err(bad(format!("version {version} is named twice")));
        }
        out.push(Split { version, weight });
    }
    let sum: u32 = out.iter().map(|s| s.weight).sum();
    if sum != 100 {
        return Err(bad(format!("weights must sum to 100, not {sum}")));
    }
    out.sort_by_key(|s| s.version);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(weights: &[(u32, u32)], rules: Vec<Rule>) -> RoutingPolicy {
        RoutingPolicy {
            live: 1,
            weights: weights
                .iter()
                .map(|&(version, weight)| Split { version, weight })
                .collect(),
            rules,
        }
    }

    #[test]
    fn weights_split_by_session_hash_and_rules_come_first() {
        let p = policy(&[(1, 90), (2, 10)], vec![]);
        let mut n2 = 0;
        for i in 0..5000 {
            let sid = format!("session-{i:05}-0123456789abcdefghijklmnopqrstuvwxyz");
            let d = decide(&p, &RouteRequest::session(&sid));
            assert_eq!(d, decide(&p, &RouteRequest::session(&sid)), "deterministic");
            if d.version == 2 {
                n2 += 1;
            }
        }
        assert!((400..=600).contains(&n2), "{n2} of 5000 on the 10% version");

        let rules = vec![
            Rule {
                id: "r1".into(),
                matches: Match::UserId("alice".into()),
                version: 3,
            },
            Rule {
                id: "r2".into(),
                matches: Match::Header {
                    name: "x-org".into(),
                    value: "acme".into(),
                },
                version: 4,
            },
            Rule {
                id: "r3".into(),
                matches: Match::Actor("AKIA1".into()),
                version: 5,
            },
        ];
        let p = policy(&[(1, 100)], rules);
        let headers = |n: &str| (n == "x-org").then_some("acme");
        let mut req = RouteRequest::session("s");
        assert_eq!(decide(&p, &req).version, 1);
        req.user_id = Some("alice");
        assert_eq!(
            decide(&p, &req),
            Decision {
                version: 3,
                by: DecidedBy::Rule(0)
            }
        );
        req.user_id = Some("bob");
        req.header = &headers;
        assert_eq!(decide(&p, &req).version, 4);
        let req = RouteRequest {
            actor: Some("AKIA1"),
            ..RouteRequest::session("s")
        };
        assert_eq!(decide(&p, &req).version, 5);
    }

    #[test]
    fn growing_canary_weight_only_adds_sessions_to_the_canary() {
        // With the canary last in version order, raising its weight moves sessions from stable
        // to canary and never back: a property rollouts rely on for new sessions.
        for i in 0..2000 {
            let sid = format!("s-{i}");
            let mut was_canary = false;
            for w in [5, 25, 50, 100] {
                let d = decide(
                    &policy(&[(1, 100 - w), (2, w)], vec![]),
                    &RouteRequest::session(&sid),
                );
                if was_canary {
                    assert_eq!(d.version, 2);
                }
                was_canary = d.version == 2;
            }
        }
    }

    #[test]
    fn weights_are_validated() {
        let ok = parse_weights(Some(&json!({"2": 10, "1": 90}))).unwrap();
        assert_eq!(
            ok,
            vec![
                Split {
                    version: 1,
                    weight: 90
                },
                Split {
                    version: 2,
                    weight: 10
                }
            ]
        );
        assert!(parse_weights(Some(&json!([{"version": 1, "weight": 100}]))).is_ok());
        for bad in [
            json!({"1": 90}),
            json!({"1": 101, "2": -1}),
            json!({"x": 100}),
            json!({}),
            json!({"1": 50.5, "2": 49.5}),
        ] {
            assert!(parse_weights(Some(&bad)).is_err(), "{bad}");
        }
    }
}
