//! Small wire helpers: errors, timestamps, paging tokens, input accessors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_api::memory::WireTime;
use berth_api::{ApiError, ErrorKind};
use berth_types::EpochMillis;
use serde_json::Value;

/// `ServiceException` (500): the cause is logged, never sent.
pub(crate) fn service_error() -> ApiError {
    ApiError {
        kind: ErrorKind::Internal,
        ..ApiError::custom(
            "ServiceException",
            500,
            "an internal error occurred; retry the request",
        )
    }
}

/// Logs a store failure and turns it into a `ServiceException`.
pub(crate) fn internal(e: berth_store::Error) -> ApiError {
    service_error().with_cause(format_args!("memory store: {e}"))
}

/// A ValidationException with a plain message (no field list).
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        reason: Some("FieldValidationFailed"),
        ..ApiError::new(ErrorKind::Validation, message)
    }
}

/// A string member of a JSON value that is data (user metadata, stored payloads).
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `maxResults` clamped to 1..=100, or `default`.
pub(crate) fn max_results(n: Option<u32>, default: u32) -> u32 {
    n.map_or(default, |n| n.clamp(1, 100))
}

/// Parses a wire timestamp (epoch seconds, possibly fractional, as boto3 sends them, or an
/// ISO 8601 / RFC 3339 string) into epoch milliseconds; errors name `field`.
pub(crate) fn parse_ts(v: &WireTime, field: &str) -> Result<EpochMillis, ApiError> {
    let bad = || ApiError::field(field, format!("{field} is not a valid timestamp"));
    let ms = match v {
        WireTime::Seconds(s) => (s * 1000.0).round(),
        WireTime::Text(s) => {
            if let Ok(secs) = s.parse::<f64>() {
                (secs * 1000.0).round()
            } else {
                let t =
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| bad())?;
                (t.unix_timestamp_nanos() / 1_000_000) as f64
            }
        }
    };
    // Event ids carry the time as 19 digits; negative or absurd times cannot be encoded.
    if !(0.0..=9.0e15).contains(&ms) {
        return Err(bad());
    }
    Ok(ms as EpochMillis)
}

/// A timestamp inside data (a `dateTimeValue` of record metadata), if it is one.
pub(crate) fn data_ts(v: &Value) -> Option<EpochMillis> {
    let t = match v {
        Value::Number(n) => WireTime::Seconds(n.as_f64()?),
        Value::String(s) => WireTime::Text(s.clone()),
        _ => return None,
    };
    parse_ts(&t, "dateTimeValue").ok()
}

/// Encodes a keyset cursor so clients treat it as opaque.
pub(crate) fn token(parts: &[&str]) -> String {
    let mut s = String::from("m1");
    for p in parts {
        s.push('\u{1f}');
        s.push_str(p);
    }
    URL_SAFE_NO_PAD.encode(s)
}

/// Decodes a token made by [`token`] with `n` parts.
pub(crate) fn untoken(t: &str, n: usize) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::field("nextToken", "the pagination token is invalid or expired");
    let raw = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split('\u{1f}');
    if parts.next() != Some("m1") {
        return Err(bad());
    }
    let v: Vec<String> = parts.map(str::to_owned).collect();
    if v.len() != n {
        return Err(bad());
    }
    Ok(v)
}

/// Decodes a `(time, id)` cursor.
pub(crate) fn untoken_pair(t: &str) -> Result<(EpochMillis, String), ApiError> {
    let mut v = untoken(t, 2)?;
    let id = v.pop().unwrap_or_default();
    let n = v[0]
        .parse()
        .map_err(|_| ApiError::field("nextToken", "the pagination token is invalid or expired"))?;
    Ok((n, id))
}

/// Accepts a memory id or a memory ARN (the data plane allows both) and returns the id.
pub(crate) fn memory_id_of(id: &str) -> &str {
    id.rsplit_once(":memory/").map_or(id, |(_, id)| id)
}

/// Deserialises JSON this service stored itself (strategies, payloads, job messages); a value
/// that does not read is a corrupt store, a `ServiceException`.
pub(crate) fn stored<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v)
        .map_err(|e| service_error().with_cause(format_args!("stored {what} does not read: {e}")))
}

/// Serialises a typed value into the JSON the store keeps.
pub(crate) fn to_stored<T: serde::Serialize>(what: &str, v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v)
        .map_err(|e| service_error().with_cause(format_args!("encoding {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_in_every_wire_form() {
        let t = |v: Value| parse_ts(&serde_json::from_value(v).unwrap(), "t");
        assert_eq!(t(json!(1700000000)).unwrap(), 1_700_000_000_000);
        assert_eq!(t(json!(1700000000.123)).unwrap(), 1_700_000_000_123);
        assert_eq!(t(json!("1700000000")).unwrap(), 1_700_000_000_000);
        assert_eq!(
            t(json!("2023-11-14T22:13:20.5Z")).unwrap(),
            1_700_000_000_500
        );
        assert!(t(json!(-1)).is_err());
        assert!(t(json!("yesterday")).is_err());
        assert_eq!(data_ts(&json!(1.5)), Some(1500));
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = token(&["12", "a#b"]);
        assert_eq!(untoken_pair(&t).unwrap(), (12, "a#b".to_owned()));
        assert!(untoken(&t, 1).is_err());
        assert!(untoken("!!", 1).is_err());
    }
}
