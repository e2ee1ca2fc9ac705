//! [`KafkaTransport`]: the transport seam over a Kafka-API broker.
//!
//! Stages hold a `Box<dyn Transport>`; with this implementation topics are created
//! through the admin API, every producer handed out shares one idempotent librdkafka
//! producer, and each consumer is its own group member (see [`crate::consumer`]).

use async_trait::async_trait;
use playlake_transport::{Consumer, Producer, Result, TopicSpec, Transport};

use crate::admin::KafkaAdmin;
use crate::config::KafkaConfig;
use crate::consumer::KafkaConsumer;
use crate::error::KafkaError;
use crate::metrics::KafkaMetrics;
use crate::producer::KafkaProducer;

pub struct KafkaTransport {
    config: KafkaConfig,
    admin: KafkaAdmin,
    producer: KafkaProducer,
    /// When set, every consumer reports its lag.
    metrics: Option<KafkaMetrics>,
}

impl KafkaTransport {
    /// Creates the admin and producer clients (they connect lazily).
    pub fn new(config: KafkaConfig) -> Result<Self, KafkaError> {
        let admin = KafkaAdmin::new(&config)?;
        let producer = KafkaProducer::new(&config)?;
        tracing::debug!(config = ?config, "Kafka transport configured");
        Ok(Self {
            config,
            admin,
            producer,
            metrics: None,
        })
    }

    /// Consumers created from now on report their lag into `metrics`.
    pub fn with_metrics(mut self, metrics: KafkaMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub fn admin(&self) -> &KafkaAdmin {
        &self.admin
    }

    /// The shared producer, as its concrete type.
    pub fn kafka_producer(&self) -> &KafkaProducer {
        &self.producer
    }

    /// A consumer as its concrete type.
    pub fn kafka_consumer(&self, group: &str) -> Result<KafkaConsumer, KafkaError> {
        let consumer = KafkaConsumer::new(&self.config, group)?;
        Ok(match &self.metrics {
            Some(metrics) => consumer.with_lag_metrics(metrics.reporter(group)),
            None => consumer,
        })
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.admin
            .ensure_topic(spec)
            .await
            .map_err(|e| e.into_transport("create topic"))
    }

    async fn partition_count(&self, topic: &str) -> Result<i32> {
        self.admin
            .partition_count(topic)
            .await
            .map_err(|e| e.into_transport("read partition count"))
    }

    fn producer(&self) -> Result<Box<dyn Producer>> {
        Ok(Box::new(self.producer.clone()))
    }

    fn consumer(&self, group: &str) -> Result<Box<dyn Consumer>> {
        let consumer = self
            .kafka_consumer(group)
            .map_err(|e| e.into_transport("create consumer"))?;
        Ok(Box::new(consumer))
    }
}
