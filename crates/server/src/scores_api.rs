//! Evaluation scores of an endpoint (`berth_trace::scores`), under
//! `/berth/v1/runtimes/{runtimeId}/endpoints/{endpoint}`:
//! - `GET .../experiment?from=&to=&baseline=`: the endpoint's versions compared on their scores
//!   (`berth_eval::experiment`);
//! - `POST .../scores` `{"scores": [...]}`: records scores produced outside Berth (a CI gate, an
//!   offline evaluation run) beside the ones Berth's own evaluations write.

use crate::AppState;
use crate::error::WireError;
use crate::traces_api::{bad_query, store_error};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::ApiError;
use berth_eval::experiment::{ExperimentQuery, run};
use berth_trace::scores::Score;
use serde::Deserialize;

/// Query parameters; times are Unix milliseconds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExperimentParams {
    /// Scores of sessions or traces that ended at or after this (default: `to` less a day).
    from: Option<i64>,
    /// And before this (default: now).
    to: Option<i64>,
    /// The version the others are compared with (default: the endpoint's live version).
    baseline: Option<u32>,
}

const MS: i64 = 1_000_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// `GET .../experiment?from=&to=&baseline=`: [`berth_eval::experiment::Experiment`].
async fn experiment(
    State(s): State<AppState>,
    Path((rt, ep)): Path<(String, String)>,
    q: Result<Query<ExperimentParams>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let to = q.to.unwrap_or_else(berth_types::now_millis);
    let from = q.from.unwrap_or(to.saturating_sub(DAY_MS));
    if from >= to {
        return Err(
            ApiError::field("from", format!("from ({from}) must be before to ({to})")).into(),
        );
    }
    // The endpoint must exist (404 otherwise); its live version is the default baseline.
    let traffic = s.control.traffic(&rt, &ep).await?;
    let baseline = q.baseline.or(traffic.live_version);
    let out = run(
        s.scores.as_ref(),
        &ExperimentQuery {
            runtime_id: traffic.runtime_id,
            endpoint: traffic.endpoint,
            from_ns: from.saturating_mul(MS),
            to_ns: to.saturating_mul(MS),
            baseline,
        },
    )
    .await
    .map_err(store_error)?;
    Ok(axum::Json(out).into_response())
}

/// One score of `POST .../scores`; the runtime and endpoint are the path's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScoreInput {
    /// `online:<id>`, `batch:<id>` or `gate:<id>`.
    source: String,
    evaluator_id: String,
    /// Defaults to the id.
    evaluator_name: Option<String>,
    dimension: Option<String>,
    version: u32,
    session_id: String,
    trace_id: Option<String>,
    span_id: Option<String>,
    value: Option<f64>,
    label: Option<String>,
    explanation: Option<String>,
    error: Option<String>,
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    /// When the scored session or trace ended, Unix ms (default: now).
    ended_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutScores {
    scores: Vec<ScoreInput>,
}

/// At most this many scores per request.
const MAX_SCORES: usize = 10_000;

/// `POST .../scores` `{"scores": [...]}`: stores them in one transaction; `{"stored": n}`.
async fn put_scores(
    State(s): State<AppState>,
    Path((rt, ep)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, WireError> {
    let req: PutScores = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("scores", format!("the body is not a scores request: {e}")))?;
    if req.scores.len() > MAX_SCORES {
        return Err(ApiError::field(
            "scores",
            format!(
                "at most {MAX_SCORES} scores per request, not {}",
                req.scores.len()
            ),
        )
        .into());
    }
    let traffic = s.control.traffic(&rt, &ep).await?;
    let now_ns = berth_trace::now_ns();
    let scores: Vec<Score> = req
        .scores
        .into_iter()
        .map(|i| Score {
            at_ns: now_ns,
            ended_ns: i.ended_at.map_or(now_ns, |ms| ms.saturating_mul(MS)),
            source: i.source,
            evaluator_name: i.evaluator_name.unwrap_or_else(|| i.evaluator_id.clone()),
            evaluator_id: i.evaluator_id,
            dimension: i.dimension,
            runtime_id: traffic.runtime_id.clone(),
            endpoint: traffic.endpoint.clone(),
            version: i.version,
            session_id: i.session_id,
            trace_id: i.trace_id,
            span_id: i.span_id,
            value: i.value,
            label: i.label,
            explanation: i.explanation,
            error: i.error,
            input_tokens: i.input_tokens,
            output_tokens: i.output_tokens,
        })
        .collect();
    s.scores.insert_scores(&scores).await.map_err(store_error)?;
    Ok(axum::Json(serde_json::json!({ "stored": scores.len() })).into_response())
}

/// The score routes.
pub(crate) fn routes() -> Router<AppState> {
    const EP: &str = "/berth/v1/runtimes/{runtime}/endpoints/{endpoint}";
    Router::new()
        .route(&format!("{EP}/experiment"), get(experiment))
        .route(&format!("{EP}/scores"), post(put_scores))
}
