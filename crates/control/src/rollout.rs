//! Rollouts: a durable state machine that walks an endpoint from its stable version to a new
//! one in weight steps, advancing when the analysis passes, holding while the data is
//! inconclusive and aborting on a breach.
//!
//! ```text
//! start --> RUNNING(step 0) --interval passed, analysis pass--> RUNNING(step i+1) ... --> COMPLETED
//!              |  ^                                  (last step passed, or promote)
//!        pause |  | resume (restarts the step's window)
//!              v  |
//!            PAUSED
//! RUNNING|PAUSED --breach (any time once min invocations are in) | abort | rollback
//!                | traffic set | UpdateAgentRuntimeEndpoint--> ABORTED (new sessions to stable, canary drains)
//! ```
//!
//! The row is the state; the controller re-reads it on every tick, so a restarted server resumes
//! each rollout where it was. Analysis is a list of [`Signal`]s judged over the step's window:
//! error rate and p99 latency are built in; evaluation scores or cost join by implementing
//! [`Signal`] and passing it in [`crate::Options::signals`].

use crate::audit::{self, Caller};
use crate::health::Summary;
use crate::traffic::{EndpointState, Next, Split, Traffic, version_of};
use crate::{Control, internal};
use async_trait::async_trait;
use berth_api::ApiError;
use berth_store::{RolloutGuard, RolloutRow, Write};
use berth_types::{EpochMillis, iso8601, now_millis, random_alnum};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Advancing through its steps.
    Running,
    /// Holding its current weights until resumed.
    Paused,
    /// The new version is the endpoint's stable version.
    Completed,
    /// Back on the stable version; the canary drained.
    Aborted,
}

impl RolloutState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::Aborted => "ABORTED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RUNNING" => Self::Running,
            "PAUSED" => Self::Paused,
            "COMPLETED" => Self::Completed,
            "ABORTED" => Self::Aborted,
            _ => return None,
        })
    }
}

/// A limit on a canary measure: absolute, or relative to the stable version over the same
/// window. Written `0.05`, `stable+0.02`, `stable-0.1` or `stable*1.5`. Whether it is an upper
/// bound (error rate, latency) or a lower one (an evaluation score) is the signal's business.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// The canary's value must not exceed this.
    Absolute(f64),
    /// ... must not exceed the stable version's value plus this.
    StablePlus(f64),
    /// ... the stable version's value minus this.
    StableMinus(f64),
    /// ... must not exceed the stable version's value times this.
    StableTimes(f64),
}

impl Threshold {
    /// Parses `0.05`, `stable+0.02`, `stable-0.1` or `stable*1.5`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not a threshold: use a number, stable+N, stable-N or stable*N"
                    )
                })
        };
        if let Some(rest) = s.strip_prefix("stable") {
            let rest = rest.trim_start();
            if let Some(d) = rest.strip_prefix('+') {
                return Ok(Self::StablePlus(num(d)?));
            }
            if let Some(d) = rest.strip_prefix('-') {
                return Ok(Self::StableMinus(num(d)?));
            }
            if let Some(f) = rest.strip_prefix('*') {
                return Ok(Self::StableTimes(num(f)?));
            }
            return Err(format!(
                "{s:?} is not a threshold: use a number, stable+N, stable-N or stable*N"
            ));
        }
        Ok(Self::Absolute(num(s)?))
    }

    /// The limit given the stable version's value (`None` when the stable version has too little
    /// data); `None` when a relative limit cannot be computed.
    pub fn limit(self, stable: Option<f64>) -> Option<f64> {
        match self {
            Self::Absolute(x) => Some(x),
            Self::StablePlus(d) => stable.map(|s| s + d),
            Self::StableMinus(d) => stable.map(|s| s - d),
            Self::StableTimes(f) => stable.map(|s| s * f),
        }
    }

    /// Whether the limit depends on the stable version.
    pub fn is_relative(self) -> bool {
        !matches!(self, Self::Absolute(_))
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Absolute(x) => write!(f, "{x}"),
            Self::StablePlus(d) => write!(f, "stable+{d}"),
            Self::StableMinus(d) => write!(f, "stable-{d}"),
            Self::StableTimes(x) => write!(f, "stable*{x}"),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Self::Absolute)
                .ok_or_else(|| {
                    serde::de::Error::custom("a threshold must be a non-negative number")
                }),
            Value::String(s) => Self::parse(&s).map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "a threshold is a number or a string such as stable*1.5",
            )),
        }
    }
}

