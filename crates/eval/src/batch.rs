//! Batch evaluations (`bedrock-agentcore`): many sessions, each scored by each evaluator, off
//! the request path.
//!
//! `StartBatchEvaluation` stores the batch `PENDING` and hands it to a named background task
//! (owned by [`Batches`], cancelled on shutdown). The task selects sessions from Berth's trace
//! store (`cloudWatchLogs`: by `sessionIds`, else by `timeRange`, narrowed to spans whose
//! `service.name` is the source's `<runtimeName>.<endpointName>`) or first runs a dataset's
//! scenarios against a runtime endpoint through Berth's invoker (`datasetExecutionConfig`), then
//! calls the [`SessionEvaluator`] (the `Evaluate` operation) once per session and evaluator with
//! the session's span and log-record documents and its ground truth. Every result is written as
//! one JSON log event to `outputConfig.cloudWatchConfig` (`logGroupName`/`logStreamName`, chosen
//! by Berth when not given) in Berth's CloudWatch Logs store, where the SDK's
//! `BatchEvaluationRunner.fetch_evaluation_events` reads them with GetLogEvents. The summary
//! (`evaluationResults`) is stored after each session, so Get shows progress.
//!
//! A restart never loses a batch silently: at start, a batch still `PENDING` (nothing done yet)
//! is run, one `IN_PROGRESS` is marked `FAILED` with a reason (its log stream may already hold
//! part of its results; re-running would write them twice), one `STOPPING` becomes `STOPPED`.
//! Each batch runs under its lease (`batch/<id>`), so with several nodes only batches no live
//! node runs are recovered, by whichever node looks first ([`Batches::recover`] runs at start
//! and, with several nodes, periodically on one of them).

use crate::datasets::{Datasets, parse_version};
use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::evaluation_data::{
    AgentCoreRuntimeInvocationDetails, AgentInvocationDetails, BatchEvaluationRef,
    BatchEvaluationSummary, CloudWatchLogsSource, CloudWatchOutputConfig, DataSourceConfig,
    DatasetDetails, DatasetExecutionConfig, DatasetExecutionDetails, DeleteBatchEvaluationOutput,
    EvaluationJobResults, EvaluatorStatistics, EvaluatorSummary, GetBatchEvaluationOutput,
    InlineGroundTruth, ListBatchEvaluations, ListBatchEvaluationsOutput, OutputConfig,
    StartBatchEvaluation, StartBatchEvaluationOutput, StopBatchEvaluationOutput,
};
use berth_control::Leases;
use berth_store::eval_data::{BatchRow, EvalDataStore, TokenRow};
use berth_trace::TraceStore;
use berth_trace::logs::Logs;
use berth_types::{Partition, iso8601, now_millis};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where results go when the request names no log group.
pub const DEFAULT_LOG_GROUP: &str = "/aws/bedrock-agentcore/evaluations/batch-evaluations";
/// How long a dataset run waits for a session's spans to reach the trace store (agents export
/// them in batches, after the invocation answered).
const SPAN_WAIT: Duration = Duration::from_secs(90);
/// Statuses after which nothing runs.
const FINAL: [&str; 5] = [
    "COMPLETED",
    "COMPLETED_WITH_ERRORS",
    "FAILED",
    "STOPPED",
    "DELETING",
];

/// Scores one session with one evaluator: the `Evaluate` operation. `input` is an
/// `EvaluateRequest` body as the wire has it (`evaluationInput.sessionSpans`, optional
/// `evaluationReferenceInputs`); the answer is its `evaluationResults`.
#[async_trait]
pub trait SessionEvaluator: Send + Sync + 'static {
    /// Runs evaluator `evaluator_id` over `input`.
    async fn evaluate(&self, evaluator_id: &str, input: Value) -> Result<Vec<Value>, ApiError>;
}

/// Invokes a runtime endpoint for dataset runs, through the same invocation flow as
/// `InvokeAgentRuntime` (routing, quotas, sandbox, spans).
#[async_trait]
pub trait AgentCaller: Send + Sync + 'static {
    /// Sends `payload` to `runtime_id`'s endpoint `endpoint` in session `session_id`; returns
    /// the agent's answer.
    async fn invoke(
        &self,
        runtime_id: &str,
        endpoint: &str,
        session_id: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError>;
}

