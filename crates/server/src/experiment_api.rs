//! Experiments: `GET /berth/v1/runtimes/{runtimeId}/endpoints/{endpoint}/experiment`, an
//! endpoint's versions compared on their evaluation scores (`berth_eval::experiment`).

use crate::AppState;
use crate::error::WireError;
use crate::traces_api::{bad_query, store_error};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_api::ApiError;
use berth_eval::experiment::{ExperimentQuery, run};
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
        return Err(ApiError::field("from", format!("from ({from}) must be before to ({to})")).into());
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

/// The experiment route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/berth/v1/runtimes/{runtime}/endpoints/{endpoint}/experiment",
        get(experiment),
    )
}
