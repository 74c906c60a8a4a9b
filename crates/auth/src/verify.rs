//! Server-side verification: recompute the signature a request should carry and compare.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::canonical::canonical_header_value;
use crate::parse::{AuthHeader, has_presign_params, parse_authorization, parse_presigned_query};
use crate::time::{format_amz_date, parse_amz_date};
use crate::{Error, KeyLookup, Principal, S3_SERVICE};

/// How far a request's timestamp may be from the server's clock, either way (AWS uses 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` values announcing an `aws-chunked` body.
const STREAMING_PAYLOADS: [&str; 3] = [
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
];

/// A request whose signature checked out, and what it was signed for.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Who signed it.
    pub principal: Principal,
    /// The credential scope's service: `bedrock-agentcore` for both AgentCore planes, `s3` for the
    /// artifact store. The server routes on it.
    pub service: String,
    /// The credential scope's region. Not checked here: the server decides which regions it
    /// answers for.
    pub region: String,
    /// The session token (`x-amz-security-token` header or `X-Amz-Security-Token` parameter) the
    /// request was signed with, if any. Keys are looked up by access key id alone, so a caller
    /// that issues session tokens must compare this with the principal's session itself.
    pub session_token: Option<String>,
    /// How far the signature covers the body.
    pub payload: Payload,
}

