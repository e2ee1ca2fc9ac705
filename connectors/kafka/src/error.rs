//! The crate's one error type, [`KafkaError`], and its mapping onto the transport
//! seam's [`TransportError`].
//!
//! Every variant names what was being done and, where an operator can act, how to fix
//! it. librdkafka's own error stays attached as the `source`, so the whole chain
//! reaches the log when a stage fails.

use playlake_transport::{TopicPartition, TransportError};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("invalid --kafka-option {option}: {reason}")]
    InvalidOption { option: String, reason: String },

    #[error("--kafka-option {key} cannot be overridden: {reason}")]
    ReservedOption { key: String, reason: String },

    #[error("could not create the Kafka {client} client; check --brokers and the --kafka-option settings")]
    CreateClient {
        client: &'static str,
        #[source]
        source: RdKafkaError,
    },

    #[error("topic {topic} does not exist; create it first (stages create their topics on start)")]
    UnknownTopic { topic: String },

    #[error("invalid topic spec for {topic}: {reason}")]
    InvalidTopic { topic: String, reason: String },

    #[error("creating topic {topic} failed: the broker answered {code}")]
    CreateTopicRejected {
        topic: String,
        code: RDKafkaErrorCode,
    },

    #[error("admin request for topic {topic} failed; is the broker reachable?")]
    Admin {
        topic: String,
        #[source]
        source: RdKafkaError,
    },

    #[error("reading metadata of topic {topic} failed; is the broker reachable?")]
    Metadata {
        topic: String,
        #[source]
        source: RdKafkaError,
    },

    #[error("queuing a record for topic {topic} failed")]
    Enqueue {
        topic: String,
        #[source]
        source: RdKafkaError,
    },

    #[error("delivering a record to topic {topic} failed")]
    Delivery {
        topic: String,
        #[source]
        source: RdKafkaError,
    },

    #[error("the producer shut down before the delivery report for topic {topic} arrived")]
    DeliveryCanceled { topic: String },

    #[error("subscribing to {topics:?} failed")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: RdKafkaError,
    },

    #[error("assigning partitions failed")]
    Assign {
        #[source]
        source: RdKafkaError,
    },

    #[error("partition {partition} does not exist")]
    UnknownPartition { partition: TopicPartition },

    #[error("cannot position {partition} at offset {offset}: offsets are never negative")]
    NegativeOffset {
        partition: TopicPartition,
        offset: i64,
    },

    #[error("partition {partition} is not assigned to this consumer")]
    NotAssigned { partition: TopicPartition },

    #[error("seeking {partition} failed")]
    Seek {
        partition: TopicPartition,
        #[source]
        source: RdKafkaError,
    },

    #[error("reading from Kafka failed")]
    Consume {
        #[source]
        source: RdKafkaError,
    },

    #[error("committing consumer group offsets failed")]
    Commit {
        #[source]
        source: RdKafkaError,
    },

    #[error("the consumer is closed")]
    Closed,

    #[error("a blocking Kafka call did not complete")]
    Blocking {
        #[source]
        source: tokio::task::JoinError,
    },
}

impl KafkaError {
    /// Converts into the seam's error; `operation` says what the stage was doing.
    pub fn into_transport(self, operation: &str) -> TransportError {
        match self {
            KafkaError::UnknownTopic { topic } => TransportError::UnknownTopic { topic },
            KafkaError::UnknownPartition { partition } => {
                TransportError::UnknownPartition { partition }
            }
            KafkaError::NotAssigned { partition } => TransportError::NotAssigned { partition },
            KafkaError::InvalidTopic { topic, reason } => {
                TransportError::InvalidTopic { topic, reason }
            }
            KafkaError::Closed => TransportError::Closed,
            other => TransportError::Backend {
                operation: operation.to_string(),
                source: Box::new(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_keep_their_cause_chain() {
        let err = KafkaError::Commit {
            source: RdKafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress),
        }
        .into_transport("commit");
        let TransportError::Backend { operation, source } = &err else {
            panic!("expected a backend error, got {err:?}");
        };
        assert_eq!(operation, "commit");
        let cause = std::error::Error::source(source.as_ref()).map(ToString::to_string);
        assert!(cause.is_some_and(|c| c.contains("Rebalance")), "{source:?}");
    }

    #[test]
    fn unknown_topic_maps_to_the_seam_variant() {
        let err = KafkaError::UnknownTopic { topic: "t".into() }.into_transport("x");
        assert!(matches!(err, TransportError::UnknownTopic { .. }));
    }
}
