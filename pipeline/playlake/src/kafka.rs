//! Builds the Kafka transport from validated settings.

use crate::config::Settings;

pub fn transport(settings: &Settings) -> anyhow::Result<playlake_kafka::KafkaTransport> {
    let config = playlake_kafka::KafkaConfig {
        brokers: settings.brokers.clone(),
        client_id: format!("playlake-{}", env!("CARGO_PKG_VERSION")),
        options: settings.kafka_options.clone(),
    };
    Ok(playlake_kafka::KafkaTransport::new(config)?)
}
