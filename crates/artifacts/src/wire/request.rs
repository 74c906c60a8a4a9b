//! How S3 request headers and parameters map to store calls, and the headers responses carry.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_TYPE, ETAG,
    EXPIRES, HeaderMap, HeaderName, HeaderValue, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED,
};

use crate::Error;
use crate::checksum::{Checksum, ChecksumAlgorithm};
use crate::local::etag_matches;
use crate::model::{
    ChecksumType, CompleteMeta, CompletePart, ListQuery, Listing, MAX_LIST_KEYS, MultipartUpload,
    ObjectHeaders, ObjectMeta, PartInfo, PartMeta, PutMeta, UploadMeta, WriteCondition,
};
use crate::wire::chunked::{self, ChunkSigning};
use crate::wire::xml::{self, ListEcho};
use crate::wire::{
    Owner, Query, decode_continuation_token, encode_continuation_token, http_date, parse_http_date,
};

const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";
const X_AMZ_DECODED_CONTENT_LENGTH: &str = "x-amz-decoded-content-length";
const X_AMZ_TRAILER: &str = "x-amz-trailer";
const X_AMZ_SDK_CHECKSUM_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";
const X_AMZ_CHECKSUM_TYPE: &str = "x-amz-checksum-type";
const X_AMZ_CHECKSUM_ALGORITHM: &str = "x-amz-checksum-algorithm";
const X_AMZ_MP_OBJECT_SIZE: &str = "x-amz-mp-object-size";
const CONTENT_MD5: &str = "content-md5";
const META_PREFIX: &str = "x-amz-meta-";
const AWS_CHUNKED: &str = "aws-chunked";
const SIGNED_STREAMING: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const SIGNED_STREAMING_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";

/// Request headers selecting S3 features this server does not implement. Accepting them silently
/// would store something other than what the client asked for.
const UNSUPPORTED_PUT_HEADERS: [&str; 9] = [
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-tagging",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-write-offset-bytes",
    "x-amz-website-redirect-location",
];

/// Reads a header value as Latin-1, which is how Python's HTTP client (and HTTP/1.1) puts
/// non-ASCII text on the wire; [`object_headers`] writes it back byte for byte.
pub fn latin1(value: &HeaderValue) -> String {
    value.as_bytes().iter().map(|&b| char::from(b)).collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(latin1)
}

/// A PutObject request, decoded and checked for shape (not yet for integrity: the store checks
/// `Content-MD5` and the checksum against the body as it hashes it).
#[derive(Debug)]
pub struct PutRequest {
    /// The object content (`aws-chunked` framing removed).
    pub body: Bytes,
    /// What to store with it and check it against.
    pub meta: PutMeta,
}

