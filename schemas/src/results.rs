//! Result rows of the processor (SPEC section 3): sessions, concurrent viewers, daily
//! stats and resume points.
//!
//! Data flow: the processor's operators build these rows when a result becomes final
//! (resume points: whenever they change), serialize them to JSON (the lake's column
//! names, timestamps as RFC 3339 strings with ms in UTC, dates as `YYYY-MM-DD`) and
//! publish them to `playback.sessions`, `playback.viewers`, `playback.daily` and the
//! compacted `playback.resume`, keyed by [`Session::key`] and friends. The sink
//! deserializes them and writes Parquet (see [`crate::arrow::Table`]); it drops
//! redeliveries by the same natural key, which is what makes the lake exactly-once.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::time::TimestampMs;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    /// The session's last event is a `stop`.
    Stop,
    /// No event followed within `session_gap`.
    Gap,
}

impl EndedBy {
    /// The lowercase wire name (`stop` or `gap`).
    pub const fn as_str(self) -> &'static str {
        match self {
            EndedBy::Stop => "stop",
            EndedBy::Gap => "gap",
        }
    }
}

impl fmt::Display for EndedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One playback session of one `(uuid, stream_id)`: a `sessions` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Playback session id of the player.
    pub uuid: String,
    /// Stream watched (a partition column in the lake, a field on the topic).
    pub stream_id: String,
    /// First non-null `user_id` of the session's events.
    pub user_id: Option<String>,
    /// `event_time` of the first event.
    pub session_start: TimestampMs,
    /// `event_time` of the last event.
    pub session_end: TimestampMs,
    /// `position_start` of the first event.
    pub position_start: f64,
    /// `position_end` of the last event.
    pub position_end: f64,
    /// Sum over non-seek events of `max(0, position_end - position_start)`.
    pub watched_seconds: f64,
    /// Number of distinct events in the session.
    pub event_count: i64,
    /// Number of `seek` events.
    pub seek_count: i64,
    /// `stop` or `gap`.
    pub ended_by: EndedBy,
    /// How many earlier sessions of this `(uuid, stream_id)` start in the same
    /// millisecond: almost always 0, and then left out of the JSON.
    ///
    /// SPEC's natural key `(uuid, stream_id, session_start)` is not unique on its
    /// own: a session whose events all share one millisecond and end with a `stop`
    /// can be followed by another event of the same millisecond (a larger
    /// `event_id`), which starts the next session at the same `session_start`. Both
    /// are real sessions; without this ordinal, a consumer that deduplicates by key
    /// (the sink does) would keep only the first. It is deterministic (a function
    /// of the events), so a replayed session carries the same value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_ordinal: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Natural key of a session: `(uuid, stream_id, session_start)`, plus
/// [`Session::start_ordinal`] for the rare sessions that share a start.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Playback session id.
    pub uuid: String,
    /// Stream watched.
    pub stream_id: String,
    /// Start of the session.
    pub session_start: TimestampMs,
    /// [`Session::start_ordinal`].
    pub start_ordinal: u32,
}

impl Session {
    /// The natural key the sink deduplicates on.
    pub fn key(&self) -> SessionKey {
        SessionKey {
            uuid: self.uuid.clone(),
            stream_id: self.stream_id.clone(),
            session_start: self.session_start,
            start_ordinal: self.start_ordinal,
        }
    }
}

/// Concurrent viewers of one stream in one tumbling window: a `viewers` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerWindow {
    /// Stream watched (a partition column in the lake).
    pub stream_id: String,
    /// Inclusive start of the window, aligned to the epoch.
    pub window_start: TimestampMs,
    /// Exclusive end of the window.
    pub window_end: TimestampMs,
    /// Distinct uuids with at least one non-`stop` event in the window (never 0).
    pub viewers: i64,
}

impl ViewerWindow {
    /// The natural key: `(stream_id, window_start)`.
    pub fn key(&self) -> (&str, TimestampMs) {
        (&self.stream_id, self.window_start)
    }
}

/// Daily statistics of one stream: a `daily` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyStat {
    /// The day, in the processor's configured time zone (a partition column).
    pub dt: NaiveDate,
    /// Stream watched.
    pub stream_id: String,
    /// Distinct uuids with any event that day.
    pub views: i64,
    /// Distinct non-null user_ids that day.
    pub unique_users: i64,
    /// Sum over the day's non-seek events of `max(0, position_end - position_start)`.
    pub watched_seconds: f64,
    /// Largest `viewers` over the stream's windows starting that day.
    pub peak_viewers: i64,
}

impl DailyStat {
    /// The natural key: `(dt, stream_id)`.
    pub fn key(&self) -> (NaiveDate, &str) {
        (self.dt, &self.stream_id)
    }
}

/// Where a user left off in a stream: a record of the compacted `playback.resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The viewer (never null here).
    pub user_id: String,
    /// Stream watched.
    pub stream_id: String,
    /// `position_end` of the user's latest event (by event_time) on the stream.
    pub position_end: f64,
    /// `event_time` of that event.
    pub event_time: TimestampMs,
    /// Playback session that sent it.
    pub uuid: String,
}

impl ResumePoint {
    /// The Kafka key of the compacted topic: `user_id/stream_id`, each part escaped
    /// with [`escape_key_part`] so that a `/` inside an id cannot make two different
    /// pairs collide.
    pub fn key(&self) -> String {
        resume_key(&self.user_id, &self.stream_id)
    }
}

