//! Sample rows of every table for the tests, including hostile partition values.

use chrono::NaiveDate;
use playlake_schemas::{
    ChangeEvent, ChangeEventName, DailyStat, DlqRecord, EndedBy, EventType, PlaybackEvent, Session,
    TimestampMs, ViewerWindow,
};
use serde_json::json;

use crate::rows::RecordMeta;

/// 2025-06-01T00:00:00Z.
pub const T0: i64 = 1_748_736_000_000;

/// Stream ids a hostile producer might send.
pub const HOSTILE: [&str; 8] = ["s1", "../x", "a/b", "a=b", "%", "ünï cødé", "..", "x\u{1}y"];

pub fn meta(topic: &str, offset: i64) -> RecordMeta<'_> {
    RecordMeta {
        topic,
        partition: 0,
        offset,
        timestamp: TimestampMs(T0 + offset * 1000),
    }
}

pub fn session(i: i64, stream_id: &str) -> Session {
    Session {
        uuid: format!("u{i}"),
        stream_id: stream_id.into(),
        user_id: (i % 2 == 0).then(|| format!("user{i}")),
        session_start: TimestampMs(T0 + i * 60_000),
        session_end: TimestampMs(T0 + i * 60_000 + 30_500),
        position_start: 1.5,
        position_end: 32.0,
        watched_seconds: 30.5,
        event_count: 7 + i,
        seek_count: i % 3,
        ended_by: if i % 2 == 0 {
            EndedBy::Gap
        } else {
            EndedBy::Stop
        },
        start_ordinal: 0,
    }
}

pub fn viewer(i: i64, stream_id: &str) -> ViewerWindow {
    ViewerWindow {
        stream_id: stream_id.into(),
        window_start: TimestampMs(T0 + i * 30_000),
        window_end: TimestampMs(T0 + (i + 1) * 30_000),
        viewers: 1 + i,
    }
}

pub fn daily(i: i64, stream_id: &str) -> DailyStat {
    DailyStat {
        dt: NaiveDate::from_ymd_opt(2025, 6, 1 + (i % 3) as u32).unwrap_or_default(),
        stream_id: stream_id.into(),
        views: 10 + i,
        unique_users: 4,
        watched_seconds: 1234.5,
        peak_viewers: 6,
    }
}

pub fn event(i: i64, stream_id: &str) -> PlaybackEvent {
    PlaybackEvent {
        event_id: format!("e{i}"),
        uuid: format!("u{}", i % 5),
        stream_id: stream_id.into(),
        user_id: (i % 3 == 0).then(|| "alice".to_string()),
        event_type: EventType::ALL[(i % 5) as usize],
        event_time: TimestampMs(T0 + i * 900_000),
        position_start: i as f64,
        position_end: i as f64 + 5.0,
    }
}

pub fn change(i: i64, table: &str) -> ChangeEvent {
    ChangeEvent {
        table: table.into(),
        event_id: format!("c{i}"),
        event_name: ChangeEventName::Modify,
        sequence_number: Some(format!("{}", 1_000 + i)),
        shard_id: (i % 2 == 0).then(|| "shardId-1".to_string()),
        approximate_creation_time: TimestampMs(T0 + i * 1_800_000),
        keys: json!({"stream_id": "s", "uuid": format!("u{i}")}),
        new_image: Some(json!({"n": i})),
        old_image: None,
        ttl_expired: i % 4 == 0,
        snapshot: false,
    }
}

pub fn dlq(i: i64) -> DlqRecord {
    DlqRecord {
        source_topic: "playback.events".into(),
        source_partition: 2,
        source_offset: 100 + i,
        reason: "invalid_json: expected value".into(),
        raw: format!("not json {i}").into_bytes(),
    }
}
