//! Topic names, the repartition record format and the records the processor writes.
//!
//! Output rows are JSON with the lake's column names (the schemas crate's serde
//! forms), keyed by their natural key, so a replayed row has the same key and bytes
//! as the first copy. The internal repartition topic carries [`RepartitionRecord`]s.

use std::time::{SystemTime, UNIX_EPOCH};

use playlake_processor::{DailyPartial, Late, ResumeCandidate, SourceWatermark, ViewerPartial};
use playlake_schemas::results::escape_key_part;
use playlake_schemas::{
    DailyStat, InvalidEvent, ResumePointRef, Session, ViewerWindow, ERROR_HEADER,
    LATE_OPERATOR_HEADER, LATE_WATERMARK_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
};
use playlake_transport::{Headers, OutgoingRecord, Record, TopicSpec, Transport};
use serde::{Deserialize, Serialize};

use crate::{ProcessConfig, ProcessError};

/// The topics of one processor, from its prefix (SPEC section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `<prefix>.events`: the input.
    pub events: String,
    /// `<prefix>.dlq`: invalid records.
    pub dlq: String,
    /// `<prefix>.late`: late events.
    pub late: String,
    /// `<prefix>.sessions`.
    pub sessions: String,
    /// `<prefix>.viewers`.
    pub viewers: String,
    /// `<prefix>.daily`.
    pub daily: String,
    /// `<prefix>.resume` (compacted).
    pub resume: String,
    /// `<prefix>.internal.partials`: partials, resume candidates, watermarks.
    pub partials: String,
}

impl Topics {
    /// The topic names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        let t = |suffix: &str| format!("{prefix}.{suffix}");
        Self {
            events: t("events"),
            dlq: t("dlq"),
            late: t("late"),
            sessions: t("sessions"),
            viewers: t("viewers"),
            daily: t("daily"),
            resume: t("resume"),
            partials: t("internal.partials"),
        }
    }
}

/// Creates every topic that is missing (resume compacted).
pub async fn ensure_topics(
    transport: &dyn Transport,
    topics: &Topics,
    config: &ProcessConfig,
) -> Result<(), ProcessError> {
    let n = config.topic_partitions;
    let mut specs: Vec<TopicSpec> = [
        &topics.events,
        &topics.dlq,
        &topics.late,
        &topics.sessions,
        &topics.viewers,
        &topics.daily,
    ]
    .into_iter()
    .map(|name| TopicSpec::new(name.clone(), n))
    .collect();
    specs.push(TopicSpec::new(topics.resume.clone(), n).compacted());
    specs.push(TopicSpec::new(
        topics.partials.clone(),
        config.repartition_partitions,
    ));
    for spec in &specs {
        transport
            .ensure_topic(spec)
            .await
            .map_err(ProcessError::transport(format!(
                "create topic {}",
                spec.name
            )))?;
    }
    Ok(())
}

/// A record of the internal repartition topic.
///
/// Externally tagged on purpose: `PartialRecord`'s internally tagged serde form goes
/// through serde's buffered content, which cannot hold the `i128` of a
/// `WatchedSum`, so a daily partial would not decode back from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepartitionRecord {
    /// Viewers of a window from one source partition (key: stream_id).
    Viewers(ViewerPartial),
    /// Daily aggregates from one source partition (key: stream_id).
    Daily(DailyPartial),
    /// A source partition's watermark, sent to every repartition partition. Written
    /// by earlier versions (one record per source partition and repartition
    /// partition) and by drain mode; still read.
    Watermark(SourceWatermark),
    /// The changed watermarks of every source partition one instance owns, in one
    /// record per repartition partition: an announcement round costs
    /// `repartition_partitions` records, not `source partitions x
    /// repartition_partitions` (1,024 records a round at 32 x 32, which the merge
    /// side then had to read back).
    Watermarks(Vec<SourceWatermark>),
    /// The latest event of a `(user_id, stream_id)` seen by one source partition.
    Resume(ResumeCandidate),
    /// Drain mode: source partition `partition` has read up to `next_offset`, drained
    /// and published everything before this marker.
    Drained {
        /// The events partition.
        partition: i32,
        /// The offset it read up to (exclusive).
        next_offset: i64,
    },
}

/// Wall clock, epoch ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn header(name: &str, value: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), value.into())
}

fn source_headers(record: &Record) -> Headers {
    vec![
        header(SOURCE_TOPIC_HEADER, record.topic.as_bytes()),
        header(SOURCE_PARTITION_HEADER, record.partition.to_string()),
        header(SOURCE_OFFSET_HEADER, record.offset.to_string()),
    ]
}

