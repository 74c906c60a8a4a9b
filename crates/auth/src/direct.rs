//! The signature of an AgentCore request signed in its `Authorization` header, computed directly
//! when the request's canonical form is plainly the request as sent.
//!
//! [`crate::verify`]'s general path rebuilds the request for `aws-sigv4`'s signer, which copies
//! every signed header into a fresh `HeaderMap`, re-parses the query and derives the signing key
//! (four HMACs) on every call. Requests from the AWS SDKs almost always have a canonical form that
//! needs none of that: a path of unreserved characters, `/` and percent-escapes, a query of plain
//! `key=value` pairs, printable ASCII header values. For those the canonical request is written
//! straight from the request and the signing key comes from a small cache; anything else returns
//! `None` and takes the general path, so the two can never disagree about an unusual request.
//! `tests::agrees_with_the_general_path` checks that they agree on the usual ones.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;
use crate::canonical::canonical_header_value;
use crate::parse::AuthHeader;
use crate::time::format_amz_date;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// What a header-authenticated request is signed over, beyond the request itself.
pub(crate) struct Signed<'a> {
    pub(crate) auth: &'a AuthHeader,
    pub(crate) secret: &'a str,
    pub(crate) session_token: Option<&'a str>,
    pub(crate) time: SystemTime,
    pub(crate) payload_hash: &'a str,
}

/// The expected signature (lower-case hex) of a header-authenticated AgentCore request (double
/// path encoding, normalized path), or `None` when the request's canonical form is not plain
/// enough to write directly.
pub(crate) fn header_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    s: &Signed<'_>,
) -> Option<Result<String, Error>> {
    let mismatch = || {
        Err(Error::SignatureMismatch {
            service: s.auth.service.clone(),
        })
    };
    let mut creq = String::with_capacity(512);
    creq.push_str(method.as_str());
    creq.push('\n');
    push_path(&mut creq, uri.path())?;
    creq.push('\n');
    push_query(&mut creq, uri.query().unwrap_or_default())?;
    creq.push('\n');

    // Sorted and without repeats, the client's list is the one the general path derives.
    let names = &s.auth.signed_headers;
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    let amz_date = format_amz_date(s.time);
    for name in names {
        creq.push_str(name);
        creq.push(':');
        match name.as_str() {
            X_AMZ_DATE => creq.push_str(&amz_date),
            X_AMZ_SECURITY_TOKEN => match s.session_token {
                Some(token) if printable(token) => creq.push_str(token),
                Some(_) => return None,
                None => return Some(mismatch()),
            },
            _ => {
                let mut values = headers.get_all(name.as_str()).iter().peekable();
                if values.peek().is_none() {
                    match (name.as_str(), uri.authority()) {
                        ("host", Some(a)) if printable(a.as_str()) => creq.push_str(a.as_str()),
                        ("host", Some(_)) => return None,
                        // A signed header is gone: not the request that was signed.
                        _ => return Some(mismatch()),
                    }
                }
                for (i, value) in values.enumerate() {
                    let value = canonical_header_value(value.as_bytes());
                    if !printable(&value) {
                        return None;
                    }
                    if i > 0 {
                        creq.push(',');
                    }
                    creq.push_str(&value);
                }
            }
        }
        creq.push('\n');
    }
    creq.push('\n');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            creq.push(';');
        }
        creq.push_str(name);
    }
    creq.push('\n');
    creq.push_str(s.payload_hash);

    let scope_date = &amz_date[..8];
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope_date}/{}/{}/aws4_request\n{}",
        s.auth.region,
        s.auth.service,
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let key = signing_key(s, scope_date);
    Some(Ok(calculate_signature(key, string_to_sign.as_bytes())))
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Visible ASCII and spaces: a header value `aws-sigv4` takes as is.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The canonical URI: the path with each `%` encoded again. Only for paths that normalization
/// leaves alone (no empty, `.` or `..` segment) and whose other bytes need no encoding.
fn push_path(out: &mut String, path: &str) -> Option<()> {
    if !path.starts_with('/')
        || path.contains("//")
        || path.split('/').any(|seg| seg == "." || seg == "..")
    {
        return None;
    }
    if !path
        .bytes()
        .all(|b| unreserved(b) || b == b'/' || b == b'%')
    {
        return None;
    }
    for c in path.chars() {
        if c == '%' {
            out.push_str("%25");
        } else {
            out.push(c);
        }
    }
    Some(())
}

