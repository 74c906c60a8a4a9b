//! Traces: the OTLP/HTTP receiver agents export to (`POST /v1/traces`, `POST /v1/logs`, served
//! only on a sandbox's own listener) and the native API that reads the store
//! (`GET /berth/v1/traces[/{traceId}]`, `GET /berth/v1/traces/sessions/{sessionId}`).
//!
//! Architecture Invariant: ingested data is attributed to the runtime, version, endpoint and
//! session of the sandbox whose listener it arrived on, resolved at ingest time; nothing the
//! agent sends (resource attributes, baggage, `session.id` attributes) decides attribution.

use crate::AppState;
use crate::body;
use crate::edge::Context;
use crate::error::WireError;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::ApiError;
use berth_trace::otlp::{self, Encoding};
use berth_trace::{Attribution, TraceFilter};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tracing::{debug, warn};

/// What an OTLP request on one sandbox's listener needs.
#[derive(Clone)]
struct Ingest {
    state: AppState,
    /// The backend instance id of the sandbox this listener serves.
    sandbox: Arc<str>,
}

/// The OTLP routes of one sandbox's listener. Unsigned: OTel exporters do not sign, and the
/// listener itself (reachable only from inside that sandbox) is the credential.
pub(crate) fn otlp_routes(state: AppState, sandbox: &str) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .with_state(Ingest {
            state,
            sandbox: sandbox.into(),
        })
}

#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Logs,
}

async fn traces(State(i): State<Ingest>, req: Request) -> Response {
    export(i, req, Signal::Traces).await
}

async fn logs(State(i): State<Ingest>, req: Request) -> Response {
    export(i, req, Signal::Logs).await
}

fn reply(enc: Encoding, status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn export(i: Ingest, req: Request, signal: Signal) -> Response {
    let (parts, body) = req.into_parts();
    let Some(enc) =
        header_str(&parts.headers, header::CONTENT_TYPE).and_then(Encoding::from_content_type)
    else {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "OTLP/HTTP takes application/x-protobuf or application/json",
        )
            .into_response();
    };
    // Under the same limit and budgets as every other small request on this listener.
    let ctx = parts
        .extensions
        .get::<Context>()
        .cloned()
        .unwrap_or_else(Context::standalone);
    let limit = ctx.limits.small;
    let declared = body::declared_length(&parts.headers);
    let (bytes, _reservation) =
        match body::read(body, declared, limit, &ctx.budgets, ctx.stall).await {
            Ok(read) => read,
            Err(body::Error::TooLarge { limit }) => {
                let msg = format!("the request body exceeds the {limit}-byte limit");
                return reply(enc, StatusCode::PAYLOAD_TOO_LARGE, enc.bad_request(&msg));
            }
            Err(body::Error::Throttled) => {
                return reply(
                    enc,
                    StatusCode::SERVICE_UNAVAILABLE,
                    enc.bad_request("the server is busy; retry"),
                );
            }
            Err(e) => {
                return reply(
                    enc,
                    StatusCode::BAD_REQUEST,
                    enc.bad_request(&e.to_string()),
                );
            }
        };
    let raw = match otlp::decompress(
        &bytes,
        header_str(&parts.headers, header::CONTENT_ENCODING),
        limit,
    ) {
        Ok(raw) => raw,
        Err(e) => {
            return reply(
                enc,
                StatusCode::BAD_REQUEST,
                enc.bad_request(&e.to_string()),
            );
        }
    };
    // Who this sandbox belongs to now: a warm spare adopted since it started is its session's.
    let Some(owner) = i.state.sessions.sandbox_owner(&i.sandbox) else {
        // Between the sandbox's start and its session's registration (or after it ended):
        // 503 is retryable in OTLP/HTTP, so an exporter tries again.
        return reply(
            enc,
            StatusCode::SERVICE_UNAVAILABLE,
            enc.bad_request("this sandbox has no session yet; retry"),
        );
    };
    let who = Attribution {
        runtime_id: owner.runtime_id,
        version: owner.version,
        endpoint: owner.endpoint,
        session_id: owner.session_id,
        actor: owner.user_id,
    };
    let decoded = match signal {
        Signal::Traces => otlp::decode_traces(&raw, enc, &who).map(|s| (s, Vec::new())),
        Signal::Logs => otlp::decode_logs(&raw, enc, &who).map(|l| (Vec::new(), l)),
    };
    let (mut spans, logs) = match decoded {
        Ok(d) => d,
        Err(e) => {
            debug!(sandbox = %i.sandbox, error = %e, "otlp export refused");
            return reply(
                enc,
                StatusCode::BAD_REQUEST,
                enc.bad_request(&e.to_string()),
            );
        }
    };
    // With the model gateway on, the gateway meters model calls: the agent's own token reports
    // are kept in its spans but not summed (see `berth_trace::usage::COUNTED`).
    let metered = i.state.gateway.is_some();
    for s in &mut spans {
        if let Some(a) = s.attributes.as_object_mut() {
            a.remove(berth_trace::usage::COUNTED);
            if metered {
                a.insert(berth_trace::usage::COUNTED.into(), false.into());
            }
        }
    }
    if let Err(e) = i.state.traces.insert(&spans, &logs).await {
        warn!(error = %e, "storing an otlp export");
        return reply(
            enc,
            StatusCode::SERVICE_UNAVAILABLE,
            enc.bad_request("the trace store failed; retry"),
        );
    }
    reply(enc, StatusCode::OK, enc.empty_response())
}

