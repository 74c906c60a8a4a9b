//! Parsing of the two places a SigV4 signature travels: the `Authorization` header and the
//! `X-Amz-*` query parameters of a presigned URL.

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use percent_encoding::percent_decode_str;

use crate::Error;

/// The only algorithm accepted (SigV4A's `AWS4-ECDSA-P256-SHA256` is not supported).
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The fixed last element of every credential scope.
const SCOPE_TERMINATOR: &str = "aws4_request";
/// Longest validity AWS allows for a presigned URL: seven days.
pub(crate) const MAX_PRESIGNED_EXPIRES: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A parsed `Authorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/bedrock-agentcore/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=<64 hex>` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    /// The access key id from the credential scope.
    pub access_key_id: String,
    /// The credential scope's date, `YYYYMMDD`.
    pub date: String,
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service (`bedrock-agentcore`, `s3`...).
    pub service: String,
    /// Lower-case names of the signed headers, in the order sent (sorted, for real clients).
    pub signed_headers: Vec<String>,
    /// The signature, 64 lower-case hex characters as sent.
    pub signature: String,
}

impl AuthHeader {
    /// The `SignedHeaders` value as it appears in the canonical request.
    pub(crate) fn signed_headers_joined(&self) -> String {
        self.signed_headers.join(";")
    }
}

/// Parses the `Authorization` header of a SigV4-signed request.
///
/// Fails with [`Error::MissingAuthentication`] when there is no such header,
/// [`Error::UnsupportedAlgorithm`] for any other scheme (including `Bearer` tokens), and
/// [`Error::MalformedAuthorization`] when a part is missing, repeated or ill-formed.
pub fn parse_authorization(headers: &HeaderMap) -> Result<AuthHeader, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Error::MissingAuthentication);
    };
    let malformed = |service: Option<&str>, reason: String| Error::MalformedAuthorization {
        service: service.map(str::to_owned),
        reason,
    };
    if values.next().is_some() {
        return Err(malformed(None, "more than one Authorization header".into()));
    }
    let value = value
        .to_str()
        .map_err(|_| malformed(None, "Authorization header is not visible ASCII".into()))?
        .trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(Error::UnsupportedAlgorithm {
            algorithm: algorithm.to_owned(),
        });
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, val)) = part.split_once('=') else {
            return Err(malformed(
                None,
                format!("Authorization header component {part:?} is not key=value"),
            ));
        };
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(malformed(
                    None,
                    format!("Authorization header has unknown component {other:?}"),
                ));
            }
        };
        if slot.replace(val.trim()).is_some() {
            return Err(malformed(
                None,
                format!("Authorization header repeats the {key:?} component"),
            ));
        }
    }

    // The credential comes first so later failures can still report the service's own codes.
    let scope = match credential {
        Some(credential) => {
            parse_credential(credential).map_err(|reason| malformed(None, reason))?
        }
        None => {
            return Err(malformed(
                None,
                "Authorization header requires 'Credential' parameter".into(),
            ));
        }
    };
    let service = Some(scope.service.as_str());
    let signed_headers = signed_headers
        .ok_or_else(|| {
            malformed(
                service,
                "Authorization header requires 'SignedHeaders' parameter".into(),
            )
        })
        .and_then(|v| parse_signed_headers(v).map_err(|reason| malformed(service, reason)))?;
    let signature = signature
        .ok_or_else(|| {
            malformed(
                service,
                "Authorization header requires 'Signature' parameter".into(),
            )
        })
        .and_then(|v| check_signature_format(v).map_err(|reason| malformed(service, reason)))?;

    Ok(AuthHeader {
        access_key_id: scope.access_key_id,
        date: scope.date,
        region: scope.region,
        service: scope.service,
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The `X-Amz-*` parameters of a presigned URL, and the query without them.
#[derive(Clone, Debug)]
pub(crate) struct PresignedQuery {
    /// The same facts an `Authorization` header carries.
    pub(crate) auth: AuthHeader,
    /// `X-Amz-Date`, not yet parsed.
    pub(crate) amz_date: String,
    /// `X-Amz-Expires`.
    pub(crate) expires: Duration,
    /// `X-Amz-Security-Token`, decoded.
    pub(crate) security_token: Option<String>,
    /// The other query parameters, still encoded as received, in their original order.
    pub(crate) remaining_query: String,
}

/// The query parameters that carry presigned authentication (the signer re-adds all but the
/// signature when it recomputes the canonical query).
const PRESIGN_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Whether the query carries presigned-URL authentication.
pub(crate) fn has_presign_params(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = decode(pair.split_once('=').map_or(pair, |(k, _)| k));
        matches!(
            key.as_ref(),
            "X-Amz-Algorithm" | "X-Amz-Credential" | "X-Amz-Signature"
        )
    })
}