/// How a rollout proceeds and what it checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Canary percentages, strictly increasing, ending at 100.
    pub steps: Vec<u32>,
    /// Seconds each step lasts at least (traffic seconds: see `Options::second_ms`).
    pub interval_seconds: u64,
    /// Canary invocations a step needs before its analysis can pass or breach.
    pub min_invocations: u64,
    /// Largest acceptable canary error rate (errors / invocations).
    pub max_error_rate: Option<Threshold>,
    /// Largest acceptable canary p99 latency in ms.
    pub max_p99_ms: Option<Threshold>,
    /// Drain deadline of the version leaving when the rollout ends (default: the server's).
    pub drain_seconds: Option<u64>,
    /// Evaluation scores the canary must keep (judged by the evaluation signal, which reads the
    /// scores online evaluation stores; absent: quality is not judged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluations: Vec<EvaluationGate>,
}

/// One evaluator's lower bound on the canary's mean score over a step's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluationGate {
    /// `Builtin.Correctness`, `name-XXXXXXXXXX`.
    pub evaluator_id: String,
    /// The canary's mean score must be at least this (`0.7`, `stable-0.1`, `stable*0.9`).
    pub min_score: Threshold,
    /// Scored sessions (or traces) each side needs before the gate may decide.
    #[serde(default = "default_min_scored")]
    pub min_scored: u64,
}

fn default_min_scored() -> u64 {
    10
}

/// Default steps: 5, 25, 50, 100 percent.
pub const DEFAULT_STEPS: [u32; 4] = [5, 25, 50, 100];

impl RolloutSpec {
    /// Reads a spec from the native API's input, filling defaults: steps 5/25/50/100, 60 s
    /// intervals, 20 invocations, error rate at most 5% absolute, no latency limit.
    pub fn from_input(input: &Value) -> Result<Self, ApiError> {
        let mut spec = json!({
            "steps": DEFAULT_STEPS,
            "intervalSeconds": 60,
            "minInvocations": 20,
            "maxErrorRate": "0.05",
            "maxP99Ms": null,
            "drainSeconds": null,
            "evaluations": [],
        });
        for key in [
            "steps",
            "intervalSeconds",
            "minInvocations",
            "maxErrorRate",
            "maxP99Ms",
            "drainSeconds",
            "evaluations",
        ] {
            if let Some(v) = input.get(key) {
                spec[key] = v.clone();
            }
        }
        let spec: RolloutSpec = serde_json::from_value(spec)
            .map_err(|e| ApiError::field("rollout", format!("invalid rollout settings: {e}")))?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), ApiError> {
        if self.steps.is_empty() || self.steps.len() > 20 {
            return Err(ApiError::field("steps", "a rollout has 1 to 20 steps"));
        }
        if self.steps.windows(2).any(|w| w[0] >= w[1])
            || self.steps[0] == 0
            || self.steps.last() != Some(&100)
        {
            return Err(ApiError::field(
                "steps",
                "steps are percentages from 1 to 100, strictly increasing, ending at 100",
            ));
        }
        if self.interval_seconds == 0 {
            return Err(ApiError::field(
                "intervalSeconds",
                "the interval must be at least 1 second",
            ));
        }
        if self.evaluations.len() > 10 {
            return Err(ApiError::field(
                "evaluations",
                "a rollout judges at most 10 evaluators",
            ));
        }
        for g in &self.evaluations {
            if g.evaluator_id.is_empty() || g.evaluator_id.len() > 128 {
                return Err(ApiError::field(
                    "evaluations",
                    "each gate names an evaluator id (1 to 128 characters)",
                ));
            }
            if g.min_scored == 0 {
                return Err(ApiError::field(
                    "evaluations",
                    "minScored must be at least 1",
                ));
            }
        }
        if let Some(Threshold::Absolute(x)) = self.max_error_rate
            && x > 1.0
        {
            return Err(ApiError::field(
                "maxErrorRate",
                "an absolute error rate is a fraction from 0 to 1",
            ));
        }
        Ok(())
    }
}

/// The data a [`Signal`] judges: one step's window of the canary and the stable version.
#[derive(Debug, Clone)]
pub struct Window {
    /// Runtime.
    pub runtime_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// The stable version.
    pub stable_version: u32,
    /// The version being rolled to.
    pub canary_version: u32,
    /// Start of the window, epoch ms.
    pub from: EpochMillis,
    /// End of the window, epoch ms.
    pub to: EpochMillis,
    /// When the rollout started less one interval, epoch ms: the widest window, which signals
    /// whose evidence accumulates slowly (evaluation scores) judge over.
    pub since: EpochMillis,
    /// The canary's health over the window.
    pub canary: Summary,
    /// The stable version's health over the window (widened to the whole rollout when the
    /// step alone has too little stable traffic, as at 100%).
    pub stable: Summary,
    /// The rollout's settings.
    pub spec: RolloutSpec,
}

