//! Online evaluation: every enabled online evaluation config scores a sample of its endpoint's
//! finished sessions, off the invocation path, and stores the scores beside the traces.
//!
//! ```text
//! tick: for each ENABLED config (rule, dataSourceConfig, evaluators)
//!   endpoint   <- logGroupNames "/aws/bedrock-agentcore/runtimes/<runtimeId>-<endpoint>",
//!                 else serviceNames "<runtimeName>.<endpoint>"
//!   sessions   <- traces quiet for sessionTimeoutMinutes (+ an export grace: agents' spans arrive
//!                 up to their batch processor's delay after they end), after the config's cursor
//!   per session: sampled? (sha256(config, session) against samplingPercentage) and filters match?
//!                -> documents -> Evaluate with each evaluator -> scores (one transaction)
//!                -> cursor := this session (so a restart resumes after it)
//! ```
//!
//! A session is taken once: sampling is a deterministic function of the config and the session,
//! so a session skipped by sampling stays skipped, and the cursor moves past it either way.
//! Scores are stored before the cursor moves; a crash between the two scores that session again
//! after the restart (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::evaluation::{EvaluateInput, EvaluationInput};
use berth_api::evaluation_resources::{
    DataSourceConfig, ExecutionStatus, Filter, FilterOperator, FilterValue, OnlineConfig,
    OnlineConfigStatus,
};
use berth_trace::TraceStore;
use berth_trace::online::{OnlineCursor, SessionFeed, session_documents};
use berth_trace::scores::{Score, ScoreStore};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::evaluate::{CodeRunner, Evaluator, evaluate};
use crate::judge::Judge;
use crate::resources::Resources;

/// How online evaluation runs.
#[derive(Debug, Clone)]
pub struct OnlineOptions {
    /// How often configs are looked at.
    pub tick: Duration,
    /// How long one of `sessionTimeoutMinutes`' minutes is, in ms (60 000; tests compress it,
    /// as `--rollout-second-ms` compresses rollouts).
    pub minute_ms: u64,
    /// Sessions a config takes per tick at most.
    pub batch: u32,
    /// Added to every session timeout: how late an agent's spans may arrive after they ended
    /// (ADOT's and the OTel SDK's batch processors export every 5 s), so a session is not scored
    /// before its agent's spans are in.
    pub export_grace: Duration,
}

impl Default for OnlineOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            minute_ms: 60_000,
            batch: 100,
            export_grace: Duration::from_secs(10),
        }
    }
}

/// AgentCore's default when a config sets no `sessionConfig`.
const DEFAULT_SESSION_TIMEOUT_MINUTES: u64 = 15;

/// Finds a runtime's id by its name (`serviceNames` name runtimes by name).
#[async_trait]
pub trait RuntimeNames: Send + Sync + 'static {
    async fn runtime_id(&self, name: &str) -> Result<Option<String>, ApiError>;
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Sessions taken (sampled or not).
    pub sessions: u64,
    /// Sessions scored.
    pub scored_sessions: u64,
    /// Scores stored (errored ones included).
    pub scores: u64,
}

/// What online evaluation reads and writes.
#[derive(Clone)]
pub struct OnlineStores {
    /// A session's spans and log records.
    pub traces: Arc<dyn TraceStore>,
    /// Finished sessions and each config's cursor.
    pub feed: Arc<dyn SessionFeed>,
    /// Where the scores go.
    pub scores: Arc<dyn ScoreStore>,
}

/// The online evaluator. Cheap to clone.
#[derive(Clone)]
pub struct Online {
    resources: Resources,
    traces: Arc<dyn TraceStore>,
    feed: Arc<dyn SessionFeed>,
    scores: Arc<dyn ScoreStore>,
    runtimes: Arc<dyn RuntimeNames>,
    judge: Judge,
    code: Arc<dyn CodeRunner>,
    options: OnlineOptions,
}

impl Online {
    pub fn new(
        resources: Resources,
        stores: OnlineStores,
        runtimes: Arc<dyn RuntimeNames>,
        judge: Judge,
        code: Arc<dyn CodeRunner>,
        options: OnlineOptions,
    ) -> Self {
        let OnlineStores {
            traces,
            feed,
            scores,
        } = stores;
        Self {
            resources,
            traces,
            feed,
            scores,
            runtimes,
            judge,
            code,
            options,
        }
    }

