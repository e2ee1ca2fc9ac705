//! Publishing a batch of change events and, with a mapping, the playback events and
//! DLQ records made from them. Shared by the stream reader and the backfill.
//!
//! Order of operations, which the delivery guarantee rests on: the change events are
//! sent and acknowledged first; then the mapped events and DLQ records (the DLQ
//! records point at the acknowledged cdc record by topic, partition and offset);
//! only after both does the caller move a checkpoint. A crash anywhere in between
//! redelivers the whole batch: identical change events and identical playback
//! events (same event ids), which consumers deduplicate.

use std::sync::Arc;

use playlake_schemas::{
    ChangeEvent, ERROR_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER,
};
use playlake_transport::{OutgoingRecord, Producer};

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
                            delivery.offset.to_string().into_bytes(),
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
