//! The SigV4 timestamp format, `YYYYMMDDTHHMMSSZ` (always UTC).

use std::time::SystemTime;

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// Parses an `x-amz-date` value. Returns a lowercase reason on failure.
pub(crate) fn parse_amz_date(value: &str) -> Result<SystemTime, String> {
    // The format description would accept a longer year; SigV4 dates are exactly 16 characters.
    if value.len() != 16 {
        return Err(format!("{value:?} is not in YYYYMMDDTHHMMSSZ form"));
    }
    let parsed = PrimitiveDateTime::parse(value, AMZ_DATE)
        .map_err(|_| format!("{value:?} is not in YYYYMMDDTHHMMSSZ form"))?;
    Ok(parsed.assume_utc().into())
}

/// Formats a time as an `x-amz-date` value (sub-second precision is dropped).
pub(crate) fn format_amz_date(time: SystemTime) -> String {
    let time = OffsetDateTime::from(time);
    // Formatting a UTC OffsetDateTime with this description only fails for years outside
    // 0..=9999, which SystemTime values from a real clock never reach; fall back to the epoch
    // rather than panic.
    time.format(AMZ_DATE)
        .unwrap_or_else(|_| "19700101T000000Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_735_732_800);
        assert_eq!(format_amz_date(t), "20250101T120000Z");
        assert_eq!(parse_amz_date("20250101T120000Z"), Ok(t));
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "",
            "2025-01-01T12:00:00Z",
            "20250101T120000",
            "20250101T120000+0000",
            "20251301T120000Z",
            "020250101T12000Z",
            "Wed, 01 Jan 2025 12:00:00 GMT",
        ] {
            assert!(parse_amz_date(bad).is_err(), "{bad:?} parsed");
        }
    }
}
