//! AgentCore data-plane routes (`bedrock-agentcore`): invoking agents and stopping sessions.

use crate::AppState;
use crate::cluster_api::{CallerRequest, Served, invoke_here_or_there};
use crate::error::{RequestId, WireError};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{OriginalUri, RawPathParams, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use berth_api::{ApiError, ErrorKind};
use berth_auth::Verified;
use berth_runtime::command::{Command, DEFAULT_TIMEOUT, TIMEOUT_RANGE};
use berth_runtime::invoker::{Action, Error as InvokeError, Invocation};
use berth_runtime::session::Error as SessionError;
use percent_encoding::percent_decode_str;

/// The session header of the AgentCore contract.
pub const SESSION_HEADER: HeaderName =
    HeaderName::from_static("x-amzn-bedrock-agentcore-runtime-session-id");
pub(crate) const USER_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-user-id";

/// Where the agent's OAuth2 3LO flows send the user back: AgentCore hands it to the agent
/// with the call, and the SDK's `@requires_access_token` sends it as `resourceOauth2ReturnUrl`.
/// `InvokeAgentRuntime`'s model has no member for it, so the caller sets it as a header.
const CALLBACK_HEADER: &str = "oauth2callbackurl";

/// Checks an invocation's `OAuth2CallbackUrl` header as the return URL it becomes (the model's
/// `ResourceOauth2ReturnUrlType`: 1 to 2048 characters, `\w+:(\/?\/?)[^\s]+`), so a bad one
/// is the caller's `ValidationException` now, not the agent's failure later.
pub(crate) fn check_callback_url(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(CALLBACK_HEADER).iter();
    let Some(v) = values.next() else {
        return Ok(());
    };
    if values.next().is_some() {
        return Err(ApiError::field(
            "OAuth2CallbackUrl",
            "OAuth2CallbackUrl may be given once",
        ));
    }
    let url = v
        .to_str()
        .map_err(|_| ApiError::field("OAuth2CallbackUrl", "OAuth2CallbackUrl must be ASCII"))?;
    berth_api::model::data().check_shape(
        "ResourceOauth2ReturnUrlType",
        "OAuth2CallbackUrl",
        &serde_json::Value::String(url.to_owned()),
    )
}

/// The path and query of a data-plane call, decoded.
pub(crate) struct Call {
    pub(crate) runtime_id: String,
    pub(crate) qualifier: Option<String>,
}

impl Call {
    /// The invocation every session operation hands the invoker: this call, its session, the
    /// contract headers, the signer and request id, and what to do in the session.
    pub(crate) fn invocation<'a>(
        &'a self,
        session_id: &'a str,
        headers: &'a HeaderMap,
        actor: Option<&'a str>,
        request_id: &'a RequestId,
        action: Action,
        forwarded: bool,
    ) -> Invocation<'a> {
        Invocation {
            runtime_id: &self.runtime_id,
            qualifier: self.qualifier.as_deref(),
            session_id,
            user_id: headers.get(USER_HEADER).and_then(|v| v.to_str().ok()),
            actor,
            request_id: &request_id.0,
            headers,
            action,
            forwarded,
        }
    }
}

impl Call {
    /// The caller's request as it came, for forwarding to the node that runs `session_id`.
    pub(crate) fn caller_request<'a>(
        &'a self,
        session_id: &'a str,
        method: Method,
        uri: &'a axum::http::Uri,
        headers: &'a HeaderMap,
        body: Bytes,
        forwarded: bool,
    ) -> CallerRequest<'a> {
        CallerRequest {
            method,
            uri,
            headers,
            body,
            session: (&self.runtime_id, session_id),
            forwarded,
        }
    }
}

pub(crate) fn parse_call(
    state: &AppState,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
) -> Result<Call, ApiError> {
    call_on(state, path_runtime(&path), query)
}

/// The runtime axum's path parameters captured (percent-decoded), `None` when it is not UTF-8.
fn path_runtime(path: &Result<RawPathParams, RawPathParamsRejection>) -> Option<&str> {
    path.as_ref()
        .ok()
        .map(|p| p.iter().next().map_or("", |(_, v)| v))
}