/// Interprets a PutObject request: decodes an `aws-chunked` body (verifying chunk signatures when
/// `signing` is given, which the caller must do for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD*`),
/// collects the checksum from a header or trailer, and the metadata to store.
pub fn parse_put(
    headers: &HeaderMap,
    body: Bytes,
    signing: Option<ChunkSigning<'_>>,
) -> Result<PutRequest, Error> {
    refuse_unsupported(headers)?;

    let content_sha256 = header(headers, X_AMZ_CONTENT_SHA256).unwrap_or_default();
    let encodings: Vec<String> = header(headers, CONTENT_ENCODING.as_str())
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let aws_chunked = encodings
        .iter()
        .any(|e| e.eq_ignore_ascii_case(AWS_CHUNKED))
        || content_sha256.starts_with("STREAMING-");

    let (body, trailers) = if aws_chunked {
        let signed =
            content_sha256 == SIGNED_STREAMING || content_sha256 == SIGNED_STREAMING_TRAILER;
        if signed && signing.is_none() {
            return Err(Error::InvalidArgument {
                name: X_AMZ_CONTENT_SHA256.into(),
                reason: "signed streaming uploads need a header-signed request".into(),
            });
        }
        let decoded = chunked::decode(
            &body,
            if signed { signing } else { None },
            content_sha256 == SIGNED_STREAMING_TRAILER,
        )?;
        if let Some(expected) = header(headers, X_AMZ_DECODED_CONTENT_LENGTH) {
            let expected: u64 = expected
                .trim()
                .parse()
                .map_err(|_| Error::InvalidArgument {
                    name: X_AMZ_DECODED_CONTENT_LENGTH.into(),
                    reason: "x-amz-decoded-content-length is not a number".into(),
                })?;
            if expected != decoded.body.len() as u64 {
                return Err(Error::IncompleteBody {
                    reason: format!(
                        "You did not provide the number of bytes specified by the \
                         x-amz-decoded-content-length header ({expected} declared, {} sent)",
                        decoded.body.len()
                    ),
                });
            }
        }
        (decoded.body, decoded.trailers)
    } else {
        (body, Vec::new())
    };

    // Trailers must be exactly the ones announced in x-amz-trailer.
    let declared: Vec<String> = header(headers, X_AMZ_TRAILER)
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for (name, _) in &trailers {
        if !declared.contains(name) {
            return Err(Error::InvalidArgument {
                name: X_AMZ_TRAILER.into(),
                reason: format!("trailer {name} was sent but not declared in x-amz-trailer"),
            });
        }
    }
    for name in &declared {
        if !trailers.iter().any(|(n, _)| n == name) {
            return Err(Error::IncompleteBody {
                reason: format!("the trailer {name} declared in x-amz-trailer was not sent"),
            });
        }
    }

    // At most one checksum value, from a header or a trailer.
    let mut sent: Vec<(ChecksumAlgorithm, String)> = Vec::new();
    for (name, value) in headers {
        if let Some(algorithm) = ChecksumAlgorithm::from_header_name(name.as_str())? {
            sent.push((algorithm, latin1(value)));
        }
    }
    for (name, value) in &trailers {
        match ChecksumAlgorithm::from_header_name(name)? {
            Some(algorithm) => sent.push((algorithm, value.clone())),
            None => {
                return Err(Error::InvalidArgument {
                    name: X_AMZ_TRAILER.into(),
                    reason: format!("unsupported trailer {name}"),
                });
            }
        }
    }
    if sent.len() > 1 {
        return Err(Error::InvalidChecksum {
            reason: "Expecting a single x-amz-checksum- header. Multiple checksum Types are not \
                     allowed."
                .into(),
        });
    }
    let checksum = sent
        .pop()
        .map(|(algorithm, value)| Checksum::parse(algorithm, &value))
        .transpose()?;
    let declared_algorithm = header(headers, X_AMZ_SDK_CHECKSUM_ALGORITHM)
        .map(|a| ChecksumAlgorithm::parse(a.trim()))
        .transpose()?;
    match (declared_algorithm, &checksum) {
        (Some(a), Some(c)) if a != c.algorithm => {
            return Err(Error::InvalidChecksum {
                reason: format!(
                    "x-amz-sdk-checksum-algorithm is {a} but the checksum sent is {}",
                    c.algorithm
                ),
            });
        }
        (Some(_), None) => {
            return Err(Error::InvalidChecksum {
                reason: "x-amz-sdk-checksum-algorithm specified, but no corresponding \
                         x-amz-checksum-* or x-amz-trailer headers were found."
                    .into(),
            });
        }
        _ => {}
    }
    if let Some(kind) = header(headers, X_AMZ_CHECKSUM_TYPE)
        && !kind.eq_ignore_ascii_case("FULL_OBJECT")
    {
        return Err(Error::InvalidChecksum {
            reason: format!("checksum type {kind} is not valid for a single-part upload"),
        });
    }

    let (content_type, stored, user_metadata) = stored_headers(headers);
    Ok(PutRequest {
        body,
        meta: PutMeta {
            content_type,
            headers: stored,
            user_metadata,
            content_md5: header(headers, CONTENT_MD5),
            checksum,
            checksum_algorithm: declared_algorithm,
            condition: write_condition(headers)?,
        },
    })
}

