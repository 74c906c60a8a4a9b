//! The CloudWatch Logs API subset (`berth_trace::logs`) on the public listener: awsJson1_1,
//! `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`, signed for the service `logs`.
//! Errors are JSON 1.1 documents (`__type`, `message`) with HTTP 400, as CloudWatch answers.

use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_auth::{Scope, Verified};
use berth_trace::logs::{self, Caller, Logs};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The SigV4 service of the Logs API.
pub const SERVICE: &str = "logs";
/// The `X-Amz-Target` prefix of its operations.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The operation a Logs API request names, if it is one.
pub(crate) fn target(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
}

fn json_reply(status: StatusCode, body: &serde_json::Value) -> Response {
    let code = body
        .get("__type")
        .and_then(serde_json::Value::as_str)
        .and_then(|c| HeaderValue::from_str(c).ok());
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response();
    if let Some(c) = code {
        resp.headers_mut().insert("x-amzn-errortype", c);
    }
    resp
}

fn error(e: &logs::Error) -> Response {
    if let logs::Error::Store(cause) = e {
        tracing::error!(error = %cause, "logs api: the store failed");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_reply(status, &e.body())
}

fn ok<T: Serialize>(v: &T) -> Response {
    match serde_json::to_value(v) {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err(e) => error(&logs::Error::Store(berth_trace::Error::Invalid(
            e.to_string(),
        ))),
    }
}

/// An empty JSON object, the answer of operations without output members.
fn empty() -> Response {
    json_reply(StatusCode::OK, &serde_json::json!({}))
}

/// The request body as `T` (an empty body is `{}`).
fn input<T: DeserializeOwned>(body: &Bytes) -> Result<T, serde_json::Error> {
    let text: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(text)
}

/// The `SerializationException` AWS JSON services answer a body that is not the input with.
fn not_the_input(e: &serde_json::Error) -> Response {
    json_reply(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "__type": "SerializationException",
            "message": format!("the request body does not match the operation's input: {e}"),
        }),
    )
}

fn caller(req: &Request) -> Caller {
    let verified = req.extensions().get::<Verified>();
    Caller {
        access_key_id: verified
            .map(|v| v.principal.access_key_id.clone())
            .unwrap_or_default(),
        runtime_id: verified.and_then(|v| match &v.principal.scope {
            Scope::Runtime { runtime_id } => Some(runtime_id.clone()),
            _ => None,
        }),
    }
}

macro_rules! run {
    ($body:expr, |$req:ident| $call:expr) => {{
        match input(&$body) {
            Err(e) => not_the_input(&e),
            Ok($req) => match $call {
                Ok(out) => ok(&out),
                Err(e) => error(&e),
            },
        }
    }};
}

/// `POST /`: dispatches on `X-Amz-Target`.
async fn dispatch(State(s): State<AppState>, req: Request) -> Response {
    let Some(op) = target(req.headers()).map(str::to_owned) else {
        return crate::error::unknown_operation().await.into_response();
    };
    let who = caller(&req);
    let body = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({
                    "__type": "SerializationException",
                    "message": "the request body could not be read",
                }),
            );
        }
    };
    let l: &Logs = &s.logs;
    match op.as_str() {
        "StartQuery" => run!(body, |r| l.start_query(&who, r).await),
        "GetQueryResults" => run!(body, |r| l.get_query_results(&who, &r)),
        "StopQuery" => run!(body, |r| l.stop_query(&who, &r)),
        "GetLogEvents" => run!(body, |r| l.get_log_events(&who, &r).await),
        "FilterLogEvents" => run!(body, |r| l.filter_log_events(&who, &r).await),
        "DescribeLogGroups" => run!(body, |r| l.describe_log_groups(&who, &r).await),
        "DescribeLogStreams" => run!(body, |r| l.describe_log_streams(&r).await),
        "PutLogEvents" => run!(body, |r| l.put_log_events(&r).await),
        "CreateLogGroup" => match input(&body) {
            Err(e) => not_the_input(&e),
            Ok(r) => match l.create_log_group(&r).await {
                Ok(()) => empty(),
                Err(e) => error(&e),
            },
        },
        "CreateLogStream" => match input(&body) {
            Err(e) => not_the_input(&e),
            Ok(r) => match l.create_log_stream(&r).await {
                Ok(()) => empty(),
                Err(e) => error(&e),
            },
        },
        other => json_reply(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({
                "__type": "UnknownOperationException",
                "message": format!("{other} is not an operation this server serves"),
            }),
        ),
    }
}

/// Gives a Logs API refusal from the layers in front of the handler (authentication,
/// authorization, body limits), which answer in AgentCore's JSON, the `__type` member JSON 1.1
/// clients read the error code from.
pub(crate) async fn json_1_1_errors<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if target(req.headers()).is_none() {
        return inner(req).await;
    }
    let resp = inner(req).await;
    if resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Some(code) = parts
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(':').next().unwrap_or(c).to_owned())
    else {
        return Response::from_parts(parts, body);
    };
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let mut doc: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(obj) = doc.as_object_mut()
        && !obj.contains_key("__type")
    {
        obj.insert("__type".into(), serde_json::Value::String(code));
        if !obj.contains_key("message") {
            obj.insert("message".into(), serde_json::Value::String(String::new()));
        }
    }
    let text = doc.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Response::from_parts(parts, axum::body::Body::from(text))
}

/// The Logs API route.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", post(dispatch))
}
