//! Builds the Kafka transport from validated settings.

use crate::config::Settings;

pub fn transport(settings: &Settings) -> anyhow::Result<playlake_kafka::KafkaTransport> {
    let mut config = playlake_kafka::KafkaConfig::new(settings.brokers.clone());
    config.client_id = format!("playlake-{}", env!("CARGO_PKG_VERSION"));
    config.options = settings.kafka_options.clone();
    Ok(playlake_kafka::KafkaTransport::new(config)?)
}
