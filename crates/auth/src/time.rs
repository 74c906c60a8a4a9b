//! The SigV4 timestamp format, `YYYYMMDDTHHMMSSZ` (always UTC).

use std::time::SystemTime;

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime};

const AMZ_DATE: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// Parses an `x-amz-date` value. Returns a lowercase reason on failure. Read digit by digit
/// (every signed request has one): the same values as `AMZ_DATE`'s parser, without its
/// general machinery.
pub(crate) fn parse_amz_date(value: &str) -> Result<SystemTime, String> {
    let bad = || format!("{value:?} is not in YYYYMMDDTHHMMSSZ form");
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u16, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
        })
    };
    let field = |range| number(range).and_then(|n| u8::try_from(n).ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), field(4..6), field(6..8)) else {
        return Err(bad());
    };
    let (Some(hour), Some(minute), Some(second)) = (field(9..11), field(11..13), field(13..15))
    else {
        return Err(bad());
    };
    let month = Month::try_from(month).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(year), month, day).map_err(|_| bad())?;
    let time = date.with_hms(hour, minute, second).map_err(|_| bad())?;
    Ok(time.assume_utc().into())
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
        assert_eq!(
            parse_amz_date("20240229T235959Z"),
            Ok(UNIX_EPOCH + Duration::from_secs(1_709_251_199))
        );
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
            "20250230T120000Z",
            "20250101T240000Z",
            "20250101T126000Z",
            "2025010aT120000Z",
            "20250101 120000Z",
            "+2025101T120000Z",
        ] {
            assert!(parse_amz_date(bad).is_err(), "{bad:?} parsed");
        }
    }
}