/// [`parse_call`] from the runtime as the path names it, percent-decoded (`None`: not UTF-8 once
/// decoded).
fn call_on(state: &AppState, runtime: Option<&str>, query: Option<&str>) -> Result<Call, ApiError> {
    let raw = runtime
        .ok_or_else(|| {
            ApiError::field(
                "agentRuntimeArn",
                "the runtime in the path is not valid UTF-8",
            )
        })?
        .to_owned();
    let mut qualifier = None;
    let mut account = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode_str(v).decode_utf8_lossy().into_owned();
        match k {
            "qualifier" => qualifier = Some(v),
            "accountId" => account = Some(v),
            _ => {}
        }
    }
    let p = state.control.partition();
    let runtime_id = if raw.starts_with("arn:") {
        match berth_types::ResourceArn::parse(&raw, p) {
            Ok(berth_types::ResourceArn::Runtime { runtime_id }) => runtime_id,
            Ok(_)
            | Err(berth_types::ArnError::Malformed | berth_types::ArnError::UnsupportedResource) => {
                return Err(ApiError::field(
                    "agentRuntimeArn",
                    format!("{raw} is not an agent runtime ARN"),
                ));
            }
            Err(berth_types::ArnError::ForeignPartition) => {
                return Err(ApiError::not_found(format!("no agent runtime {raw}")));
            }
        }
    } else {
        if let Some(a) = &account
            && a != &p.account_id
        {
            return Err(ApiError::not_found(format!(
                "no agent runtime {raw} in account {a}"
            )));
        }
        raw
    };
    if runtime_id.is_empty() || runtime_id.len() > 110 {
        return Err(ApiError::field(
            "agentRuntimeArn",
            "the runtime id is empty or too long",
        ));
    }
    Ok(Call {
        runtime_id,
        qualifier,
    })
}

pub(crate) fn session_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(&SESSION_HEADER) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::field("runtimeSessionId", "the session id must be ASCII"))?;
    let n = s.chars().count();
    if !(33..=256).contains(&n) {
        return Err(ApiError::field(
            "runtimeSessionId",
            format!(
                "Value at 'runtimeSessionId' failed to satisfy constraint: Member must have length between 33 and 256, got {n}"
            ),
        ));
    }
    Ok(Some(s.to_owned()))
}

/// The path and query of a call on a session, and its session id (the caller's, else a new one,
/// as AgentCore makes up one when the header is absent).
pub(crate) fn parse_session_call(
    state: &AppState,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(Call, String), ApiError> {
    let call = parse_call(state, path, query)?;
    Ok((call, session_or_new(headers)?))
}

/// The caller's session id, else a new one (AgentCore makes up one when the header is absent).
fn session_or_new(headers: &HeaderMap) -> Result<String, ApiError> {
    let sid =
        session_id(headers)?.unwrap_or_else(|| format!("berth-{}", berth_types::new_request_id()));
    Ok(sid)
}

/// Like [`parse_session_call`] for the WebSocket route: the session id may also come as the
/// query parameter `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id`, where the SDK's presigned
/// URLs (`AgentCoreRuntimeClient.generate_presigned_url`) put it.
pub(crate) fn parse_ws_call(
    state: &AppState,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(Call, String), ApiError> {
    let call = parse_call(state, path, query)?;
    if let Some(sid) = session_id(headers)? {
        return Ok((call, sid));
    }
    let from_query = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(SESSION_HEADER.as_str()))
        .map(|(_, v)| percent_decode_str(v).decode_utf8_lossy().into_owned());
    let sid = match from_query {
        Some(v) => {
            let mut h = HeaderMap::new();
            let value = HeaderValue::from_str(&v)
                .map_err(|_| ApiError::field("runtimeSessionId", "the session id must be ASCII"))?;
            h.insert(SESSION_HEADER, value);
            session_id(&h)?.unwrap_or(v)
        }
        None => format!("berth-{}", berth_types::new_request_id()),
    };
    Ok((call, sid))
}

fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::NotFound(s) => ApiError::not_found(format!("no live session {s}")),
        SessionError::QuotaExceeded(m) => ApiError::new(ErrorKind::ServiceQuotaExceeded, m),
        SessionError::Throttled(m) => ApiError::new(ErrorKind::Throttling, m),
        SessionError::Invalid(m) => ApiError::field("runtimeSessionId", m),
        other => ApiError::new(ErrorKind::RuntimeClient, other.to_string()),
    }
}

