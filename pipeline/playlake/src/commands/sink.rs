//! `playlake sink`: wires the Kafka transport, the lake and the validated sink
//! settings into `playlake_sink::run`, and prints its report.

use anyhow::Context;

use crate::config::Settings;

pub async fn run(settings: &Settings, config: playlake_sink::SinkConfig) -> anyhow::Result<()> {
    let (transport, lake) =
        crate::kafka::open_stage(settings, "sink", &config.group_id, config.drain)?;
    let report =
        crate::signals::run_until_signalled("sink", settings.shutdown_deadline_seconds, |stop| {
            playlake_sink::run(transport, lake, config, stop.requested())
        })
        .await?
        .context("the sink stopped")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