/// The batch evaluation service. Cheap to clone.
#[derive(Clone)]
pub struct Batches {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EvalDataStore>,
    traces: Arc<dyn TraceStore>,
    logs: Logs,
    datasets: Datasets,
    partition: Partition,
    evaluator: Arc<dyn SessionEvaluator>,
    caller: Arc<dyn AgentCaller>,
    /// Each batch runs under its lease (`batch/<id>`).
    leases: Leases,
    shutdown: CancellationToken,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

fn store_err(e: berth_store::Error) -> ApiError {
    match e {
        berth_store::Error::AlreadyExists("client token") => {
            ApiError::conflict("the client token was used concurrently; retry the request")
        }
        other => ApiError::internal_because(other),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("the batch evaluation does not exist")
}

/// `<runtimeId>` and `<endpoint>` of `...:runtime/<id>/runtime-endpoint/<name>`.
pub fn split_endpoint_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.split_once(":runtime/")?.1;
    let (id, endpoint) = rest.split_once("/runtime-endpoint/")?;
    Some((id, endpoint))
}

/// `<runtimeName>.<endpoint>`: the `service.name` Berth gives a runtime's agents.
fn service_name(runtime_id: &str, endpoint: &str) -> String {
    let name = runtime_id
        .rsplit_once('-')
        .map_or(runtime_id, |(name, _)| name);
    format!("{name}.{endpoint}")
}

fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// The payload of one turn: the request template with `{{input}}` replaced, or
/// `{"prompt": input}`.
fn turn_payload(template: Option<&str>, input: &Value) -> Vec<u8> {
    let text = match input {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match template {
        Some(t) if t.contains("{{input}}") => {
            // Inside a JSON string the input goes in escaped; elsewhere as JSON.
            let escaped = serde_json::to_string(&text).unwrap_or_default();
            let inner = &escaped[1..escaped.len().saturating_sub(1)];
            let quoted = "\"{{input}}\"";
            if t.contains(quoted) && !input.is_string() {
                t.replace(quoted, &input.to_string()).into_bytes()
            } else {
                t.replace("{{input}}", inner).into_bytes()
            }
        }
        Some(t) => t.as_bytes().to_vec(),
        None => match input {
            Value::Object(_) => input.to_string().into_bytes(),
            _ => json!({ "prompt": text }).to_string().into_bytes(),
        },
    }
}

/// One session to evaluate and what is known about it.
#[derive(Debug, Clone)]
struct SessionJob {
    session_id: String,
    scenario_id: Option<String>,
    ground_truth: Option<InlineGroundTruth>,
    /// Set when the session could not even be produced (a dataset scenario whose invocation
    /// failed).
    failed: Option<String>,
    /// Traces to wait for (bounded by [`SPAN_WAIT`]) before evaluating: sessions that were
    /// just run (a dataset run's, or those `evaluationMetadata` describes, as the SDK's runner
    /// sends them right after invoking) may still be exporting their spans. 0: read at once.
    wait_for: usize,
}

/// Running totals of a batch.
#[derive(Debug, Default)]
struct Tally {
    total: i64,
    completed: i64,
    failed: i64,
    ignored: i64,
    /// Per evaluator id (and dimension): sum of values, values counted, failures.
    per: BTreeMap<(String, Option<String>), (f64, i64, i64)>,
}

impl Tally {
    fn results(&self, in_progress: i64) -> EvaluationJobResults {
        EvaluationJobResults {
            number_of_sessions_completed: Some(self.completed),
            number_of_sessions_in_progress: Some(in_progress),
            number_of_sessions_failed: Some(self.failed),
            total_number_of_sessions: Some(self.total),
            number_of_sessions_ignored: Some(self.ignored),
            evaluator_summaries: Some(
                self.per
                    .iter()
                    .map(|((id, dim), (sum, n, failed))| EvaluatorSummary {
                        evaluator_id: Some(id.clone()),
                        evaluation_dimension_name: dim.clone(),
                        statistics: Some(EvaluatorStatistics {
                            average_score: (*n > 0).then(|| sum / *n as f64),
                        }),
                        total_evaluated: Some(*n),
                        total_failed: Some(*failed),
                    })
                    .collect(),
            ),
        }
    }
}

fn request_of(row: &BatchRow) -> Result<StartBatchEvaluation, ApiError> {
    serde_json::from_value(row.request.clone())
        .map_err(|e| ApiError::internal_because(format_args!("a stored batch request: {e}")))
}

fn output_of(row: &BatchRow) -> Result<GetBatchEvaluationOutput, ApiError> {
    let req = request_of(row)?;
    Ok(GetBatchEvaluationOutput {
        batch_evaluation_id: row.id.clone(),
        batch_evaluation_arn: row.arn.clone(),
        batch_evaluation_name: row.name.clone(),
        status: row.status.clone(),
        created_at: iso8601(row.created_at),
        evaluators: req.evaluators,
        data_source_config: Some(req.data_source_config),
        output_config: req.output_config,
        evaluation_results: row
            .results
            .clone()
            .and_then(|r| serde_json::from_value(r).ok()),
        error_details: row.error.clone().map(|e| vec![e]),
        description: req.description,
        updated_at: Some(iso8601(row.updated_at)),
        kms_key_arn: req.kms_key_arn,
        dataset_execution_details: row
            .execution
            .clone()
            .and_then(|e| serde_json::from_value(e).ok()),
    })
}

impl Batches {
    /// The service; nothing runs until [`Batches::recover`] or a start.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn EvalDataStore>,
        traces: Arc<dyn TraceStore>,
        logs: Logs,
        datasets: Datasets,
        partition: Partition,
        evaluator: Arc<dyn SessionEvaluator>,
        caller: Arc<dyn AgentCaller>,
        leases: Leases,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                traces,
                logs,
                datasets,
                partition,
                evaluator,
                caller,
                leases,
                shutdown,
                tasks: Mutex::new(tokio::task::JoinSet::new()),
            }),
        }
    }

    fn arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:batch-evaluation/{id}",
            self.inner.partition.region, self.inner.partition.account_id
        )
    }

    fn spawn(&self, id: String) {
        let me = self.clone();
        let shutdown = self.inner.shutdown.clone();
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished runs so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let job = format!("batch/{id}");
            let (me_ref, id_ref, shutdown) = (&me, &id, &shutdown);
            let run = |lost: CancellationToken| async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = lost.cancelled() => {}
                    _ = me_ref.run(id_ref) => {}
                }
            };
            me.inner.leases.run(&job, run).await;
        });
    }

    /// Picks up what a previous process or a dead node left (see the module docs): call at
    /// start, and with several nodes every little while on one node.
    pub async fn recover(&self) -> Result<(), ApiError> {
        let unfinished = self
            .inner
            .store
            .unfinished_batches()
            .await
            .map_err(store_err)?;
        for row in unfinished {
            if row.status == "PENDING" {
                self.spawn(row.id);
                continue;
            }
            // Running or stopping: ended only when no one runs it (its lease is free), as read
            // again under the lease (it may have finished meanwhile).
            let job = format!("batch/{}", row.id);
            let end = |_lost| self.end_abandoned(&row.id);
            if let Some(r) = self.inner.leases.run(&job, end).await {
                r?;
            }
        }
        Ok(())
    }

    async fn end_abandoned(&self, id: &str) -> Result<(), ApiError> {
        let store = &self.inner.store;
        let Some(mut row) = store.batch(id).await.map_err(store_err)? else {
            return Ok(());
        };
        match row.status.as_str() {
            "STOPPING" => row.status = "STOPPED".into(),
            "IN_PROGRESS" => {
                row.status = "FAILED".into();
                row.error = Some(
                    "the server running this batch evaluation restarted or stopped while it ran; \
                     results written before are in its log stream; start a new batch evaluation"
                        .into(),
                );
            }
            _ => return Ok(()),
        }
        warn!(batch = %row.id, status = %row.status, "batch evaluation ended by a restart");
        row.updated_at = now_millis();
        store.update_batch(&row, &FINAL).await.map_err(store_err)?;
        Ok(())
    }

    /// `StartBatchEvaluation`.
    pub async fn start(
        &self,
        mut req: StartBatchEvaluation,
    ) -> Result<StartBatchEvaluationOutput, ApiError> {
        let mut hashed = serde_json::to_value(&req)
            .map_err(|e| ApiError::internal_because(format_args!("encoding a request: {e}")))?;
        if let Some(o) = hashed.as_object_mut() {
            o.remove("clientToken");
        }
        let hash = hex::encode(Sha256::digest(hashed.to_string().as_bytes()));
        if let Some(token) = req.client_token.as_deref()
            && let Some(t) = self
                .inner
                .store
                .eval_token(token, "StartBatchEvaluation")
                .await
                .map_err(store_err)?
        {
            if t.request_hash != hash {
                return Err(ApiError::idempotent_mismatch());
            }
            return serde_json::from_value(t.response)
                .map_err(|e| ApiError::internal_because(format_args!("a stored response: {e}")));
        }
        self.check(&req).await?;
        let now = now_millis();
        let id = format!(
            "{}-{}",
            req.batch_evaluation_name,
            berth_types::random_alnum(10)
        );
        // Both keys of the output config are always answered: the SDK reads them with `[]`.
        let mut cw = req
            .output_config
            .as_ref()
            .and_then(|o| o.cloud_watch_config.clone())
            .unwrap_or_default();
        if cw.log_group_name.as_deref().is_none_or(str::is_empty) {
            cw.log_group_name = Some(DEFAULT_LOG_GROUP.into());
        }
        if cw.log_stream_name.as_deref().is_none_or(str::is_empty) {
            cw.log_stream_name = Some(id.clone());
        }
        req.output_config = Some(OutputConfig {
            cloud_watch_config: Some(cw),
        });
        let row = BatchRow {
            id: id.clone(),
            name: req.batch_evaluation_name.clone(),
            arn: self.arn(&id),
            status: "PENDING".into(),
            request: serde_json::to_value(&req)
                .map_err(|e| ApiError::internal_because(format_args!("encoding: {e}")))?,
            results: None,
            error: None,
            execution: None,
            created_at: now,
            updated_at: now,
        };
        let out = StartBatchEvaluationOutput {
            batch_evaluation_id: id.clone(),
            batch_evaluation_arn: row.arn.clone(),
            batch_evaluation_name: row.name.clone(),
            evaluators: req.evaluators.clone(),
            status: row.status.clone(),
            created_at: iso8601(now),
            output_config: req.output_config.clone(),
            tags: req.tags.clone(),
            kms_key_arn: req.kms_key_arn.clone(),
            description: req.description.clone(),
        };
        let token = req.client_token.as_ref().map(|t| TokenRow {
            token: t.clone(),
            operation: "StartBatchEvaluation".into(),
            request_hash: hash,
            response: serde_json::to_value(&out).unwrap_or(Value::Null),
            created_at: now,
        });
        self.inner
            .store
            .insert_batch(&row, token.as_ref())
            .await
            .map_err(store_err)?;
        self.spawn(id);
        Ok(out)
    }

    /// What the request must satisfy beyond the model.
    async fn check(&self, req: &StartBatchEvaluation) -> Result<(), ApiError> {
        if req.evaluators.as_ref().is_none_or(Vec::is_empty) {
            return Err(ApiError::field(
                "evaluators",
                "at least one evaluator is required (Berth runs no insights)",
            ));
        }
        match &req.data_source_config {
            DataSourceConfig::CloudWatchLogs(src) => {
                if let Some(tr) = src
                    .filter_config
                    .as_ref()
                    .and_then(|f| f.time_range.as_ref())
                {
                    for (name, t) in [("startTime", &tr.start_time), ("endTime", &tr.end_time)] {
                        if let Some(t) = t
                            && parse_time(t).is_none()
                        {
                            return Err(ApiError::field(
                                format!(
                                    "dataSourceConfig.cloudWatchLogs.filterConfig.timeRange.{name}"
                                ),
                                "not an ISO 8601 time",
                            ));
                        }
                    }
                }
            }
            DataSourceConfig::OnlineEvaluationConfigSource(_) => {
                return Err(ApiError::field(
                    "dataSourceConfig.onlineEvaluationConfigSource",
                    "batch evaluation of an online evaluation config's sessions is not supported \
                     by this server; name the sessions with cloudWatchLogs",
                ));
            }
        }
        if let Some(exec) = &req.dataset_execution_config {
            let rt = exec
                .agent_invocation
                .agent_core_runtime
                .as_ref()
                .ok_or_else(|| {
                    ApiError::field(
                        "datasetExecutionConfig.agentInvocation.agentCoreRuntime",
                        "a runtime endpoint is required",
                    )
                })?;
            if split_endpoint_arn(&rt.agent_runtime_endpoint_arn).is_none() {
                return Err(ApiError::field(
                    "datasetExecutionConfig.agentInvocation.agentCoreRuntime.agentRuntimeEndpointArn",
                    "not a runtime endpoint ARN",
                ));
            }
            let v = parse_version(exec.dataset.dataset_version.as_deref())?;
            // The dataset (and version) must exist now; its examples are read when it runs.
            self.inner
                .datasets
                .all_examples(&exec.dataset.dataset_id, v)
                .await?;
        }
        Ok(())
    }

    async fn row(&self, id: &str) -> Result<BatchRow, ApiError> {
        self.inner
            .store
            .batch(id)
            .await
            .map_err(store_err)?
            .ok_or_else(not_found)
    }

    /// `GetBatchEvaluation`.
    pub async fn get(&self, req: BatchEvaluationRef) -> Result<GetBatchEvaluationOutput, ApiError> {
        output_of(&self.row(&req.batch_evaluation_id).await?)
    }

    /// `ListBatchEvaluations`, newest first.
    pub async fn list(
        &self,
        req: ListBatchEvaluations,
    ) -> Result<ListBatchEvaluationsOutput, ApiError> {
        let limit = req.max_results.unwrap_or(100).clamp(1, 100);
        let rows = self
            .inner
            .store
            .batches(req.next_token.as_deref(), limit)
            .await
            .map_err(store_err)?;
        let next_token = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id.clone()))
            .flatten();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let full = output_of(row)?;
            out.push(BatchEvaluationSummary {
                batch_evaluation_id: full.batch_evaluation_id,
                batch_evaluation_arn: full.batch_evaluation_arn,
                batch_evaluation_name: full.batch_evaluation_name,
                status: full.status,
                created_at: full.created_at,
                description: full.description,
                evaluators: full.evaluators,
                evaluation_results: full.evaluation_results,
                error_details: full.error_details,
                kms_key_arn: full.kms_key_arn,
                updated_at: full.updated_at,
            });
        }
        Ok(ListBatchEvaluationsOutput {
            batch_evaluations: out,
            next_token,
        })
    }

    /// `StopBatchEvaluation`: the run stops before its next session and ends `STOPPED`.
    pub async fn stop(
        &self,
        req: BatchEvaluationRef,
    ) -> Result<StopBatchEvaluationOutput, ApiError> {
        let mut row = self.row(&req.batch_evaluation_id).await?;
        let description = request_of(&row)?.description;
        if !FINAL.contains(&row.status.as_str()) {
            row.status = "STOPPING".into();
            row.updated_at = now_millis();
            self.inner
                .store
                .update_batch(&row, &FINAL)
                .await
                .map_err(store_err)?;
        }
        let row = self.row(&req.batch_evaluation_id).await?;
        Ok(StopBatchEvaluationOutput {
            batch_evaluation_id: row.id,
            batch_evaluation_arn: row.arn,
            status: row.status,
            description,
        })
    }

    /// `DeleteBatchEvaluation`: a running batch stops at its next step; Get answers 404 at once.
    pub async fn delete(
        &self,
        req: BatchEvaluationRef,
    ) -> Result<DeleteBatchEvaluationOutput, ApiError> {
        let row = self.row(&req.batch_evaluation_id).await?;
        if !self
            .inner
            .store
            .delete_batch(&row.id)
            .await
            .map_err(store_err)?
        {
            return Err(not_found());
        }
        Ok(DeleteBatchEvaluationOutput {
            batch_evaluation_id: row.id,
            batch_evaluation_arn: row.arn,
            status: "DELETING".into(),
        })
    }

    /// Writes `row` unless a stop or delete came first; `Ok(false)` means: stop running.
    async fn save(&self, row: &mut BatchRow) -> Result<bool, ApiError> {
        row.updated_at = now_millis();
        let mut unless: Vec<&str> = FINAL.to_vec();
        unless.push("STOPPING");
        self.inner
            .store
            .update_batch(row, &unless)
            .await
            .map_err(store_err)
    }

    async fn run(&self, id: &str) {
        if let Err(e) = self.run_inner(id).await {
            warn!(batch = %id, error = %e.detail(), "batch evaluation failed");
            if let Ok(Some(mut row)) = self.inner.store.batch(id).await {
                row.status = "FAILED".into();
                row.error = Some(e.message.clone());
                row.updated_at = now_millis();
                let _ = self.inner.store.update_batch(&row, &FINAL).await;
            }
        }
    }

    async fn run_inner(&self, id: &str) -> Result<(), ApiError> {
        let mut row = self.row(id).await?;
        if row.status != "PENDING" {
            return Ok(());
        }
        let req = request_of(&row)?;
        row.status = "IN_PROGRESS".into();
        if !self.save(&mut row).await? {
            return self.finish_stop(id).await;
        }
        let cw = req
            .output_config
            .as_ref()
            .and_then(|o| o.cloud_watch_config.clone())
            .unwrap_or_default();
        self.prepare_output(&cw).await?;
        let (service, jobs, execution) = match &req.dataset_execution_config {
            Some(exec) => self.run_dataset(&row, exec).await?,
            None => {
                let DataSourceConfig::CloudWatchLogs(src) = &req.data_source_config else {
                    return Err(ApiError::field(
                        "dataSourceConfig",
                        "only cloudWatchLogs is supported",
                    ));
                };
                (
                    src.service_names.first().cloned().unwrap_or_default(),
                    self.select_sessions(src, &req).await?,
                    None,
                )
            }
        };
        row.execution = execution;
        let evaluators: Vec<String> = req
            .evaluators
            .iter()
            .flatten()
            .map(|e| e.evaluator_id.clone())
            .collect();
        let mut tally = Tally {
            total: jobs.len() as i64,
            ..Tally::default()
        };
        row.results = serde_json::to_value(tally.results(tally.total)).ok();
        if !self.save(&mut row).await? {
            return self.finish_stop(id).await;
        }
        for (i, job) in jobs.iter().enumerate() {
            if self.inner.shutdown.is_cancelled() {
                return Ok(());
            }
            let outcome = match &job.failed {
                Some(why) => Err(why.clone()),
                None => {
                    self.evaluate_session(&row, &cw, &service, job, &evaluators, &mut tally)
                        .await
                }
            };
            match outcome {
                Ok(true) => tally.completed += 1,
                Ok(false) => tally.ignored += 1,
                Err(why) => {
                    warn!(batch = %id, session = %job.session_id, error = %why, "session not evaluated");
                    tally.failed += 1;
                    if row.error.is_none() {
                        row.error = Some(format!("session {}: {why}", job.session_id));
                    }
                }
            }
            let left = tally.total - i as i64 - 1;
            row.results = serde_json::to_value(tally.results(left)).ok();
            if !self.save(&mut row).await? {
                return self.finish_stop(id).await;
            }
        }
        row.status = if tally.total == 0 {
            row.error = Some("no session matched the data source".into());
            "FAILED"
        } else if tally.completed == 0 && tally.failed > 0 {
            "FAILED"
        } else if tally.failed > 0 {
            "COMPLETED_WITH_ERRORS"
        } else {
            "COMPLETED"
        }
        .into();
        if !self.save(&mut row).await? {
            return self.finish_stop(id).await;
        }
        info!(batch = %id, status = %row.status, sessions = tally.total, "batch evaluation done");
        Ok(())
    }

    /// A stop that won the race ends the run `STOPPED` (a deleted batch is simply gone).
    async fn finish_stop(&self, id: &str) -> Result<(), ApiError> {
        if let Some(mut row) = self.inner.store.batch(id).await.map_err(store_err)?
            && row.status == "STOPPING"
        {
            row.status = "STOPPED".into();
            row.updated_at = now_millis();
            self.inner
                .store
                .update_batch(&row, &FINAL)
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    async fn prepare_output(&self, cw: &CloudWatchOutputConfig) -> Result<(), ApiError> {
        use berth_trace::logs::wire::{CreateLogGroupRequest, CreateLogStreamRequest};
        let group = cw.log_group_name.clone().unwrap_or_default();
        let stream = cw.log_stream_name.clone().unwrap_or_default();
        let ok = |r: Result<(), berth_trace::logs::Error>| match r {
            Ok(()) | Err(berth_trace::logs::Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(ApiError::field(
                "outputConfig.cloudWatchConfig",
                format!("cannot write results there: {e}"),
            )),
        };
        ok(self
            .inner
            .logs
            .create_log_group(&CreateLogGroupRequest {
                log_group_name: group.clone(),
                kms_key_id: None,
                tags: None,
                log_group_class: None,
                deletion_protection_enabled: None,
            })
            .await)?;
        ok(self
            .inner
            .logs
            .create_log_stream(&CreateLogStreamRequest {
                log_group_name: group,
                log_stream_name: stream,
            })
            .await)
    }

    /// Sessions of a `cloudWatchLogs` source, with the ground truth the request gives them.
    async fn select_sessions(
        &self,
        src: &CloudWatchLogsSource,
        req: &StartBatchEvaluation,
    ) -> Result<Vec<SessionJob>, ApiError> {
        let service = src.service_names.first().cloned().unwrap_or_default();
        let filter = src.filter_config.clone().unwrap_or_default();
        let meta: HashMap<String, _> = req
            .evaluation_metadata
            .as_ref()
            .and_then(|m| m.session_metadata.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.session_id.clone(), m))
            .collect();
        let mut ids: Vec<String> = filter.session_ids.clone().unwrap_or_default();
        for st in filter.session_trace_ids.iter().flatten() {
            if !ids.contains(&st.session_id) {
                ids.push(st.session_id.clone());
            }
        }
        if ids.is_empty() {
            ids = self
                .sessions_in_range(&service, filter.time_range.as_ref())
                .await?;
        }
        Ok(ids
            .into_iter()
            .map(|sid| {
                let m = meta.get(&sid);
                SessionJob {
                    scenario_id: m.and_then(|m| m.test_scenario_id.clone()),
                    ground_truth: m
                        .and_then(|m| m.ground_truth.as_ref())
                        .and_then(|g| g.inline.clone()),
                    wait_for: m.map_or(0, |m| {
                        m.ground_truth
                            .as_ref()
                            .and_then(|g| g.inline.as_ref())
                            .and_then(|g| g.turns.as_ref())
                            .map_or(1, Vec::len)
                    }),
                    session_id: sid,
                    failed: None,
                }
            })
            .collect())
    }

    /// Sessions with traces of `service` in the window, oldest first.
    async fn sessions_in_range(
        &self,
        service: &str,
        range: Option<&berth_api::evaluation_data::TimeRange>,
    ) -> Result<Vec<String>, ApiError> {
        let since = range
            .and_then(|r| r.start_time.as_deref())
            .and_then(parse_time);
        let until = range
            .and_then(|r| r.end_time.as_deref())
            .and_then(parse_time);
        let mut filter = berth_trace::TraceFilter {
            since_ns: since,
            until_ns: until,
            limit: Some(1000),
            ..Default::default()
        };
        let mut seen: Vec<String> = Vec::new();
        loop {
            let page = self
                .inner
                .traces
                .list(&filter)
                .await
                .map_err(|e| ApiError::internal_because(format_args!("listing traces: {e}")))?;
            for t in &page.traces {
                if t.service_name != service {
                    continue;
                }
                if let Some(s) = &t.attribution.session_id
                    && !seen.contains(s)
                {
                    seen.push(s.clone());
                }
            }
            match page.next_token {
                Some(n) if seen.len() < 500 => filter.next_token = Some(n),
                _ => break,
            }
        }
        // Listing is newest first; evaluate oldest first.
        seen.reverse();
        Ok(seen)
    }

    /// The session's span and log-record documents of `service`, oldest first, with its trace
    /// ids in order of first appearance and the runtime version that served it.
    async fn session_documents(
        &self,
        session_id: &str,
        service: &str,
    ) -> Result<(Vec<Value>, Vec<String>, Option<u32>), ApiError> {
        let spans = self
            .inner
            .traces
            .session_spans(None, session_id)
            .await
            .map_err(|e| ApiError::internal_because(format_args!("reading spans: {e}")))?;
        let mut docs = Vec::new();
        let mut trace_ids: Vec<String> = Vec::new();
        let mut version = None;
        for s in spans
            .iter()
            .filter(|s| service.is_empty() || s.service_name == service)
        {
            if !trace_ids.contains(&s.trace_id) {
                trace_ids.push(s.trace_id.clone());
            }
            version.get_or_insert(s.attribution.version);
            docs.push(berth_trace::logs::span_document(s));
        }
        for t in &trace_ids {
            let logs = self
                .inner
                .traces
                .trace_logs(t)
                .await
                .map_err(|e| ApiError::internal_because(format_args!("reading logs: {e}")))?;
            docs.extend(logs.iter().map(berth_trace::logs::log_document));
        }
        Ok((docs, trace_ids, version))
    }

    /// The session's documents once it has `want` traces of `service`, or whatever it has when
    /// [`SPAN_WAIT`] is over (agents export spans after answering, in batches).
    async fn wait_for_traces(
        &self,
        session_id: &str,
        service: &str,
        want: usize,
    ) -> Result<(Vec<Value>, Vec<String>, Option<u32>), ApiError> {
        let deadline = tokio::time::Instant::now() + SPAN_WAIT;
        loop {
            let got = self.session_documents(session_id, service).await?;
            if got.1.len() >= want || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return Ok(got),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Evaluates one session with every evaluator and writes each result as a log event.
    /// `Ok(false)`: the session has no spans (ignored).
    async fn evaluate_session(
        &self,
        row: &BatchRow,
        cw: &CloudWatchOutputConfig,
        service: &str,
        job: &SessionJob,
        evaluators: &[String],
        tally: &mut Tally,
    ) -> Result<bool, String> {
        let (docs, trace_ids, _) = self
            .wait_for_traces(&job.session_id, service, job.wait_for)
            .await
            .map_err(|e| e.message)?;
        if docs.is_empty() {
            return Err("no spans of the session were found in the trace store".into());
        }
        let refs = reference_inputs(&job.session_id, job.ground_truth.as_ref(), &trace_ids);
        let mut input = json!({ "evaluationInput": { "sessionSpans": docs } });
        if !refs.is_empty() {
            input["evaluationReferenceInputs"] = Value::Array(refs);
        }
        let mut events = Vec::new();
        let mut failure = None;
        for evaluator in evaluators {
            match self
                .inner
                .evaluator
                .evaluate(evaluator, input.clone())
                .await
            {
                Ok(results) => {
                    for r in results {
                        let dim = r
                            .get("evaluationDimensionName")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        let entry = tally
                            .per
                            .entry((evaluator.clone(), dim))
                            .or_insert((0.0, 0, 0));
                        if r.get("errorCode").is_some() {
                            entry.2 += 1;
                        } else if let Some(v) = r.get("value").and_then(Value::as_f64) {
                            entry.0 += v;
                            entry.1 += 1;
                        }
                        events.push(result_event(row, job, evaluator, &r));
                    }
                }
                Err(e) => {
                    let entry = tally
                        .per
                        .entry((evaluator.clone(), None))
                        .or_insert((0.0, 0, 0));
                    entry.2 += 1;
                    failure.get_or_insert(format!("{evaluator}: {}", e.message));
                }
            }
        }
        self.write_events(cw, events).await.map_err(|e| e.message)?;
        match failure {
            Some(f) => Err(f),
            None => Ok(true),
        }
    }

    async fn write_events(
        &self,
        cw: &CloudWatchOutputConfig,
        events: Vec<Value>,
    ) -> Result<(), ApiError> {
        use berth_trace::logs::wire::{InputLogEvent, PutLogEventsRequest};
        let now = now_millis();
        for chunk in events.chunks(1000) {
            let req = PutLogEventsRequest {
                log_group_name: cw.log_group_name.clone().unwrap_or_default(),
                log_stream_name: cw.log_stream_name.clone().unwrap_or_default(),
                log_events: chunk
                    .iter()
                    .map(|e| InputLogEvent {
                        timestamp: now,
                        message: e.to_string(),
                    })
                    .collect(),
                sequence_token: None,
                entity: None,
            };
            self.inner
                .logs
                .put_log_events(&req)
                .await
                .map_err(|e| ApiError::internal_because(format_args!("writing results: {e}")))?;
        }
        Ok(())
    }

    /// Runs every scenario of the dataset against the endpoint (turn by turn, one session per
    /// scenario), then waits until each session's spans are in the trace store.
    async fn run_dataset(
        &self,
        row: &BatchRow,
        exec: &DatasetExecutionConfig,
    ) -> Result<(String, Vec<SessionJob>, Option<Value>), ApiError> {
        let rt = exec
            .agent_invocation
            .agent_core_runtime
            .as_ref()
            .ok_or_else(|| {
                ApiError::field(
                    "datasetExecutionConfig.agentInvocation",
                    "no runtime endpoint",
                )
            })?;
        let (runtime_id, endpoint) = split_endpoint_arn(&rt.agent_runtime_endpoint_arn)
            .ok_or_else(|| ApiError::field("agentRuntimeEndpointArn", "not an endpoint ARN"))?;
        let service = service_name(runtime_id, endpoint);
        let v = parse_version(exec.dataset.dataset_version.as_deref())?;
        let examples = self
            .inner
            .datasets
            .all_examples(&exec.dataset.dataset_id, v)
            .await?;
        let mut jobs = Vec::new();
        for (i, ex) in examples.iter().enumerate() {
            let scenario = ex
                .get("scenario_id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("example-{}", i + 1), str::to_owned);
            let session_id = format!("{}-{}-{}", row.id, i + 1, berth_types::random_alnum(16));
            let truth = ground_truth_of(ex);
            let mut failed = None;
            let turns: Vec<Value> = match ex.get("turns").and_then(Value::as_array) {
                Some(t) => t.iter().filter_map(|t| t.get("input").cloned()).collect(),
                None => ex.get("input").cloned().into_iter().collect(),
            };
            if turns.is_empty() {
                failed = Some(format!("scenario {scenario} has no turns to run"));
            }
            for input in &turns {
                if failed.is_some() {
                    break;
                }
                let payload = turn_payload(rt.request_template.as_deref(), input);
                if let Err(e) = self
                    .inner
                    .caller
                    .invoke(runtime_id, endpoint, &session_id, payload)
                    .await
                {
                    failed = Some(format!(
                        "scenario {scenario}: invocation failed: {}",
                        e.message
                    ));
                }
            }
            jobs.push(SessionJob {
                session_id,
                scenario_id: Some(scenario),
                ground_truth: truth,
                failed,
                wait_for: turns.len(),
            });
        }
        // The version that served the run, from the first session's spans once they are in.
        let mut version = None;
        if let Some(job) = jobs.iter().find(|j| j.failed.is_none()) {
            version = self
                .wait_for_traces(&job.session_id, &service, job.wait_for)
                .await?
                .2;
        }
        let details = DatasetExecutionDetails {
            dataset: DatasetDetails {
                dataset_id: exec.dataset.dataset_id.clone(),
                dataset_version: exec
                    .dataset
                    .dataset_version
                    .clone()
                    .unwrap_or_else(|| "DRAFT".into()),
            },
            agent_invocation: AgentInvocationDetails {
                agent_core_runtime: Some(AgentCoreRuntimeInvocationDetails {
                    agent_runtime_endpoint_arn: rt.agent_runtime_endpoint_arn.clone(),
                    agent_runtime_version: version.unwrap_or(1).to_string(),
                    request_template: rt.request_template.clone(),
                }),
            },
        };
        Ok((service, jobs, serde_json::to_value(details).ok()))
    }
}

/// A dataset example's ground truth in the batch's `InlineGroundTruth` form.
fn ground_truth_of(ex: &Value) -> Option<InlineGroundTruth> {
    use berth_api::evaluation_data::{
        EvaluationContent, ExpectedTrajectory, GroundTruthTurn, GroundTruthTurnInput,
    };
    let assertions: Option<Vec<EvaluationContent>> =
        ex.get("assertions").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|t| EvaluationContent { text: t.to_owned() })
                .collect()
        });
    let expected_trajectory = ex
        .get("expected_trajectory")
        .and_then(Value::as_array)
        .map(|a| ExpectedTrajectory {
            tool_names: a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        });
    let turns = ex.get("turns").and_then(Value::as_array).map(|t| {
        t.iter()
            .map(|t| GroundTruthTurn {
                input: Some(GroundTruthTurnInput {
                    prompt: t.get("input").map(|i| match i {
                        Value::String(s) => s.clone(),
                        o => o.to_string(),
                    }),
                }),
                expected_response: t
                    .get("expected_response")
                    .and_then(Value::as_str)
                    .map(|s| EvaluationContent { text: s.to_owned() }),
            })
            .collect()
    });
    let g = InlineGroundTruth {
        assertions,
        expected_trajectory,
        turns,
    };
    (g != InlineGroundTruth::default()).then_some(g)
}

/// `evaluationReferenceInputs` for a session: assertions and the expected trajectory at the
/// session, turn i's expected response at the session's i-th trace (as the SDK's dataset
/// runner maps them).
fn reference_inputs(
    session_id: &str,
    truth: Option<&InlineGroundTruth>,
    trace_ids: &[String],
) -> Vec<Value> {
    let Some(g) = truth else { return Vec::new() };
    let mut out = Vec::new();
    let mut session = json!({ "context": { "spanContext": { "sessionId": session_id } } });
    let mut any = false;
    if let Some(a) = g.assertions.as_ref().filter(|a| !a.is_empty()) {
        session["assertions"] = serde_json::to_value(a).unwrap_or(Value::Null);
        any = true;
    }
    if let Some(t) = &g.expected_trajectory {
        session["expectedTrajectory"] = json!({ "toolNames": t.tool_names });
        any = true;
    }
    if any {
        out.push(session);
    }
    for (turn, trace) in g.turns.iter().flatten().zip(trace_ids) {
        if let Some(r) = &turn.expected_response {
            out.push(json!({
                "context": { "spanContext": { "sessionId": session_id, "traceId": trace } },
                "expectedResponse": { "text": r.text },
            }));
        }
    }
    out
}

/// One result as the log event the SDK's `fetch_evaluation_events` returns: the
/// `gen_ai.evaluation.*` keys, the trace context, and where it came from.
fn result_event(row: &BatchRow, job: &SessionJob, evaluator: &str, r: &Value) -> Value {
    let ctx = r
        .pointer("/context/spanContext")
        .cloned()
        .unwrap_or(Value::Null);
    let trace_id = ctx.get("traceId").cloned().unwrap_or(Value::Null);
    let mut e = json!({
        "batchEvaluationId": row.id,
        "session.id": job.session_id,
        "traceId": trace_id,
        "spanId": ctx.get("spanId").cloned().unwrap_or(Value::Null),
        "gen_ai.response.id": trace_id,
        "gen_ai.evaluation.name": r.get("evaluatorName").and_then(Value::as_str).unwrap_or(evaluator),
        "gen_ai.evaluation.evaluator.id": evaluator,
        "gen_ai.evaluation.score.value": r.get("value").cloned().unwrap_or(Value::Null),
        "gen_ai.evaluation.score.label": r.get("label").cloned().unwrap_or(Value::Null),
        "gen_ai.evaluation.explanation": r.get("explanation").cloned().unwrap_or(Value::Null),
    });
    for (key, member) in [
        ("gen_ai.evaluation.dimension", "evaluationDimensionName"),
        ("gen_ai.evaluation.evaluator.arn", "evaluatorArn"),
        ("error.type", "errorCode"),
        ("error.message", "errorMessage"),
    ] {
        if let Some(v) = r.get(member) {
            e[key] = v.clone();
        }
    }
    if let Some(s) = &job.scenario_id {
        e["testScenarioId"] = Value::String(s.clone());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::evaluation_data::{EvaluationContent, GroundTruthTurn};

    #[test]
    fn endpoint_arns_split_and_name_their_service() {
        let arn = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/shop-abcdefghij/runtime-endpoint/DEFAULT";
        let (id, ep) = split_endpoint_arn(arn).unwrap();
        assert_eq!((id, ep), ("shop-abcdefghij", "DEFAULT"));
        assert_eq!(service_name(id, ep), "shop.DEFAULT");
    }

    #[test]
    fn payloads_follow_the_template() {
        assert_eq!(
            turn_payload(None, &json!("hi")),
            br#"{"prompt":"hi"}"#.to_vec()
        );
        assert_eq!(
            turn_payload(Some(r#"{"q": "{{input}}"}"#), &json!("say \"x\"")),
            br#"{"q": "say \"x\""}"#.to_vec()
        );
        assert_eq!(
            turn_payload(Some(r#"{"q": "{{input}}"}"#), &json!({"a": 1})),
            br#"{"q": {"a":1}}"#.to_vec()
        );
    }

    #[test]
    fn ground_truth_maps_turns_to_traces_in_order() {
        let g = InlineGroundTruth {
            assertions: Some(vec![EvaluationContent {
                text: "polite".into(),
            }]),
            expected_trajectory: None,
            turns: Some(vec![
                GroundTruthTurn {
                    input: None,
                    expected_response: Some(EvaluationContent { text: "a".into() }),
                },
                GroundTruthTurn {
                    input: None,
                    expected_response: Some(EvaluationContent { text: "b".into() }),
                },
            ]),
        };
        let refs = reference_inputs("s", Some(&g), &["t1".into(), "t2".into()]);
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0]["assertions"][0]["text"], "polite");
        assert_eq!(refs[2]["context"]["spanContext"]["traceId"], "t2");
        assert_eq!(refs[2]["expectedResponse"]["text"], "b");
    }

    #[test]
    fn dataset_examples_become_ground_truth() {
        let ex = json!({"scenario_id": "s", "turns": [{"input": "q", "expected_response": "a"}],
                        "expected_trajectory": ["search"], "assertions": ["kind"]});
        let g = ground_truth_of(&ex).unwrap();
        assert_eq!(g.expected_trajectory.unwrap().tool_names, vec!["search"]);
        assert_eq!(
            g.turns.unwrap()[0].expected_response.as_ref().unwrap().text,
            "a"
        );
        assert!(ground_truth_of(&json!({"scenario_id": "s"})).is_none());
    }
}
