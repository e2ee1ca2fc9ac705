//! Builds what a Kafka-connected stage needs from validated settings: the Kafka
//! transport and the lake (which also holds the stage's checkpoints).

use std::sync::Arc;

use anyhow::Context;
use playlake_checkpoint::Lake;

use crate::config::Settings;

pub fn transport(settings: &Settings) -> anyhow::Result<playlake_kafka::KafkaTransport> {
    let mut config = playlake_kafka::KafkaConfig::new(settings.brokers.clone());
    config.client_id = format!("playlake-{}", env!("CARGO_PKG_VERSION"));
    config.options = settings.kafka_options.clone();
    Ok(playlake_kafka::KafkaTransport::new(config)?)
}

/// The transport and the lake of a stage, logged as the stage starts.
pub fn open_stage(
    settings: &Settings,
    stage: &str,
    group: &str,
    drain: bool,
) -> anyhow::Result<(Arc<playlake_kafka::KafkaTransport>, Lake)> {
    let transport = Arc::new(transport(settings)?);
    let lake = Lake::open(&settings.lake.to_string())
        .with_context(|| format!("opening the lake {}", settings.lake))?;
    tracing::info!(
        brokers = %settings.brokers,
        lake = %settings.lake,
        group,
        drain,
        "{stage} starting"
    );
    Ok((transport, lake))
}