pub(crate) fn invoke_error(e: InvokeError) -> ApiError {
    match e {
        InvokeError::Unauthenticated => ApiError::new(ErrorKind::AccessDenied, e.to_string()),
        InvokeError::Route(e) => e,
        InvokeError::Open(e) | InvokeError::Invoke(e) => session_error(e),
        InvokeError::Place(e) => ApiError::internal_because(format_args!("node store: {e}")),
        // Calls are forwarded before errors are converted; this is a forwarded call whose
        // session moved meanwhile (it is never sent on).
        InvokeError::Elsewhere(node) => ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!(
                "the session runs on node {} ({}): connect there for this call",
                node.id, node.address
            ),
        ),
    }
}

/// `InvokeAgentRuntime`'s route.
pub(crate) const INVOKE_ROUTE: &str = "/runtimes/{agentRuntimeId}/invocations";

/// The runtime segment of an `InvokeAgentRuntime` request's path (still percent-encoded) when the
/// router would route the request to [`invoke`], else `None`: the edge's direct path
/// ([`invoke_direct`]) asks this, the router's table stays the one that decides every other
/// path ([`routes`]; a test holds the two to the same answers).
pub(crate) fn invocation_target<'p>(method: &Method, path: &'p str) -> Option<&'p str> {
    if method != Method::POST {
        return None;
    }
    let segment = path
        .strip_prefix("/runtimes/")?
        .strip_suffix("/invocations")?;
    // An empty segment is routed too (matchit captures it): the handler refuses it.
    (!segment.contains('/')).then_some(segment)
}

