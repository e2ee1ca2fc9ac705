//! The in-process log: Kafka's semantics without a broker, for `playlake demo`, unit
//! tests and benchmarks.
//!
//! A [`MemoryTransport`] is a cheap handle (`Arc` inside) on one shared log. Data flows
//! like this:
//!
//! - [`ensure_topic`](crate::Transport::ensure_topic) creates a topic of N partitions,
//!   each an append-only vector of records whose offsets are their indices (from 0);
//! - a producer ([`producer`]) places each record (explicit partition, Kafka's key
//!   partitioner, or round robin), appends a whole `send` batch while holding the
//!   partitions' locks once, then bumps a change counter that wakes waiting consumers;
//! - a consumer ([`consumer`]) reads the partitions it was given, either by `assign`
//!   or by a consumer group ([`group`]) that splits the subscribed topics' partitions
//!   among its members and rebalances when one joins or leaves (close or drop);
//! - `commit` stores advisory group offsets, read back with
//!   [`MemoryTransport::committed`] and compared with [`MemoryTransport::end_offset`]
//!   for lag.
//!
//! Nothing is ever deleted: retention and compaction are not applied, the cleanup
//! policy is only recorded ([`MemoryTransport::cleanup_policy`]).

mod consumer;
mod group;
mod producer;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    CleanupPolicy, Consumer, Headers, Producer, Result, TopicPartition, TopicSpec, Transport,
    TransportError,
};

pub use consumer::MemoryConsumer;
pub use producer::MemoryProducer;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// An in-process, Kafka-shaped log. Clones share the same topics, groups and offsets.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topics = self.topic_names();
        f.debug_struct("MemoryTransport")
            .field("topics", &topics)
            .finish()
    }
}

/// The shared state behind every handle, producer and consumer.
pub(crate) struct Inner {
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Consumer groups by name: members, their subscriptions and assignments.
    groups: Mutex<HashMap<String, group::Group>>,
    /// Committed group offsets (next offset to read), advisory only.
    committed: Mutex<HashMap<String, HashMap<TopicPartition, i64>>>,
    /// Bumped after every append and every rebalance; consumers wait on it in `poll`
    /// instead of sleeping.
    changes: watch::Sender<u64>,
    /// Member ids of consumer-group members, in join order (the assignor sorts by it).
    next_member_id: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            topics: RwLock::default(),
            groups: Mutex::default(),
            committed: Mutex::default(),
            changes: watch::Sender::new(0),
            next_member_id: AtomicU64::new(0),
        }
    }
}

/// One topic: its partitions' logs and what it was created with.
pub(crate) struct Topic {
    name: String,
    cleanup_policy: CleanupPolicy,
    partitions: Vec<Mutex<PartitionLog>>,
    /// Round-robin cursor for records with neither key nor partition.
    round_robin: AtomicU32,
}

/// The records of one partition; a record's offset is its index.
#[derive(Default)]
pub(crate) struct PartitionLog {
    records: Vec<StoredRecord>,
}

impl PartitionLog {
    /// The offset the next appended record gets (the high watermark).
    pub(crate) fn end_offset(&self) -> i64 {
        // A Vec never holds more than isize::MAX elements, so this cannot wrap.
        self.records.len() as i64
    }
}

/// A record as the log holds it: the producer's buffers, moved in without copying.
pub(crate) struct StoredRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
    timestamp_ms: i64,
}

