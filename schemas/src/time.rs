//! Event-time timestamps as they travel through playlake.
//!
//! Inside the pipeline a timestamp is an integer count of milliseconds since the Unix
//! epoch ([`TimestampMs`]): cheap to compare, to window (`t - t % window`) and to store
//! in Arrow `Timestamp(Millisecond, "UTC")` columns, which hold exactly that integer.
//! On the wire (output topics, JSON rows) the same value is an RFC 3339 string with
//! millisecond precision in UTC, e.g. `2025-05-31T23:59:58.250Z`: the serde
//! implementations here do that conversion, so every result type that embeds a
//! `TimestampMs` gets the lake's JSON form for free.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// 2000-01-01T00:00:00Z in epoch milliseconds: the oldest event_time playlake accepts.
pub const MIN_EVENT_TIME_MS: i64 = 946_684_800_000;

/// How far an event_time may lie after the processor's wall clock: 24 h in ms.
pub const MAX_FUTURE_SKEW_MS: i64 = 24 * 60 * 60 * 1000;

/// A point in time in whole milliseconds since 1970-01-01T00:00:00Z.
///
/// Serializes as an RFC 3339 string with millisecond precision and a `Z` suffix;
/// deserializes from an RFC 3339 string with any offset (fractions below a millisecond
/// are truncated toward the past) or from an integer count of epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimestampMs(pub i64);

/// The timestamp cannot be shown as a calendar date (outside chrono's range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {0} ms is outside the representable calendar range")]
pub struct TimestampOutOfRange(pub i64);

impl TimestampMs {
    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The same instant as a chrono UTC date-time.
    pub fn to_datetime(self) -> Result<DateTime<Utc>, TimestampOutOfRange> {
        DateTime::<Utc>::from_timestamp_millis(self.0).ok_or(TimestampOutOfRange(self.0))
    }

    /// Converts a chrono date-time, truncating below the millisecond.
    pub fn from_datetime<Tz: chrono::TimeZone>(dt: &DateTime<Tz>) -> Self {
        TimestampMs(dt.timestamp_millis())
    }

    /// RFC 3339 with millisecond precision in UTC (`YYYY-MM-DDTHH:MM:SS.sssZ`).
    pub fn to_rfc3339(self) -> Result<String, TimestampOutOfRange> {
        Ok(self
            .to_datetime()?
            .to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    /// Parses an RFC 3339 string with any UTC offset.
    pub fn parse_rfc3339(text: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text).map(|dt| Self::from_datetime(&dt))
    }
}

impl From<i64> for TimestampMs {
    fn from(ms: i64) -> Self {
        TimestampMs(ms)
    }
}

impl From<TimestampMs> for i64 {
    fn from(ts: TimestampMs) -> Self {
        ts.0
    }
}

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

impl Serialize for TimestampMs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for TimestampMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = TimestampMs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string or integer epoch milliseconds")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimestampMs, E> {
                TimestampMs::parse_rfc3339(v)
                    .map_err(|e| E::custom(format_args!("invalid RFC 3339 timestamp {v:?}: {e}")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TimestampMs, E> {
                Ok(TimestampMs(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TimestampMs, E> {
                i64::try_from(v)
                    .map(TimestampMs)
                    .map_err(|_| E::custom(format_args!("epoch milliseconds {v} overflow i64")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_rfc3339_millis_utc() {
        let ts = TimestampMs(1_748_736_000_250);
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(json, "\"2025-06-01T00:00:00.250Z\"");
        let back: TimestampMs = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ts);
    }

    #[test]
    fn parses_offsets_and_integers() {
        let ts: TimestampMs = serde_json::from_str("\"2025-06-01T02:00:00.250+02:00\"").unwrap();
        assert_eq!(ts, TimestampMs(1_748_736_000_250));
        let ts: TimestampMs = serde_json::from_str("1748736000250").unwrap();
        assert_eq!(ts.to_string(), "2025-06-01T00:00:00.250Z");
        // Sub-millisecond digits are truncated.
        let ts = TimestampMs::parse_rfc3339("2025-06-01T00:00:00.250999Z").unwrap();
        assert_eq!(ts.as_millis(), 1_748_736_000_250);
    }

    #[test]
    fn min_event_time_is_year_2000() {
        assert_eq!(
            TimestampMs(MIN_EVENT_TIME_MS).to_string(),
            "2000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn out_of_range_does_not_panic() {
        assert!(TimestampMs(i64::MAX).to_rfc3339().is_err());
        assert!(serde_json::to_string(&TimestampMs(i64::MIN)).is_err());
        assert_eq!(TimestampMs(i64::MAX).to_string(), format!("{}ms", i64::MAX));
    }
}