/// The headers S3 stores with an object: `Content-Type`, the other standard ones (without the
/// transfer-only `aws-chunked` encoding) and user metadata.
fn stored_headers(
    headers: &HeaderMap,
) -> (Option<String>, ObjectHeaders, BTreeMap<String, String>) {
    let mut user_metadata = BTreeMap::new();
    for (name, value) in headers {
        if let Some(meta_name) = name.as_str().strip_prefix(META_PREFIX) {
            // Repeated metadata headers are joined, as S3 does.
            user_metadata
                .entry(meta_name.to_owned())
                .and_modify(|v: &mut String| {
                    v.push(',');
                    v.push_str(&latin1(value));
                })
                .or_insert_with(|| latin1(value));
        }
    }
    let content_encoding = header(headers, CONTENT_ENCODING.as_str()).and_then(|v| {
        let kept: Vec<&str> = v
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case(AWS_CHUNKED))
            .collect();
        (!kept.is_empty()).then(|| kept.join(","))
    });
    (
        header(headers, CONTENT_TYPE.as_str()),
        ObjectHeaders {
            cache_control: header(headers, CACHE_CONTROL.as_str()),
            content_disposition: header(headers, CONTENT_DISPOSITION.as_str()),
            content_encoding,
            content_language: header(headers, CONTENT_LANGUAGE.as_str()),
            expires: header(headers, EXPIRES.as_str()),
        },
        user_metadata,
    )
}

/// A write's `If-None-Match: *` or `If-Match` precondition.
fn write_condition(headers: &HeaderMap) -> Result<WriteCondition, Error> {
    match (
        header(headers, IF_NONE_MATCH.as_str()),
        header(headers, IF_MATCH.as_str()),
    ) {
        (Some(_), Some(_)) => Err(Error::NotImplemented {
            what: "If-None-Match together with If-Match on a write".into(),
        }),
        (Some(v), None) if v.trim() == "*" => Ok(WriteCondition::IfNoneMatchAny),
        (Some(_), None) => Err(Error::NotImplemented {
            what: "If-None-Match on a write with a value other than *".into(),
        }),
        (None, Some(etag)) => Ok(WriteCondition::IfMatch(etag)),
        (None, None) => Ok(WriteCondition::None),
    }
}

/// Refuses headers selecting features this server does not implement.
fn refuse_unsupported(headers: &HeaderMap) -> Result<(), Error> {
    for name in UNSUPPORTED_PUT_HEADERS {
        if headers.contains_key(name) {
            return Err(Error::NotImplemented {
                what: format!("the {name} header"),
            });
        }
    }
    if let Some(sse) = header(headers, "x-amz-server-side-encryption")
        && sse != "AES256"
    {
        return Err(Error::NotImplemented {
            what: format!("server-side encryption {sse}"),
        });
    }
    Ok(())
}

/// Interprets a CreateMultipartUpload request's headers.
pub fn parse_create_multipart(headers: &HeaderMap) -> Result<UploadMeta, Error> {
    refuse_unsupported(headers)?;
    let (content_type, stored, user_metadata) = stored_headers(headers);
    Ok(UploadMeta {
        content_type,
        headers: stored,
        user_metadata,
        checksum_algorithm: header(headers, X_AMZ_CHECKSUM_ALGORITHM)
            .map(|a| ChecksumAlgorithm::parse(a.trim()))
            .transpose()?,
        checksum_type: header(headers, X_AMZ_CHECKSUM_TYPE)
            .map(|t| ChecksumType::parse(&t))
            .transpose()?,
    })
}

/// Interprets an UploadPart request: the body is decoded and checked as PutObject's is.
pub fn parse_upload_part(
    headers: &HeaderMap,
    body: Bytes,
    signing: Option<ChunkSigning<'_>>,
) -> Result<(Bytes, PartMeta), Error> {
    let put = parse_put(headers, body, signing)?;
    Ok((
        put.body,
        PartMeta {
            content_md5: put.meta.content_md5,
            checksum: put.meta.checksum,
        },
    ))
}

/// Interprets a CompleteMultipartUpload request: its part list and header parameters.
pub fn parse_complete(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Vec<CompletePart>, CompleteMeta), Error> {
    check_body_integrity_md5(headers, body)?;
    let parts = xml::parse_complete_multipart(body)?;
    let mut checksum = None;
    for (name, value) in headers {
        if let Some(algorithm) = ChecksumAlgorithm::from_header_name(name.as_str())? {
            if checksum.is_some() {
                return Err(Error::InvalidChecksum {
                    reason: "Expecting a single x-amz-checksum- header.".into(),
                });
            }
            // A composite value carries a `-<parts>` suffix; check the base64 before it.
            let value = latin1(value);
            let base = value.split('-').next().unwrap_or_default();
            Checksum::parse(algorithm, base)?;
            checksum = Some(Checksum { algorithm, value });
        }
    }
    let object_size = header(headers, X_AMZ_MP_OBJECT_SIZE)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| Error::InvalidArgument {
                name: X_AMZ_MP_OBJECT_SIZE.into(),
                reason: "x-amz-mp-object-size is not a number".into(),
            })
        })
        .transpose()?;
    Ok((
        parts,
        CompleteMeta {
            checksum,
            object_size,
            condition: write_condition(headers)?,
        },
    ))
}

