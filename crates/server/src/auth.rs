//! SigV4 authentication in front of every route, in three steps so a request that cannot be
//! authenticated costs no body: first everything the headers show (mechanism, dates, scope, the
//! access key id, the credential scope's service and region), then the body under its
//! operation's limit and the listener's budgets of in-flight bytes (`body.rs`), then the
//! signature over headers and body.

use crate::AppState;
use crate::body;
use crate::edge::Context;
use crate::error::{RequestId, WireError};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use berth_api::{ApiError, ErrorKind};
use berth_auth::Verified;
use std::time::SystemTime;
use tracing::info;

/// Bodies larger than this are hashed on the blocking pool so a worker thread never stalls.
const HASH_INLINE_LIMIT: usize = 256 * 1024;

/// Authenticates the request, then passes it on with the body buffered and the [`Verified`]
/// identity in its extensions.
pub async fn authenticate<F, Fut>(state: &AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let (mut parts, body) = req.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
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
    let refused = |e: berth_auth::Error| {
        // The reason is logged for the operator; the access key id is not a secret, the
        // signature and secret never reach a log line.
        info!(code = e.aws_code(), error = %e, "request refused by authentication");
        // Which protocol answers errors: S3 speaks XML, AgentCore JSON. Worked out only for a
        // refusal, from the header's scope when the error does not name the service.
        let s3 = e.service() == Some(berth_auth::S3_SERVICE)
            || berth_auth::parse_authorization(&parts.headers)
                .is_ok_and(|h| h.service == berth_auth::S3_SERVICE);
        if s3 {
            return crate::s3::auth_error(&e, &request_id);
        }
        WireError(ApiError::custom(
            e.aws_code(),
            e.http_status(),
            e.aws_message(),
        ))
        .into_response()
    };

    // 1. The headers alone: nothing of the body has been read yet.
    let pre = match berth_auth::precheck(
        &parts.uri,
        &parts.headers,
        state.keys.as_ref(),
        SystemTime::now(),
    ) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    // The scope must name this server's region and one of the services it speaks, as AWS
    // insists; otherwise a signature for another endpoint would be accepted here.
    let region = &state.control.partition().region;
    // The Logs API (`X-Amz-Target: Logs_20140328.*`) is signed for `logs`, and nothing else is.
    let logs = crate::logs_api::target(&parts.headers).is_some();
    let expected = if logs {
        crate::logs_api::SERVICE
    } else if pre.service == berth_auth::S3_SERVICE {
        berth_auth::S3_SERVICE
    } else {
        berth_auth::AGENTCORE_SERVICE
    };
    if pre.service != expected {
        return WireError(ApiError::custom(
            "InvalidSignatureException",
            403,
            format!("Credential should be scoped to correct service: '{expected}'."),
        ))
        .into_response();
    }
    if &pre.region != region {
        return WireError(ApiError::custom(
            "InvalidSignatureException",
            403,
            format!("Credential should be scoped to a valid region, not '{}'; this server is in '{region}'.", pre.region),
        ))
        .into_response();
    }
    let s3 = pre.service == berth_auth::S3_SERVICE;

    // 2. The body, under its operation's limit and within the listener's budgets.
    let ctx = parts
        .extensions
        .get::<Context>()
        .cloned()
        .unwrap_or_else(Context::standalone);
    let limit = ctx
        .limits
        .for_request(s3, &parts.method, parts.uri.path(), &parts.headers);
    let declared = body::declared_length(&parts.headers);
    let (bytes, _reservation) =
        match body::read(body, declared, limit, &ctx.budgets, ctx.stall).await {
            Ok(read) => read,
            Err(e) => return body_refused(&e, s3, &request_id),
        };

    // 3. The signature over headers and body (the header phase is not run again).
    let result = if bytes.len() <= HASH_INLINE_LIMIT {
        pre.verify(&parts.method, &parts.uri, &parts.headers, &bytes)
    } else {
        let (method, uri, headers, b) = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
            bytes.clone(),
        );
        match tokio::task::spawn_blocking(move || pre.verify(&method, &uri, &headers, &b)).await {
            Ok(r) => r,
            Err(e) => {
                return WireError(ApiError::internal_because(format_args!(
                    "signature check task: {e}"
                )))
                .into_response();
            }
        }
    };
    let verified: Verified = match result {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    let s3 = verified.service == berth_auth::S3_SERVICE;
    // Authorization (roles, access keys, runtime credentials): see `crate::authz`.
    match crate::authz::authorize(state, &verified, &parts, &bytes, s3, &request_id).await {
        Ok(granted) => {
            parts.extensions.insert(granted);
        }
        Err(refused) => return refused,
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(verified);
    // The body's bytes stay reserved (`_reservation`) until the handler is done with them.
    if s3 {
        return crate::s3::handle(state.clone(), req).await;
    }
    inner(req).await
}

/// A body that was not read, in the request's protocol.
fn body_refused(e: &body::Error, s3: bool, request_id: &str) -> Response {
    info!(error = %e, "request body refused");
    match e {
        body::Error::TooLarge { limit } if s3 => crate::s3::body_too_large(*limit, request_id),
        body::Error::Throttled if s3 => crate::s3::slow_down(request_id),
        body::Error::Throttled => WireError(ApiError::new(
            ErrorKind::Throttling,
            "too many request bytes are in flight; retry later",
        ))
        .into_response(),
        _ if s3 => crate::s3::incomplete_body(request_id),
        body::Error::TooLarge { limit } => WireError(ApiError::field(
            "body",
            format!("the request body exceeds the {limit}-byte limit"),
        ))
        .into_response(),
        body::Error::Stalled(_) | body::Error::Read(_) => WireError(ApiError::field(
            "body",
            "the request body could not be read",
        ))
        .into_response(),
    }
}
