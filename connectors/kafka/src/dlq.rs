//! The dead-letter queue writer: records a stage cannot use go to the DLQ topic
//! unchanged, with headers saying why and where they came from (SPEC section 6).
//!
//! The key and value are republished byte for byte, so an operator can fix the
//! producer or the pipeline and replay the DLQ into the input topic as it is. The
//! writer works over the [`Producer`] trait, so the in-process transport and Kafka
//! share it; the sink archives the DLQ into the lake's `errors` table from the same
//! headers.

use playlake_transport::{Delivery, OutgoingRecord, Producer, Record, Result};

/// Header naming why the record was rejected.
pub const HEADER_ERROR: &str = "playlake.error";
/// Header naming the topic the record was read from.
pub const HEADER_SOURCE_TOPIC: &str = "playlake.source.topic";
/// Header naming the partition the record was read from (decimal text).
pub const HEADER_SOURCE_PARTITION: &str = "playlake.source.partition";
/// Header naming the offset the record was read from (decimal text).
pub const HEADER_SOURCE_OFFSET: &str = "playlake.source.offset";

const DLQ_HEADERS: [&str; 4] = [
    HEADER_ERROR,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
];

/// A rejected input record and the reason, ready for the DLQ.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub record: Record,
    pub reason: String,
}

impl DeadLetter {
    pub fn new(record: Record, reason: impl Into<String>) -> Self {
        Self {
            record,
            reason: reason.into(),
        }
    }
}

/// The record to publish for a rejected one: same key and value, the original's
/// headers (minus stale `playlake.*` DLQ headers from an earlier pass), then ours.
/// The key places it on the DLQ topic, so one key's failures stay in order.
pub fn dead_letter_record(dlq_topic: &str, record: &Record, reason: &str) -> OutgoingRecord {
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(name, _)| !DLQ_HEADERS.contains(&name.as_str()))
        .cloned()
        .collect();
    headers.extend([
        (HEADER_ERROR.to_string(), reason.as_bytes().to_vec()),
        (
            HEADER_SOURCE_TOPIC.to_string(),
            record.topic.as_bytes().to_vec(),
        ),
        (
            HEADER_SOURCE_PARTITION.to_string(),
            record.partition.to_string().into_bytes(),
        ),
        (
            HEADER_SOURCE_OFFSET.to_string(),
            record.offset.to_string().into_bytes(),
        ),
    ]);
    OutgoingRecord {
        topic: dlq_topic.to_string(),
        partition: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

/// Where a DLQ record says it came from, read back from its headers (for the sink's
/// `errors` table and for replay tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterOrigin {
    pub reason: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

impl DeadLetterOrigin {
    /// `None` when a header is missing or malformed (not a playlake DLQ record).
    pub fn from_record(record: &Record) -> Option<Self> {
        let text = |name| {
            record
                .header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
        };
        Some(Self {
            reason: text(HEADER_ERROR)?.to_string(),
            source_topic: text(HEADER_SOURCE_TOPIC)?.to_string(),
            source_partition: text(HEADER_SOURCE_PARTITION)?.parse().ok()?,
            source_offset: text(HEADER_SOURCE_OFFSET)?.parse().ok()?,
        })
    }
}

/// Publishes rejected records to the DLQ topic through any transport's producer.
pub struct DlqWriter<P: ?Sized = dyn Producer> {
    topic: String,
    producer: Box<P>,
}

impl<P: Producer + ?Sized> DlqWriter<P> {
    pub fn new(topic: impl Into<String>, producer: Box<P>) -> Self {
        Self {
            topic: topic.into(),
            producer,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes the dead letters and waits until all are acknowledged, so the stage
    /// may checkpoint past them.
    pub async fn write(&self, letters: &[DeadLetter]) -> Result<Vec<Delivery>> {
        if letters.is_empty() {
            return Ok(Vec::new());
        }
        let records = letters
            .iter()
            .map(|l| dead_letter_record(&self.topic, &l.record, &l.reason))
            .collect();
        self.producer.send(records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            topic: "playback.events".into(),
            partition: 3,
            offset: 42,
            key: Some(b"uuid-1".to_vec()),
            value: Some(b"{not json".to_vec()),
            headers: vec![
                ("trace".into(), b"t1".to_vec()),
                (HEADER_ERROR.into(), b"stale".to_vec()),
            ],
            timestamp_ms: Some(1),
        }
    }

    #[test]
    fn keeps_bytes_and_adds_origin_headers() {
        let out = dead_letter_record("playback.dlq", &record(), "invalid JSON at 1:2");
        assert_eq!(out.topic, "playback.dlq");
        assert_eq!(out.key.as_deref(), Some(&b"uuid-1"[..]));
        assert_eq!(out.value.as_deref(), Some(&b"{not json"[..]));
        assert_eq!(out.partition, None);
        let names: Vec<_> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "trace",
                HEADER_ERROR,
                HEADER_SOURCE_TOPIC,
                HEADER_SOURCE_PARTITION,
                HEADER_SOURCE_OFFSET
            ]
        );
        let read_back = Record {
            topic: out.topic.clone(),
            partition: 0,
            offset: 0,
            key: out.key.clone(),
            value: out.value.clone(),
            headers: out.headers.clone(),
            timestamp_ms: None,
        };
        assert_eq!(
            DeadLetterOrigin::from_record(&read_back),
            Some(DeadLetterOrigin {
                reason: "invalid JSON at 1:2".into(),
                source_topic: "playback.events".into(),
                source_partition: 3,
                source_offset: 42,
            })
        );
    }
}
