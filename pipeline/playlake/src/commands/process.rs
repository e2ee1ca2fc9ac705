//! `playlake process`: wires the Kafka transport, the lake's checkpoint store and the
//! validated processor settings into `playlake_process::run`, and prints its report.

use std::sync::Arc;

use anyhow::Context;
use playlake_checkpoint::Lake;

use crate::config::Settings;

pub async fn run(
    settings: &Settings,
    config: playlake_process::ProcessConfig,
) -> anyhow::Result<()> {
    let transport = Arc::new(crate::kafka::transport(settings)?);
    let lake = Lake::open(&settings.lake.to_string())
        .with_context(|| format!("opening the lake {}", settings.lake))?;
    tracing::info!(
        brokers = %settings.brokers,
        lake = %settings.lake,
        group = %config.group_id,
        drain = config.drain,
        "processor starting"
    );
    let report = playlake_process::run(transport, lake, config, crate::signals::shutdown())
        .await
        .context("the processor stopped")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