/// The DLQ copy of an invalid record: original key and bytes, the 4 SPEC headers.
pub fn dlq_record(topic: &str, record: &Record, error: &InvalidEvent) -> OutgoingRecord {
    let mut headers = vec![header(ERROR_HEADER, error.dlq_reason())];
    headers.extend(source_headers(record));
    OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

/// The late copy of an event: original bytes, operator and watermark headers (plus
/// where it came from).
pub fn late_record(topic: &str, record: &Record, late: &Late) -> OutgoingRecord {
    let mut headers = vec![
        header(LATE_OPERATOR_HEADER, late.operator.as_str()),
        header(LATE_WATERMARK_HEADER, late.watermark.millis().to_string()),
    ];
    headers.extend(source_headers(record));
    OutgoingRecord {
        topic: topic.to_owned(),
        partition: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

fn json_record<T: Serialize>(
    topic: &str,
    partition: Option<i32>,
    key: String,
    value: &T,
    what: &'static str,
) -> Result<OutgoingRecord, ProcessError> {
    Ok(OutgoingRecord {
        topic: topic.to_owned(),
        partition,
        key: Some(key.into_bytes()),
        value: Some(serde_json::to_vec(value).map_err(ProcessError::encode(what))?),
        headers: Vec::new(),
    })
}

/// Natural key of a session row: `uuid/stream_id/session_start_ms` (parts escaped),
/// then `/start_ordinal` for a session that shares its start with an earlier one
/// ([`Session::start_ordinal`]; keys of all other sessions are unchanged).
pub fn session_key(s: &Session) -> String {
    let mut key = format!(
        "{}/{}/{}",
        escape_key_part(&s.uuid),
        escape_key_part(&s.stream_id),
        s.session_start.as_millis()
    );
    if s.start_ordinal > 0 {
        key.push('/');
        key.push_str(&s.start_ordinal.to_string());
    }
    key
}

/// Natural key of a viewers row: `stream_id/window_start_ms`.
pub fn viewer_key(v: &ViewerWindow) -> String {
    format!(
        "{}/{}",
        escape_key_part(&v.stream_id),
        v.window_start.as_millis()
    )
}

/// Natural key of a daily row: `dt/stream_id`.
pub fn daily_key(d: &DailyStat) -> String {
    format!("{}/{}", d.dt, escape_key_part(&d.stream_id))
}

/// A `<prefix>.sessions` record.
pub fn session_record(topic: &str, s: &Session) -> Result<OutgoingRecord, ProcessError> {
    json_record(topic, None, session_key(s), s, "session row")
}

/// A `<prefix>.viewers` record.
pub fn viewer_record(topic: &str, v: &ViewerWindow) -> Result<OutgoingRecord, ProcessError> {
    json_record(topic, None, viewer_key(v), v, "viewers row")
}

/// A `<prefix>.daily` record.
pub fn daily_record(topic: &str, d: &DailyStat) -> Result<OutgoingRecord, ProcessError> {
    json_record(topic, None, daily_key(d), d, "daily row")
}

/// A `<prefix>.resume` record, keyed `user_id/stream_id`.
pub fn resume_record(topic: &str, r: &ResumePointRef<'_>) -> Result<OutgoingRecord, ProcessError> {
    json_record(topic, None, r.key(), r, "resume point")
}

/// A repartition record placed by `key` (partials: stream_id; resume: user/stream).
pub fn repartition_keyed(
    topic: &str,
    key: String,
    record: &RepartitionRecord,
) -> Result<OutgoingRecord, ProcessError> {
    json_record(topic, None, key, record, "repartition record")
}

/// A repartition record for one explicit partition (announcements, markers).
pub fn repartition_to(
    topic: &str,
    partition: i32,
    record: &RepartitionRecord,
) -> Result<OutgoingRecord, ProcessError> {
    json_record(
        topic,
        Some(partition),
        format!("_watermark/{partition}"),
        record,
        "repartition record",
    )
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use playlake_processor::{WatchedSum, Watermark};
    use playlake_schemas::{EndedBy, TimestampMs};

    use super::*;

    #[test]
    fn repartition_records_round_trip_through_json() {
        let records = vec![
            RepartitionRecord::Daily(DailyPartial {
                source_partition: 3,
                stream_id: "s/1".into(),
                day: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap_or_default(),
                uuids: vec!["u1".into()],
                user_ids: vec!["alice".into()],
                watched: WatchedSum::of_seconds(0.1 + 0.2),
                source_watermark: Watermark(1_748_736_000_000),
            }),
            RepartitionRecord::Watermark(SourceWatermark {
                partition: 1,
                watermark: Watermark::MIN,
                idle: true,
            }),
            RepartitionRecord::Watermarks(vec![
                SourceWatermark {
                    partition: 0,
                    watermark: Watermark(1_748_736_000_000),
                    idle: false,
                },
                SourceWatermark {
                    partition: 5,
                    watermark: Watermark::MIN,
                    idle: true,
                },
            ]),
            RepartitionRecord::Resume(ResumeCandidate {
                user_id: "alice".into(),
                stream_id: "s".into(),
                event_time: 5,
                event_id: "e".into(),
                position_end: 0.1 + 0.2,
                uuid: "u".into(),
            }),
            RepartitionRecord::Drained {
                partition: 2,
                next_offset: 10,
            },
        ];
        for record in records {
            let json = serde_json::to_vec(&record).unwrap();
            let back: RepartitionRecord = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, record);
        }
    }

    #[test]
    fn natural_keys_escape_separators() {
        let v = ViewerWindow {
            stream_id: "a/b".into(),
            window_start: TimestampMs(30_000),
            window_end: TimestampMs(60_000),
            viewers: 1,
        };
        assert_eq!(viewer_key(&v), "a%2Fb/30000");
        let mut session = Session {
            uuid: "u/1".into(),
            stream_id: "s".into(),
            user_id: None,
            session_start: TimestampMs(5),
            session_end: TimestampMs(5),
            position_start: 0.0,
            position_end: 0.0,
            watched_seconds: 0.0,
            event_count: 1,
            seek_count: 0,
            ended_by: EndedBy::Stop,
            start_ordinal: 0,
        };
        assert_eq!(session_key(&session), "u%2F1/s/5");
        session.start_ordinal = 2;
        assert_eq!(session_key(&session), "u%2F1/s/5/2");
        assert_eq!(
            Topics::new("playback").partials,
            "playback.internal.partials"
        );
    }
}
