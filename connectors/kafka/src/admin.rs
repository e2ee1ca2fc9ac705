//! Topic administration: create playlake's topics when missing, read partition
//! counts and topic configs.
//!
//! Stages call [`KafkaAdmin::ensure_topic`] on start (SPEC section 6). An existing
//! topic is left exactly as it is, whatever its partition count or configs: changing
//! a live topic is an operator's decision, never a side effect of a restart.

use std::sync::Arc;
use std::time::Duration;

use playlake_transport::TopicSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tracing::info;

use crate::config::KafkaConfig;
use crate::error::KafkaError;

/// How long a metadata or admin request may take before it is reported as failed.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin client (topic creation, metadata, configs).
pub struct KafkaAdmin {
    client: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaAdmin {
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        config.validate()?;
        let client =
            config
                .client_config("admin")
                .create()
                .map_err(|source| KafkaError::CreateClient {
                    client: "admin",
                    source,
                })?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// Creates the topic when it does not exist. `TopicAlreadyExists` is success: the
    /// existing topic is left alone.
    pub async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), KafkaError> {
        validate_spec(spec)?;
        let replication = TopicReplication::Fixed(spec.replication_factor);
        let mut topic = NewTopic::new(&spec.name, spec.partitions, replication)
            .set("cleanup.policy", spec.cleanup_policy.as_str());
        for (key, value) in &spec.config {
            topic = topic.set(key, value);
        }
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .client
            .create_topics([&topic], &options)
            .await
            .map_err(|source| KafkaError::Admin {
                topic: spec.name.clone(),
                source,
            })?;
        for result in results {
            match result {
                Ok(name) => {
                    info!(topic = %name, partitions = spec.partitions, cleanup_policy = spec.cleanup_policy.as_str(), "created topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(KafkaError::CreateTopicRejected { topic, code }),
            }
        }
        Ok(())
    }

    /// The number of partitions of an existing topic, from the cluster's metadata.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, KafkaError> {
        let client = Arc::clone(&self.client);
        let name = topic.to_string();
        let metadata = tokio::task::spawn_blocking(move || {
            client.inner().fetch_metadata(Some(&name), ADMIN_TIMEOUT)
        })
        .await
        .map_err(|source| KafkaError::Blocking { source })?
        .map_err(|source| KafkaError::Metadata {
            topic: topic.to_string(),
            source,
        })?;
        let unknown = || KafkaError::UnknownTopic {
            topic: topic.to_string(),
        };
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(unknown)?;
        match found.error().map(RDKafkaErrorCode::from) {
            None if !found.partitions().is_empty() => {
                i32::try_from(found.partitions().len()).map_err(|_| unknown())
            }
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(unknown()),
            Some(code) => Err(KafkaError::Metadata {
                topic: topic.to_string(),
                source: rdkafka::error::KafkaError::MetadataFetch(code),
            }),
        }
    }

    /// The topic's configs as the broker reports them (`cleanup.policy`, ...).
    pub async fn topic_configs(&self, topic: &str) -> Result<Vec<(String, String)>, KafkaError> {
        let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await
            .map_err(|source| KafkaError::Admin {
                topic: topic.to_string(),
                source,
            })?;
        let mut configs = Vec::new();
        for result in results {
            let resource = result.map_err(|code| KafkaError::Admin {
                topic: topic.to_string(),
                source: rdkafka::error::KafkaError::AdminOp(code),
            })?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    configs.push((entry.name, value));
                }
            }
        }
        Ok(configs)
    }
}

fn validate_spec(spec: &TopicSpec) -> Result<(), KafkaError> {
    let invalid = |reason: &str| KafkaError::InvalidTopic {
        topic: spec.name.clone(),
        reason: reason.to_string(),
    };
    if spec.name.is_empty() {
        return Err(invalid("the topic name is empty"));
    }
    if spec.partitions < 1 {
        return Err(invalid("a topic needs at least one partition"));
    }
    if spec.replication_factor < 1 {
        return Err(invalid("the replication factor must be at least 1"));
    }
    if spec.config.iter().any(|(k, _)| k == "cleanup.policy") {
        return Err(invalid(
            "set cleanup.policy through TopicSpec::cleanup_policy, not the extra configs",
        ));
    }
    Ok(())
}
