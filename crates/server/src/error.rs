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

impl IntoResponse for WireError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(e.body())).into_response();
        resp.headers_mut()
            .insert(ERROR_TYPE, HeaderValue::from_static(e.code()));
        resp
    }
}

/// Assigns a request id, makes it available to handlers and logs, and stamps it on the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = berth_types::new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let _enter = span.enter();
    drop(_enter);
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
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