/// Parses presigned-URL authentication out of a raw (still encoded) query string.
pub(crate) fn parse_presigned_query(query: &str) -> Result<PresignedQuery, Error> {
    let mut found: [Option<String>; 7] = Default::default();
    let mut remaining = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key);
        let Some(index) = PRESIGN_PARAMS.iter().position(|p| *p == key) else {
            remaining.push(pair);
            continue;
        };
        if found[index]
            .replace(decode(raw_value).into_owned())
            .is_some()
        {
            return Err(Error::MalformedPresignedQuery {
                service: None,
                reason: format!("query parameter {key} appears more than once"),
            });
        }
    }
    let [
        algorithm,
        credential,
        amz_date,
        expires,
        signed_headers,
        signature,
        token,
    ] = found;

    let malformed = |service: Option<&str>, reason: String| Error::MalformedPresignedQuery {
        service: service.map(str::to_owned),
        reason,
    };
    let missing = |service: Option<&str>, name: &str| {
        malformed(
            service,
            format!("Query-string authentication requires the {name} parameter"),
        )
    };
    let algorithm = algorithm.ok_or_else(|| missing(None, "X-Amz-Algorithm"))?;
    if algorithm != ALGORITHM {
        return Err(Error::UnsupportedAlgorithm { algorithm });
    }
    let credential = credential.ok_or_else(|| missing(None, "X-Amz-Credential"))?;
    let scope = parse_credential(&credential).map_err(|reason| malformed(None, reason))?;
    let service = Some(scope.service.as_str());
    let amz_date = amz_date.ok_or_else(|| missing(service, "X-Amz-Date"))?;
    let expires = expires
        .ok_or_else(|| missing(service, "X-Amz-Expires"))
        .and_then(|v| parse_expires(&v).map_err(|reason| malformed(service, reason)))?;
    let signed_headers = signed_headers
        .ok_or_else(|| missing(service, "X-Amz-SignedHeaders"))
        .and_then(|v| parse_signed_headers(&v).map_err(|reason| malformed(service, reason)))?;
    let signature = signature.ok_or_else(|| missing(service, "X-Amz-Signature"))?;
    check_signature_format(&signature).map_err(|reason| malformed(service, reason))?;

    Ok(PresignedQuery {
        auth: AuthHeader {
            access_key_id: scope.access_key_id,
            date: scope.date,
            region: scope.region,
            service: scope.service,
            signed_headers,
            signature,
        },
        amz_date,
        expires,
        security_token: token,
        remaining_query: remaining.join("&"),
    })
}

/// The parts of `AKID/YYYYMMDD/region/service/aws4_request`.
struct CredentialScope {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

fn parse_credential(value: &str) -> Result<CredentialScope, String> {
    let parts: Vec<&str> = value.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(format!(
            "credential {value:?} is not of the form <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request"
        ));
    };
    if terminator != SCOPE_TERMINATOR {
        return Err(format!(
            "credential should be scoped with a valid terminator: 'aws4_request', not {terminator:?}"
        ));
    }
    if access_key_id.is_empty() || region.is_empty() || service.is_empty() {
        return Err(format!("credential {value:?} has an empty component"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("credential date {date:?} is not YYYYMMDD"));
    }
    Ok(CredentialScope {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

fn parse_signed_headers(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value.split(';').map(str::to_owned).collect();
    for name in &names {
        // Lower-case header-name characters only: anything else could never match the canonical
        // request the client built, and the signer would reject it later anyway.
        let valid = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
            });
        if !valid {
            return Err(format!("signed header name {name:?} is invalid"));
        }
    }
    Ok(names)
}

fn check_signature_format(value: &str) -> Result<&str, String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value)
    } else {
        Err("signature must be 64 hexadecimal characters".into())
    }
}

fn parse_expires(value: &str) -> Result<Duration, String> {
    let secs: u64 = value
        .parse()
        .ok()
        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("X-Amz-Expires {value:?} is not a number of seconds"))?;
    let expires = Duration::from_secs(secs);
    if secs == 0 || expires > MAX_PRESIGNED_EXPIRES {
        return Err(format!(
            "X-Amz-Expires must be between 1 and {} seconds",
            MAX_PRESIGNED_EXPIRES.as_secs()
        ));
    }
    Ok(expires)
}

