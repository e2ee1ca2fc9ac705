//! Publishing a batch of change events and, with a mapping, the playback events and
//! DLQ records made from them. Shared by the stream reader and the backfill.
//!
//! Order of operations, which the delivery guarantee rests on: the change events are
//! sent and acknowledged first; then the mapped events and DLQ records (the DLQ
//! records point at the acknowledged cdc record by topic, partition and offset);
//! only after both does the caller move a checkpoint. A crash anywhere in between
//! redelivers the whole batch: identical change events and identical playback
//! events (same event ids), which consumers deduplicate.
//!
//! DLQ records are identical copies too: the lake's `errors` table deduplicates by
//! (`source_topic`, `source_partition`, `source_offset`), and a redelivered change
//! lands on the cdc topic at a new offset, so the offset header cannot be the cdc
//! record's offset. It is instead [`dlq_identity`]: a negative number (never a
//! Kafka offset) derived from the table and the change's event id, the same for
//! every copy; the topic and partition are the cdc record's (the partition follows
//! from the item key). The cdc record itself is found by its event id, which the DLQ
//! record's value (the change event, byte for byte) carries.

use std::sync::Arc;

use playlake_schemas::{
    ChangeEvent, ERROR_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER,
};
use playlake_transport::{OutgoingRecord, Producer};
use sha2::{Digest, Sha256};

use crate::config::SourceConfig;
use crate::error::SourceError;
use crate::mapping::{map_change, Mapped};
use crate::metrics::SourceMetrics;

/// A record's Kafka key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Counts of one published batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub cdc: u64,
    pub events: u64,
    pub dlq: u64,
}

pub async fn publish(
    config: &SourceConfig,
    producer: &Arc<dyn Producer>,
    metrics: &SourceMetrics,
    changes: &[ChangeEvent],
) -> Result<Published, SourceError> {
    if changes.is_empty() {
        return Ok(Published::default());
    }
    let cdc_topic = config.cdc_topic();
    let mut records = Vec::with_capacity(changes.len());
    for change in changes {
        let value = serde_json::to_vec(change).map_err(|e| SourceError::Malformed {
            what: "change event",
            detail: e.to_string(),
        })?;
        records.push(OutgoingRecord {
            topic: cdc_topic.clone(),
            partition: None,
            key: Some(change.kafka_key().into_bytes()),
            value: Some(value),
            headers: Vec::new(),
        });
    }
    let cdc_values: Vec<KeyValue> = match &config.mapping {
        Some(_) => records
            .iter()
            .map(|r| (r.key.clone(), r.value.clone()))
            .collect(),
        None => Vec::new(),
    };
    let deliveries = producer.send(records).await?;
    let table = config.table.as_str();
    let mut published = Published {
        cdc: changes.len() as u64,
        ..Published::default()
    };
    metrics
        .records_out
        .with_label_values(&[table, "cdc"])
        .inc_by(published.cdc);

    let Some(mapping) = &config.mapping else {
        return Ok(published);
    };
    let events_topic = config.events_topic();
    let dlq_topic = config.dlq_topic();
    let mut out = Vec::new();
    for ((change, delivery), (key, value)) in changes.iter().zip(&deliveries).zip(cdc_values) {
        match map_change(change, mapping) {
            Mapped::Skip => {}
            Mapped::Event(event) => {
                let value = serde_json::to_vec(&event).map_err(|e| SourceError::Malformed {
                    what: "playback event",
                    detail: e.to_string(),
                })?;
                out.push(OutgoingRecord {
                    topic: events_topic.clone(),
                    partition: None,
                    key: Some(event.uuid.into_bytes()),
                    value: Some(value),
                    headers: Vec::new(),
                });
                published.events += 1;
            }
            Mapped::Invalid(reason) => {
                tracing::debug!(table, event_id = %change.event_id, %reason, "unmappable item -> DLQ");
                out.push(OutgoingRecord {
                    topic: dlq_topic.clone(),
                    partition: None,
                    key,
                    value,
                    headers: vec![
                        (ERROR_HEADER.to_string(), reason.into_bytes()),
                        (
                            SOURCE_TOPIC_HEADER.to_string(),
                            cdc_topic.clone().into_bytes(),
                        ),
                        (
                            SOURCE_PARTITION_HEADER.to_string(),
                            delivery.partition.to_string().into_bytes(),
                        ),
                        (
                            SOURCE_OFFSET_HEADER.to_string(),
                            dlq_identity(table, &change.event_id)
                                .to_string()
                                .into_bytes(),
                        ),
                    ],
                });
                published.dlq += 1;
            }
        }
    }
    if !out.is_empty() {
        producer.send(out).await?;
    }
    metrics
        .records_out
        .with_label_values(&[table, "events"])
        .inc_by(published.events);
    metrics
        .records_out
        .with_label_values(&[table, "dlq"])
        .inc_by(published.dlq);
    metrics
        .dlq
        .with_label_values(&[table])
        .inc_by(published.dlq);
    Ok(published)
}

