//! `playlake sink`: wires the Kafka transport, the lake and the validated sink
//! settings into `playlake_sink::run`, and prints its report.

use std::sync::Arc;

use anyhow::Context;
use playlake_checkpoint::Lake;

use crate::config::Settings;

pub async fn run(settings: &Settings, config: playlake_sink::SinkConfig) -> anyhow::Result<()> {
    let transport = Arc::new(crate::kafka::transport(settings)?);
    let lake = Lake::open(&settings.lake.to_string())
        .with_context(|| format!("opening the lake {}", settings.lake))?;
    tracing::info!(
        brokers = %settings.brokers,
        lake = %settings.lake,
        group = %config.group_id,
        drain = config.drain,
        "sink starting"
    );
    let report = playlake_sink::run(transport, lake, config, crate::signals::shutdown())
        .await
        .context("the sink stopped")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
