//! SigV4 authentication in front of every route.

use crate::AppState;
use crate::error::{RequestId, WireError};
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ApiError;
use berth_auth::Verified;
use std::time::SystemTime;
use tracing::info;

/// Largest body accepted (AgentCore's payload limit is 100 MB).
pub const MAX_BODY: usize = 100 * 1024 * 1024;

/// Bodies larger than this are hashed on the blocking pool so a worker thread never stalls.
const HASH_INLINE_LIMIT: usize = 256 * 1024;

/// Verifies the signature, then passes the request on with the body buffered and the
/// [`Verified`] identity in its extensions.
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    // Which protocol answers errors: S3 speaks XML, AgentCore JSON.
    let s3 = berth_auth::parse_authorization(&parts.headers)
        .map(|h| h.service == berth_auth::S3_SERVICE)
        .unwrap_or(false);
    // A query that is not UTF-8 once decoded cannot be canonicalized the way the client signed
    // it; refuse it as bad input rather than as a bad signature.
    if let Some(q) = parts.uri.query()
        && percent_encoding::percent_decode_str(q)
            .decode_utf8()
            .is_err()
    {
        return WireError(ApiError::field(
            "query",
            "the query string is not valid UTF-8 once percent-decoded",
        ))
        .into_response();
    }
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) if s3 => return crate::s3::body_too_large(MAX_BODY, &request_id),
        Err(_) => {
            return WireError(ApiError::field(
                "body",
                format!("the request body exceeds the {MAX_BODY}-byte limit or could not be read"),
            ))
            .into_response();
        }
    };
    let keys = state.keys.clone();
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let verify = move |body: &[u8]| {
        berth_auth::verify(
            &method,
            &uri,
            &headers,
            body,
            keys.as_ref(),
            SystemTime::now(),
        )
    };
    let result = if bytes.len() <= HASH_INLINE_LIMIT {
        verify(&bytes)
    } else {
        let b = bytes.clone();
        match tokio::task::spawn_blocking(move || verify(&b)).await {
            Ok(r) => r,
            Err(_) => return WireError(ApiError::internal()).into_response(),
        }
    };
    let verified: Verified = match result {
        Ok(v) => v,
        Err(e) => {
            // The reason is logged for the operator; the access key id is not a secret, the
            // signature and secret never reach a log line.
            info!(code = e.aws_code(), error = %e, "request refused by authentication");
            if s3 || e.service() == Some(berth_auth::S3_SERVICE) {
                return crate::s3::auth_error(&e, &request_id);
            }
            return WireError(ApiError::custom(
                e.aws_code(),
                e.http_status(),
                e.aws_message(),
            ))
            .into_response();
        }
    };
    // The scope must name this server's region and one of the services it speaks, as AWS
    // insists; otherwise a signature for another endpoint would be accepted here.
    let region = &state.control.partition().region;
    if verified.service != berth_auth::S3_SERVICE
        && verified.service != berth_auth::AGENTCORE_SERVICE
    {
        return WireError(ApiError::custom(
            "InvalidSignatureException",
            403,
            format!(
                "Credential should be scoped to correct service: '{}'.",
                berth_auth::AGENTCORE_SERVICE
            ),
        ))
        .into_response();
    }
    if &verified.region != region {
        return WireError(ApiError::custom(
            "InvalidSignatureException",
            403,
            format!("Credential should be scoped to a valid region, not '{}'; this server is in '{region}'.", verified.region),
        ))
        .into_response();
    }
    let s3 = verified.service == berth_auth::S3_SERVICE;
    // Authorization (roles, access keys, runtime credentials): see `crate::authz`.
    match crate::authz::authorize(&state, &verified, &parts, s3, &request_id).await {
        Ok(granted) => {
            parts.extensions.insert(granted);
        }
        Err(refused) => return refused,
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(verified);
    if s3 {
        return crate::s3::handle(state, req).await;
    }
    next.run(req).await
}