    /// Ticks until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let run = self.tick(berth_trace::now_ns());
            let report = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = run => r,
            };
            match report {
                Ok(r) if r.scores > 0 => {
                    info!(
                        sessions = r.scored_sessions,
                        scores = r.scores,
                        "online evaluation"
                    );
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "online evaluation tick failed"),
            }
        }
    }

    /// One pass over every enabled config at `now_ns`.
    pub async fn tick(&self, now_ns: i64) -> Result<TickReport, ApiError> {
        let mut report = TickReport::default();
        let mut evaluators: HashMap<String, Result<Evaluator, String>> = HashMap::new();
        for config in self.resources.list_online_configs().await? {
            if config.execution_status != ExecutionStatus::Enabled
                || config.status != OnlineConfigStatus::Active
            {
                continue;
            }
            let id = config.online_evaluation_config_id.clone();
            if let Err(e) = self
                .config_tick(&config, now_ns, &mut evaluators, &mut report)
                .await
            {
                warn!(config = %id, error = %e, "online evaluation config failed this tick");
            }
        }
        Ok(report)
    }

    async fn config_tick(
        &self,
        config: &OnlineConfig,
        now_ns: i64,
        evaluators: &mut HashMap<String, Result<Evaluator, String>>,
        report: &mut TickReport,
    ) -> Result<(), ApiError> {
        let id = &config.online_evaluation_config_id;
        let Some((runtime_id, endpoint)) = endpoint_of(config, &*self.runtimes).await? else {
            debug!(config = %id, "online evaluation config names no runtime Berth has");
            return Ok(());
        };
        let minutes = config
            .rule
            .session_config
            .as_ref()
            .map_or(DEFAULT_SESSION_TIMEOUT_MINUTES, |s| {
                u64::from(s.session_timeout_minutes)
            });
        let grace_ms = u64::try_from(self.options.export_grace.as_millis()).unwrap_or(u64::MAX);
        let quiet_ns = i64::try_from(
            minutes
                .saturating_mul(self.options.minute_ms)
                .saturating_add(grace_ms),
        )
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
        let quiet_before = now_ns.saturating_sub(quiet_ns);
        let mut cursor = match self.feed.online_cursor(id).await.map_err(store)? {
            Some(c) => c,
            // Sessions that ended before the config existed are history, not its sample.
            None => OnlineCursor {
                ended_ns: config.created_at.saturating_mul(1_000_000),
                ..OnlineCursor::default()
            },
        };
        let sessions = self
            .feed
            .finished_sessions(
                &runtime_id,
                &endpoint,
                &cursor,
                quiet_before,
                self.options.batch,
            )
            .await
            .map_err(store)?;
        let pct = config.rule.sampling_config.sampling_percentage;
        let source = format!("online:{id}");
        for s in sessions {
            report.sessions += 1;
            if sampled(id, &s.session_id, pct) {
                let docs = session_documents(&*self.traces, &s.runtime_id, &s.session_id)
                    .await
                    .map_err(store)?;
                if matches_filters(config.rule.filters.as_deref().unwrap_or_default(), &docs) {
                    let mut scores = Vec::new();
                    for e in config.evaluators.iter().flatten() {
                        let evaluator = match evaluators.get(e.id()) {
                            Some(r) => r.clone(),
                            None => {
                                let r = self.resources.resolve(e.id()).await.map_err(|x| x.message);
                                evaluators.insert(e.id().to_owned(), r.clone());
                                r
                            }
                        };
                        scores.extend(self.score(evaluator, &source, &s, &docs, now_ns).await);
                    }
                    self.scores.insert_scores(&scores).await.map_err(store)?;
                    report.scored_sessions += 1;
                    report.scores += scores.len() as u64;
                }
            }
            cursor = OnlineCursor {
                ended_ns: s.ended_ns,
                runtime_id: s.runtime_id.clone(),
                session_id: s.session_id.clone(),
            };
            self.feed
                .set_online_cursor(id, &cursor)
                .await
                .map_err(store)?;
        }
        Ok(())
    }

    async fn score(
        &self,
        evaluator: Result<Evaluator, String>,
        source: &str,
        s: &berth_trace::online::FinishedSession,
        docs: &[Value],
        now_ns: i64,
    ) -> Vec<Score> {
        let base = |evaluator_id: &str, name: &str| Score {
            at_ns: now_ns,
            ended_ns: s.ended_ns,
            source: source.to_owned(),
            evaluator_id: evaluator_id.to_owned(),
            evaluator_name: name.to_owned(),
            dimension: None,
            runtime_id: s.runtime_id.clone(),
            endpoint: s.endpoint.clone(),
            version: s.version,
            session_id: s.session_id.clone(),
            trace_id: None,
            span_id: None,
            value: None,
            label: None,
            explanation: None,
            error: None,
            input_tokens: 0,
            output_tokens: 0,
        };
        let evaluator = match evaluator {
            Ok(e) => e,
            Err(e) => {
                return vec![Score {
                    error: Some(format!("evaluator unavailable: {e}")),
                    ..base("unknown", "unknown")
                }];
            }
        };
        let input = EvaluateInput {
            evaluation_input: EvaluationInput::SessionSpans(docs.to_vec()),
            evaluation_target: None,
            evaluation_reference_inputs: None,
        };
        match evaluate(&evaluator, &input, &*self.code, &self.judge).await {
            Ok(out) => out
                .evaluation_results
                .into_iter()
                .map(|r| {
                    let ctx = r.context.span();
                    let usage = r.token_usage.as_ref();
                    Score {
                        dimension: r.evaluation_dimension_name.clone(),
                        trace_id: ctx.trace_id.clone(),
                        span_id: ctx.span_id.clone(),
                        value: r.value,
                        label: r.label.clone(),
                        explanation: r.explanation.clone(),
                        error: r.error_message.clone().or(r.error_code.clone()),
                        input_tokens: usage
                            .map_or(0, |u| u64::try_from(u.input_tokens).unwrap_or(0)),
                        output_tokens: usage
                            .map_or(0, |u| u64::try_from(u.output_tokens).unwrap_or(0)),
                        ..base(&r.evaluator_id, &r.evaluator_name)
                    }
                })
                .collect(),
            Err(e) => vec![Score {
                error: Some(e.message.clone()),
                ..base(&evaluator.id, &evaluator.name)
            }],
        }
    }
}

