//! `playlake process`: wires the Kafka transport, the lake's checkpoint store and the
//! validated processor settings into `playlake_process::run`, and prints its report.

use anyhow::Context;

use crate::config::Settings;

pub async fn run(
    settings: &Settings,
    config: playlake_process::ProcessConfig,
) -> anyhow::Result<()> {
    let (transport, lake) =
        crate::kafka::open_stage(settings, "processor", &config.group_id, config.drain)?;
    let report = crate::signals::run_until_signalled(
        "processor",
        settings.shutdown_deadline_seconds,
        |stop| playlake_process::run(transport, lake, config, stop.requested()),
    )
    .await?
    .context("the processor stopped")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