/// Percent-decodes a query component (`+` stays `+`, as SigV4 clients encode spaces as `%20`).
fn decode(raw: &str) -> Cow<'_, str> {
    percent_decode_str(raw).decode_utf8_lossy()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SIG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn headers(auth: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        headers
    }

    #[test]
    fn parses_botocore_header() {
        let auth = parse_authorization(&headers(&format!(
            "AWS4-HMAC-SHA256 Credential=BKIA0000/20250101/us-east-1/bedrock-agentcore/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={SIG}"
        )))
        .unwrap();
        assert_eq!(
            auth,
            AuthHeader {
                access_key_id: "BKIA0000".into(),
                date: "20250101".into(),
                region: "us-east-1".into(),
                service: "bedrock-agentcore".into(),
                signed_headers: vec!["host".into(), "x-amz-date".into()],
                signature: SIG.into(),
            }
        );
    }

    #[test]
    fn tolerates_compact_separators() {
        let auth = parse_authorization(&headers(&format!(
            "AWS4-HMAC-SHA256 Credential=K/20250101/r/s3/aws4_request,SignedHeaders=host,Signature={SIG}"
        )))
        .unwrap();
        assert_eq!(auth.service, "s3");
        assert_eq!(auth.signed_headers, ["host"]);
    }

    #[test]
    fn missing_header_is_missing_authentication() {
        assert!(matches!(
            parse_authorization(&HeaderMap::new()),
            Err(Error::MissingAuthentication)
        ));
    }

    #[test]
    fn other_schemes_are_unsupported() {
        for value in [
            "Bearer abc.def.ghi",
            "AWS4-ECDSA-P256-SHA256 Credential=x",
            "AWS AKID:sig",
        ] {
            let err = parse_authorization(&headers(value)).unwrap_err();
            assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{value}");
            assert_eq!(err.aws_code(), "IncompleteSignatureException");
            assert_eq!(err.aws_code_for("s3"), "InvalidArgument");
            assert_eq!(err.http_status_for("s3"), 400);
        }
    }

    #[test]
    fn malformed_headers_keep_the_service_when_known() {
        let cred = "Credential=K/20250101/us-east-1/s3/aws4_request";
        let cases = [
            (
                format!("AWS4-HMAC-SHA256 {cred}, Signature={SIG}"),
                Some("s3"),
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host"),
                Some("s3"),
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature=abc"),
                Some("s3"),
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=Host, Signature={SIG}"),
                Some("s3"),
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;;x, Signature={SIG}"),
                Some("s3"),
            ),
            (
                format!("AWS4-HMAC-SHA256 SignedHeaders=host, Signature={SIG}"),
                None,
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, {cred}, SignedHeaders=host, Signature={SIG}"),
                None,
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=K/20250101/us-east-1/s3/aws5_request, SignedHeaders=host, Signature={SIG}"
                ),
                None,
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=K/2025011/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={SIG}"
                ),
                None,
            ),
            (
                format!(
                    "AWS4-HMAC-SHA256 Credential=K/20250101/s3/aws4_request, SignedHeaders=host, Signature={SIG}"
                ),
                None,
            ),
            (
                format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host, Signature={SIG}, Extra=1"),
                None,
            ),
            ("AWS4-HMAC-SHA256".to_owned(), None),
        ];
        for (value, service) in cases {
            match parse_authorization(&headers(&value)) {
                Err(err @ Error::MalformedAuthorization { .. }) => {
                    assert_eq!(err.service(), service, "{value}");
                    let code = if service == Some("s3") {
                        "AuthorizationHeaderMalformed"
                    } else {
                        "IncompleteSignatureException"
                    };
                    assert_eq!(err.aws_code(), code, "{value}");
                }
                other => panic!("{value}: {other:?}"),
            }
        }
    }

    #[test]
    fn presigned_query_is_split_from_the_rest() {
        let query = format!(
            "versionId=3&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K%2F20250101%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20250101T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Security-Token=a%2Bb&X-Amz-Signature={SIG}&prefix=a%20b"
        );
        assert!(has_presign_params(&query));
        let parsed = parse_presigned_query(&query).unwrap();
        assert_eq!(parsed.auth.access_key_id, "K");
        assert_eq!(parsed.auth.service, "s3");
        assert_eq!(parsed.expires, Duration::from_secs(900));
        assert_eq!(parsed.security_token.as_deref(), Some("a+b"));
        assert_eq!(parsed.remaining_query, "versionId=3&prefix=a%20b");
        assert!(!has_presign_params("versionId=3&prefix=X-Amz-Signature"));
    }

    #[test]
    fn presigned_expiry_bounds() {
        let query = |expires: &str| {
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=K%2F20250101%2Fr%2Fs3%2Faws4_request\
                 &X-Amz-Date=20250101T120000Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={SIG}"
            )
        };
        assert!(parse_presigned_query(&query("604800")).is_ok());
        for bad in ["0", "604801", "-1", "+5", "abc", ""] {
            assert!(
                matches!(
                    parse_presigned_query(&query(bad)),
                    Err(Error::MalformedPresignedQuery { .. })
                ),
                "{bad}"
            );
        }
    }
}
