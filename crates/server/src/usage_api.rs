//! GenAI usage: `GET /berth/v1/usage`, the tokens, tool calls and cost summed from agents'
//! spans at ingest (`berth_trace::usage`), filtered and grouped, priced by the server's price
//! table (`berth serve --model-prices`).

use crate::AppState;
use crate::error::WireError;
use crate::traces_api::{bad_query, store_error};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_trace::usage::{GroupBy, UsageFilter, report};
use serde::Deserialize;
use serde_json::json;

/// Query parameters of `GET /berth/v1/usage`; times are Unix milliseconds, matched to the
/// minute the counted spans ended in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UsageQuery {
    runtime: Option<String>,
    version: Option<u32>,
    endpoint: Option<String>,
    session: Option<String>,
    actor: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// `version`, `session`, `actor` or `model`; without it, one total.
    group_by: Option<String>,
}

const MS: i64 = 1_000_000;

/// `GET /berth/v1/usage`: `{"groupBy", "usage": [{key..., modelCalls, inputTokens, ...,
/// costUsd, unpricedTokens}]}`.
async fn usage(
    State(s): State<AppState>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let group_by = match q.group_by.as_deref() {
        None => GroupBy::None,
        Some(g) => g.parse().map_err(store_error)?,
    };
    let filter = UsageFilter {
        runtime_id: q.runtime,
        version: q.version,
        endpoint: q.endpoint,
        session_id: q.session,
        actor: q.actor,
        since_ns: q.since_ms.map(|v| v.saturating_mul(MS)),
        until_ns: q.until_ms.map(|v| v.saturating_mul(MS)),
        group_by,
    };
    let rows = s.traces.usage(&filter).await.map_err(store_error)?;
    let groups = report(&rows, group_by, &s.prices);
    Ok(axum::Json(json!({ "groupBy": group_by, "usage": groups })).into_response())
}

/// The native usage route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/usage", get(usage))
        .route("/berth/v1/gateway", get(crate::gateway_api::status))
}
