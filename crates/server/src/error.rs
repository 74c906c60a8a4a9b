//! Errors on the wire, request ids, and the fallback for unknown routes.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::{ApiError, ErrorKind};

/// The id of the request being served (`x-amzn-RequestId`), stored in request extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Header carrying the request id on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Wraps [`ApiError`] so it can be returned from handlers.
#[derive(Debug)]
pub struct WireError(pub ApiError);

impl From<ApiError> for WireError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

/// A server-side failure (5xx) that Berth answered, riding on the response's extensions from
/// [`WireError::into_response`] to [`request_id`], which logs it once with the request id.
#[derive(Clone, Debug)]
struct Fault {
    code: &'static str,
    cause: Option<String>,
}

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(e.body())).into_response();
        resp.headers_mut()
            .insert(ERROR_TYPE, HeaderValue::from_static(e.code()));
        if status.is_server_error() {
            resp.extensions_mut().insert(Fault {
                code: e.code(),
                cause: e.cause.or(Some(e.message)),
            });
        }
        resp
    }
}

/// Assigns a request id, makes it available to handlers and logs, and stamps it on the response.
///
/// This is also the one place a 5xx that Berth answered is logged: every [`WireError`] of
/// status 500 and up leaves its cause on the response, and it is logged here, after the handler,
/// as one line carrying the request id the client got (`x-amzn-RequestId`), so an operator can
/// find the cause of any 500 a client reports.
pub async fn request_id(req: Request, next: Next) -> Response {
    with_request_id(req, |req| next.run(req)).await
}

/// [`request_id`] around `inner` (the AgentCore layers run as one middleware: see `router_for`).
pub(crate) async fn with_request_id<F, Fut>(mut req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = berth_types::new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    // Kept for a failure's log line (a `Uri` clone shares its bytes: nothing is copied).
    let method = req.method().clone();
    let uri = req.uri().clone();
    // Only the id in the span (the fmt layer formats a span's fields when it is created, on every
    // request): a failed request's own line below names the method and path.
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = tracing::Instrument::instrument(inner(req), span).await;
    if let Some(f) = resp.extensions_mut().remove::<Fault>() {
        let status = resp.status().as_u16();
        let cause = f.cause.as_deref().unwrap_or_default();
        let path = uri.path();
        if status == 500 {
            tracing::error!(request_id = %id, %method, %path, status, code = f.code, cause, "request failed");
        } else {
            tracing::warn!(request_id = %id, %method, %path, status, code = f.code, cause, "request not served");
        }
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// No operation matches the method and path.
pub async fn unknown_operation() -> WireError {
    WireError(ApiError::new(
        ErrorKind::UnknownOperation,
        "no operation matches this method and path",
    ))
}