/// The runtime id and endpoint a config's data source names: a runtime's own log group
/// (`/aws/bedrock-agentcore/runtimes/<runtimeId>-<endpoint>`), else a service name
/// (`<runtimeName>.<endpoint>`, the agent's `service.name`).
pub async fn endpoint_of(
    config: &OnlineConfig,
    runtimes: &dyn RuntimeNames,
) -> Result<Option<(String, String)>, ApiError> {
    let DataSourceConfig::CloudWatchLogs(cw) = &config.data_source_config;
    for g in cw.log_group_names.iter().flatten() {
        if let Some(rest) = g.strip_prefix("/aws/bedrock-agentcore/runtimes/")
            && let Some((runtime, endpoint)) = split_group(rest)
        {
            return Ok(Some((runtime.to_owned(), endpoint.to_owned())));
        }
    }
    for s in &cw.service_names {
        if let Some((name, endpoint)) = s.split_once('.')
            && let Some(id) = runtimes.runtime_id(name).await?
        {
            return Ok(Some((id, endpoint.to_owned())));
        }
    }
    Ok(None)
}

fn store(e: berth_trace::Error) -> ApiError {
    ApiError::internal_because(format_args!("{e}"))
}

/// `<runtimeId>-<endpoint>`: the runtime id is `<name>-<10 alphanumerics>`.
fn split_group(rest: &str) -> Option<(&str, &str)> {
    let (name, tail) = rest.split_once('-')?;
    let (suffix, endpoint) = tail.split_once('-')?;
    (suffix.len() == 10 && !endpoint.is_empty() && !name.is_empty())
        .then(|| (&rest[..name.len() + 1 + suffix.len()], endpoint))
}

/// Whether a config samples a session: the first 8 bytes of sha256(config id, session id) as a
/// fraction of 2^64, under `percentage` / 100. Deterministic, so every node agrees.
pub fn sampled(config_id: &str, session_id: &str, percentage: f64) -> bool {
    if percentage >= 100.0 {
        return true;
    }
    let mut h = Sha256::new();
    h.update(config_id.as_bytes());
    h.update([0]);
    h.update(session_id.as_bytes());
    let d = h.finalize();
    let x = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    (x as f64 / u64::MAX as f64) * 100.0 < percentage
}