/// Locks a mutex, carrying on after a panic elsewhere: every critical section here
/// leaves the data consistent before anything can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryTransport {
    /// An empty log with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// The names of every topic, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = topics.keys().cloned().collect();
        names.sort();
        names
    }

    /// The cleanup policy the topic was created with (recorded, not applied).
    pub fn cleanup_policy(&self, topic: &str) -> Result<CleanupPolicy> {
        Ok(self.inner.topic(topic)?.cleanup_policy)
    }

    /// The partition's end (high watermark): the offset the next record will get.
    pub fn end_offset(&self, partition: &TopicPartition) -> Result<i64> {
        let topic = self.inner.topic(&partition.topic)?;
        let end = lock(topic.partition(partition)?).end_offset();
        Ok(end)
    }

    /// The offset `group` last committed for the partition, if any.
    pub fn committed(&self, group: &str, partition: &TopicPartition) -> Option<i64> {
        lock(&self.inner.committed)
            .get(group)
            .and_then(|offsets| offsets.get(partition))
            .copied()
    }

    /// The partitions each member of `group` currently owns, by member id (join
    /// order). Members see changes on their next `poll`.
    pub fn group_assignment(&self, group: &str) -> Vec<Vec<TopicPartition>> {
        lock(&self.inner.groups)
            .get(group)
            .map(group::Group::assignments)
            .unwrap_or_default()
    }

    /// A producer with its concrete type (the trait's `producer` boxes it).
    pub fn memory_producer(&self) -> MemoryProducer {
        MemoryProducer::new(Arc::clone(&self.inner))
    }

    /// A consumer with its concrete type (the trait's `consumer` boxes it).
    pub fn memory_consumer(&self, group: &str) -> MemoryConsumer {
        MemoryConsumer::new(Arc::clone(&self.inner), group)
    }
}

impl Inner {
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| TransportError::UnknownTopic {
                topic: name.to_owned(),
            })
    }

    /// Wakes every consumer waiting in `poll`.
    pub(crate) fn notify_change(&self) {
        self.changes
            .send_modify(|version| *version = version.wrapping_add(1));
    }
}

impl Topic {
    fn new(spec: &TopicSpec) -> Self {
        let count = usize::try_from(spec.partitions).unwrap_or(0);
        Self {
            name: spec.name.clone(),
            cleanup_policy: spec.cleanup_policy,
            partitions: (0..count).map(|_| Mutex::default()).collect(),
            round_robin: AtomicU32::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn partition_count(&self) -> i32 {
        // Created from an i32, so it fits.
        self.partitions.len() as i32
    }

    pub(crate) fn partition_log(&self, partition: i32) -> Option<&Mutex<PartitionLog>> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.partitions.get(index))
    }

    pub(crate) fn partition(&self, tp: &TopicPartition) -> Result<&Mutex<PartitionLog>> {
        self.partition_log(tp.partition)
            .ok_or_else(|| TransportError::UnknownPartition {
                partition: tp.clone(),
            })
    }
}

/// Checks a spec the way a Kafka broker would before creating the topic.
fn validate_spec(spec: &TopicSpec) -> Result<()> {
    let invalid = |reason: String| TransportError::InvalidTopic {
        topic: spec.name.clone(),
        reason,
    };
    if spec.name.is_empty() || spec.name == "." || spec.name == ".." {
        return Err(invalid("the name must not be empty, '.' or '..'".into()));
    }
    if spec.name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid(format!(
            "the name is longer than {MAX_TOPIC_NAME_LEN} characters"
        )));
    }
    if let Some(bad) = spec
        .name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "character {bad:?} is not allowed (only ASCII letters, digits, '.', '_', '-')"
        )));
    }
    if spec.partitions < 1 {
        return Err(invalid(format!(
            "partitions must be at least 1, got {}",
            spec.partitions
        )));
    }
    if spec.replication_factor < 1 && spec.replication_factor != -1 {
        return Err(invalid(format!(
            "replication factor must be at least 1 (or -1 for the default), got {}",
            spec.replication_factor
        )));
    }
    Ok(())
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()> {
        validate_spec(spec)?;
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        topics
            .entry(spec.name.clone())
            .or_insert_with(|| Arc::new(Topic::new(spec)));
        Ok(())
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        Ok(self.inner.topic(topic)?.partition_count())
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(self.memory_producer()))
    }

    fn consumer(&self, group: &str) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(self.memory_consumer(group)))
    }
}