fn check_body_integrity_md5(headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
    if let Some(md5) = header(headers, CONTENT_MD5) {
        let expected =
            Checksum::parse(ChecksumAlgorithm::Md5, &md5).map_err(|_| Error::InvalidDigest)?;
        if Checksum::compute(ChecksumAlgorithm::Md5, body) != expected {
            return Err(Error::Md5Mismatch);
        }
    }
    Ok(())
}

/// The headers of a CreateMultipartUpload response.
pub fn create_multipart_headers(upload: &MultipartUpload) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Some(a) = upload.checksum_algorithm {
        insert(
            &mut map,
            HeaderName::from_static(X_AMZ_CHECKSUM_ALGORITHM),
            a.as_str(),
        );
    }
    if let Some(t) = upload.checksum_type {
        insert(
            &mut map,
            HeaderName::from_static(X_AMZ_CHECKSUM_TYPE),
            t.as_str(),
        );
    }
    map
}

/// The headers of an UploadPart response: the part's entity tag and checksum.
pub fn part_response_headers(part: &PartInfo) -> HeaderMap {
    let mut map = HeaderMap::new();
    insert(&mut map, ETAG, &part.etag);
    if let Some(c) = &part.checksum {
        insert(
            &mut map,
            HeaderName::from_static(c.algorithm.header_name()),
            &c.value,
        );
    }
    map
}

/// The checksum type S3 reports for a stored checksum.
fn checksum_type_of(c: &Checksum) -> &'static str {
    if c.is_composite() {
        ChecksumType::Composite.as_str()
    } else {
        ChecksumType::FullObject.as_str()
    }
}

/// Checks a small request body (an XML document) against its `Content-MD5` and
/// `x-amz-checksum-*` headers, when present.
pub fn check_body_integrity(headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
    check_body_integrity_md5(headers, body)?;
    for (name, value) in headers {
        if let Some(algorithm) = ChecksumAlgorithm::from_header_name(name.as_str())? {
            let expected = Checksum::parse(algorithm, &latin1(value))?;
            if Checksum::compute(algorithm, body).value != expected.value {
                return Err(Error::ChecksumMismatch { algorithm });
            }
        }
    }
    Ok(())
}

/// What a conditional read (`If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`) allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the object.
    Proceed,
    /// Answer 304 Not Modified.
    NotModified,
}

/// Evaluates a GET or HEAD's conditional headers against the object, in the order RFC 9110
/// and S3 use: `If-Match` (else `If-Unmodified-Since`) can fail with 412, then `If-None-Match`
/// (else `If-Modified-Since`) can answer 304. Unparseable dates are ignored.
pub fn read_precondition(headers: &HeaderMap, meta: &ObjectMeta) -> Result<Precondition, Error> {
    // HTTP dates have second precision.
    let modified = meta.last_modified.unix_timestamp();
    if let Some(cond) = header(headers, IF_MATCH.as_str()) {
        if !etag_matches(&cond, &meta.etag) {
            return Err(Error::PreconditionFailed {
                condition: "If-Match",
            });
        }
    } else if let Some(since) = header(headers, IF_UNMODIFIED_SINCE.as_str())
        .as_deref()
        .and_then(parse_http_date)
        && modified > since.unix_timestamp()
    {
        return Err(Error::PreconditionFailed {
            condition: "If-Unmodified-Since",
        });
    }
    if let Some(cond) = header(headers, IF_NONE_MATCH.as_str()) {
        if etag_matches(&cond, &meta.etag) {
            return Ok(Precondition::NotModified);
        }
    } else if let Some(since) = header(headers, IF_MODIFIED_SINCE.as_str())
        .as_deref()
        .and_then(parse_http_date)
        && modified <= since.unix_timestamp()
    {
        return Ok(Precondition::NotModified);
    }
    Ok(Precondition::Proceed)
}