/// One signal's judgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "verdict",
    content = "reason",
    rename_all = "SCREAMING_SNAKE_CASE"
)]
pub enum Verdict {
    /// Within limits.
    Pass,
    /// Not enough data to tell; the rollout holds.
    Inconclusive(String),
    /// Out of limits; the rollout aborts.
    Breach(String),
}

/// Something that judges a canary: the seam for evaluation scores, cost and any other measure
/// that should be able to stop a rollout. Implementations look up their own data by
/// (runtime, endpoint, version, window) and must not block.
#[async_trait]
pub trait Signal: Send + Sync + 'static {
    /// Short name shown in the analysis (`error-rate`, `p99-latency`, `eval-score`...).
    fn name(&self) -> &str;
    /// Judges the window.
    async fn judge(&self, window: &Window) -> Verdict;
}

/// Canary error rate against `maxErrorRate`.
#[derive(Debug, Default)]
pub struct ErrorRate;

#[async_trait]
impl Signal for ErrorRate {
    fn name(&self) -> &str {
        "error-rate"
    }

    async fn judge(&self, w: &Window) -> Verdict {
        let Some(t) = w.spec.max_error_rate else {
            return Verdict::Pass;
        };
        let stable =
            (w.stable.invocations >= w.spec.min_invocations).then_some(w.stable.error_rate);
        let Some(limit) = t.limit(stable) else {
            return Verdict::Inconclusive(format!(
                "stable version {} has {} of {} invocations needed to compare error rates",
                w.stable_version, w.stable.invocations, w.spec.min_invocations
            ));
        };
        if w.canary.error_rate > limit + 1e-12 {
            Verdict::Breach(format!(
                "error rate {:.3} ({} of {} invocations) exceeds {limit:.3} ({t})",
                w.canary.error_rate, w.canary.errors, w.canary.invocations
            ))
        } else {
            Verdict::Pass
        }
    }
}

/// Canary p99 latency against `maxP99Ms`.
#[derive(Debug, Default)]
pub struct LatencyP99;

#[async_trait]
impl Signal for LatencyP99 {
    fn name(&self) -> &str {
        "p99-latency"
    }

    async fn judge(&self, w: &Window) -> Verdict {
        let Some(t) = w.spec.max_p99_ms else {
            return Verdict::Pass;
        };
        let stable = if w.stable.invocations >= w.spec.min_invocations {
            w.stable.p99_ms
        } else {
            None
        };
        let Some(limit) = t.limit(stable) else {
            return Verdict::Inconclusive(format!(
                "stable version {} has {} of {} invocations needed to compare latency",
                w.stable_version, w.stable.invocations, w.spec.min_invocations
            ));
        };
        match w.canary.p99_ms {
            Some(p99) if p99 > limit => Verdict::Breach(format!(
                "p99 latency {p99:.0} ms exceeds {limit:.0} ms ({t})"
            )),
            _ => Verdict::Pass,
        }
    }
}

/// The built-in signals.
pub fn builtin_signals() -> Vec<Arc<dyn Signal>> {
    vec![Arc::new(ErrorRate), Arc::new(LatencyP99)]
}

/// The outcome of one analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Breach if any signal breached, else inconclusive if any was, else pass.
    pub verdict: Verdict,
    /// Each signal's verdict, by name.
    pub signals: Vec<(String, Verdict)>,
}

/// Judges `window` with `signals`. Too few canary invocations make the whole analysis
/// inconclusive before any signal is asked.
pub async fn analyse(window: &Window, signals: &[Arc<dyn Signal>]) -> Analysis {
    if window.canary.invocations < window.spec.min_invocations {
        let v = Verdict::Inconclusive(format!(
            "canary version {} has {} of {} invocations needed",
            window.canary_version, window.canary.invocations, window.spec.min_invocations
        ));
        return Analysis {
            verdict: v.clone(),
            signals: vec![("min-invocations".into(), v)],
        };
    }
    let mut out = Vec::with_capacity(signals.len());
    for s in signals {
        out.push((s.name().to_owned(), s.judge(window).await));
    }
    let breach = out.iter().find(|(_, v)| matches!(v, Verdict::Breach(_)));
    let held = out
        .iter()
        .find(|(_, v)| matches!(v, Verdict::Inconclusive(_)));
    let verdict = match (breach, held) {
        (Some((n, Verdict::Breach(r))), _) => Verdict::Breach(format!("{n}: {r}")),
        (_, Some((n, Verdict::Inconclusive(r)))) => Verdict::Inconclusive(format!("{n}: {r}")),
        _ => Verdict::Pass,
    };
    Analysis {
        verdict,
        signals: out,
    }
}

