//! Opaque `nextToken`s: a keyset cursor, base64url-encoded so clients treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_api::ApiError;

/// `maxResults`, or 10 when absent (the page size AWS list operations use by default).
pub fn max_results(max_results: Option<i64>) -> u32 {
    max_results
        .and_then(|n| u64::try_from(n).ok())
        .map_or(10, |n| n.clamp(1, 100) as u32)
}

/// Encodes a cursor of a number and a string.
pub fn encode(n: i64, s: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{n}|{s}"))
}

/// Decodes a token made by [`encode`].
pub fn decode(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::field("nextToken", "the pagination token is invalid or expired");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(n), Some(s)) => Ok((n.parse().map_err(|_| bad())?, s.to_owned())),
        _ => Err(bad()),
    }
}
