//! The idempotent producer every stage writes through.
//!
//! [`KafkaProducer::send`] enqueues a whole batch into librdkafka (which groups
//! records into broker batches, `linger.ms`), then waits for every delivery report and
//! returns where each record landed, in input order. It returns only when every
//! record is acknowledged by all in-sync replicas (`acks=all`), which is what lets a
//! stage checkpoint its input positions right after a successful `send`.
//!
//! Idempotence (`enable.idempotence=true`) makes librdkafka's internal retries safe:
//! a retried batch is neither duplicated nor reordered on the partition. Keys are
//! placed by `murmur2_random`, Kafka's Java partitioner, so a key lands where
//! [`playlake_transport::partition_for_key`] says on every transport.

use std::time::Duration;

use async_trait::async_trait;
use playlake_transport::{Delivery, OutgoingRecord, Producer, TopicPartition, TransportError};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::debug;

use crate::config::KafkaConfig;
use crate::error::KafkaError;

/// How long to wait before retrying when librdkafka's local queue is full; the
/// producer's background thread drains it as deliveries complete.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// An idempotent, batching producer. Cheap to clone: clones share one librdkafka
/// client.
#[derive(Clone)]
pub struct KafkaProducer {
    inner: FutureProducer,
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        config.validate()?;
        let mut client = config.client_config("producer");
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random");
        // Tuning defaults an operator may override with --kafka-option.
        for (key, value) in [("linger.ms", "5"), ("compression.type", "zstd")] {
            if !config.options.iter().any(|o| o.key == key) {
                client.set(key, value);
            }
        }
        let inner = client.create().map_err(|source| KafkaError::CreateClient {
            client: "producer",
            source,
        })?;
        Ok(Self { inner })
    }

    /// Appends the records and waits until all are acknowledged; returns where each
    /// landed, in input order.
    pub async fn send(&self, records: &[OutgoingRecord]) -> Result<Vec<Delivery>, KafkaError> {
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let mut future_record =
                FutureRecord::<[u8], [u8]>::to(&record.topic).headers(to_headers(&record.headers));
            if let Some(key) = &record.key {
                future_record = future_record.key(key.as_slice());
            }
            if let Some(value) = &record.value {
                future_record = future_record.payload(value.as_slice());
            }
            if let Some(partition) = record.partition {
                future_record = future_record.partition(partition);
            }
            loop {
                match self.inner.send_result(future_record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        debug!("producer queue full; waiting for deliveries");
                        future_record = back;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((source, _)) => return Err(classify(record, source, true)),
                }
            }
        }
        let mut deliveries = Vec::with_capacity(pending.len());
        for (record, delivery) in records.iter().zip(pending) {
            match delivery.await {
                Ok(Ok(delivery)) => deliveries.push(Delivery {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Ok(Err((source, _))) => return Err(classify(record, source, false)),
                Err(_canceled) => {
                    return Err(KafkaError::DeliveryCanceled {
                        topic: record.topic.clone(),
                    })
                }
            }
        }
        Ok(deliveries)
    }

    /// The librdkafka producer, for tests and tools (transactions, flush).
    pub fn inner(&self) -> &FutureProducer {
        &self.inner
    }
}

fn to_headers(headers: &[(String, Vec<u8>)]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |acc, (key, value)| {
            acc.insert(Header {
                key,
                value: Some(value.as_slice()),
            })
        },
    )
}

fn classify(record: &OutgoingRecord, source: RdKafkaError, enqueue: bool) -> KafkaError {
    match source.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            KafkaError::UnknownTopic {
                topic: record.topic.clone(),
            }
        }
        Some(RDKafkaErrorCode::UnknownPartition) => KafkaError::UnknownPartition {
            partition: TopicPartition::new(record.topic.clone(), record.partition.unwrap_or(-1)),
        },
        _ if enqueue => KafkaError::Enqueue {
            topic: record.topic.clone(),
            source,
        },
        _ => KafkaError::Delivery {
            topic: record.topic.clone(),
            source,
        },
    }
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, records: Vec<OutgoingRecord>) -> Result<Vec<Delivery>, TransportError> {
        KafkaProducer::send(self, &records)
            .await
            .map_err(|e| e.into_transport("produce"))
    }
}