/// Query parameters of `GET /berth/v1/traces`; times are Unix milliseconds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    runtime: Option<String>,
    version: Option<u32>,
    endpoint: Option<String>,
    session: Option<String>,
    actor: Option<String>,
    status: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    min_duration_ms: Option<i64>,
    limit: Option<u32>,
    next_token: Option<String>,
}

const MS: i64 = 1_000_000;

pub(crate) fn store_error(e: berth_trace::Error) -> WireError {
    match e {
        berth_trace::Error::Invalid(m) => WireError(ApiError::field("query", m)),
        other => WireError(ApiError::internal_because(other)),
    }
}

/// A query string that does not parse (an unknown filter, a non-number) as a ValidationException.
pub(crate) fn bad_query(r: QueryRejection) -> WireError {
    WireError(ApiError::field("query", r.body_text()))
}

/// `GET /berth/v1/traces`: traces (one row per trace and session), newest first.
async fn list(
    State(s): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let filter = TraceFilter {
        runtime_id: q.runtime,
        version: q.version,
        endpoint: q.endpoint,
        session_id: q.session,
        actor: q.actor,
        status: q.status,
        since_ns: q.since_ms.map(|v| v.saturating_mul(MS)),
        until_ns: q.until_ms.map(|v| v.saturating_mul(MS)),
        min_duration_ns: q.min_duration_ms.map(|v| v.saturating_mul(MS)),
        limit: q.limit,
        next_token: q.next_token,
    };
    let page = s.traces.list(&filter).await.map_err(store_error)?;
    Ok(axum::Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceQuery {
    session: Option<String>,
}

fn valid_trace_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /berth/v1/traces/{traceId}[?session=S]`: its spans and log records.
async fn get_trace(
    State(s): State<AppState>,
    Path(trace_id): Path<String>,
    q: Result<Query<TraceQuery>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let trace_id = trace_id.to_ascii_lowercase();
    if !valid_trace_id(&trace_id) {
        return Err(WireError(ApiError::field(
            "traceId",
            format!("{trace_id:?} is not 32 hex digits"),
        )));
    }
    let spans = s
        .traces
        .trace(&trace_id, q.session.as_deref())
        .await
        .map_err(store_error)?;
    let mut logs = s.traces.trace_logs(&trace_id).await.map_err(store_error)?;
    if let Some(session) = &q.session {
        logs.retain(|l| l.attribution.session_id.as_deref() == Some(session));
    }
    if spans.is_empty() && logs.is_empty() {
        return Err(WireError(ApiError::not_found(format!(
            "no trace {trace_id}"
        ))));
    }
    Ok(axum::Json(json!({ "traceId": trace_id, "spans": spans, "logs": logs })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    runtime: Option<String>,
}

/// `GET /berth/v1/traces/sessions/{sessionId}[?runtime=R]`: every span of a session.
async fn session_spans(
    State(s): State<AppState>,
    Path(session): Path<String>,
    q: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let spans = s
        .traces
        .session_spans(q.runtime.as_deref(), &session)
        .await
        .map_err(store_error)?;
    Ok(axum::Json(json!({ "sessionId": session, "spans": spans })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentsQuery {
    runtime: String,
}

/// `GET /berth/v1/traces/sessions/{sessionId}/documents?runtime=R`: the session's spans and log
/// records as the documents `Evaluate` takes (`{"sessionSpans": [...]}`): what `berth eval`
/// sends, and what online evaluation scores.
async fn session_documents(
    State(s): State<AppState>,
    Path(session): Path<String>,
    q: Result<Query<DocumentsQuery>, QueryRejection>,
) -> Result<Response, WireError> {
    let Query(q) = q.map_err(bad_query)?;
    let docs = berth_trace::online::session_documents(&*s.traces, &q.runtime, &session)
        .await
        .map_err(store_error)?;
    Ok(axum::Json(json!({ "sessionSpans": docs })).into_response())
}

/// The native trace routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/traces", get(list))
        .route("/berth/v1/traces/{trace}", get(get_trace))
        .route("/berth/v1/traces/sessions/{session}", get(session_spans))
        .route(
            "/berth/v1/traces/sessions/{session}/documents",
            get(session_documents),
        )
}
