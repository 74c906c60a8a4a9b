//! Drift alerts: the version an endpoint serves is watched, per online evaluator, for its scores
//! falling with no deploy. The version's first scores are its baseline, its latest ones the
//! recent window (counts, not clock windows: a quiet endpoint neither alerts nor forgets), and
//! [`crate::drift::decide`] judges the two. A drift raises one alert per (endpoint, version,
//! evaluator): a log line, an audit entry (`DriftDetected`, with the evidence), a webhook POST
//! when one is configured and, when the operator enabled it, a rollback of the endpoint to its
//! previous version (audited as any rollback, by `drift-watch`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use berth_api::ApiError;
use berth_api::evaluation_resources::{ExecutionStatus, OnlineConfigStatus};
use berth_control::Control;
use berth_control::audit::Caller;
use berth_control::traffic::Rollback;
use berth_trace::scores::{ScoreFilter, ScoreStore};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::drift::{self, DriftPolicy, Verdict};
use crate::online::{RuntimeNames, endpoint_of};
use crate::resources::Resources;

/// The actor drift rollbacks and alerts are audited as.
pub const DRIFT_ACTOR: &str = "drift-watch";

/// How drift is watched.
#[derive(Debug, Clone)]
pub struct DriftOptions {
    /// What counts as drift; `min_count` is also the size of each window.
    pub policy: DriftPolicy,
    /// Roll the endpoint back to its previous version on drift.
    pub auto_rollback: bool,
    /// Where alerts are POSTed as JSON (best effort, 5 s timeout).
    pub webhook: Option<String>,
    /// How often endpoints are looked at.
    pub tick: Duration,
}

/// The drift watcher. Cheap to clone.
#[derive(Clone)]
pub struct DriftWatch {
    inner: Arc<Inner>,
}

struct Inner {
    control: Control,
    resources: Resources,
    scores: Arc<dyn ScoreStore>,
    runtimes: Arc<dyn RuntimeNames>,
    options: DriftOptions,
    http: reqwest::Client,
    /// (runtime, endpoint, version, evaluator) already alerted on.
    fired: Mutex<HashSet<(String, String, u32, String)>>,
}

impl DriftWatch {
    pub fn new(
        control: Control,
        resources: Resources,
        scores: Arc<dyn ScoreStore>,
        runtimes: Arc<dyn RuntimeNames>,
        options: DriftOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                control,
                resources,
                scores,
                runtimes,
                options,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                fired: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Ticks until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.options.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.tick().await {
                warn!(error = %e, "drift watch tick failed");
            }
        }
    }

    /// One look at every endpoint an enabled online evaluation config scores; returns the
    /// alerts raised.
    pub async fn tick(&self) -> Result<Vec<Value>, ApiError> {
        let i = &self.inner;
        let mut raised = Vec::new();
        for config in i.resources.list_online_configs().await? {
            if config.execution_status != ExecutionStatus::Enabled
                || config.status != OnlineConfigStatus::Active
            {
                continue;
            }
            let Some((runtime_id, endpoint)) = endpoint_of(&config, &*i.runtimes).await? else {
                continue;
            };
            let Some(version) = self.live_version(&runtime_id, &endpoint).await? else {
                continue;
            };
            let source = format!("online:{}", config.online_evaluation_config_id);
            for e in config.evaluators.iter().flatten() {
                let key = (
                    runtime_id.clone(),
                    endpoint.clone(),
                    version,
                    e.id().to_owned(),
                );
                if i.fired.lock().await.contains(&key) {
                    continue;
                }
                let n = i.options.policy.min_count.max(1);
                let (oldest, newest) = i
                    .scores
                    .ends(
                        &ScoreFilter {
                            runtime_id: runtime_id.clone(),
                            endpoint: endpoint.clone(),
                            version: Some(version),
                            evaluator_id: Some(e.id().to_owned()),
                            source: Some(source.clone()),
                            from_ns: 0,
                            to_ns: i64::MAX,
                        },
                        u32::try_from(n).unwrap_or(u32::MAX),
                    )
                    .await
                    .map_err(|e| ApiError::internal_because(format_args!("{e}")))?;
                let (baseline, recent) = (drift::points(&oldest), drift::points(&newest));
                if baseline.len() < n || recent.len() < n {
                    continue;
                }
                let d = drift::decide(&i.options.policy, &baseline, &recent);
                if d.verdict != Verdict::Drift {
                    continue;
                }
                i.fired.lock().await.insert(key);
                let alert = json!({
                    "alert": "DriftDetected",
                    "runtimeId": runtime_id,
                    "endpoint": endpoint,
                    "version": version,
                    "evaluatorId": e.id(),
                    "onlineEvaluationConfigId": config.online_evaluation_config_id,
                    "drift": d,
                    "autoRollback": i.options.auto_rollback,
                });
                self.raise(&runtime_id, &endpoint, alert.clone()).await;
                raised.push(alert);
                if i.options.auto_rollback {
                    // The endpoint now serves another version: its other evaluators need not
                    // alert on this one.
                    break;
                }
            }
        }
        Ok(raised)
    }

    async fn live_version(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<Option<u32>, ApiError> {
        match self.inner.control.traffic(runtime_id, endpoint).await {
            Ok(t) => Ok(t.live_version),
            Err(e) if e.kind == berth_api::ErrorKind::ResourceNotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn raise(&self, runtime_id: &str, endpoint: &str, alert: Value) {
        let i = &self.inner;
        error!(
            runtime = runtime_id,
            endpoint,
            version = %alert["version"],
            evaluator = %alert["evaluatorId"],
            drop = %alert["drift"]["drop"],
            "evaluation scores drifted"
        );
        let arn = i.control.partition().endpoint_arn(runtime_id, endpoint);
        let caller = Caller::new(DRIFT_ACTOR, None);
        caller
            .clone()
            .scope(i.control.audit_event("DriftDetected", &arn, alert.clone()))
            .await;
        if let Some(url) = &i.options.webhook {
            match i.http.post(url).json(&alert).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => warn!(%url, status = %r.status(), "drift webhook refused the alert"),
                Err(e) => warn!(%url, error = %e, "drift webhook unreachable"),
            }
        }
        if i.options.auto_rollback {
            let rolled = caller
                .scope(i.control.rollback(
                    runtime_id,
                    endpoint,
                    Rollback {
                        drain_seconds: None,
                    },
                ))
                .await;
            match rolled {
                Ok(t) => warn!(
                    runtime = runtime_id,
                    endpoint,
                    live = ?t.live_version,
                    "drift: endpoint rolled back"
                ),
                Err(e) => {
                    error!(runtime = runtime_id, endpoint, error = %e, "drift: rollback failed")
                }
            }
        }
    }
}
