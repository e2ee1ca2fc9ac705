//! The in-process producer: places records on partitions and appends each `send`
//! batch under one acquisition of the partitions' locks, then wakes consumers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{lock, Inner, PartitionLog, StoredRecord, Topic};
use crate::{
    partition_for_key, Delivery, OutgoingRecord, Producer, Result, TopicPartition, TransportError,
};

/// Appends to a [`MemoryTransport`](super::MemoryTransport)'s log. A record is
/// "acknowledged" once appended, so `send` returns without waiting.
pub struct MemoryProducer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProducer").finish_non_exhaustive()
    }
}

/// Where one record of a batch goes: index into the batch's topics, and partition.
#[derive(Clone, Copy)]
struct Placement {
    topic: usize,
    partition: usize,
}

impl MemoryProducer {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Appends the records and returns where each landed, in input order. The batch is
    /// validated first (unknown topic or partition fails it before anything is
    /// appended), then appended atomically with respect to consumers.
    pub fn send_now(&self, records: Vec<OutgoingRecord>) -> Result<Vec<Delivery>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (topics, placements, counts) = self.place(&records)?;
        let timestamp_ms = now_ms();

        // Lock the partitions this batch touches, topics by name then partitions in
        // ascending order: one global order, so concurrent producers cannot deadlock
        // (consumers only ever hold one partition lock at a time).
        let mut by_name: Vec<usize> = (0..topics.len()).collect();
        by_name.sort_by(|&a, &b| topics[a].name().cmp(topics[b].name()));
        let mut guards: Vec<Vec<Option<MutexGuard<'_, PartitionLog>>>> = topics
            .iter()
            .map(|t| (0..t.partitions.len()).map(|_| None).collect())
            .collect();
        for &ti in &by_name {
            for (pi, &count) in counts[ti].iter().enumerate() {
                if count > 0 {
                    let mut log = lock(&topics[ti].partitions[pi]);
                    log.records.reserve(count);
                    guards[ti][pi] = Some(log);
                }
            }
        }

        let mut deliveries = Vec::with_capacity(records.len());
        for (record, place) in records.into_iter().zip(placements) {
            let Some(log) = guards[place.topic][place.partition].as_mut() else {
                // Unreachable: every placed partition was locked above.
                continue;
            };
            deliveries.push(Delivery {
                partition: place.partition as i32,
                offset: log.end_offset(),
            });
            log.records.push(StoredRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp_ms,
            });
        }
        drop(guards);
        self.inner.notify_change();
        Ok(deliveries)
    }

    /// Resolves each record's topic and partition, and counts records per partition.
    #[allow(clippy::type_complexity)]
    fn place(
        &self,
        records: &[OutgoingRecord],
    ) -> Result<(Vec<Arc<Topic>>, Vec<Placement>, Vec<Vec<usize>>)> {
        let mut topics: Vec<Arc<Topic>> = Vec::new();
        let mut counts: Vec<Vec<usize>> = Vec::new();
        let mut placements = Vec::with_capacity(records.len());
        for record in records {
            let ti = match topics.iter().position(|t| t.name() == record.topic) {
                Some(ti) => ti,
                None => {
                    let topic = self.inner.topic(&record.topic)?;
                    counts.push(vec![0; topic.partitions.len()]);
                    topics.push(topic);
                    topics.len() - 1
                }
            };
            let topic = &topics[ti];
            let partition = match (record.partition, &record.key) {
                (Some(p), _) => {
                    if topic.partition_log(p).is_none() {
                        return Err(TransportError::UnknownPartition {
                            partition: TopicPartition::new(record.topic.clone(), p),
                        });
                    }
                    p
                }
                (None, Some(key)) => partition_for_key(key, topic.partition_count()),
                (None, None) => {
                    let next = topic.round_robin.fetch_add(1, Ordering::Relaxed);
                    (next % topic.partitions.len() as u32) as i32
                }
            };
            // In range by construction (checked, or computed modulo the count).
            let partition = partition as usize;
            counts[ti][partition] += 1;
            placements.push(Placement {
                topic: ti,
                partition,
            });
        }
        Ok((topics, placements, counts))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl Producer for MemoryProducer {
    async fn send(&self, records: Vec<OutgoingRecord>) -> Result<Vec<Delivery>> {
        self.send_now(records)
    }
}