/// A runtime segment of a path as axum's path parameters give it: percent-decoded, `None` when
/// that is not UTF-8.
pub(crate) fn decode_segment(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// `InvokeAgentRuntime`, as routed: extracts, then [`invoke_runtime`].
pub async fn invoke(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    verified: Option<Extension<Verified>>,
    OriginalUri(uri): OriginalUri,
    path: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WireError> {
    let verified = verified.as_ref().map(|Extension(v)| v);
    invoke_runtime(
        &s,
        path_runtime(&path),
        &rid,
        verified,
        &uri,
        &headers,
        body,
    )
    .await
}

/// `InvokeAgentRuntime` served by the edge without the router, on `runtime` (the path's runtime
/// as [`decode_segment`] gives it): the same layers (`crate::agentcore`) around the same handler
/// body ([`invoke_runtime`]), without the route lookup, the middleware's boxed futures and the
/// extractors. The edge takes this way for the requests [`invocation_target`] names.
pub(crate) async fn invoke_direct(
    state: AppState,
    req: Request,
    runtime: Option<String>,
) -> Response {
    let handler = {
        let state = state.clone();
        move |req: Request| async move {
            let (mut parts, body) = req.into_parts();
            // Set by the outermost layer (`error::with_request_id`).
            let Some(rid) = parts.extensions.remove::<RequestId>() else {
                return WireError(ApiError::internal_because("the request has no request id"))
                    .into_response();
            };
            let verified = parts.extensions.remove::<Verified>();
            // The auth layer buffered the body whole; this takes its one chunk.
            let body = match http_body_util::BodyExt::collect(body).await {
                Ok(b) => b.to_bytes(),
                Err(e) => return WireError(ApiError::internal_because(e)).into_response(),
            };
            invoke_runtime(
                &state,
                runtime.as_deref(),
                &rid,
                verified.as_ref(),
                &parts.uri,
                &parts.headers,
                body,
            )
            .await
            .into_response()
        }
    };
    crate::agentcore(&state, req, handler).await
}

/// `InvokeAgentRuntime` on `runtime` (the path's runtime, percent-decoded; `None`: not UTF-8):
/// hands the invocation to the invoker (`berth_runtime::invoker`) and converts the answer.
pub(crate) async fn invoke_runtime(
    s: &AppState,
    runtime: Option<&str>,
    rid: &RequestId,
    verified: Option<&Verified>,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, WireError> {
    let call = call_on(s, runtime, uri.query())?;
    let sid = session_or_new(headers)?;
    check_callback_url(headers)?;
    let actor = verified.map(|v| v.principal.access_key_id.as_str());
    let forwarded = s.nodes.forwarded(headers)?;
    let inv = call.invocation(
        &sid,
        headers,
        actor,
        rid,
        Action::Invoke(body.clone()),
        forwarded,
    );
    let req = call.caller_request(&sid, Method::POST, uri, headers, body, forwarded);
    let resp = match invoke_here_or_there(s, inv, req).await? {
        Served::Here(answer) => answer,
        Served::There(response) => return Ok(response),
    };
    let (parts, stream) = resp.into_parts();
    let status = parts.status;
    // Anything but a success or redirect is a failed answer, including statuses HTTP does not
    // define (hyper accepts 600-999 from the agent): never pass those through as if valid.
    if status.is_client_error() || status.is_server_error() || status.as_u16() >= 600 {
        // AgentCore does not pass a failed agent answer through: the caller gets
        // RuntimeClientError naming the agent's status, with the agent's (small) error body.
        let detail = error_body(stream).await;
        return Err(ApiError::new(
            ErrorKind::RuntimeClient,
            format!(
                "Received error ({}) from runtime: {detail}",
                status.as_u16()
            ),
        )
        .into());
    }
    let mut out = Response::from_parts(parts, Body::from_stream(stream));
    if let Ok(v) = HeaderValue::from_str(&sid) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(out)
}

/// `InvokeAgentRuntimeCommand`: validates the body against the model, then runs the command in
/// the session `InvokeAgentRuntime` would use (opened the same way, through the invoker), and
/// streams its output as event-stream frames (`berth_runtime::command`). Audited once started.
pub async fn command(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    verified: Option<Extension<Verified>>,
    OriginalUri(uri): OriginalUri,
    path: Result<RawPathParams, RawPathParamsRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WireError> {
    let (call, sid) = parse_session_call(&s, path, uri.query(), &headers)?;
    let forwarded = s.nodes.forwarded(&headers)?;
    let input: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::cannot_parse("the request body is not valid JSON"))?;
    let params = [("agentRuntimeArn", call.runtime_id.clone())];
    berth_api::model::data().input(
        "InvokeAgentRuntimeCommand",
        serde_json::json!({ "body": input }),
        &params,
    )?;
    let command = input
        .get("command")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_owned();
    // The model types timeout as a plain integer; its documentation gives the range.
    let timeout = match input.get("timeout").and_then(|t| t.as_i64()) {
        None => DEFAULT_TIMEOUT,
        Some(t) if TIMEOUT_RANGE.contains(&t) => std::time::Duration::from_secs(t as u64),
        Some(t) => {
            return Err(ApiError::field(
                "body.timeout",
                format!(
                    "Value '{t}' at 'body.timeout' failed to satisfy constraint: Member must be between {} and {} seconds",
                    TIMEOUT_RANGE.start(),
                    TIMEOUT_RANGE.end()
                ),
            )
            .into());
        }
    };
    let actor = verified.as_ref().map(|v| v.principal.access_key_id.clone());
    let audit = serde_json::json!({
        "runtimeSessionId": sid,
        "qualifier": call.qualifier,
        "command": command,
        "timeout": timeout.as_secs(),
    });
    let inv = call.invocation(
        &sid,
        &headers,
        actor.as_deref(),
        &rid,
        Action::Command(Command { command, timeout }),
        forwarded,
    );
    let req = call.caller_request(&sid, Method::POST, &uri, &headers, body, forwarded);
    let resp = match invoke_here_or_there(&s, inv, req).await? {
        Served::Here(answer) => answer,
        // The node running the session runs the command (and audits it).
        Served::There(response) => return Ok(response),
    };
    let arn = s.control.partition().runtime_arn(&call.runtime_id);
    berth_control::Caller::new(actor.unwrap_or_default(), Some(rid.0.clone()))
        .scope(
            s.control
                .audit_event("InvokeAgentRuntimeCommand", &arn, audit),
        )
        .await;
    let (parts, stream) = resp.into_parts();
    let mut out = Response::from_parts(parts, Body::from_stream(stream));
    if let Ok(v) = HeaderValue::from_str(&sid) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(out)
}

/// `StopRuntimeSession`.
pub async fn stop_session(
    State(s): State<AppState>,
    OriginalUri(uri): OriginalUri,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WireError> {
    let call = parse_call(&s, path, q.as_deref())?;
    let Some(sid) = session_id(&headers)? else {
        return Err(ApiError::field("runtimeSessionId", "Value null at 'runtimeSessionId' failed to satisfy constraint: Member must not be null").into());
    };
    // A store failure is a 500 (logged with the request id), not "no such runtime".
    let runtime = s
        .control
        .store()
        .runtime(&call.runtime_id)
        .await
        .map_err(|e| ApiError::internal_because(format_args!("control store: {e}")))?;
    if runtime.is_none() {
        return Err(ApiError::not_found(format!("no agent runtime {}", call.runtime_id)).into());
    }
    // A session another node runs is stopped there.
    if !s.nodes.forwarded(&headers)?
        && s.sessions.existing(&call.runtime_id, &sid).is_none()
        && let Some(node) = s
            .nodes
            .cluster
            .owner(&call.runtime_id, &sid)
            .await
            .map_err(|e| ApiError::internal_because(format_args!("node store: {e}")))?
    {
        return Ok(s
            .nodes
            .forward(
                &node,
                (&call.runtime_id, &sid),
                Method::POST,
                &uri,
                &headers,
                body,
            )
            .await?);
    }
    s.sessions
        .stop(&call.runtime_id, &sid)
        .await
        .map_err(session_error)?;
    let mut out = axum::Json(serde_json::json!({})).into_response();
    if let Ok(v) = HeaderValue::from_str(&sid) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(out)
}

/// The data-plane routes.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route(INVOKE_ROUTE, post(invoke))
        .route("/runtimes/{agentRuntimeId}/commands", post(command))
        .route(
            "/runtimes/{agentRuntimeId}/ws",
            axum::routing::get(crate::ws::websocket),
        )
        .route(
            "/runtimes/{agentRuntimeId}/stopruntimesession",
            post(stop_session),
        )
}

/// The first few KiB of a failed agent answer, as text for an error message.
pub(crate) async fn error_body(mut stream: berth_runtime::session::BodyStream) -> String {
    use futures::StreamExt;
    const CAP: usize = 4096;
    let mut buf = Vec::new();
    while buf.len() < CAP {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(CAP);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The edge's direct path ([`invoke_direct`]) takes exactly the requests the router
    /// routes to [`invoke`], with the same runtime.
    #[tokio::test]
    async fn the_direct_path_takes_what_the_router_routes_to_invoke() {
        let app = axum::Router::new().route(
            INVOKE_ROUTE,
            axum::routing::post(
                |path: Result<RawPathParams, RawPathParamsRejection>| async move {
                    match path {
                        Ok(p) => p.iter().next().map_or("", |(_, v)| v).to_owned(),
                        Err(_) => "<not UTF-8>".to_owned(),
                    }
                },
            ),
        );
        let arn = "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fr-1";
        let paths = [
            "/runtimes/r-1/invocations".to_owned(),
            format!("/runtimes/{arn}/invocations"),
            format!("/runtimes/{arn}/invocations?qualifier=DEFAULT&accountId=1"),
            "/runtimes/%FF%FE/invocations".to_owned(),
            "/runtimes/a%2Fb/invocations".to_owned(),
            "/runtimes//invocations".to_owned(),
            "/runtimes/a/b/invocations".to_owned(),
            "/runtimes/r-1/invocations/".to_owned(),
            "/runtimes/r-1/invocations%2F".to_owned(),
            "/runtimes/r-1/invocations/.well-known/agent-card.json".to_owned(),
            "/runtimes/r-1/commands".to_owned(),
            "/runtimes/invocations".to_owned(),
            "/Runtimes/r-1/invocations".to_owned(),
            "//runtimes/r-1/invocations".to_owned(),
            "/runtimes/r-1//invocations".to_owned(),
        ];
        for method in [Method::POST, Method::GET, Method::PUT] {
            for path in &paths {
                let req = axum::http::Request::builder()
                    .method(method.clone())
                    .uri(path.as_str())
                    .body(Body::empty())
                    .unwrap();
                let uri = req.uri().clone();
                let resp = app.clone().oneshot(req).await.unwrap();
                let routed = if resp.status().is_success() {
                    let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
                    Some(String::from_utf8(body.to_vec()).unwrap())
                } else {
                    None
                };
                let direct = invocation_target(&method, uri.path()).map(|segment| {
                    decode_segment(segment).unwrap_or_else(|| "<not UTF-8>".to_owned())
                });
                assert_eq!(direct, routed, "{method} {path}");
            }
        }
    }
}
