//! Native API for traffic: policies and rules, rollback, rollouts, per-version health and the
//! audit log, under `/berth/v1`. Signed like the AgentCore APIs; the CLI is its client.
//!
//! Also the middleware that tells the domain who is calling, so every mutation (AgentCore or
//! native) is audited with the signing access key id and the request id.

use crate::AppState;
use crate::error::{RequestId, WireError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use berth_api::ApiError;
use berth_auth::Verified;
use berth_control::Caller;
use berth_control::rollout::{Command, StartRollout};
use berth_control::traffic::{AddRule, Rollback, SetTraffic};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Runs the rest of the request as the verified caller (see `berth_control::Caller`).
pub(crate) async fn caller_scope<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let actor = req
        .extensions()
        .get::<Verified>()
        .map(|v| v.principal.access_key_id.clone());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    match actor {
        Some(actor) => Caller::new(actor, request_id).scope(inner(req)).await,
        None => inner(req).await,
    }
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::cannot_parse(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::cannot_parse(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn ok<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

type Ep = Path<(String, String)>;

/// `GET .../endpoints/{endpoint}/traffic`.
async fn show(State(s): State<AppState>, Path((rt, ep)): Ep) -> Result<Response, WireError> {
    Ok(ok(s.control.traffic(&rt, &ep).await?))
}

/// `PUT .../endpoints/{endpoint}/traffic` `{"weights": {"1": 90, "2": 10}, "drainSeconds"?}`.
async fn set(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
    body: Bytes,
) -> Result<Response, WireError> {
    Ok(ok(s
        .control
        .set_traffic(&rt, &ep, SetTraffic::from_json(&json_body(&body)?)?)
        .await?))
}

/// `POST .../endpoints/{endpoint}/traffic/rules` `{"match": {...}, "version": N}`.
async fn add_rule(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
    body: Bytes,
) -> Result<Response, WireError> {
    let req = AddRule::from_json(&json_body(&body)?)?;
    Ok(ok(s.control.add_rule(&rt, &ep, req).await?))
}

/// `DELETE .../endpoints/{endpoint}/traffic/rules/{rule}`.
async fn remove_rule(
    State(s): State<AppState>,
    Path((rt, ep, rule)): Path<(String, String, String)>,
) -> Result<Response, WireError> {
    Ok(ok(s.control.remove_rule(&rt, &ep, &rule).await?))
}

/// `POST .../endpoints/{endpoint}/rollback` `{"drainSeconds"?}`.
async fn rollback(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
    body: Bytes,
) -> Result<Response, WireError> {
    let req = Rollback::from_json(&json_body(&body)?)?;
    Ok(ok(s.control.rollback(&rt, &ep, req).await?))
}

/// `POST .../endpoints/{endpoint}/rollouts` `{"toVersion": N, "steps"?, "intervalSeconds"?, ...}`.
async fn start_rollout(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
    body: Bytes,
) -> Result<Response, WireError> {
    Ok(ok(s
        .control
        .start_rollout(&rt, &ep, StartRollout::from_json(&json_body(&body)?)?)
        .await?))
}

/// `GET .../endpoints/{endpoint}/rollouts`: the current (or last) rollout and recent history.
async fn rollout_status(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
) -> Result<Response, WireError> {
    Ok(ok(s.control.rollout_status(&rt, &ep).await?))
}

/// `POST .../endpoints/{endpoint}/rollouts/current/{pause|resume|abort|promote}`.
async fn rollout_command(
    State(s): State<AppState>,
    Path((rt, ep, cmd)): Path<(String, String, String)>,
) -> Result<Response, WireError> {
    let command = Command::parse(&cmd).ok_or_else(|| {
        ApiError::field(
            "command",
            format!("{cmd} is not one of pause, resume, abort, promote"),
        )
    })?;
    Ok(ok(s.control.command_rollout(&rt, &ep, command).await?))
}

#[derive(Deserialize)]
struct HealthQuery {
    /// Window length in seconds, ending now (default 300).
    seconds: Option<u64>,
    /// Include the stored buckets.
    #[serde(default)]
    series: bool,
}

/// `GET .../endpoints/{endpoint}/health?seconds=300[&series=true]`.
async fn health(
    State(s): State<AppState>,
    Path((rt, ep)): Ep,
    Query(q): Query<HealthQuery>,
) -> Result<Response, WireError> {
    let now = berth_types::now_millis();
    let window = i64::try_from(q.seconds.unwrap_or(300).saturating_mul(1000)).unwrap_or(i64::MAX);
    let from = now.saturating_sub(window);
    Ok(ok(s
        .control
        .endpoint_health(&rt, &ep, from, now.saturating_add(1), q.series)
        .await?))
}

#[derive(Deserialize)]
struct AuditQuery {
    /// An ARN (the resource and everything under it) or a runtime id.
    resource: Option<String>,
    /// Entries after this sequence number.
    after: Option<i64>,
    /// Page size (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /berth/v1/audit[?resource=R&after=SEQ&limit=N]`.
async fn audit(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WireError> {
    let body = s
        .control
        .audit_log(
            q.resource.as_deref(),
            q.after.unwrap_or(0),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(ok(body))
}

/// `GET /berth/v1/audit/verify`: recomputes the hash chain.
async fn verify(State(s): State<AppState>) -> Result<Response, WireError> {
    Ok(ok(s.control.verify_audit().await?))
}

/// The traffic routes.
pub(crate) fn routes() -> Router<AppState> {
    const EP: &str = "/berth/v1/runtimes/{runtime}/endpoints/{endpoint}";
    Router::new()
        .route(&format!("{EP}/traffic"), get(show).put(set))
        .route(&format!("{EP}/traffic/rules"), post(add_rule))
        .route(&format!("{EP}/traffic/rules/{{rule}}"), delete(remove_rule))
        .route(&format!("{EP}/rollback"), post(rollback))
        .route(
            &format!("{EP}/rollouts"),
            get(rollout_status).post(start_rollout),
        )
        .route(
            &format!("{EP}/rollouts/current/{{command}}"),
            post(rollout_command),
        )
        .route(&format!("{EP}/health"), get(health))
        .route("/berth/v1/audit", get(audit))
        .route("/berth/v1/audit/verify", get(verify))
}