/// The `playlake.source.offset` of a DLQ record made from a change: the same for
/// every redelivered copy of the change (see the module docs), and negative, so it
/// can never be mistaken for a Kafka offset. The first 63 bits of
/// SHA-256(table, 0, event id), negated, minus one.
pub fn dlq_identity(table: &str, event_id: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(table.as_bytes())
        .chain_update([0u8])
        .chain_update(event_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let bits = (u64::from_be_bytes(first) >> 1) as i64;
    -bits - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DynamoFileConfig;
    use crate::mapping::MappingConfig;
    use playlake_schemas::{ChangeEventName, TimestampMs};
    use playlake_transport::memory::MemoryTransport;
    use playlake_transport::{
        ConsumerEvent, Position, Record, TopicPartition, TopicSpec, Transport,
    };
    use serde_json::json;

    fn change(sk: &str, position: serde_json::Value, seq: u64) -> ChangeEvent {
        ChangeEvent {
            table: "live".into(),
            event_id: format!("ev-{seq}"),
            event_name: ChangeEventName::Insert,
            sequence_number: Some(seq.to_string()),
            shard_id: Some("shard-1".into()),
            approximate_creation_time: TimestampMs(1_748_736_000_000),
            keys: json!({"PK": "stream-a", "SK": sk}),
            new_image: Some(json!({"PK": "stream-a", "SK": sk, "position": position})),
            old_image: None,
            ttl_expired: false,
            snapshot: false,
        }
    }

    async fn read(log: &MemoryTransport, topic: &str, partitions: i32) -> Vec<Record> {
        let mut consumer = log.consumer("check").expect("consumer");
        let assignment: Vec<_> = (0..partitions)
            .map(|p| (TopicPartition::new(topic, p), Position::Beginning))
            .collect();
        consumer.assign(&assignment).expect("assign");
        let mut out = Vec::new();
        loop {
            let before = out.len();
            for event in consumer
                .poll(1000, std::time::Duration::from_millis(20))
                .await
                .expect("poll")
            {
                if let ConsumerEvent::Records(records) = event {
                    out.extend(records);
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// A crash between publishing and checkpointing makes the reader publish the
    /// batch again. Every output of the second copy must equal the first's, DLQ
    /// records included (headers too), so the lake's dedup keeps one of each.
    #[tokio::test]
    async fn a_redelivered_batch_gives_identical_dlq_records() {
        let mut config =
            SourceConfig::from_file("live".into(), "t".into(), &DynamoFileConfig::default());
        config.mapping = Some(MappingConfig {
            uuid: "SK".into(),
            stream_id: "PK".into(),
            user_id: None,
            event_type: None,
            default_event_type: None,
            event_time: None,
            event_time_unit: Default::default(),
            position_start: None,
            position_end: Some("position".into()),
            event_id: None,
        });
        let log = MemoryTransport::new();
        for topic in [
            config.cdc_topic(),
            config.events_topic(),
            config.dlq_topic(),
        ] {
            log.ensure_topic(&TopicSpec::new(topic, 3))
                .await
                .expect("topic");
        }
        let producer: Arc<dyn Producer> = Arc::from(log.producer().expect("producer"));
        let metrics = SourceMetrics::new(&prometheus::Registry::new()).expect("metrics");
        let batch = vec![
            change("u-1", json!(12.5), 100),
            change("bad", json!(-4), 101),
            change("u-2", json!(3), 102),
            change("also-bad", json!("x"), 103),
        ];
        let first = publish(&config, &producer, &metrics, &batch)
            .await
            .expect("publish");
        // Other changes in between, as after a restart: the copies land at new offsets.
        publish(
            &config,
            &producer,
            &metrics,
            &[change("u-3", json!(1), 104)],
        )
        .await
        .expect("publish");
        let again = publish(&config, &producer, &metrics, &batch)
            .await
            .expect("publish");
        assert_eq!(first, again);
        assert_eq!((first.cdc, first.events, first.dlq), (4, 2, 2));

        let dlq = read(&log, &config.dlq_topic(), 3).await;
        assert_eq!(dlq.len(), 4);
        let identity = |r: &Record| {
            let mut headers = r.headers.clone();
            headers.sort();
            (r.partition, r.key.clone(), r.value.clone(), headers)
        };
        let mut copies: std::collections::BTreeMap<_, usize> = Default::default();
        for r in &dlq {
            *copies.entry(identity(r)).or_default() += 1;
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).to_string())
                    .expect("header")
            };
            assert_eq!(header(SOURCE_TOPIC_HEADER), config.cdc_topic());
            let offset: i64 = header(SOURCE_OFFSET_HEADER).parse().expect("offset");
            assert!(offset < 0, "never a Kafka offset: {offset}");
            // The cdc record is where the headers say, found by its event id.
            let original: ChangeEvent =
                serde_json::from_slice(r.value.as_deref().expect("value")).expect("change");
            assert_eq!(offset, dlq_identity("live", &original.event_id));
            let partition: i32 = header(SOURCE_PARTITION_HEADER).parse().expect("partition");
            let cdc = read(&log, &config.cdc_topic(), 3).await;
            assert!(cdc
                .iter()
                .any(|c| c.partition == partition && c.value.as_deref() == r.value.as_deref()));
        }
        assert_eq!(copies.len(), 2, "two distinct DLQ records");
        assert!(
            copies.values().all(|n| *n == 2),
            "each copy identical: {copies:?}"
        );

        // The playback events are identical copies too.
        let events = read(&log, &config.events_topic(), 3).await;
        let mut distinct: Vec<_> = events.iter().map(identity).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            (events.len(), distinct.len()),
            (5, 3),
            "u-1 and u-2 twice, u-3 once"
        );
    }

    #[test]
    fn dlq_identity_is_stable_negative_and_per_change() {
        let a = dlq_identity("live", "ev-1");
        assert_eq!(a, dlq_identity("live", "ev-1"));
        assert!(a < 0);
        assert_ne!(a, dlq_identity("live", "ev-2"));
        assert_ne!(a, dlq_identity("other", "ev-1"));
        // The separator keeps (table, id) pairs apart.
        assert_ne!(dlq_identity("ab", "c"), dlq_identity("a", "bc"));
    }
}
