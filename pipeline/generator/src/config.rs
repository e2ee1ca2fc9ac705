//! [`GeneratorConfig`]: what traffic to generate, and its validation.
//!
//! Every unit is in the field name (`_ms` = milliseconds, `_fraction` = a probability
//! in `[0, 1]`). The config deserializes from TOML/JSON with unknown fields rejected,
//! so a typo in `playlake.toml` is an error rather than a silently ignored setting;
//! missing fields take the defaults of [`GeneratorConfig::default`].

use playlake_schemas::time::MIN_EVENT_TIME_MS;
use serde::{Deserialize, Serialize};

/// 2025-06-01T00:00:00Z: the default start of the generated day slice.
pub const DEFAULT_START_TIME_MS: i64 = 1_748_736_000_000;

/// What to generate. Same config (including `seed`) → byte-identical output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Concurrent viewer slots. Each slot is one person at a time who watches sessions,
    /// takes breaks, comes back, and eventually leaves (a new person then takes the
    /// slot). About 83% of slots are watching at any instant.
    pub viewers: u32,
    /// Live streams (popular ones draw most live viewers; positions follow the clock).
    pub live_streams: u32,
    /// Video-on-demand titles (with pauses, seeks and resumes).
    pub vod_streams: u32,
    /// Share of sessions that pick a live stream when both kinds exist.
    pub live_fraction: f64,
    /// Player heartbeat period (SPEC: 5 s).
    pub heartbeat_interval_ms: u64,
    /// Event time of the start of the slice, epoch milliseconds (passed in, never read
    /// from a clock).
    pub start_time_ms: i64,
    /// Length of the slice: no event_time is at or after `start_time_ms + duration_ms`.
    pub duration_ms: u64,
    /// Largest delivery delay: every record is delivered at `event_time + d` with
    /// `0 <= d <= out_of_order_jitter_ms`, so arrival is out of order within that bound.
    pub out_of_order_jitter_ms: u64,
    /// Probability, per valid event, that a byte-identical copy is delivered later
    /// (still within the jitter bound).
    pub duplicate_fraction: f64,
    /// Probability, per valid event, that an extra malformed record (which the
    /// processor must send to the DLQ) is delivered for the same key.
    pub bad_record_fraction: f64,
    /// Share of viewers who are signed in (their events carry a `user_id`).
    pub user_fraction: f64,
    /// Stop after this many valid events (duplicates and bad records not counted);
    /// `None` = run to the end of the slice.
    pub max_events: Option<u64>,
    /// Random seed.
    pub seed: u64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            viewers: 500,
            live_streams: 3,
            vod_streams: 40,
            live_fraction: 0.6,
            heartbeat_interval_ms: 5_000,
            start_time_ms: DEFAULT_START_TIME_MS,
            duration_ms: 10 * 60 * 1000,
            out_of_order_jitter_ms: 3_000,
            duplicate_fraction: 0.01,
            bad_record_fraction: 0.001,
            user_fraction: 0.7,
            max_events: None,
            seed: 42,
        }
    }
}