fn insert(map: &mut HeaderMap, name: HeaderName, value: &str) {
    // Values were read as Latin-1; writing them back as Latin-1 bytes restores them exactly.
    // Characters outside Latin-1 (possible only from an external store) cannot be sent as
    // header bytes; such a header is left out rather than mangled.
    let bytes: Option<Vec<u8>> = value
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    if let Some(v) = bytes.and_then(|b| HeaderValue::from_bytes(&b).ok()) {
        map.append(name, v);
    }
}

/// The headers of a GetObject / HeadObject response describing `meta` (without
/// `Content-Length`, `Content-Range` or `Accept-Ranges`, which depend on the range served).
/// The full-object checksum is included when `with_checksum` (the client sent
/// `x-amz-checksum-mode: ENABLED` and the whole object is served).
pub fn object_headers(meta: &ObjectMeta, with_checksum: bool) -> HeaderMap {
    let mut map = HeaderMap::new();
    insert(&mut map, LAST_MODIFIED, &http_date(meta.last_modified));
    if !meta.etag.is_empty() {
        insert(&mut map, ETAG, &meta.etag);
    }
    insert(&mut map, CONTENT_TYPE, &meta.content_type);
    let h = &meta.headers;
    for (name, value) in [
        (CACHE_CONTROL, &h.cache_control),
        (CONTENT_DISPOSITION, &h.content_disposition),
        (CONTENT_ENCODING, &h.content_encoding),
        (CONTENT_LANGUAGE, &h.content_language),
        (EXPIRES, &h.expires),
    ] {
        if let Some(v) = value {
            insert(&mut map, name, v);
        }
    }
    for (name, value) in &meta.user_metadata {
        if let Ok(name) = HeaderName::try_from(format!("{META_PREFIX}{name}")) {
            insert(&mut map, name, value);
        }
    }
    if with_checksum && let Some(c) = &meta.checksum {
        insert(
            &mut map,
            HeaderName::from_static(c.algorithm.header_name()),
            &c.value,
        );
        insert(
            &mut map,
            HeaderName::from_static(X_AMZ_CHECKSUM_TYPE),
            checksum_type_of(c),
        );
    }
    map
}

/// The headers of a PutObject response: the entity tag and the stored checksum.
pub fn put_response_headers(meta: &ObjectMeta) -> HeaderMap {
    let mut map = HeaderMap::new();
    insert(&mut map, ETAG, &meta.etag);
    if let Some(c) = &meta.checksum {
        insert(
            &mut map,
            HeaderName::from_static(c.algorithm.header_name()),
            &c.value,
        );
        insert(
            &mut map,
            HeaderName::from_static(X_AMZ_CHECKSUM_TYPE),
            checksum_type_of(c),
        );
    }
    map
}

/// `Content-Range` of a partial response.
pub fn content_range(first: u64, last: u64, size: u64) -> String {
    format!("bytes {first}-{last}/{size}")
}

/// Which listing API a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListVersion {
    /// ListObjects (`marker` / `NextMarker`).
    V1,
    /// ListObjectsV2 (`list-type=2`, continuation tokens).
    V2,
}

/// A parsed ListObjects / ListObjectsV2 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRequest {
    /// Which API.
    pub version: ListVersion,
    /// What to ask the store.
    pub query: ListQuery,
    /// `encoding-type=url`.
    pub url_encoded: bool,
    /// V2 `fetch-owner=true`.
    pub fetch_owner: bool,
    /// V2 `continuation-token`, echoed.
    pub continuation_token: Option<String>,
    /// V2 `start-after`, echoed.
    pub start_after: Option<String>,
    /// V1 `marker`, echoed.
    pub marker: String,
}

