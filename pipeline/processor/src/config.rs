//! The processor's event-time settings (SPEC section 3), validated once.
//!
//! [`ProcessorConfig`] is what the command line and `playlake.toml` fill in (durations
//! in milliseconds, the time zone as an IANA name). [`ProcessorConfig::validate`] turns
//! it into [`Settings`], the typed value every operator trusts: positive durations and
//! a parsed [`chrono_tz::Tz`]. `Settings` serializes back to the config form, so a
//! checkpointed operator carries the settings its state was built with.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default `max_out_of_orderness`: 10 s.
pub const DEFAULT_MAX_OUT_OF_ORDERNESS_MS: i64 = 10_000;
/// Default `idle_timeout`: 30 s of wall clock.
pub const DEFAULT_IDLE_TIMEOUT_MS: i64 = 30_000;
/// Default `session_gap`: 30 s.
pub const DEFAULT_SESSION_GAP_MS: i64 = 30_000;
/// Default `viewer_window`: 30 s.
pub const DEFAULT_VIEWER_WINDOW_MS: i64 = 30_000;
/// Longest duration accepted for any setting: 7 days. Keeps every `time + duration`
/// far from `i64` overflow and rejects obvious unit mistakes (seconds given as ms).
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3_600_000;

/// Event-time settings as configured (units in the names, time zone by IANA name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// How far behind the largest event time seen on a partition an event may arrive
    /// and still be on time: a partition's watermark is `max event_time - this`.
    pub max_out_of_orderness_ms: i64,
    /// Wall-clock time after which a partition that delivered nothing stops holding
    /// the minimum watermark back.
    pub idle_timeout_ms: i64,
    /// Largest gap between consecutive events of one session (inclusive).
    pub session_gap_ms: i64,
    /// Length of the epoch-aligned tumbling windows of concurrent viewers.
    pub viewer_window_ms: i64,
    /// IANA time zone whose calendar days the daily stats use (`UTC`, `Europe/Paris`).
    pub time_zone: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            max_out_of_orderness_ms: DEFAULT_MAX_OUT_OF_ORDERNESS_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            session_gap_ms: DEFAULT_SESSION_GAP_MS,
            viewer_window_ms: DEFAULT_VIEWER_WINDOW_MS,
            time_zone: "UTC".to_owned(),
        }
    }
}

/// Why a [`ProcessorConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A duration is out of its range.
    #[error("{field} must be between {min} and {MAX_DURATION_MS} ms, found {value}")]
    Duration {
        /// The offending setting.
        field: &'static str,
        /// Its value in ms.
        value: i64,
        /// The smallest value allowed.
        min: i64,
    },
    /// The time zone is not an IANA name chrono-tz knows.
    #[error("time_zone {0:?} is not a known IANA time zone (for example UTC or Europe/Paris)")]
    TimeZone(String),
}

impl ProcessorConfig {
    /// Checks every field and returns the settings the operators use.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let check = |field: &'static str, value: i64, min: i64| {
            if (min..=MAX_DURATION_MS).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::Duration { field, value, min })
            }
        };
        Ok(Settings {
            max_out_of_orderness_ms: check(
                "max_out_of_orderness_ms",
                self.max_out_of_orderness_ms,
                0,
            )?,
            idle_timeout_ms: check("idle_timeout_ms", self.idle_timeout_ms, 1)?,
            session_gap_ms: check("session_gap_ms", self.session_gap_ms, 0)?,
            viewer_window_ms: check("viewer_window_ms", self.viewer_window_ms, 1)?,
            time_zone: self
                .time_zone
                .parse::<Tz>()
                .map_err(|_| ConfigError::TimeZone(self.time_zone.clone()))?,
        })
    }
}

/// Validated event-time settings (see [`ProcessorConfig`] for each field's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProcessorConfig", into = "ProcessorConfig")]
pub struct Settings {
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    session_gap_ms: i64,
    viewer_window_ms: i64,
    time_zone: Tz,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_out_of_orderness_ms: DEFAULT_MAX_OUT_OF_ORDERNESS_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            session_gap_ms: DEFAULT_SESSION_GAP_MS,
            viewer_window_ms: DEFAULT_VIEWER_WINDOW_MS,
            time_zone: Tz::UTC,
        }
    }
}

impl TryFrom<ProcessorConfig> for Settings {
    type Error = ConfigError;

    fn try_from(config: ProcessorConfig) -> Result<Self, Self::Error> {
        config.validate()
    }
}

impl From<Settings> for ProcessorConfig {
    fn from(s: Settings) -> Self {
        Self {
            max_out_of_orderness_ms: s.max_out_of_orderness_ms,
            idle_timeout_ms: s.idle_timeout_ms,
            session_gap_ms: s.session_gap_ms,
            viewer_window_ms: s.viewer_window_ms,
            time_zone: s.time_zone.name().to_owned(),
        }
    }
}

impl Settings {
    /// `max_out_of_orderness` in ms.
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        self.max_out_of_orderness_ms
    }
    /// `idle_timeout` in ms of wall clock.
    pub fn idle_timeout_ms(&self) -> i64 {
        self.idle_timeout_ms
    }
    /// `session_gap` in ms.
    pub fn session_gap_ms(&self) -> i64 {
        self.session_gap_ms
    }
    /// `viewer_window` in ms.
    pub fn viewer_window_ms(&self) -> i64 {
        self.viewer_window_ms
    }
    /// Time zone of the daily stats.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let settings = ProcessorConfig::default().validate().unwrap();
        assert_eq!(settings, Settings::default());
        let json = serde_json::to_string(&settings).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), settings);
    }

    #[test]
    fn rejects_bad_values() {
        let config = ProcessorConfig {
            viewer_window_ms: 0,
            ..ProcessorConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Duration {
                field: "viewer_window_ms",
                ..
            })
        ));
        let config = ProcessorConfig {
            time_zone: "Mars/Olympus".into(),
            ..ProcessorConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::TimeZone("Mars/Olympus".into()))
        );
    }
}