/// A [`ResumePoint`] whose strings are borrowed from where the processor keeps them:
/// it serializes to the very same JSON (same fields, same order), without the three
/// string copies an owned point costs at every change of a resume point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResumePointRef<'a> {
    /// The viewer (never null here).
    pub user_id: &'a str,
    /// Stream watched.
    pub stream_id: &'a str,
    /// `position_end` of the user's latest event (by event_time) on the stream.
    pub position_end: f64,
    /// `event_time` of that event.
    pub event_time: TimestampMs,
    /// Playback session that sent it.
    pub uuid: &'a str,
}

impl ResumePointRef<'_> {
    /// The Kafka key, as [`ResumePoint::key`].
    pub fn key(&self) -> String {
        resume_key(self.user_id, self.stream_id)
    }

    /// The owned point.
    pub fn to_point(&self) -> ResumePoint {
        ResumePoint {
            user_id: self.user_id.to_owned(),
            stream_id: self.stream_id.to_owned(),
            position_end: self.position_end,
            event_time: self.event_time,
            uuid: self.uuid.to_owned(),
        }
    }
}

impl ResumePoint {
    /// The point with borrowed strings.
    pub fn as_ref(&self) -> ResumePointRef<'_> {
        ResumePointRef {
            user_id: &self.user_id,
            stream_id: &self.stream_id,
            position_end: self.position_end,
            event_time: self.event_time,
            uuid: &self.uuid,
        }
    }
}

/// The `playback.resume` key of a `(user_id, stream_id)` pair (see [`ResumePoint::key`]).
pub fn resume_key(user_id: &str, stream_id: &str) -> String {
    format!(
        "{}/{}",
        escape_key_part(user_id),
        escape_key_part(stream_id)
    )
}

/// Escapes `%` as `%25` and `/` as `%2F`; every other character is kept. Ids without
/// those two characters are unchanged, so the usual key reads `alice/stream-1`.
pub fn escape_key_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session() -> Session {
        Session {
            uuid: "u1".into(),
            stream_id: "s1".into(),
            user_id: None,
            session_start: TimestampMs(1_748_736_000_000),
            session_end: TimestampMs(1_748_736_030_500),
            position_start: 0.0,
            position_end: 30.5,
            watched_seconds: 30.5,
            event_count: 7,
            seek_count: 0,
            ended_by: EndedBy::Gap,
            start_ordinal: 0,
        }
    }

    #[test]
    fn a_borrowed_resume_point_is_the_same_record() {
        let point = ResumePoint {
            user_id: "al/ice%".into(),
            stream_id: "s1".into(),
            position_end: 12.5,
            event_time: TimestampMs(1_748_736_000_123),
            uuid: "u1".into(),
        };
        let borrowed = point.as_ref();
        assert_eq!(
            serde_json::to_string(&borrowed).unwrap(),
            serde_json::to_string(&point).unwrap()
        );
        assert_eq!(borrowed.key(), point.key());
        assert_eq!(borrowed.to_point(), point);
    }

    #[test]
    fn session_json_uses_lake_names() {
        let s = session();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            json!({"uuid":"u1","stream_id":"s1","user_id":null,
                "session_start":"2025-06-01T00:00:00.000Z","session_end":"2025-06-01T00:00:30.500Z",
                "position_start":0.0,"position_end":30.5,"watched_seconds":30.5,
                "event_count":7,"seek_count":0,"ended_by":"gap"})
        );
        let back: Session = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.key().session_start, TimestampMs(1_748_736_000_000));
    }

    #[test]
    fn a_session_sharing_its_start_carries_its_ordinal() {
        let first = session();
        let second = Session {
            start_ordinal: 1,
            ..session()
        };
        let v = serde_json::to_value(&second).unwrap();
        assert_eq!(v["start_ordinal"], json!(1));
        let back: Session = serde_json::from_value(v).unwrap();
        assert_eq!(back, second);
        assert_ne!(first.key(), second.key());
        assert!(first.key() < second.key());
    }

    #[test]
    fn viewer_and_daily_round_trip() {
        let w = ViewerWindow {
            stream_id: "s".into(),
            window_start: TimestampMs(1_748_736_000_000),
            window_end: TimestampMs(1_748_736_030_000),
            viewers: 3,
        };
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(
            text,
            r#"{"stream_id":"s","window_start":"2025-06-01T00:00:00.000Z","window_end":"2025-06-01T00:00:30.000Z","viewers":3}"#
        );
        assert_eq!(serde_json::from_str::<ViewerWindow>(&text).unwrap(), w);
        assert_eq!(w.key(), ("s", TimestampMs(1_748_736_000_000)));

        let d = DailyStat {
            dt: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
            stream_id: "s".into(),
            views: 10,
            unique_users: 4,
            watched_seconds: 1234.5,
            peak_viewers: 6,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["dt"], json!("2025-06-01"));
        assert_eq!(serde_json::from_value::<DailyStat>(v).unwrap(), d);
    }

    #[test]
    fn resume_key_escapes_separators() {
        let r = ResumePoint {
            user_id: "alice".into(),
            stream_id: "s-1".into(),
            position_end: 12.0,
            event_time: TimestampMs(1_748_736_000_000),
            uuid: "u".into(),
        };
        assert_eq!(r.key(), "alice/s-1");
        assert_ne!(resume_key("a/b", "c"), resume_key("a", "b/c"));
        assert_eq!(resume_key("a/b", "50%"), "a%2Fb/50%25");
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ResumePoint>(&text).unwrap(), r);
    }

    #[test]
    fn ended_by_names() {
        assert_eq!(serde_json::to_string(&EndedBy::Stop).unwrap(), "\"stop\"");
        assert_eq!(EndedBy::Gap.to_string(), "gap");
        assert!(serde_json::from_str::<EndedBy>("\"idle\"").is_err());
    }
}
