//! The S3 wire format, free of any HTTP framework: XML documents, `aws-chunked` bodies, how
//! request headers and query strings map to store operations, and the headers responses carry.
//!
//! It lives beside the store rather than in the server so that it is tested here against bytes
//! real clients sent (`tests/fixtures/`), and the server's S3 handler stays a thin router.

pub mod chunked;
mod request;
pub mod xml;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

pub use request::{
    ListRequest, ListVersion, Precondition, PutRequest, check_body_integrity, content_range,
    create_multipart_headers, latin1, object_headers, parse_complete, parse_create_multipart,
    parse_list, parse_put, parse_upload_part, part_response_headers, put_response_headers,
    read_precondition, render_list,
};

use crate::Error;

/// The owner reported in listings. Berth is single-tenant: every bucket belongs to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `ID`.
    pub id: String,
    /// `DisplayName`.
    pub display_name: String,
}

impl Default for Owner {
    fn default() -> Self {
        Self {
            id: "berth".into(),
            display_name: "berth".into(),
        }
    }
}

const ISO8601_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const HTTP_DATE: &[FormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// `2026-01-02T03:04:05.678Z`, the timestamp format of S3's XML.
pub fn iso8601_millis(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(ISO8601_MILLIS)
        .unwrap_or_default()
}

/// `Fri, 02 Jan 2026 03:04:05 GMT`, the HTTP date of `Last-Modified`.
pub fn http_date(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(HTTP_DATE)
        .unwrap_or_default()
}

/// Parses an HTTP date (IMF-fixdate, what botocore sends for `If-Modified-Since`). `None` for
/// anything else, which HTTP says to ignore.
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(s.trim(), HTTP_DATE)
        .ok()
        .map(|t| t.assume_utc())
}

/// Characters left bare by [`url_encode`]: RFC 3986 unreserved ones and `/`.
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// URL-encodes a key for `encoding-type=url` listings. botocore decodes with `unquote_plus`, so
/// `+` must be encoded as `%2B` and space as `%20` (either decodes to space).
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_KEEP).to_string()
}

/// The opaque `NextContinuationToken` resuming a listing after `marker`.
pub fn encode_continuation_token(marker: &str) -> String {
    URL_SAFE_NO_PAD.encode(marker.as_bytes())
}

/// The marker inside a continuation token this server issued.
pub fn decode_continuation_token(token: &str) -> Result<String, Error> {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| Error::InvalidArgument {
            name: "continuation-token".into(),
            reason: "The continuation token provided is incorrect".into(),
        })
}

/// A decoded query string, in order. Names without `=` have an empty value (S3 sub-resources
/// such as `?location`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes a raw query string (percent-encoding, `+` as space).
    pub fn parse(raw: Option<&str>) -> Result<Self, Error> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((decode_component(name)?, decode_component(value)?));
        }
        Ok(Self { pairs })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True when `name` is present, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// Every parameter name, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }
}

fn decode_component(s: &str) -> Result<String, Error> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::InvalidArgument {
            name: "query".into(),
            reason: "Couldn't parse the specified URI.".into(),
        })
}

/// Decodes the percent-encoded key part of a path-style request target (everything after
/// `/{bucket}/`). `+` is a literal plus in paths.
pub fn decode_key(raw: &str) -> Result<String, Error> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| Error::InvalidArgument {
            name: "key".into(),
            reason: "Couldn't parse the specified URI: the key is not valid utf-8.".into(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_dates() {
        let t = datetime!(2026-01-02 03:04:05.678 UTC);
        assert_eq!(iso8601_millis(t), "2026-01-02T03:04:05.678Z");
        assert_eq!(http_date(t), "Fri, 02 Jan 2026 03:04:05 GMT");
        assert_eq!(
            parse_http_date("Fri, 02 Jan 2026 03:04:05 GMT"),
            Some(datetime!(2026-01-02 03:04:05 UTC))
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn url_encodes_as_botocore_decodes() {
        assert_eq!(url_encode("a b+c/ü~_.-"), "a%20b%2Bc/%C3%BC~_.-");
        assert_eq!(url_encode("%&="), "%25%26%3D");
    }

    #[test]
    fn continuation_tokens_round_trip() {
        for marker in ["", "a/b", "ü €", "\u{10FFFF}"] {
            assert_eq!(
                decode_continuation_token(&encode_continuation_token(marker)).unwrap(),
                marker
            );
        }
        assert!(decode_continuation_token("!!!").is_err());
    }

    #[test]
    fn parses_queries() {
        let q = Query::parse(Some("list-type=2&prefix=a%2Fb+c&location&x=%C3%BC")).unwrap();
        assert_eq!(q.get("list-type"), Some("2"));
        assert_eq!(q.get("prefix"), Some("a/b c"));
        assert!(q.has("location"));
        assert_eq!(q.get("location"), Some(""));
        assert_eq!(q.get("x"), Some("ü"));
        assert!(!q.has("delimiter"));
        assert!(Query::parse(Some("a=%FF")).is_err());
    }

    #[test]
    fn decodes_keys() {
        assert_eq!(
            decode_key("small%20sha256%20%C3%BC.zip").unwrap(),
            "small sha256 ü.zip"
        );
        assert_eq!(decode_key("a+b").unwrap(), "a+b");
        assert_eq!(
            decode_key("..%2F..%2Fetc%2Fpasswd").unwrap(),
            "../../etc/passwd"
        );
        assert!(decode_key("%FF").is_err());
    }
}