fn analysis_body(w: &Window, a: &Analysis, at: EpochMillis) -> Value {
    json!({
        "at": iso8601(at),
        "verdict": a.verdict,
        "window": {"from": iso8601(w.from), "to": iso8601(w.to)},
        "canary": w.canary,
        "stable": w.stable,
        "signals": a.signals.iter().map(|(n, v)| json!({"signal": n, "result": v})).collect::<Vec<_>>(),
    })
}

pub(crate) fn spec_of(r: &RolloutRow) -> Result<RolloutSpec, ApiError> {
    serde_json::from_value(r.spec.clone()).map_err(|e| {
        warn!(rollout = %r.id, error = %e, "unreadable rollout spec");
        ApiError::internal_because(format_args!("unreadable rollout spec: {e}"))
    })
}

/// The canary weight at a step.
fn weight_at(spec: &RolloutSpec, step: u32) -> u32 {
    spec.steps.get(step as usize).copied().unwrap_or(100)
}

/// The weights of a rollout at a step. At 100% the stable version stays in the split with
/// weight 0, so it keeps serving its sessions (no drain) until the rollout completes.
fn step_weights(from: u32, to: u32, weight: u32) -> Vec<Split> {
    let mut w = vec![
        Split {
            version: from,
            weight: 100 - weight,
        },
        Split {
            version: to,
            weight,
        },
    ];
    w.sort_by_key(|s| s.version);
    w
}

/// A rollout as the native API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `ro-<10 alphanumerics>`.
    pub id: String,
    /// The runtime.
    pub runtime_id: String,
    /// The endpoint.
    pub endpoint: String,
    /// The stable version it started from.
    pub from_version: u32,
    /// The version rolled out.
    pub to_version: u32,
    /// `RUNNING`, `PAUSED`, `COMPLETED` or `ABORTED`.
    pub state: String,
    /// The current step, from 1.
    pub step: u32,
    /// The canary's weight at this step (`null` when the stored settings are unreadable).
    pub canary_weight: Option<u32>,
    /// When the current step started, ISO 8601.
    pub step_started_at: String,
    /// The settings, as stored (a [`RolloutSpec`]).
    pub spec: Value,
    /// The latest analysis, as recorded.
    pub analysis: Option<Value>,
    /// Why it ended or holds.
    pub reason: Option<String>,
    /// Who started it.
    pub created_by: String,
    /// ISO 8601.
    pub created_at: String,
    /// ISO 8601.
    pub updated_at: String,
}

/// The answer of starting a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStarted {
    /// The new rollout.
    pub rollout: Rollout,
}

/// An endpoint's rollout in progress (else its latest), recent history and traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStatus {
    /// The rollout in progress or the latest one (`null` when there never was one).
    pub rollout: Option<Rollout>,
    /// Up to nine earlier rollouts, newest first.
    pub history: Vec<Rollout>,
    /// The endpoint's traffic state.
    pub traffic: Traffic,
}

/// `POST .../endpoints/{endpoint}/rollouts`: the version to roll out and how.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRollout {
    /// The version to roll out.
    pub to_version: u32,
    /// Steps, intervals and thresholds, defaults filled in.
    pub spec: RolloutSpec,
}

impl StartRollout {
    /// Reads the native API body: `{"toVersion": N, "steps"?, "intervalSeconds"?, ...}` (see
    /// [`RolloutSpec::from_input`] for the settings).
    pub fn from_json(input: &Value) -> Result<Self, ApiError> {
        let to_version = input
            .get("toVersion")
            .and_then(version_of)
            .ok_or_else(|| ApiError::field("toVersion", "toVersion must be a version number"))?;
        Ok(Self {
            to_version,
            spec: RolloutSpec::from_input(input)?,
        })
    }
}

/// The native API view of a rollout.
pub fn body(r: &RolloutRow) -> Rollout {
    let spec: Option<RolloutSpec> = serde_json::from_value(r.spec.clone()).ok();
    Rollout {
        id: r.id.clone(),
        runtime_id: r.runtime_id.clone(),
        endpoint: r.endpoint.clone(),
        from_version: r.from_version,
        to_version: r.to_version,
        state: r.state.clone(),
        step: r.step_index + 1,
        canary_weight: spec.as_ref().map(|s| weight_at(s, r.step_index)),
        step_started_at: iso8601(r.step_started_at),
        spec: r.spec.clone(),
        analysis: r.analysis.clone(),
        reason: r.reason.clone(),
        created_by: r.created_by.clone(),
        created_at: iso8601(r.created_at),
        updated_at: iso8601(r.updated_at),
    }
}

/// [`body`] as JSON, for audit records.
pub(crate) fn record(r: &RolloutRow) -> Value {
    // Strings, numbers and JSON values only: serializing cannot fail.
    serde_json::to_value(body(r)).unwrap_or(Value::Null)
}