/// The canonical query: `key=value` pairs sorted. Only for pairs of unreserved characters with
/// exactly one `=` (decoding and re-encoding them changes nothing).
fn push_query(out: &mut String, query: &str) -> Option<()> {
    if !query
        .bytes()
        .all(|b| unreserved(b) || b == b'=' || b == b'&')
    {
        return None;
    }
    let mut pairs: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.bytes().filter(|&b| b == b'=').count() != 1 {
            return None;
        }
        pairs.push(pair);
    }
    // Sorting `k=v` strings sorts by key then value only if no key is a prefix of another key
    // followed by a byte below `=`; compare the split pairs to be exact.
    pairs.sort_by(|a, b| {
        let (ak, av) = a.split_once('=').unwrap_or((a, ""));
        let (bk, bv) = b.split_once('=').unwrap_or((b, ""));
        (ak, av).cmp(&(bk, bv))
    });
    for (i, pair) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(pair);
    }
    Some(())
}

/// Signing keys by credential scope and secret. A key is valid for a day; real deployments
/// have a handful of keys in use, so the cache is simply emptied when it grows past its bound.
struct KeyCache {
    hasher: std::hash::RandomState,
    keys: Mutex<HashMap<u64, CachedKey>>,
}

struct CachedKey {
    access_key_id: String,
    secret: String,
    date: String,
    region: String,
    service: String,
    key: Vec<u8>,
}

const KEY_CACHE_MAX: usize = 4096;

static KEYS: LazyLock<KeyCache> = LazyLock::new(|| KeyCache {
    hasher: std::hash::RandomState::new(),
    keys: Mutex::new(HashMap::new()),
});

fn signing_key(s: &Signed<'_>, date: &str) -> Vec<u8> {
    let a = s.auth;
    let id = KEYS
        .hasher
        .hash_one((&a.access_key_id, s.secret, date, &a.region, &a.service));
    {
        let keys = KEYS.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = keys.get(&id)
            && k.access_key_id == a.access_key_id
            && bool::from(k.secret.as_bytes().ct_eq(s.secret.as_bytes()))
            && k.date == date
            && k.region == a.region
            && k.service == a.service
        {
            return k.key.clone();
        }
    }
    let key = generate_signing_key(s.secret, s.time, &a.region, &a.service)
        .as_ref()
        .to_vec();
    let mut keys = KEYS.keys.lock().unwrap_or_else(PoisonError::into_inner);
    if keys.len() >= KEY_CACHE_MAX {
        keys.clear();
    }
    keys.insert(
        id,
        CachedKey {
            access_key_id: a.access_key_id.clone(),
            secret: s.secret.to_owned(),
            date: date.to_owned(),
            region: a.region.clone(),
            service: a.service.clone(),
            key: key.clone(),
        },
    );
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_normalization_would_change_take_the_general_path() {
        let mut out = String::new();
        for p in ["/a//b", "/a/./b", "/a/../b", "/a b", "a", "", "/a/b?", "/é"] {
            assert!(push_path(&mut out, p).is_none(), "{p}");
        }
        for p in ["/", "/runtimes/arn%3Aaws%3Ax/invocations", "/a/b/"] {
            out.clear();
            assert!(push_path(&mut out, p).is_some(), "{p}");
        }
        out.clear();
        push_path(&mut out, "/r/arn%3Ax%2Fy/").unwrap_or_default();
        assert_eq!(out, "/r/arn%253Ax%252Fy/");
    }

    #[test]
    fn queries_are_sorted_by_key_then_value() {
        let mut out = String::new();
        push_query(&mut out, "qualifier=DEFAULT&accountId=1&a=2&a=1").unwrap_or_default();
        assert_eq!(out, "a=1&a=2&accountId=1&qualifier=DEFAULT");
        for q in ["a", "a=b=c", "a=%20", "a=b+c", "a=b;c"] {
            assert!(push_query(&mut String::new(), q).is_none(), "{q}");
        }
    }
}
