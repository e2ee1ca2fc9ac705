//! Kafka plumbing for playlake: the `playlake_transport` seam over a Kafka-API broker
//! (Redpanda, Apache Kafka, Tansu in tests), through rdkafka / librdkafka.
//!
//! - [`config`]: brokers, client id and `--kafka-option` pass-through (SASL, TLS),
//!   with the settings our guarantees rest on locked and secrets redacted;
//! - [`admin`]: topics created when missing, partition counts, topic configs;
//! - [`producer`]: the idempotent, batching producer (`acks=all`, murmur2 keys);
//! - [`consumer`]: group members whose positions come from the stage's checkpoint,
//!   with rebalances and partition ends as [`playlake_transport::ConsumerEvent`]s;
//! - [`dlq`]: the dead-letter writer, over any transport's producer;
//! - [`transport`]: [`KafkaTransport`], tying it together;
//! - [`error`]: [`KafkaError`], mapped into `TransportError` with its cause chain;
//! - [`metrics`]: consumer lag per group and topic, for Prometheus.
//!
//! Exactly-once does not rest on Kafka transactions (SPEC section 4): records carry
//! deterministic identities, stages checkpoint positions with their state, and the
//! consumer never moves on its own.

pub mod admin;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod error;
pub mod metrics;
pub mod producer;
pub mod transport;

pub use admin::KafkaAdmin;
pub use config::{KafkaConfig, KafkaOption};
pub use consumer::KafkaConsumer;
pub use dlq::{DeadLetter, DeadLetterOrigin, DlqWriter};
pub use error::KafkaError;
pub use metrics::KafkaMetrics;
pub use producer::KafkaProducer;
pub use transport::KafkaTransport;

/// The rdkafka version this crate is built on, for tests and tools that need the raw
/// client (transactions, low-level inspection).
pub use rdkafka;