/// Whether the session passes every filter: a filter holds when some span or log record of
/// the session has the attribute with a value the operator accepts.
pub fn matches_filters(filters: &[Filter], docs: &[Value]) -> bool {
    filters.iter().all(|f| {
        docs.iter()
            .filter_map(|d| d.get("attributes").and_then(|a| a.get(&f.key)))
            .any(|v| holds(f.operator, v, &f.value))
    })
}

fn holds(op: FilterOperator, v: &Value, want: &FilterValue) -> bool {
    use FilterOperator as O;
    match want {
        FilterValue::String(w) => {
            let Some(s) = v
                .as_str()
                .map(str::to_owned)
                .or_else(|| (v.is_number() || v.is_boolean()).then(|| v.to_string()))
            else {
                return false;
            };
            match op {
                O::Equals => s == *w,
                O::NotEquals => s != *w,
                O::Contains => s.contains(w.as_str()),
                O::NotContains => !s.contains(w.as_str()),
                O::GreaterThan => s.as_str() > w.as_str(),
                O::LessThan => s.as_str() < w.as_str(),
                O::GreaterThanOrEqual => s.as_str() >= w.as_str(),
                O::LessThanOrEqual => s.as_str() <= w.as_str(),
            }
        }
        FilterValue::Double(w) => {
            let Some(x) = v
                .as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            else {
                return false;
            };
            match op {
                O::Equals => x == *w,
                O::NotEquals => x != *w,
                O::GreaterThan => x > *w,
                O::LessThan => x < *w,
                O::GreaterThanOrEqual => x >= *w,
                O::LessThanOrEqual => x <= *w,
                O::Contains | O::NotContains => false,
            }
        }
        FilterValue::Boolean(w) => {
            let Some(b) = v
                .as_bool()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            else {
                return false;
            };
            match op {
                O::Equals => b == *w,
                O::NotEquals => b != *w,
                _ => false,
            }
        }
    }
}

#[async_trait]
impl RuntimeNames for berth_control::Control {
    async fn runtime_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        let mut next_token = None;
        loop {
            let page = self
                .list_runtimes(berth_api::control::ops::ListAgentRuntimes {
                    max_results: Some(100),
                    next_token,
                })
                .await?;
            if let Some(r) = page
                .agent_runtimes
                .iter()
                .find(|r| r.agent_runtime_name == name)
            {
                return Ok(Some(r.agent_runtime_id.clone()));
            }
            match page.next_token {
                Some(t) => next_token = Some(t),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sampling_is_deterministic_and_near_its_percentage() {
        assert!(sampled("c", "s", 100.0));
        let n = (0..10_000)
            .filter(|i| sampled("cfg", &format!("session-{i}"), 25.0))
            .count();
        assert!((2_300..2_700).contains(&n), "{n}");
        assert_eq!(sampled("cfg", "x", 50.0), sampled("cfg", "x", 50.0));
    }

    #[test]
    fn runtime_groups_split_into_id_and_endpoint() {
        assert_eq!(
            split_group("shop-abcdefghij-DEFAULT"),
            Some(("shop-abcdefghij", "DEFAULT"))
        );
        assert_eq!(
            split_group("my_agent-ABCDEFGHIJ-prod_eu"),
            Some(("my_agent-ABCDEFGHIJ", "prod_eu"))
        );
        assert_eq!(split_group("shop-short-DEFAULT"), None);
    }

    #[test]
    fn filters_need_every_key_on_some_document() {
        let f: Vec<Filter> = serde_json::from_value(json!([
            {"key": "gen_ai.request.model", "operator": "Equals", "value": {"stringValue": "m1"}},
            {"key": "latency", "operator": "GreaterThan", "value": {"doubleValue": 10.0}},
        ]))
        .unwrap();
        let docs = [
            json!({"attributes": {"gen_ai.request.model": "m1"}}),
            json!({"attributes": {"latency": 12}}),
        ];
        assert!(matches_filters(&f, &docs));
        assert!(!matches_filters(&f, &docs[..1]));
        assert!(matches_filters(&[], &[]));
    }
}