/// Parses the parameters of a bucket GET that lists objects.
pub fn parse_list(query: &Query) -> Result<ListRequest, Error> {
    let version = match query.get("list-type") {
        None => ListVersion::V1,
        Some("2") => ListVersion::V2,
        Some(other) => {
            return Err(Error::InvalidArgument {
                name: "list-type".into(),
                reason: format!("Invalid List Type specified in Request: {other}"),
            });
        }
    };
    let max_keys = match query.get("max-keys") {
        None => MAX_LIST_KEYS,
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|_| Error::InvalidArgument {
                name: "max-keys".into(),
                reason: "Provided max-keys not an integer or within integer range".into(),
            })?;
            if n < 0 {
                return Err(Error::InvalidArgument {
                    name: "max-keys".into(),
                    reason: "Argument maxKeys must be an integer between 0 and 2147483647".into(),
                });
            }
            usize::try_from(n)
                .unwrap_or(MAX_LIST_KEYS)
                .min(MAX_LIST_KEYS)
        }
    };
    let url_encoded = match query.get("encoding-type") {
        None => false,
        Some(e) if e.eq_ignore_ascii_case("url") => true,
        Some(_) => {
            return Err(Error::InvalidArgument {
                name: "encoding-type".into(),
                reason: "Invalid Encoding Method specified in Request".into(),
            });
        }
    };
    let continuation_token = query
        .get("continuation-token")
        .filter(|_| version == ListVersion::V2)
        .map(str::to_owned);
    let start_after = query
        .get("start-after")
        .filter(|_| version == ListVersion::V2)
        .map(str::to_owned);
    let marker = match version {
        ListVersion::V1 => query.get("marker").unwrap_or_default().to_owned(),
        ListVersion::V2 => String::new(),
    };
    // A continuation token wins over start-after, as in S3.
    let resume = match (&continuation_token, version) {
        (Some(token), _) => Some(decode_continuation_token(token)?),
        (None, ListVersion::V2) => start_after.clone(),
        (None, ListVersion::V1) => (!marker.is_empty()).then(|| marker.clone()),
    };
    Ok(ListRequest {
        version,
        query: ListQuery {
            prefix: query.get("prefix").unwrap_or_default().to_owned(),
            delimiter: query
                .get("delimiter")
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            max_keys,
            start_after: resume,
        },
        url_encoded,
        fetch_owner: version == ListVersion::V2
            && query
                .get("fetch-owner")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        continuation_token,
        start_after,
        marker,
    })
}

