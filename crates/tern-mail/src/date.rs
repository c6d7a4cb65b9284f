//! Dates as RFC 5322 writes them (`Date:`, and the date fields of delivery status
//! notifications), computed from a Unix time without a calendar crate.
//!
//! Every Tern service that writes a date into a message (the queue's DSNs, trace headers)
//! must write the same form, in UTC: `Mon, 02 Jan 2023 10:00:00 +0000`. The conversion is
//! Howard Hinnant's `civil_from_days` (the inverse of days-from-civil), which is exact for
//! the proleptic Gregorian calendar over the whole `i64` range, so no leap-year tables or
//! dependencies are needed.

/// The earliest time [`rfc5322`] writes as itself: 1900-01-01T00:00:00Z. RFC 5322 §3.3 only
/// allows years from 1900 on.
const MIN_SECS: i64 = -2_208_988_800;
/// The latest time [`rfc5322`] writes as itself: 9999-12-31T23:59:59Z, the last second with
/// a four-digit year.
const MAX_SECS: i64 = 253_402_300_799;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats a Unix time (seconds since 1970-01-01T00:00:00Z) as an RFC 5322 date-time in
/// UTC, e.g. `Mon, 02 Jan 2023 10:00:00 +0000`, for `Date:` headers and DSN date fields.
///
/// Times outside the years 1900–9999 are clamped to that range, so the result is always
/// a syntactically valid RFC 5322 date whatever the caller passes.
pub fn rfc5322(unix_secs: i64) -> String {
    let secs = unix_secs.clamp(MIN_SECS, MAX_SECS);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4 counting from Sunday).
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let month = MONTHS[(month - 1) as usize];
    format!(
        "{weekday}, {day:02} {month} {year:04} {:02}:{:02}:{:02} +0000",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    // Shift the epoch to 0000-03-01 so that the leap day is the last day of a "year".
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March-based month, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (month 1–12, day 1–31): the
/// inverse of `civil_from_days`, for date comparisons (IMAP's date search keys) that
/// ignore time and zone.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn epoch() {
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc5322(1_672_653_600), "Mon, 02 Jan 2023 10:00:00 +0000");
        assert_eq!(rfc5322(1_234_567_890), "Fri, 13 Feb 2009 23:31:30 +0000");
        assert_eq!(rfc5322(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 +0000");
        assert_eq!(rfc5322(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 +0000");
    }

    #[test]
    fn leap_years() {
        // 2000 is a leap year (divisible by 400).
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(951_868_800), "Wed, 01 Mar 2000 00:00:00 +0000");
        // 2024 is a leap year; 2023 is not.
        assert_eq!(rfc5322(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 +0000");
        assert_eq!(rfc5322(1_677_628_800), "Wed, 01 Mar 2023 00:00:00 +0000");
        // 2100 is not a leap year (divisible by 100, not by 400).
        let feb28 = days_from_civil(2100, 2, 28) * 86_400;
        assert_eq!(rfc5322(feb28), "Sun, 28 Feb 2100 00:00:00 +0000");
        assert_eq!(rfc5322(feb28 + 86_400), "Mon, 01 Mar 2100 00:00:00 +0000");
        assert_eq!(
            rfc5322(days_from_civil(2016, 12, 31) * 86_400 + 86_399),
            "Sat, 31 Dec 2016 23:59:59 +0000"
        );
    }

    #[test]
    fn round_trips_every_day_from_1900_to_2400() {
        let mut weekday = (days_from_civil(1900, 1, 1) + 4).rem_euclid(7);
        assert_eq!(weekday, 1, "1900-01-01 was a Monday");
        for days in days_from_civil(1900, 1, 1)..days_from_civil(2400, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!((days + 4).rem_euclid(7), weekday);
            weekday = (weekday + 1) % 7;
        }
    }

    #[test]
    fn out_of_range_times_are_clamped_to_valid_years() {
        assert_eq!(rfc5322(i64::MIN), "Mon, 01 Jan 1900 00:00:00 +0000");
        assert_eq!(rfc5322(i64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
        assert_eq!(rfc5322(MIN_SECS), "Mon, 01 Jan 1900 00:00:00 +0000");
        assert_eq!(rfc5322(MAX_SECS), "Fri, 31 Dec 9999 23:59:59 +0000");
    }
}
