//! [`Timestamp`]: a UTC instant with microsecond resolution.
//!
//! Microseconds match PostgreSQL's `timestamptz`, so a tick's time survives
//! every store unchanged, and an `i64` keeps bucket arithmetic cheap.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// A text or number that is not a time StreamForge understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an RFC 3339 time (2025-08-27T20:15:31.134Z) or epoch milliseconds, got {0:?}")]
pub struct TimestampError(pub String);

impl Timestamp {
    /// Micros per millisecond, second, minute, hour and day.
    pub const MICROS_PER_MILLI: i64 = 1_000;
    pub const MICROS_PER_SECOND: i64 = 1_000_000;

    /// The smallest representable time (used as an open lower bound).
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The largest representable time (used as an open upper bound).
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Epoch milliseconds, as Finnhub's `t` and the API's numeric times are.
    /// Saturates instead of overflowing.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis.saturating_mul(Self::MICROS_PER_MILLI))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn as_millis(self) -> i64 {
        self.0.div_euclid(Self::MICROS_PER_MILLI)
    }

    /// The wall clock now.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_micros())
    }

    /// `None` when the value is outside chrono's range (far beyond year 262000).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        Utc.timestamp_micros(self.0).single()
    }

    pub fn saturating_add_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_add(micros))
    }

    pub fn saturating_sub_micros(self, micros: i64) -> Self {
        Timestamp(self.0.saturating_sub(micros))
    }

    /// Parses RFC 3339 (any offset, converted to UTC) or an integer of epoch
    /// milliseconds. Digits below a microsecond are dropped.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        if let Some(ts) = parse_utc_fast(text.as_bytes()) {
            return Ok(ts);
        }
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            if let Ok(ms) = text.parse::<i64>() {
                return Ok(Self::from_millis(ms));
            }
        }
        DateTime::parse_from_rfc3339(text)
            .map(|dt| Self::from_datetime(dt.with_timezone(&Utc)))
            .map_err(|_| TimestampError(text.to_string()))
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.rem_euclid(4) == 0 && y.rem_euclid(100) != 0) || y.rem_euclid(400) == 0 => 29,
        _ => 28,
    }
}

