//! Client-side signing, for the `berth` CLI and for Berth's own calls to AWS (Bedrock).

use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{AUTHORIZATION, HOST};
use http::uri::Scheme;
use http::{HeaderName, HeaderValue, Request};
use sha2::{Digest, Sha256};

use crate::canonical::canonical_header_value;
use crate::{Credentials, Error, S3_SERVICE};

/// Headers never signed: hop-by-hop headers and ones proxies rewrite (botocore's list), plus the
/// signature itself.
const UNSIGNED_HEADERS: [&str; 15] = [
    "authorization",
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Headers a previous signing pass added; removed first so re-signing (a retry) starts clean.
const SIGNING_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Signs an outgoing request in place with SigV4 for `service` in `region`, at time `now`.
///
/// Adds `x-amz-date` and `authorization`, plus `x-amz-content-sha256` (the body's digest) when
/// `service` is `s3`, and `host` (from the URI's authority) when the request has none, so the
/// value sent is the value signed. Every other header present is signed, except hop-by-hop and
/// proxy-rewritten ones (`user-agent`, `connection`, `transfer-encoding`...). Signed header values
/// are rewritten in canonical form (whitespace runs collapsed) so the wire matches the signature.
/// The body is always signed. Any earlier signature headers are replaced.
pub fn sign<B: AsRef<[u8]>>(
    req: &mut Request<B>,
    creds: &Credentials,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), Error> {
    sign_with_session_token(req, creds, None, region, service, now)
}

/// [`sign`] for temporary credentials: with a `session_token` (AWS STS credentials, such as
/// `AWS_SESSION_TOKEN`), the request also carries it as `x-amz-security-token`, and that header
/// is signed, as AWS requires. Used to call AWS services (Bedrock) with the operator's
/// credentials.
pub fn sign_with_session_token<B: AsRef<[u8]>>(
    req: &mut Request<B>,
    creds: &Credentials,
    session_token: Option<&str>,
    region: &str,
    service: &str,
    now: SystemTime,
) -> Result<(), Error> {
    let signing_error = |reason: String| Error::Signing { reason };

    let host = match req.headers().get(HOST) {
        Some(_) => None,
        None => Some(host_header(req.uri()).ok_or_else(|| {
            signing_error("the request has neither a host header nor an absolute uri".into())
        })?),
    };
    let headers = req.headers_mut();
    for name in SIGNING_HEADERS {
        headers.remove(name);
    }
    if let Some(host) = host {
        let value = HeaderValue::from_str(&host)
            .map_err(|_| signing_error(format!("host {host:?} is not a valid header value")))?;
        headers.insert(HOST, value);
    }

    // Put signed values on the wire in canonical form, so a receiver that canonicalizes them
    // (as the verifier does) sees exactly what was signed.
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| !UNSIGNED_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect();
    let mut pairs: Vec<(HeaderName, String)> = Vec::new();
    for name in names {
        let values: Vec<String> = headers
            .get_all(&name)
            .iter()
            .map(|value| canonical_header_value(value.as_bytes()))
            .collect();
        let changed = headers
            .get_all(&name)
            .iter()
            .zip(&values)
            .any(|(raw, canonical)| raw.as_bytes() != canonical.as_bytes());
        if changed {
            headers.remove(&name);
            for value in &values {
                let value = HeaderValue::from_str(value).map_err(|_| {
                    signing_error(format!("header {name} has a value that cannot be signed"))
                })?;
                headers.append(name.clone(), value);
            }
        }
        pairs.extend(values.into_iter().map(|value| (name.clone(), value)));
    }

    let mut settings = SigningSettings::default();
    // The filtering above already chose the headers.
    settings.excluded_headers = Some(Vec::new());
    if service == S3_SERVICE {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let identity: Identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        session_token.map(str::to_owned),
        None,
        "berth-auth",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| signing_error(e.to_string()))?
        .into();

    let uri = req.uri().to_string();
    let body_hash = hex::encode(Sha256::digest(req.body().as_ref()));
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
        SignableBody::Precomputed(body_hash),
    )
    .map_err(|e| signing_error(e.to_string()))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| signing_error(e.to_string()))?
        .into_parts();

    let (new_headers, _params) = instructions.into_parts();
    for header in new_headers {
        let mut value = HeaderValue::from_str(header.value()).map_err(|_| {
            signing_error(format!(
                "signer produced an invalid {} header",
                header.name()
            ))
        })?;
        value.set_sensitive(header.name() == AUTHORIZATION.as_str() || header.sensitive());
        req.headers_mut().insert(header.name(), value);
    }
    Ok(())
}

/// The `host` header a client sends for `uri`: the authority without a default port.
fn host_header(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default_port = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => Some(443),
        Some(scheme) if *scheme == Scheme::HTTP => Some(80),
        _ => None,
    };
    Some(match uri.port_u16() {
        Some(port) if Some(port) != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}