/// How far a verified signature covers the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The body's SHA-256 was signed and the body passed to [`verify`] has that digest.
    Signed,
    /// The client declared `UNSIGNED-PAYLOAD` (S3 requests and presigned URLs only): the body is
    /// not authenticated.
    Unsigned,
    /// An S3 `aws-chunked` body announced by this `x-amz-content-sha256` value. The request
    /// signature covers the headers only; the body is not checked here, and for
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD*` the per-chunk signatures are not verified either.
    Streaming(String),
}

/// Verifies a SigV4-signed request: from the `Authorization` header, or from the `X-Amz-*` query
/// parameters of a presigned URL.
///
/// `uri` is the request target exactly as received (path and query still percent-encoded), `body`
/// the whole body (the caller buffers it with a size cap), `now` the server's clock (injected so
/// tests control time).
///
/// Canonicalization follows the credential scope's service. For `s3`: the path is used as sent
/// (single encoding, no dot-segment removal) and the payload hash is the mandatory
/// `x-amz-content-sha256` header, which may be a hex digest (then the body must have it),
/// `UNSIGNED-PAYLOAD` or a `STREAMING-*` value (see [`Payload::Streaming`]). For every other
/// service (the AgentCore planes): the path is normalized and encoded a second time, and the
/// payload hash is computed from `body` (boto3 sends no `x-amz-content-sha256` there; if a client
/// does, it must equal the body's digest).
///
/// Only the headers named in `SignedHeaders` take part; `host` and (for header authentication)
/// `x-amz-date` must be among them, and so must `x-amz-security-token` when it is sent. Header
/// values are canonicalized as botocore does: repeated headers joined with `,`, runs of
/// whitespace collapsed to one space, ends trimmed; values that are not UTF-8 are read as
/// Latin-1, which is how Python's HTTP client puts non-ASCII text on the wire.
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    keys: &dyn KeyLookup,
    now: SystemTime,
) -> Result<Verified, Error> {
    precheck(uri, headers, keys, now)?.verify(method, uri, headers, body)
}

/// Whether the request authenticates with a presigned query (`true`) or an `Authorization`
/// header (`false`); neither or both is an error.
fn presigned(uri: &Uri, headers: &HeaderMap) -> Result<bool, Error> {
    let presigned = uri.query().is_some_and(has_presign_params);
    match (headers.contains_key(AUTHORIZATION), presigned) {
        (false, false) => Err(Error::MissingAuthentication),
        (true, true) => Err(Error::MalformedAuthorization {
            service: None,
            reason: "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
                     or the Authorization header should be specified"
                .into(),
        }),
        (true, false) => Ok(false),
        (false, true) => Ok(true),
    }
}

/// What the headers alone establish about a request: every check of [`verify`] that needs no
/// body has passed. [`Prechecked::verify`] finishes the job once the body is read, without
/// parsing the headers or looking the key up again.
#[derive(Clone)]
pub struct Prechecked {
    /// The key the request claims to be signed with, known to the [`KeyLookup`].
    pub principal: Principal,
    /// The credential scope's service.
    pub service: String,
    /// The credential scope's region.
    pub region: String,
    phase: Phase,
}

/// What the signature check still needs of the header phase.
#[derive(Clone)]
enum Phase {
    Header {
        auth: AuthHeader,
        time: SystemTime,
        session_token: Option<String>,
    },
    Presigned {
        query: crate::parse::PresignedQuery,
        time: SystemTime,
    },
}

impl std::fmt::Debug for Prechecked {
    /// The parsed signature stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prechecked")
            .field("principal", &self.principal)
            .field("service", &self.service)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Runs every check of [`verify`] that can be made before the body is read: the authentication
/// mechanism, the `Authorization` header or presigned query, the dates, clock skew and expiry,
/// the signed-header rules, the access key id and (for S3) the declared payload hash. A request
/// refused here is refused by [`verify`] with the same error, so a server can refuse it without
/// reading its body; one that passes must still go through [`Prechecked::verify`] with the whole
/// body.
pub fn precheck(
    uri: &Uri,
    headers: &HeaderMap,
    keys: &dyn KeyLookup,
    now: SystemTime,
) -> Result<Prechecked, Error> {
    let presigned = presigned(uri, headers)?;
    let (principal, phase) = if presigned {
        let PresignedPhase {
            query,
            time,
            principal,
        } = presigned_phase(uri, keys, now)?;
        (principal, Phase::Presigned { query, time })
    } else {
        let HeaderPhase {
            auth,
            time,
            session_token,
            principal,
        } = header_phase(headers, keys, now)?;
        (
            principal,
            Phase::Header {
                auth,
                time,
                session_token,
            },
        )
    };
    let auth = match &phase {
        Phase::Header { auth, .. } => auth,
        Phase::Presigned { query, .. } => &query.auth,
    };
    // Only S3 takes the hash from a header; elsewhere the body is needed and this cannot fail.
    if auth.service == S3_SERVICE {
        payload_hash(&auth.service, presigned, headers, &[])?;
    }
    Ok(Prechecked {
        principal,
        service: auth.service.clone(),
        region: auth.region.clone(),
        phase,
    })
}

impl Prechecked {
    /// The rest of [`verify`]: the signature over the request and its whole `body`, and the body
    /// against the payload hash. `method`, `uri` and `headers` must be those given to [`precheck`].
    pub fn verify(
        self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Verified, Error> {
        match self.phase {
            Phase::Header {
                auth,
                time,
                session_token,
            } => verify_header_auth(
                method,
                uri,
                headers,
                body,
                HeaderPhase {
                    auth,
                    time,
                    session_token,
                    principal: self.principal,
                },
            ),
            Phase::Presigned { query, time } => verify_presigned(
                method,
                uri,
                headers,
                body,
                PresignedPhase {
                    query,
                    time,
                    principal: self.principal,
                },
            ),
        }
    }
}

/// The body-independent part of header authentication.
struct HeaderPhase {
    auth: AuthHeader,
    time: SystemTime,
    session_token: Option<String>,
    principal: Principal,
}

/// The body-independent part of query-string authentication.
struct PresignedPhase {
    query: crate::parse::PresignedQuery,
    time: SystemTime,
    principal: Principal,
}

fn header_phase(
    headers: &HeaderMap,
    keys: &dyn KeyLookup,
    now: SystemTime,
) -> Result<HeaderPhase, Error> {
    let auth = parse_authorization(headers)?;
    let service = auth.service.clone();
    let malformed = |reason: &str| Error::MalformedAuthorization {
        service: Some(service.clone()),
        reason: reason.to_owned(),
    };

    let amz_date = single_header(headers, X_AMZ_DATE)
        .ok_or_else(|| Error::InvalidDate {
            service: Some(service.clone()),
            reason: "x-amz-date header is missing, repeated or not text".into(),
        })?
        .to_owned();
    let time = parse_amz_date(&amz_date).map_err(|reason| Error::InvalidDate {
        service: Some(service.clone()),
        reason,
    })?;
    check_scope_date(&auth, &amz_date)?;
    check_clock_skew(&service, &amz_date, time, now)?;

    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization",
        ));
    }
    // aws-sigv4 always signs x-amz-date from the identity's time: a client that left it unsigned
    // could not be matched, so say why instead of reporting a bad signature.
    if !auth.signed_headers.iter().any(|h| h == X_AMZ_DATE) {
        return Err(malformed("x-amz-date must be a signed header"));
    }
    let session_token = match headers.get(X_AMZ_SECURITY_TOKEN) {
        None => None,
        Some(token) => {
            // An unsigned token could be swapped by anyone on the path; refuse it rather than
            // report a token nobody vouched for.
            if !auth
                .signed_headers
                .iter()
                .any(|h| h == X_AMZ_SECURITY_TOKEN)
            {
                return Err(malformed("x-amz-security-token must be a signed header"));
            }
            let token = token.to_str().map_err(|_| Error::SignatureMismatch {
                service: service.clone(),
            })?;
            Some(token.to_owned())
        }
    };

    let principal = lookup(keys, &auth)?;
    Ok(HeaderPhase {
        auth,
        time,
        session_token,
        principal,
    })
}

fn verify_header_auth(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    phase: HeaderPhase,
) -> Result<Verified, Error> {
    let HeaderPhase {
        auth,
        time,
        session_token,
        principal,
    } = phase;
    let service = auth.service.clone();
    let payload = payload_hash(&service, false, headers, body)?;

    let direct = if service == S3_SERVICE {
        None
    } else {
        crate::direct::header_signature(
            method,
            uri,
            headers,
            &crate::direct::Signed {
                auth: &auth,
                secret: &principal.secret_access_key,
                session_token: session_token.as_deref(),
                time,
                payload_hash: &payload.canonical,
            },
        )
    };
    let expected = match direct {
        Some(sig) => sig?,
        None => expected_signature(&Recompute {
            method,
            path_and_query: uri.path_and_query().map_or("/", |pq| pq.as_str()),
            authority: uri.authority().map(|a| a.as_str()),
            headers,
            auth: &auth,
            secret: &principal.secret_access_key,
            session_token: session_token.as_deref(),
            time,
            payload_hash: &payload.canonical,
            presigned_expires: None,
        })?,
    };
    check_signature(&service, &expected, &auth.signature)?;
    let payload = payload.check_body(&service, body)?;

    Ok(Verified {
        principal,
        service: auth.service,
        region: auth.region,
        session_token,
        payload,
    })
}

fn presigned_phase(
    uri: &Uri,
    keys: &dyn KeyLookup,
    now: SystemTime,
) -> Result<PresignedPhase, Error> {
    let query = parse_presigned_query(uri.query().unwrap_or_default())?;
    let auth = &query.auth;
    let service = auth.service.clone();

    let time = parse_amz_date(&query.amz_date).map_err(|reason| Error::InvalidDate {
        service: Some(service.clone()),
        reason,
    })?;
    check_scope_date(auth, &query.amz_date)?;
    // A presigned URL may be used until it expires, but not long before it was signed.
    if let Ok(ahead) = time.duration_since(now)
        && ahead > MAX_CLOCK_SKEW
    {
        return Err(Error::RequestTimeSkewed {
            service,
            amz_date: query.amz_date.clone(),
            server_time: format_amz_date(now),
            future: true,
        });
    }
    let expires_at = time.checked_add(query.expires).unwrap_or(time);
    if now > expires_at {
        return Err(Error::PresignedExpired {
            service,
            expired_at: format_amz_date(expires_at),
            server_time: format_amz_date(now),
        });
    }
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(Error::MalformedPresignedQuery {
            service: Some(service),
            reason: "'Host' must be a signed header".into(),
        });
    }

    let principal = lookup(keys, auth)?;
    Ok(PresignedPhase {
        query,
        time,
        principal,
    })
}

fn verify_presigned(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    phase: PresignedPhase,
) -> Result<Verified, Error> {
    let PresignedPhase {
        query,
        time,
        principal,
    } = phase;
    let auth = &query.auth;
    let service = auth.service.clone();
    let payload = payload_hash(&service, true, headers, body)?;
    let path_and_query = if query.remaining_query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), query.remaining_query)
    };

    let expected = expected_signature(&Recompute {
        method,
        path_and_query: &path_and_query,
        authority: uri.authority().map(|a| a.as_str()),
        headers,
        auth,
        secret: &principal.secret_access_key,
        session_token: query.security_token.as_deref(),
        time,
        payload_hash: &payload.canonical,
        presigned_expires: Some(query.expires),
    })?;
    check_signature(&service, &expected, &auth.signature)?;
    let payload = payload.check_body(&service, body)?;

    Ok(Verified {
        principal,
        service: query.auth.service,
        region: query.auth.region,
        session_token: query.security_token,
        payload,
    })
}

/// The one value of a header, or `None` when it is absent, repeated or not text.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()
}

fn check_scope_date(auth: &AuthHeader, amz_date: &str) -> Result<(), Error> {
    if amz_date.get(..8) == Some(auth.date.as_str()) {
        return Ok(());
    }
    Err(Error::ScopeDateMismatch {
        service: auth.service.clone(),
        scope_date: auth.date.clone(),
        amz_date: amz_date.to_owned(),
    })
}

fn check_clock_skew(
    service: &str,
    amz_date: &str,
    time: SystemTime,
    now: SystemTime,
) -> Result<(), Error> {
    let (distance, future) = match now.duration_since(time) {
        Ok(behind) => (behind, false),
        Err(ahead) => (ahead.duration(), true),
    };
    if distance <= MAX_CLOCK_SKEW {
        return Ok(());
    }
    Err(Error::RequestTimeSkewed {
        service: service.to_owned(),
        amz_date: amz_date.to_owned(),
        server_time: format_amz_date(now),
        future,
    })
}

fn lookup(keys: &dyn KeyLookup, auth: &AuthHeader) -> Result<Principal, Error> {
    keys.lookup(&auth.access_key_id)
        .ok_or_else(|| Error::UnknownAccessKey {
            service: auth.service.clone(),
            access_key_id: auth.access_key_id.clone(),
        })
}

/// The payload hash for the canonical request, and what is still to be checked about the body
/// once the signature is known to be good.
struct PayloadHash {
    canonical: String,
    pending: PendingCheck,
}

enum PendingCheck {
    /// The canonical hash was computed from the body: nothing left to check.
    Computed,
    /// The client claimed this digest; the body must have it.
    Claimed,
    Unsigned,
    Streaming,
}

impl PayloadHash {
    fn check_body(self, service: &str, body: &[u8]) -> Result<Payload, Error> {
        match self.pending {
            PendingCheck::Computed => Ok(Payload::Signed),
            PendingCheck::Claimed => {
                if sha256_hex(body).eq_ignore_ascii_case(&self.canonical) {
                    Ok(Payload::Signed)
                } else {
                    Err(Error::ContentSha256Mismatch {
                        service: service.to_owned(),
                    })
                }
            }
            PendingCheck::Unsigned => Ok(Payload::Unsigned),
            PendingCheck::Streaming => Ok(Payload::Streaming(self.canonical)),
        }
    }
}

fn payload_hash(
    service: &str,
    presigned: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PayloadHash, Error> {
    let declared = match headers.get(X_AMZ_CONTENT_SHA256) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| Error::InvalidContentSha256 {
            service: service.to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })?),
    };
    let pending = |canonical: &str, pending| PayloadHash {
        canonical: canonical.to_owned(),
        pending,
    };

    if service != S3_SERVICE {
        // Outside S3 the body is always authenticated. botocore puts a declared digest into the
        // canonical request verbatim, so use it there and hold the body to it afterwards.
        return Ok(match declared {
            Some(declared) => pending(declared, PendingCheck::Claimed),
            None => pending(&sha256_hex(body), PendingCheck::Computed),
        });
    }
    let Some(declared) = declared else {
        // Presigned S3 URLs cannot know the body, so the signer used UNSIGNED-PAYLOAD.
        if presigned {
            return Ok(pending(UNSIGNED_PAYLOAD, PendingCheck::Unsigned));
        }
        return Err(Error::MissingContentSha256 {
            service: service.to_owned(),
        });
    };
    if declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(pending(declared, PendingCheck::Claimed))
    } else if declared == UNSIGNED_PAYLOAD {
        Ok(pending(declared, PendingCheck::Unsigned))
    } else if STREAMING_PAYLOADS.contains(&declared) {
        Ok(pending(declared, PendingCheck::Streaming))
    } else {
        Err(Error::InvalidContentSha256 {
            service: service.to_owned(),
            value: declared.to_owned(),
        })
    }
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Everything needed to recompute a request's signature.
struct Recompute<'a> {
    method: &'a Method,
    /// Path and query as they go into the canonical request (presigned auth parameters removed).
    path_and_query: &'a str,
    /// The request target's authority, for HTTP/2 requests that carry no `host` header.
    authority: Option<&'a str>,
    headers: &'a HeaderMap,
    auth: &'a AuthHeader,
    secret: &'a str,
    session_token: Option<&'a str>,
    time: SystemTime,
    payload_hash: &'a str,
    /// `Some` for query-string authentication.
    presigned_expires: Option<Duration>,
}

/// Recomputes the signature with aws-sigv4, returning it as lower-case hex.
fn expected_signature(r: &Recompute<'_>) -> Result<String, Error> {
    let service = &r.auth.service;
    let mismatch = || Error::SignatureMismatch {
        service: service.clone(),
    };

    // Hand the signer exactly the signed headers. For header authentication it adds x-amz-date
    // and x-amz-security-token itself, from the time and the identity, so leave those out.
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for name in &r.auth.signed_headers {
        let name = name.as_str();
        if r.presigned_expires.is_none() && (name == X_AMZ_DATE || name == X_AMZ_SECURITY_TOKEN) {
            continue;
        }
        let before = pairs.len();
        for value in r.headers.get_all(name) {
            pairs.push((name, canonical_header_value(value.as_bytes())));
        }
        if pairs.len() == before {
            match (name, r.authority) {
                ("host", Some(authority)) => pairs.push(("host", authority.to_owned())),
                // A header the client signed is gone (a proxy may have dropped it): the request
                // is not the one that was signed.
                _ => return Err(mismatch()),
            }
        }
    }

    let mut settings = SigningSettings::default();
    // The client chose what to sign; nothing may be dropped from its list.
    settings.excluded_headers = Some(Vec::new());
    settings.session_token_mode = SessionTokenMode::Include;
    if service == S3_SERVICE {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    if let Some(expires) = r.presigned_expires {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }

    let identity: Identity = aws_credential_types::Credentials::new(
        r.auth.access_key_id.clone(),
        r.secret.to_owned(),
        r.session_token.map(str::to_owned),
        None,
        "berth-auth",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&r.auth.region)
        .name(service)
        .time(r.time)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let request = SignableRequest::new(
        r.method.as_str(),
        r.path_and_query,
        pairs.iter().map(|(name, value)| (*name, value.as_str())),
        SignableBody::Precomputed(r.payload_hash.to_owned()),
    )
    .map_err(|_| mismatch())?;
    // Errors here mean a header the client signed cannot be rebuilt (for example a value that
    // is not valid in a header once canonicalized): the signature cannot be the client's.
    let output = aws_sigv4::http_request::sign(request, &params).map_err(|_| mismatch())?;

    // The signer derives SignedHeaders from what it was given; if that differs from the client's
    // list (unsorted, duplicated, or x-amz-date unsigned) the signatures cannot agree.
    let signed_headers = match r.presigned_expires {
        None => output
            .output()
            .headers()
            .find(|(name, _)| *name == "authorization")
            .and_then(|(_, value)| signed_headers_of(value))
            .map(str::to_owned),
        Some(_) => output
            .output()
            .params()
            .iter()
            .find(|(name, _)| *name == "X-Amz-SignedHeaders")
            .map(|(_, value)| value.to_string()),
    };
    if signed_headers.as_deref() != Some(r.auth.signed_headers_joined().as_str()) {
        return Err(mismatch());
    }
    Ok(output.signature().to_owned())
}

/// The `SignedHeaders=` value of an `Authorization` header the signer produced.
fn signed_headers_of(authorization: &str) -> Option<&str> {
    let start = authorization.find("SignedHeaders=")? + "SignedHeaders=".len();
    let rest = &authorization[start..];
    Some(rest.split(',').next().unwrap_or(rest).trim())
}

fn check_signature(service: &str, expected: &str, provided: &str) -> Result<(), Error> {
    // Constant time, so response timing does not reveal how much of a guess was right.
    if bool::from(expected.as_bytes().ct_eq(provided.as_bytes())) {
        Ok(())
    } else {
        Err(Error::SignatureMismatch {
            service: service.to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Credentials;
    use http::Request;
    use std::time::UNIX_EPOCH;

    /// The direct computation (`crate::direct`) and the general one (`aws-sigv4`) agree on every
    /// request the direct one takes, and it takes the usual ones.
    #[test]
    fn direct_signatures_agree_with_the_general_path() {
        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: [Case<'_>; 7] = [
            (
                "http://h:1/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A1%3Aruntime%2Fa-b/invocations?qualifier=DEFAULT",
                &[("content-type", "application/json")],
                true,
            ),
            (
                "http://h:1/runtimes/",
                &[(
                    "x-amzn-bedrock-agentcore-runtime-session-id",
                    "s-0123456789012345678901234567890123",
                )],
                true,
            ),
            (
                "http://h/memories/m/events?maxResults=5&a=2&a=1",
                &[("x-custom", "  two   words ")],
                true,
            ),
            ("http://h/a%20b/?x=%2F", &[], false),
            ("http://h/a/./b", &[], false),
            ("http://h/a?flag", &[], false),
            ("http://h/a", &[("x-note", "caf\u{e9}")], false),
        ];
        for (url, extra, direct_applies) in cases {
            let mut b = Request::post(url);
            for (k, v) in extra {
                b = b.header(*k, *v);
            }
            let mut req = b.body(b"{\"x\":1}".to_vec()).unwrap();
            crate::sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", now).unwrap();
            let auth = parse_authorization(req.headers()).unwrap();
            let payload = sha256_hex(req.body());
            let direct = crate::direct::header_signature(
                req.method(),
                req.uri(),
                req.headers(),
                &crate::direct::Signed {
                    auth: &auth,
                    secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    session_token: None,
                    time: now,
                    payload_hash: &payload,
                },
            );
            let general = expected_signature(&Recompute {
                method: req.method(),
                path_and_query: req.uri().path_and_query().unwrap().as_str(),
                authority: None,
                headers: req.headers(),
                auth: &auth,
                secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                session_token: None,
                time: now,
                payload_hash: &payload,
                presigned_expires: None,
            })
            .unwrap();
            assert_eq!(general, auth.signature, "{url}");
            match direct {
                Some(sig) => {
                    assert!(direct_applies, "{url} should take the general path");
                    assert_eq!(sig.unwrap(), general, "{url}");
                }
                None => assert!(!direct_applies, "{url} should take the direct path"),
            }
            // And the whole verification accepts it either way.
            let mut keys = crate::StaticKeys::new();
            keys.insert(crate::Principal::root(&creds));
            verify(
                req.method(),
                req.uri(),
                req.headers(),
                req.body(),
                &keys,
                now,
            )
            .unwrap();
        }
    }
}