/// The hot path of [`Timestamp::parse`]: exactly `YYYY-MM-DDTHH:MM:SS[.f+]Z`.
/// Anything else (offsets, leap seconds, odd forms) is left to chrono.
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20 || b.len() > 30 || *b.last()? != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (i64::from(num(0..4)?), num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59
    {
        return None;
    }
    let mut micros = 0i64;
    match b[19] {
        b'Z' if b.len() == 20 => {}
        b'.' => {
            let frac = &b[20..b.len() - 1];
            if frac.is_empty() || frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
                return None;
            }
            for i in 0..6 {
                micros = micros * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
        }
        _ => return None,
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    Some(Timestamp(secs * Timestamp::MICROS_PER_SECOND + micros))
}

impl Timestamp {
    /// RFC 3339 in UTC with 0, 3 or 6 fractional digits, written into
    /// `buf`; `None` for years outside 0000-9999.
    pub(crate) fn write_rfc3339(self, buf: &mut [u8; 27]) -> Option<&str> {
        let secs = self.0.div_euclid(Self::MICROS_PER_SECOND);
        let micros = self.0.rem_euclid(Self::MICROS_PER_SECOND) as u32;
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&y) {
            return None;
        }
        let sod = secs.rem_euclid(86_400) as u32;
        let put = |buf: &mut [u8], at: usize, v: u32, width: usize| {
            let mut v = v;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(buf, 0, y as u32, 4);
        buf[4] = b'-';
        put(buf, 5, mo, 2);
        buf[7] = b'-';
        put(buf, 8, d, 2);
        buf[10] = b'T';
        put(buf, 11, sod / 3600, 2);
        buf[13] = b':';
        put(buf, 14, sod / 60 % 60, 2);
        buf[16] = b':';
        put(buf, 17, sod % 60, 2);
        let mut len = 19;
        if micros != 0 {
            buf[19] = b'.';
            if micros.is_multiple_of(1000) {
                put(buf, 20, micros / 1000, 3);
                len = 23;
            } else {
                put(buf, 20, micros, 6);
                len = 26;
            }
        }
        buf[len] = b'Z';
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&buf[..=len]).ok()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with as many fractional digits as needed (0, 3 or 6).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 27];
        if let Some(text) = self.write_rfc3339(&mut buf) {
            return f.write_str(text);
        }
        match self.to_datetime() {
            Some(dt) => f.write_str(&dt.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(f, "@{}us", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Formatted on the stack: no `fmt` machinery on the hot path.
        let mut buf = [0u8; 27];
        match self.write_rfc3339(&mut buf) {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Accepts an RFC 3339 string or a number of epoch milliseconds.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time string or epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp::from_millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp::from_millis)
                    .map_err(|_| E::custom("epoch milliseconds out of range"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_millis_to_the_same_instant() {
        let a = Timestamp::parse("2025-08-27T20:15:31.134Z").unwrap();
        let b = Timestamp::parse("1756325731134").unwrap();
        let c = Timestamp::parse("2025-08-27T22:15:31.134+02:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.as_millis(), 1_756_325_731_134);
    }

    #[test]
    fn displays_with_minimal_fraction() {
        assert_eq!(
            Timestamp::from_millis(1_756_325_731_134).to_string(),
            "2025-08-27T20:15:31.134Z"
        );
        assert_eq!(
            Timestamp::from_micros(1_756_325_731_000_001).to_string(),
            "2025-08-27T20:15:31.000001Z"
        );
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00Z"
        );
    }

    fn chrono_text(ts: Timestamp) -> String {
        ts.to_datetime()
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    #[test]
    fn fast_paths_agree_with_chrono_at_the_edges() {
        for text in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "2000-02-29T12:00:00.5Z",
            "2024-12-31T23:59:59.123456789Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
        ] {
            let fast = parse_utc_fast(text.as_bytes()).unwrap();
            let slow = DateTime::parse_from_rfc3339(text).unwrap();
            assert_eq!(
                fast,
                Timestamp::from_datetime(slow.with_timezone(&Utc)),
                "{text}"
            );
            assert_eq!(fast.to_string(), chrono_text(fast), "{text}");
        }
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
        ] {
            assert!(parse_utc_fast(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(Timestamp::parse("2023-02-29T00:00:00Z").is_err());
    }

    proptest::proptest! {
        #[test]
        fn formatting_and_parsing_agree_with_chrono(micros in -62_000_000_000_000_000i64..253_000_000_000_000_000i64) {
            let ts = Timestamp::from_micros(micros);
            let text = ts.to_string();
            proptest::prop_assert_eq!(&text, &chrono_text(ts));
            proptest::prop_assert_eq!(Timestamp::parse(&text).unwrap(), ts);
            let ms = Timestamp::from_millis(micros / 1000);
            proptest::prop_assert_eq!(ms.to_string(), chrono_text(ms));
        }
    }

    #[test]
    fn rejects_garbage_with_the_input_in_the_message() {
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }

    #[test]
    fn the_fast_path_refuses_every_malformed_form() {
        for bad in [
            "2024-01-00T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-00-10T00:00:00Z",
            "2024-01-01X00:00:00Z",
            "2024/01-01T00:00:00Z",
            "2024-01/01T00:00:00Z",
            "2024-01-01T00-00:00Z",
            "2024-01-01T00:00-00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:00ZZ",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00.12a4Z",
            "2024-01-01T00:00:00+0Z",
            "2024-01-01T00:00:0aZ",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00Z",
        ] {
            assert_eq!(parse_utc_fast(bad.as_bytes()), None, "{bad}");
            assert_eq!(
                Timestamp::parse(bad).ok(),
                DateTime::parse_from_rfc3339(bad)
                    .ok()
                    .map(|d| Timestamp::from_datetime(d.with_timezone(&Utc))),
                "{bad}: the fallback agrees with chrono"
            );
        }
        // Leap years: every fourth, not every hundredth, every 400th.
        for (text, ok) in [
            ("2024-02-29T00:00:00Z", true),
            ("2000-02-29T00:00:00Z", true),
            ("1900-02-29T00:00:00Z", false),
            ("2023-02-29T00:00:00Z", false),
            ("2024-04-30T00:00:00Z", true),
            ("2024-06-31T00:00:00Z", false),
            ("2024-09-31T00:00:00Z", false),
            ("2024-11-31T00:00:00Z", false),
            ("2024-12-31T00:00:00Z", true),
        ] {
            assert_eq!(parse_utc_fast(text.as_bytes()).is_some(), ok, "{text}");
        }
    }

    #[test]
    fn epoch_milliseconds_parse_with_a_sign() {
        assert_eq!(
            Timestamp::parse("-1500").unwrap(),
            Timestamp::from_millis(-1500)
        );
        assert_eq!(
            Timestamp::parse(" 1500 ").unwrap(),
            Timestamp::from_millis(1500)
        );
        assert!(Timestamp::parse("").is_err());
        assert!(Timestamp::parse("15-00").is_err());
        assert_eq!(
            "1500".parse::<Timestamp>().unwrap(),
            Timestamp::from_millis(1500)
        );
        assert!("nope".parse::<Timestamp>().is_err());
    }

    #[test]
    fn arithmetic_saturates_and_debug_reads_as_display() {
        let t = Timestamp::from_micros(10);
        assert_eq!(t.saturating_sub_micros(4), Timestamp::from_micros(6));
        assert_eq!(Timestamp::MIN.saturating_sub_micros(1), Timestamp::MIN);
        assert_eq!(format!("{t:?}"), t.to_string());
        let err = serde_json::from_str::<Timestamp>("true").unwrap_err();
        assert!(
            err.to_string()
                .contains("an RFC 3339 time string or epoch milliseconds"),
            "{err}"
        );
    }

    #[test]
    fn civil_dates_agree_with_chrono_and_years_outside_0_to_9999_print_too() {
        for days in [
            -719_528i64,
            -1,
            0,
            1,
            59,
            60,
            365,
            10_957,
            11_016,
            20_000,
            2_932_896,
        ] {
            let date =
                chrono::NaiveDate::from_num_days_from_ce_opt((days + 719_163) as i32).unwrap();
            use chrono::Datelike;
            assert_eq!(
                civil_from_days(days),
                (i64::from(date.year()), date.month(), date.day()),
                "{days}"
            );
            assert_eq!(
                days_from_civil(i64::from(date.year()), date.month(), date.day()),
                days
            );
        }
        for micros in [-62_200_000_000_000_000i64, 253_500_000_000_000_000] {
            let ts = Timestamp::from_micros(micros);
            assert_eq!(ts.to_string(), chrono_text(ts), "{micros}");
        }
    }
}
