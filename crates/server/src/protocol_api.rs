//! Data-plane routes of the agent protocols beyond `InvokeAgentRuntime` (which forwards to each
//! version's protocol port and path itself): `GetAgentCard`, the A2A agent's card.

use crate::AppState;
use crate::data_api::{SESSION_HEADER, error_body, parse_session_call};
use crate::error::{RequestId, WireError};
use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use berth_api::{ApiError, ErrorKind};
use berth_auth::Verified;
use berth_runtime::invoker::Action;

/// `GetAgentCard` (`GET /runtimes/{arn}/invocations/.well-known/agent-card.json`): routed and
/// admitted like an invocation (same qualifier, session header, quotas), then the agent's own
/// `GET /.well-known/agent-card.json` is returned as the payload (`agentCard`, a document).
pub async fn get_agent_card(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    verified: Option<Extension<Verified>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, WireError> {
    let (call, sid) = parse_session_call(&s, path, q.as_deref(), &headers)?;
    let actor = verified
        .as_ref()
        .map(|v| v.principal.access_key_id.as_str());
    let forwarded = s.nodes.forwarded(&headers)?;
    let inv = call.invocation(&sid, &headers, actor, &rid, Action::AgentCard, forwarded);
    let req = call.caller_request(
        &sid,
        axum::http::Method::GET,
        &uri,
        &headers,
        Default::default(),
        forwarded,
    );
    let resp = match crate::cluster_api::invoke_here_or_there(&s, inv, req).await? {
        crate::cluster_api::Served::Here(answer) => answer,
        // Another node runs the session: its answer.
        crate::cluster_api::Served::There(response) => return Ok(response),
    };
    let (parts, stream) = resp.into_parts();
    let status = parts.status;
    if !status.is_success() || status.as_u16() >= 600 {
        let detail = error_body(stream).await;
        return Err(ApiError::new(
            ErrorKind::RuntimeClient,
            format!(
                "Received error ({}) from runtime while getting the agent card: {detail}",
                status.as_u16()
            ),
        )
        .into());
    }
    let mut out = Response::new(Body::from_stream(stream));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    if let Ok(v) = HeaderValue::from_str(&sid) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(out)
}

/// The routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/runtimes/{agentRuntimeId}/invocations/.well-known/agent-card.json",
        axum::routing::get(get_agent_card),
    )
}
