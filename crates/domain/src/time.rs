//! The calendar range inkcart accepts in input: 0001-01-01 to 9999-12-31 (UTC).
//!
//! That is what an RFC 3339 date writes with a four-digit year, and what both databases store
//! and order alike: PostgreSQL's timestamps end in 294276 AD and start in 4713 BC, while SQLite
//! keeps timestamps as text, which sorts right only while the year has four digits. A date or
//! instant from a client (a report's range, a pagination cursor) outside it is refused.

use chrono::{DateTime, NaiveDate, Utc};
use thiserror::Error;

const FIRST_YEAR: i32 = 1;
const LAST_YEAR: i32 = 9999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("Dates must be between 0001-01-01 and 9999-12-31")]
pub struct OutOfRange;

/// A calendar day within the range.
pub fn check_day(day: NaiveDate) -> Result<NaiveDate, OutOfRange> {
    use chrono::Datelike as _;
    if (FIRST_YEAR..=LAST_YEAR).contains(&day.year()) {
        Ok(day)
    } else {
        Err(OutOfRange)
    }
}

/// An instant within the range.
pub fn check_instant(at: DateTime<Utc>) -> Result<DateTime<Utc>, OutOfRange> {
    check_day(at.date_naive()).map(|_| at)
}

/// `day` moved by `days`, kept within the range (for defaults such as "29 days before").
pub fn clamp_days(day: NaiveDate, days: i64) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(FIRST_YEAR, 1, 1).unwrap_or(NaiveDate::MIN);
    let last = NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31).unwrap_or(NaiveDate::MAX);
    day.checked_add_signed(chrono::Duration::days(days))
        .unwrap_or(if days < 0 { first } else { last })
        .clamp(first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn days_with_four_digit_years_are_in_range_and_others_are_not() {
        assert!(check_day(day(1, 1, 1)).is_ok());
        assert!(check_day(day(9999, 12, 31)).is_ok());
        assert!(check_day(day(2026, 2, 28)).is_ok());
        assert_eq!(check_day(day(0, 12, 31)), Err(OutOfRange));
        assert_eq!(check_day(day(10_000, 1, 1)), Err(OutOfRange));
        assert_eq!(check_day(day(262_142, 12, 31)), Err(OutOfRange));
        assert_eq!(check_day(day(-4714, 1, 1)), Err(OutOfRange));
    }

    #[test]
    fn instants_follow_their_utc_day() {
        let last = day(9999, 12, 31)
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap();
        assert!(check_instant(last.and_utc()).is_ok());
        assert!(check_instant(DateTime::<Utc>::MAX_UTC).is_err());
        assert!(check_instant(DateTime::<Utc>::MIN_UTC).is_err());
        assert!(check_instant(DateTime::UNIX_EPOCH).is_ok());
    }

    #[test]
    fn moving_a_day_stays_within_the_range() {
        assert_eq!(clamp_days(day(2026, 3, 1), -29), day(2026, 1, 31));
        assert_eq!(clamp_days(day(1, 1, 5), -29), day(1, 1, 1));
        assert_eq!(clamp_days(day(9999, 12, 30), 5), day(9999, 12, 31));
    }
}