/// The config cannot be used; the message says which field and how to fix it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be positive is zero, or too large.
    #[error("generator: `{field}` is {value}; set it to a whole number in 1..={max}")]
    Count {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// Neither live nor VOD streams.
    #[error("generator: `live_streams` and `vod_streams` are both 0; set at least one of them to 1 or more")]
    NoStreams,
    /// A fraction outside `[0, 1]` or not a number.
    #[error("generator: `{field}` is {value}; set it to a probability between 0 and 1 (for example 0.01 for 1%)")]
    Fraction {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A millisecond setting out of its range.
    #[error("generator: `{field}` is {value} ms; set it between {min} and {max} ms")]
    Millis {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: i128,
        /// Smallest accepted value.
        min: i128,
        /// Largest accepted value.
        max: i128,
    },
    /// `max_events` is `Some(0)`.
    #[error("generator: `max_events` is 0; leave it unset to run to the end of the slice, or set it to 1 or more")]
    ZeroMaxEvents,
}

/// 10 million viewer slots: memory is a few hundred bytes per slot.
pub const MAX_VIEWERS: u64 = 10_000_000;
/// 1 million streams of each kind.
pub const MAX_STREAMS: u64 = 1_000_000;
/// 9999-01-01T00:00:00Z: the generator writes four-digit years.
const MAX_END_TIME_MS: i64 = 253_370_764_800_000;
const HOUR_MS: u64 = 3_600_000;

impl GeneratorConfig {
    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.viewers == 0 || u64::from(self.viewers) > MAX_VIEWERS {
            return Err(ConfigError::Count {
                field: "viewers",
                value: self.viewers.into(),
                max: MAX_VIEWERS,
            });
        }
        for (field, value) in [
            ("live_streams", self.live_streams),
            ("vod_streams", self.vod_streams),
        ] {
            if u64::from(value) > MAX_STREAMS {
                return Err(ConfigError::Count {
                    field,
                    value: value.into(),
                    max: MAX_STREAMS,
                });
            }
        }
        if self.live_streams == 0 && self.vod_streams == 0 {
            return Err(ConfigError::NoStreams);
        }
        for (field, value) in [
            ("live_fraction", self.live_fraction),
            ("duplicate_fraction", self.duplicate_fraction),
            ("bad_record_fraction", self.bad_record_fraction),
            ("user_fraction", self.user_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Fraction { field, value });
            }
        }
        millis(
            "heartbeat_interval_ms",
            self.heartbeat_interval_ms.into(),
            100,
            HOUR_MS.into(),
        )?;
        millis(
            "out_of_order_jitter_ms",
            self.out_of_order_jitter_ms.into(),
            0,
            HOUR_MS.into(),
        )?;
        millis(
            "start_time_ms",
            self.start_time_ms.into(),
            MIN_EVENT_TIME_MS.into(),
            (MAX_END_TIME_MS - 366 * 24 * HOUR_MS as i64).into(),
        )?;
        millis(
            "duration_ms",
            self.duration_ms.into(),
            1,
            (366 * 24 * HOUR_MS).into(),
        )?;
        if self.max_events == Some(0) {
            return Err(ConfigError::ZeroMaxEvents);
        }
        Ok(())
    }

    /// First millisecond after the slice (exclusive end of event times).
    pub fn end_time_ms(&self) -> i64 {
        self.start_time_ms
            .saturating_add(i64::try_from(self.duration_ms).unwrap_or(i64::MAX))
    }

    /// A `now_ms` at which every valid generated event is accepted by
    /// `parse_playback_event` (no event_time more than 24 h ahead of it): the end of the
    /// slice plus the jitter.
    pub fn settled_now_ms(&self) -> i64 {
        self.end_time_ms()
            .saturating_add(i64::try_from(self.out_of_order_jitter_ms).unwrap_or(i64::MAX))
    }

    /// Rough number of valid events the slice holds without `max_events`: slots times
    /// heartbeats per slot, times the share of time a slot is watching (about 0.83).
    /// Useful to size `duration_ms` for a target event count.
    pub fn estimated_events(&self) -> u64 {
        let beats = self.duration_ms / self.heartbeat_interval_ms.max(1);
        let total = u128::from(self.viewers) * u128::from(beats) * 83 / 100;
        let total = u64::try_from(total).unwrap_or(u64::MAX);
        match self.max_events {
            Some(max) => total.min(max),
            None => total,
        }
    }
}

fn millis(field: &'static str, value: i128, min: i128, max: i128) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Millis {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_errors_say_how_to_fix() {
        GeneratorConfig::default().validate().unwrap();
        let cfg = GeneratorConfig {
            duplicate_fraction: 1.5,
            ..GeneratorConfig::default()
        };
        let err = cfg.validate().unwrap_err();
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
        let cfg = GeneratorConfig {
            user_fraction: f64::NAN,
            ..GeneratorConfig::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = GeneratorConfig {
            viewers: 0,
            ..GeneratorConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("1..="));
        let cfg = GeneratorConfig {
            live_streams: 0,
            vod_streams: 0,
            ..GeneratorConfig::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::NoStreams));
        let cfg = GeneratorConfig {
            start_time_ms: 0,
            ..GeneratorConfig::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("start_time_ms"));
        let cfg = GeneratorConfig {
            heartbeat_interval_ms: 0,
            ..GeneratorConfig::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = GeneratorConfig {
            max_events: Some(0),
            ..GeneratorConfig::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::ZeroMaxEvents));
    }

    #[test]
    fn serde_rejects_unknown_fields_and_fills_defaults() {
        let cfg: GeneratorConfig = serde_json::from_str(r#"{"viewers": 10, "seed": 7}"#).unwrap();
        assert_eq!(cfg.viewers, 10);
        assert_eq!(cfg.seed, 7);
        assert_eq!(cfg.heartbeat_interval_ms, 5_000);
        let err = serde_json::from_str::<GeneratorConfig>(r#"{"viewer": 10}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn estimates_scale_with_size() {
        let cfg = GeneratorConfig {
            viewers: 100,
            duration_ms: 600_000,
            ..GeneratorConfig::default()
        };
        assert_eq!(cfg.estimated_events(), 100 * 120 * 83 / 100);
        assert!(cfg.settled_now_ms() > cfg.end_time_ms());
    }
}
