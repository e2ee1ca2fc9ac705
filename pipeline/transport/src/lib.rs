//! The transport seam between playlake's stages and the log they read and write.
//!
//! Every stage (source, processor, sink) talks to a [`Transport`]: it creates topics,
//! produces records through a [`Producer`] and reads them through a [`Consumer`]. Two
//! implementations exist and must behave alike (one conformance suite runs against
//! both, in `tests/`):
//!
//! - `playlake_kafka::KafkaTransport`: a real Kafka-API broker through rdkafka;
//! - [`memory::MemoryTransport`]: an in-process log with Kafka's semantics (partitions,
//!   offsets, seeking, consumer-group assignment) for `playlake demo`, unit tests and
//!   benchmarks.
//!
//! Positions are the pipeline's own: exactly-once rests on checkpoints that store
//! state together with the input offsets it reflects (SPEC section 4), so a consumer
//! never starts reading a newly assigned partition on its own. After
//! [`ConsumerEvent::Assigned`], no record of that partition is delivered until the
//! stage calls [`Consumer::seek`] for it with the position from its checkpoint.
//! Kafka's committed group offsets ([`Consumer::commit`]) are advisory, for lag
//! monitoring only.
//!
//! Keys without an explicit partition are placed with Kafka's default partitioner
//! ([`partition_for_key`], murmur2), so a key lands on the same partition number on
//! both transports.

pub mod memory;
mod partitioner;

use std::time::Duration;

use async_trait::async_trait;

pub use partitioner::{murmur2, partition_for_key};

/// Record headers, in order; names may repeat, as in Kafka.
pub type Headers = Vec<(String, Vec<u8>)>;

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// A record read from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
    /// Producer or broker timestamp, epoch milliseconds, when the log has one.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A record to append to the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutgoingRecord {
    pub topic: String,
    /// Explicit partition; `None` places the record by [`partition_for_key`] (or
    /// round-robin when it has no key).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
}

/// Where an acknowledged record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
}

/// A topic to create when missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub cleanup_policy: CleanupPolicy,
    /// Further topic configs (`retention.ms`, ...), passed through as they are.
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: 1,
            cleanup_policy: CleanupPolicy::Delete,
            config: Vec::new(),
        }
    }

    pub fn compacted(mut self) -> Self {
        self.cleanup_policy = CleanupPolicy::Compact;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

/// Where to read a partition from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The next record to read is the one at this offset.
    Offset(i64),
    /// The earliest offset still held by the log.
    Beginning,
    /// Only records appended from now on.
    End,
}

/// What a [`Consumer::poll`] returns, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum ConsumerEvent {
    /// Records of one or more partitions, each partition's in offset order.
    Records(Vec<Record>),
    /// The group gave this member these partitions. None of their records is
    /// delivered until [`Consumer::seek`] sets a position for each.
    Assigned(Vec<TopicPartition>),
    /// The group took these partitions away; records already delivered stay valid,
    /// no more will come.
    Revoked(Vec<TopicPartition>),
    /// The consumer has read everything the partition held when it fetched:
    /// `next_offset` is the partition's end (high watermark) at that moment.
    EndOfPartition {
        partition: TopicPartition,
        next_offset: i64,
    },
}

/// Errors of the transport seam. Backend causes keep their source chain.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("topic {topic} does not exist; create it first (stages create their topics on start)")]
    UnknownTopic { topic: String },
    #[error("partition {partition} does not exist")]
    UnknownPartition { partition: TopicPartition },
    #[error("partition {partition} is not assigned to this consumer")]
    NotAssigned { partition: TopicPartition },
    #[error("offset {offset} is not valid for {partition}: offsets start at 0")]
    InvalidOffset {
        partition: TopicPartition,
        offset: i64,
    },
    #[error("invalid topic spec for {topic}: {reason}")]
    InvalidTopic { topic: String, reason: String },
    #[error("invalid transport configuration: {0}")]
    Config(String),
    #[error("{operation} failed")]
    Backend {
        operation: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{operation} timed out after {timeout:?}")]
    Timeout {
        operation: String,
        timeout: Duration,
    },
    #[error("the transport is closed")]
    Closed,
}

pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// A Kafka-shaped log: topic administration and the factories of producers and
/// consumers.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Creates the topic when it does not exist; an existing topic is left as it is.
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()>;

    /// The number of partitions of an existing topic.
    async fn partition_count(&self, topic: &str) -> Result<i32>;

    /// A producer whose `send` returns only after every record is acknowledged.
    fn producer(&self) -> Result<Box<dyn Producer>>;

    /// A consumer in consumer group `group` (used for group assignment and
    /// advisory offset commits only).
    fn consumer(&self, group: &str) -> Result<Box<dyn Consumer>>;
}

#[async_trait]
pub trait Producer: Send + Sync {
    /// Appends the records and waits until all are acknowledged (durable on the log).
    /// Records with the same key and topic keep their order.
    async fn send(&self, records: Vec<OutgoingRecord>) -> Result<Vec<Delivery>>;
}

#[async_trait]
pub trait Consumer: Send {
    /// Joins the group for these topics; partitions arrive as
    /// [`ConsumerEvent::Assigned`] from `poll`.
    fn subscribe(&mut self, topics: &[String]) -> Result<()>;

    /// Reads exactly these partitions, without group management, from the given
    /// positions (used by drain readers and tools).
    fn assign(&mut self, positions: &[(TopicPartition, Position)]) -> Result<()>;

    /// Sets the next record to read on an assigned partition.
    fn seek(&mut self, partition: &TopicPartition, position: Position) -> Result<()>;

    /// Waits up to `timeout` for events; returns at most `max_records` records.
    /// An empty result means nothing happened within the timeout.
    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumerEvent>>;

    /// Stores group offsets (the next offset to read) for monitoring consumer lag.
    async fn commit(&mut self, positions: &[(TopicPartition, i64)]) -> Result<()>;

    /// The partitions currently assigned to this member.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// The offset after the last record of an assigned partition as far as the
    /// consumer knows without asking the broker (the high watermark of its last
    /// fetch), if it knows one. A hint for sizing what a backlog will need, never a
    /// position: it may be stale or missing.
    fn end_offset_hint(&self, _partition: &TopicPartition) -> Option<i64> {
        None
    }

    /// Leaves the group, handing partitions back for rebalancing.
    async fn close(&mut self) -> Result<()>;
}