/// Renders the listing response for `request`.
pub fn render_list(
    bucket: &str,
    request: &ListRequest,
    listing: &Listing,
    owner: &Owner,
) -> String {
    let echo = ListEcho {
        bucket,
        prefix: &request.query.prefix,
        delimiter: request.query.delimiter.as_deref(),
        max_keys: request.query.max_keys,
        url_encoded: request.url_encoded,
        owner: match request.version {
            ListVersion::V1 => Some(owner),
            ListVersion::V2 => request.fetch_owner.then_some(owner),
        },
    };
    match request.version {
        ListVersion::V1 => xml::list_objects_v1(&echo, listing, &request.marker),
        ListVersion::V2 => {
            let next = listing
                .next_marker
                .as_deref()
                .filter(|_| listing.is_truncated)
                .map(encode_continuation_token);
            xml::list_objects_v2(
                &echo,
                listing,
                request.continuation_token.as_deref(),
                next.as_deref(),
                request.start_after.as_deref(),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::try_from(*n).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            key: "k".into(),
            size: 3,
            etag: "\"acbd18db4cc2f85cedef654fccc4a4d8\"".into(),
            last_modified: datetime!(2026-01-02 03:04:05.678 UTC),
            content_type: "application/zip".into(),
            headers: ObjectHeaders {
                cache_control: Some("no-cache".into()),
                ..Default::default()
            },
            user_metadata: [("team".to_owned(), "berth".to_owned())].into(),
            checksum: Some(Checksum::compute(ChecksumAlgorithm::Crc32, b"foo")),
        }
    }

    #[test]
    fn header_checksum_and_metadata() {
        let h = headers(&[
            ("x-amz-checksum-crc32", "vyN5GA=="),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ("content-type", "application/zip"),
            ("x-amz-meta-team", "berth"),
            ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
        ]);
        let put = parse_put(&h, Bytes::from_static(b"hello"), None).unwrap();
        assert_eq!(&put.body[..], b"hello");
        let m = put.meta;
        assert_eq!(m.checksum.unwrap().algorithm, ChecksumAlgorithm::Crc32);
        assert_eq!(m.content_type.as_deref(), Some("application/zip"));
        assert_eq!(
            m.user_metadata.get("team").map(String::as_str),
            Some("berth")
        );
        assert_eq!(m.content_md5.as_deref(), Some("XUFAKrxLKna5cZ2REBfFkg=="));
        assert_eq!(m.condition, WriteCondition::None);
    }

    #[test]
    fn rejects_inconsistent_checksums() {
        let cases: [&[(&str, &str)]; 5] = [
            &[
                ("x-amz-checksum-crc32", "vyN5GA=="),
                ("x-amz-checksum-sha1", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ],
            &[
                ("x-amz-checksum-crc32", "vyN5GA=="),
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ],
            &[("x-amz-sdk-checksum-algorithm", "CRC32")],
            &[("x-amz-checksum-crc32", "not-base64")],
            &[("x-amz-checksum-xxhash64", "AAAAAAAAAAA=")],
        ];
        for case in cases {
            let err = parse_put(&headers(case), Bytes::new(), None).unwrap_err();
            assert_eq!(err.s3_code(), "InvalidRequest", "{case:?}: {err}");
        }
    }

    #[test]
    fn refuses_unsupported_features() {
        for h in [
            headers(&[("x-amz-tagging", "a=b")]),
            headers(&[("x-amz-server-side-encryption", "aws:kms")]),
            headers(&[("x-amz-server-side-encryption-customer-algorithm", "AES256")]),
            headers(&[("if-none-match", "\"etag\"")]),
        ] {
            assert_eq!(
                parse_put(&h, Bytes::new(), None).unwrap_err().s3_code(),
                "NotImplemented"
            );
        }
        let ok = headers(&[
            ("x-amz-server-side-encryption", "AES256"),
            ("if-none-match", "*"),
        ]);
        assert_eq!(
            parse_put(&ok, Bytes::new(), None).unwrap().meta.condition,
            WriteCondition::IfNoneMatchAny
        );
    }

    #[test]
    fn chunked_with_undeclared_or_missing_trailer() {
        let body = Bytes::from_static(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n");
        let base = [
            ("content-encoding", "aws-chunked"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-decoded-content-length", "3"),
        ];
        let err = parse_put(&headers(&base), body.clone(), None).unwrap_err();
        assert_eq!(err.s3_code(), "InvalidArgument", "{err}");

        let mut declared = base.to_vec();
        declared.push(("x-amz-trailer", "x-amz-checksum-crc32"));
        let put = parse_put(&headers(&declared), body, None).unwrap();
        assert_eq!(&put.body[..], b"abc");
        assert_eq!(put.meta.checksum.unwrap().value, "NSRBwg==");
        assert_eq!(put.meta.headers.content_encoding, None);

        let no_trailer = Bytes::from_static(b"3\r\nabc\r\n0\r\n\r\n");
        let err = parse_put(&headers(&declared), no_trailer, None).unwrap_err();
        assert_eq!(err.s3_code(), "IncompleteBody");

        let mut wrong_len = declared.clone();
        wrong_len[2] = ("x-amz-decoded-content-length", "4");
        let body = Bytes::from_static(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n");
        assert_eq!(
            parse_put(&headers(&wrong_len), body, None)
                .unwrap_err()
                .s3_code(),
            "IncompleteBody"
        );
    }

    #[test]
    fn keeps_other_content_encodings() {
        let h = headers(&[
            ("content-encoding", "gzip,aws-chunked"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ]);
        let put = parse_put(&h, Bytes::from_static(b"0\r\n\r\n"), None).unwrap();
        assert_eq!(put.meta.headers.content_encoding.as_deref(), Some("gzip"));
    }

    #[test]
    fn signed_streaming_needs_credentials() {
        let h = headers(&[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")]);
        assert!(parse_put(&h, Bytes::from_static(b"0\r\n\r\n"), None).is_err());
    }

    #[test]
    fn checks_small_body_integrity() {
        let ok = headers(&[
            ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
            ("x-amz-checksum-crc32", "NhCmhg=="),
        ]);
        check_body_integrity(&ok, b"hello").unwrap();
        assert_eq!(
            check_body_integrity(&ok, b"hellO").unwrap_err().s3_code(),
            "BadDigest"
        );
        let bad = headers(&[("x-amz-checksum-crc32", "AAAAAA==")]);
        assert_eq!(
            check_body_integrity(&bad, b"hello").unwrap_err().s3_code(),
            "BadDigest"
        );
        check_body_integrity(&HeaderMap::new(), b"anything").unwrap();
    }

    #[test]
    fn read_preconditions() {
        let m = meta();
        let check = |pairs: &[(&str, &str)]| read_precondition(&headers(pairs), &m);
        assert_eq!(check(&[]).unwrap(), Precondition::Proceed);
        assert_eq!(
            check(&[("if-match", &m.etag)]).unwrap(),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[("if-match", "\"nope\"")]).unwrap_err().s3_code(),
            "PreconditionFailed"
        );
        assert_eq!(
            check(&[("if-none-match", &m.etag)]).unwrap(),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[("if-none-match", "\"nope\"")]).unwrap(),
            Precondition::Proceed
        );
        let before = "Thu, 01 Jan 2026 00:00:00 GMT";
        let same = "Fri, 02 Jan 2026 03:04:05 GMT";
        assert_eq!(
            check(&[("if-modified-since", same)]).unwrap(),
            Precondition::NotModified
        );
        assert_eq!(
            check(&[("if-modified-since", before)]).unwrap(),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[("if-unmodified-since", before)])
                .unwrap_err()
                .s3_code(),
            "PreconditionFailed"
        );
        assert_eq!(
            check(&[("if-unmodified-since", same)]).unwrap(),
            Precondition::Proceed
        );
        // If-Match true wins over a failing If-Unmodified-Since; If-None-Match over If-Modified-Since.
        assert_eq!(
            check(&[("if-match", &m.etag), ("if-unmodified-since", before)]).unwrap(),
            Precondition::Proceed
        );
        assert_eq!(
            check(&[("if-none-match", "\"nope\""), ("if-modified-since", same)]).unwrap(),
            Precondition::Proceed
        );
        // Garbage dates are ignored.
        assert_eq!(
            check(&[("if-modified-since", "garbage")]).unwrap(),
            Precondition::Proceed
        );
    }

    #[test]
    fn renders_object_headers() {
        let m = meta();
        let h = object_headers(&m, false);
        assert_eq!(h["last-modified"], "Fri, 02 Jan 2026 03:04:05 GMT");
        assert_eq!(h["etag"], "\"acbd18db4cc2f85cedef654fccc4a4d8\"");
        assert_eq!(h["content-type"], "application/zip");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-amz-meta-team"], "berth");
        assert!(!h.contains_key("x-amz-checksum-crc32"));
        let h = object_headers(&m, true);
        assert_eq!(h["x-amz-checksum-crc32"], "jHNlIQ==");
        assert_eq!(h["x-amz-checksum-type"], "FULL_OBJECT");
    }

    #[test]
    fn latin1_round_trips() {
        let raw = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        let s = latin1(&raw);
        assert_eq!(s, "café");
        let mut m = meta();
        m.user_metadata.insert("x".into(), s);
        assert_eq!(
            object_headers(&m, false)["x-amz-meta-x"].as_bytes(),
            b"caf\xe9"
        );
    }

    #[test]
    fn parses_list_parameters() {
        let q = Query::parse(Some("list-type=2&prefix=a%2F&delimiter=%2F&max-keys=5000&encoding-type=url&start-after=a%2Fb")).unwrap();
        let r = parse_list(&q).unwrap();
        assert_eq!(r.version, ListVersion::V2);
        assert_eq!(r.query.prefix, "a/");
        assert_eq!(r.query.delimiter.as_deref(), Some("/"));
        assert_eq!(r.query.max_keys, 1000);
        assert_eq!(r.query.start_after.as_deref(), Some("a/b"));
        assert!(r.url_encoded);

        let token = encode_continuation_token("a/c");
        let q = Query::parse(Some(&format!(
            "list-type=2&start-after=a%2Fb&continuation-token={token}"
        )))
        .unwrap();
        assert_eq!(
            parse_list(&q).unwrap().query.start_after.as_deref(),
            Some("a/c")
        );

        let q = Query::parse(Some("marker=m1&max-keys=0")).unwrap();
        let r = parse_list(&q).unwrap();
        assert_eq!(r.version, ListVersion::V1);
        assert_eq!(r.query.start_after.as_deref(), Some("m1"));
        assert_eq!(r.query.max_keys, 0);

        for bad in [
            "max-keys=-1",
            "max-keys=x",
            "encoding-type=base64",
            "list-type=3",
            "list-type=2&continuation-token=%21",
        ] {
            let q = Query::parse(Some(bad)).unwrap();
            assert_eq!(
                parse_list(&q).unwrap_err().s3_code(),
                "InvalidArgument",
                "{bad}"
            );
        }
    }
}