/// What an operator asks of a rollout in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Hold the current weights.
    Pause,
    /// Continue; the current step's window starts again.
    Resume,
    /// Back to stable now.
    Abort,
    /// Skip the remaining steps: the new version becomes stable now.
    Promote,
}

impl Command {
    /// Parses `pause`, `resume`, `abort`, `promote`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "abort" => Self::Abort,
            "promote" => Self::Promote,
            _ => return None,
        })
    }

    fn action(self) -> &'static str {
        match self {
            Self::Pause => "rollout.pause",
            Self::Resume => "rollout.resume",
            Self::Abort => "rollout.abort",
            Self::Promote => "rollout.promote",
        }
    }
}

impl Control {
    pub(crate) async fn active_rollout(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<Option<RolloutRow>, ApiError> {
        let rs = self
            .inner
            .store
            .rollouts(runtime_id, endpoint, 1)
            .await
            .map_err(internal)?;
        Ok(rs.into_iter().next().filter(|r| {
            matches!(
                RolloutState::parse(&r.state),
                Some(RolloutState::Running | RolloutState::Paused)
            )
        }))
    }

    /// Starts a rollout of an endpoint. The first step's weights apply to new sessions at once.
    pub async fn start_rollout(
        &self,
        runtime_id: &str,
        endpoint: &str,
        req: StartRollout,
    ) -> Result<RolloutStarted, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.mutable_state_for_rollout(runtime_id, endpoint).await?;
        let live = st.live()?;
        let StartRollout {
            to_version: to,
            spec,
        } = req;
        if to == live {
            return Err(ApiError::field(
                "toVersion",
                format!("version {to} is already the live version of {endpoint}"),
            ));
        }
        self.ready_version(&st.runtime.id, to, "toVersion").await?;
        if self
            .active_rollout(&st.runtime.id, &st.endpoint.name)
            .await?
            .is_some()
        {
            return Err(ApiError::conflict(format!(
                "endpoint {endpoint} already has a rollout in progress; abort or promote it first"
            )));
        }
        let caller = Caller::current();
        let now = now_millis();
        let row = RolloutRow {
            id: format!("ro-{}", random_alnum(10)),
            runtime_id: st.runtime.id.clone(),
            endpoint: st.endpoint.name.clone(),
            from_version: live,
            to_version: to,
            state: RolloutState::Running.as_str().into(),
            step_index: 0,
            step_started_at: now,
            spec: serde_json::to_value(&spec).map_err(|e| {
                ApiError::internal_because(format_args!("encoding rollout settings: {e}"))
            })?,
            analysis: None,
            reason: None,
            created_by: caller.actor.clone(),
            created_at: now,
            updated_at: now,
        };
        let next = Next {
            live,
            target: to,
            weights: step_weights(live, to, spec.steps[0]),
            rules: st.policy.rules.clone(),
        };
        let mut writes = self.transition(&st, &next, self.drain_ms(spec.drain_seconds), now);
        let arn = self
            .inner
            .partition
            .endpoint_arn(&st.runtime.id, &st.endpoint.name);
        writes.push(Write::InsertRollout(row.clone()));
        writes.push(audit::entry(
            "rollout.start",
            &arn,
            Value::Null,
            record(&row),
        ));
        match self.inner.store.apply(writes).await {
            Ok(()) => {}
            Err(berth_store::Error::AlreadyExists(_)) => {
                return Err(ApiError::conflict(format!(
                    "endpoint {endpoint} already has a rollout in progress"
                )));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(runtime_id = %st.runtime.id, endpoint = %st.endpoint.name, from = live, to, rollout = %row.id, "rollout started");
        // Warming may start sandboxes: slow work stays outside the write lock.
        drop(_g);
        self.warm(&st.runtime, &[live, to].into()).await;
        Ok(RolloutStarted {
            rollout: body(&row),
        })
    }

    async fn mutable_state_for_rollout(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<EndpointState, ApiError> {
        if endpoint == berth_types::records::DEFAULT_ENDPOINT {
            return Err(ApiError::field(
                "endpointName",
                "the DEFAULT endpoint always serves the latest version; create a named endpoint to roll out",
            ));
        }
        self.endpoint_state(runtime_id, endpoint).await
    }

    /// The endpoint's rollout in progress, else its latest one, with recent history.
    pub async fn rollout_status(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<RolloutStatus, ApiError> {
        let st = self.endpoint_state(runtime_id, endpoint).await?;
        let recent = self
            .inner
            .store
            .rollouts(&st.runtime.id, &st.endpoint.name, 10)
            .await
            .map_err(internal)?;
        Ok(RolloutStatus {
            rollout: recent.first().map(body),
            history: recent.iter().skip(1).map(body).collect(),
            traffic: self.traffic_body(&st).await?,
        })
    }

    /// Pauses, resumes, aborts or promotes the endpoint's rollout in progress.
    pub async fn command_rollout(
        &self,
        runtime_id: &str,
        endpoint: &str,
        command: Command,
    ) -> Result<RolloutStatus, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let st = self.endpoint_state(runtime_id, endpoint).await?;
        let r = self
            .active_rollout(&st.runtime.id, &st.endpoint.name)
            .await?
            .ok_or_else(|| {
                ApiError::not_found(format!("endpoint {endpoint} has no rollout in progress"))
            })?;
        let caller = Caller::current();
        let state = RolloutState::parse(&r.state);
        let now = now_millis();
        let writes = match (command, state) {
            (Command::Pause, Some(RolloutState::Running)) => {
                self.rollout_update(&r, &caller, command.action(), now, |r| {
                    r.state = RolloutState::Paused.as_str().into()
                })
            }
            (Command::Resume, Some(RolloutState::Paused)) => {
                self.rollout_update(&r, &caller, command.action(), now, |r| {
                    r.state = RolloutState::Running.as_str().into();
                    r.step_started_at = now;
                })
            }
            (Command::Pause, _) | (Command::Resume, _) => {
                let want = if command == Command::Pause {
                    "RUNNING"
                } else {
                    "PAUSED"
                };
                return Err(ApiError::conflict(format!(
                    "the rollout is {}; only a {want} rollout can be {}d",
                    r.state,
                    if command == Command::Pause {
                        "pause"
                    } else {
                        "resume"
                    }
                )));
            }
            (Command::Abort, _) => self.end_rollout(
                &st,
                &r,
                false,
                &format!("aborted by {}", caller.actor),
                None,
                &caller,
                now,
            )?,
            (Command::Promote, _) => self.end_rollout(
                &st,
                &r,
                true,
                &format!("promoted by {}", caller.actor),
                None,
                &caller,
                now,
            )?,
        };
        match self.inner.store.apply(writes).await {
            Ok(()) => {}
            Err(berth_store::Error::Precondition(_)) => {
                return Err(ApiError::conflict(format!(
                    "the rollout of endpoint {endpoint} changed meanwhile; read its status and retry"
                )));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(runtime_id = %st.runtime.id, endpoint = %st.endpoint.name, rollout = %r.id, ?command, "rollout command");
        // Warming may start sandboxes: slow work stays outside the write lock.
        drop(_g);
        if command == Command::Abort {
            self.warm(&st.runtime, &[r.from_version].into()).await;
        }
        self.rollout_status(runtime_id, endpoint).await
    }

    fn rollout_update(
        &self,
        r: &RolloutRow,
        caller: &Caller,
        action: &str,
        now: EpochMillis,
        f: impl FnOnce(&mut RolloutRow),
    ) -> Vec<Write> {
        let mut next = r.clone();
        f(&mut next);
        next.updated_at = now;
        let arn = self
            .inner
            .partition
            .endpoint_arn(&r.runtime_id, &r.endpoint);
        let audit = audit::entry_as(caller, action, &arn, record(r), record(&next));
        vec![
            Write::UpdateRollout {
                rollout: next,
                expect: RolloutGuard::of(r),
            },
            audit,
        ]
    }

    /// Completes (`promote`) or aborts a rollout: the endpoint settles on the new or the stable
    /// version, the other drains.
    #[allow(clippy::too_many_arguments)]
    fn end_rollout(
        &self,
        st: &EndpointState,
        r: &RolloutRow,
        promote: bool,
        reason: &str,
        analysis: Option<Value>,
        caller: &Caller,
        now: EpochMillis,
    ) -> Result<Vec<Write>, ApiError> {
        let spec = spec_of(r)?;
        let v = if promote {
            r.to_version
        } else {
            r.from_version
        };
        let next = Next {
            live: v,
            target: v,
            weights: vec![],
            rules: st.policy.rules.clone(),
        };
        let mut writes = self.transition(st, &next, self.drain_ms(spec.drain_seconds), now);
        let mut ended = r.clone();
        ended.state = if promote {
            RolloutState::Completed
        } else {
            RolloutState::Aborted
        }
        .as_str()
        .into();
        ended.reason = Some(reason.to_owned());
        if analysis.is_some() {
            ended.analysis = analysis;
        }
        if promote {
            ended.step_index = spec.steps.len().saturating_sub(1) as u32;
        }
        ended.updated_at = now;
        let arn = self
            .inner
            .partition
            .endpoint_arn(&r.runtime_id, &r.endpoint);
        let action = if promote {
            if caller.actor == audit::CONTROLLER_ACTOR {
                "rollout.complete"
            } else {
                "rollout.promote"
            }
        } else {
            "rollout.abort"
        };
        writes.push(audit::entry_as(
            caller,
            action,
            &arn,
            record(r),
            record(&ended),
        ));
        writes.push(Write::UpdateRollout {
            rollout: ended,
            expect: RolloutGuard::of(r),
        });
        Ok(writes)
    }

    /// One analysis of a running rollout at `now`: abort on a breach, advance (or complete) when
    /// the step's interval has passed and the analysis passes, otherwise record why it holds.
    ///
    /// The signals are judged without the write lock (an evaluator may be slow: a model call, a
    /// query to a metrics system), so every other control-plane write goes on meanwhile. The
    /// verdict is then committed under the lock against a fresh read, and the rollout row is
    /// written conditionally ([`Write::UpdateRollout`]): if an operator paused, aborted or
    /// promoted it, or another node analysed it, since it was read, the verdict is dropped and
    /// the next tick judges the rollout as it is now.
    pub(crate) async fn analyse_rollout(&self, id: &str, now: EpochMillis) -> Result<(), ApiError> {
        let store = &self.inner.store;
        let Some(r) = store.rollout(id).await.map_err(internal)? else {
            return Ok(());
        };
        if RolloutState::parse(&r.state) != Some(RolloutState::Running) {
            return Ok(());
        }
        let spec = spec_of(&r)?;
        let opts = &self.inner.options;
        let interval_ms =
            i64::try_from(spec.interval_seconds.saturating_mul(opts.second_ms)).unwrap_or(i64::MAX);
        let health = &self.inner.health;
        let from = health.bucket_of(r.step_started_at);
        let rows = store
            .health(&r.runtime_id, &r.endpoint, from, now.saturating_add(1))
            .await
            .map_err(internal)?;
        let canary = Summary::of(rows.iter().filter(|h| h.version == r.to_version));
        let mut stable = Summary::of(rows.iter().filter(|h| h.version == r.from_version));
        let since = r.created_at.saturating_sub(interval_ms);
        if stable.invocations < spec.min_invocations {
            // At high canary weights the stable version gets little new traffic in one step;
            // compare against it over the whole rollout and one interval before it.
            let wide = health.bucket_of(since);
            let rows = store
                .health(&r.runtime_id, &r.endpoint, wide, now.saturating_add(1))
                .await
                .map_err(internal)?;
            stable = Summary::of(rows.iter().filter(|h| h.version == r.from_version));
        }
        let window = Window {
            runtime_id: r.runtime_id.clone(),
            endpoint: r.endpoint.clone(),
            stable_version: r.from_version,
            canary_version: r.to_version,
            from,
            to: now,
            since,
            canary,
            stable,
            spec: spec.clone(),
        };
        // No lock is held here: this is the slow part.
        let analysis = analyse(&window, &opts.signals).await;
        let recorded = analysis_body(&window, &analysis, now);

        let _g = self.inner.write_lock.lock().await;
        // Re-read under the lock: an operator may have acted while the signals were judged.
        let Some(fresh) = store.rollout(id).await.map_err(internal)? else {
            return Ok(());
        };
        if RolloutGuard::of(&fresh) != RolloutGuard::of(&r) {
            debug!(rollout = %r.id, "rollout changed during analysis; judging it again next tick");
            return Ok(());
        }
        let st = self.endpoint_state(&r.runtime_id, &r.endpoint).await?;
        let caller = Caller::controller();
        let writes = match &analysis.verdict {
            Verdict::Breach(reason) => {
                warn!(rollout = %r.id, runtime_id = %r.runtime_id, endpoint = %r.endpoint, %reason, "rollout aborted by analysis");
                self.end_rollout(
                    &st,
                    &r,
                    false,
                    &format!("analysis: {reason}"),
                    Some(recorded),
                    &caller,
                    now,
                )?
            }
            Verdict::Pass if now.saturating_sub(r.step_started_at) >= interval_ms => {
                let next_step = r.step_index + 1;
                if next_step as usize >= spec.steps.len() {
                    info!(rollout = %r.id, runtime_id = %r.runtime_id, endpoint = %r.endpoint, "rollout completed");
                    self.end_rollout(
                        &st,
                        &r,
                        true,
                        "all steps passed",
                        Some(recorded),
                        &caller,
                        now,
                    )?
                } else {
                    let w = weight_at(&spec, next_step);
                    info!(rollout = %r.id, runtime_id = %r.runtime_id, endpoint = %r.endpoint, weight = w, "rollout advanced");
                    let live = st.live()?;
                    let next = Next {
                        live,
                        target: r.to_version,
                        weights: step_weights(r.from_version, r.to_version, w),
                        rules: st.policy.rules.clone(),
                    };
                    let mut writes =
                        self.transition(&st, &next, self.drain_ms(spec.drain_seconds), now);
                    writes.extend(
                        self.rollout_update(&r, &caller, "rollout.advance", now, |x| {
                            x.step_index = next_step;
                            x.step_started_at = now;
                            x.analysis = Some(recorded);
                            x.reason = None;
                        }),
                    );
                    writes
                }
            }
            verdict => {
                // Holding (inconclusive, or passing within the interval): only the status changes,
                // which is not a mutation worth an audit entry.
                let mut held = r.clone();
                held.analysis = Some(recorded);
                held.reason = match verdict {
                    Verdict::Inconclusive(why) => Some(format!("holding: {why}")),
                    _ => None,
                };
                held.updated_at = now;
                vec![Write::UpdateRollout {
                    rollout: held,
                    expect: RolloutGuard::of(&r),
                }]
            }
        };
        match store.apply(writes).await {
            Ok(()) => Ok(()),
            // Another node (or an operator through it) wrote the rollout first.
            Err(berth_store::Error::Precondition(_)) => {
                debug!(rollout = %r.id, "rollout changed before the verdict was written; judging it again next tick");
                Ok(())
            }
            Err(e) => Err(internal(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_print() {
        assert_eq!(Threshold::parse("0.05"), Ok(Threshold::Absolute(0.05)));
        assert_eq!(
            Threshold::parse("stable+0.02"),
            Ok(Threshold::StablePlus(0.02))
        );
        assert_eq!(
            Threshold::parse("stable * 1.5"),
            Ok(Threshold::StableTimes(1.5))
        );
        assert!(Threshold::parse("stable/2").is_err());
        assert!(Threshold::parse("-1").is_err());
        assert_eq!(Threshold::StableTimes(1.5).to_string(), "stable*1.5");
        assert_eq!(Threshold::StablePlus(0.02).limit(Some(0.01)), Some(0.03));
        assert_eq!(Threshold::StablePlus(0.02).limit(None), None);
    }

    #[test]
    fn specs_take_defaults_and_refuse_bad_steps() {
        let s = RolloutSpec::from_input(&json!({"toVersion": 2})).unwrap();
        assert_eq!(s.steps, DEFAULT_STEPS);
        assert_eq!(s.max_error_rate, Some(Threshold::Absolute(0.05)));
        let s = RolloutSpec::from_input(
            &json!({"steps": [50, 100], "maxP99Ms": "stable*2", "maxErrorRate": 0.1}),
        )
        .unwrap();
        assert_eq!(s.max_p99_ms, Some(Threshold::StableTimes(2.0)));
        for bad in [
            json!({"steps": [50]}),
            json!({"steps": [50, 25, 100]}),
            json!({"steps": [0, 100]}),
            json!({"intervalSeconds": 0}),
            json!({"maxErrorRate": 2}),
        ] {
            assert!(RolloutSpec::from_input(&bad).is_err(), "{bad}");
        }
    }

    fn window(canary: (u64, u64), stable: (u64, u64), spec: RolloutSpec) -> Window {
        let sum = |(n, e): (u64, u64)| Summary {
            invocations: n,
            errors: e,
            error_rate: if n == 0 { 0.0 } else { e as f64 / n as f64 },
            ..Summary::default()
        };
        Window {
            runtime_id: "rt".into(),
            endpoint: "prod".into(),
            stable_version: 1,
            canary_version: 2,
            from: 0,
            to: 1,
            since: 0,
            canary: sum(canary),
            stable: sum(stable),
            spec,
        }
    }

    #[tokio::test]
    async fn analysis_holds_passes_and_breaches() {
        let spec =
            RolloutSpec::from_input(&json!({"minInvocations": 10, "maxErrorRate": "stable+0.05"}))
                .unwrap();
        let sig = builtin_signals();
        let a = analyse(&window((5, 0), (100, 0), spec.clone()), &sig).await;
        assert!(matches!(a.verdict, Verdict::Inconclusive(_)), "{a:?}");
        let a = analyse(&window((20, 1), (100, 2), spec.clone()), &sig).await;
        assert_eq!(a.verdict, Verdict::Pass);
        let a = analyse(&window((20, 6), (100, 2), spec.clone()), &sig).await;
        assert!(
            matches!(&a.verdict, Verdict::Breach(r) if r.starts_with("error-rate")),
            "{a:?}"
        );
        // Relative thresholds need stable data.
        let a = analyse(&window((20, 6), (3, 0), spec), &sig).await;
        assert!(matches!(a.verdict, Verdict::Inconclusive(_)), "{a:?}");
    }
}
