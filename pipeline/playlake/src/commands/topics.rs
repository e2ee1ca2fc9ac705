//! `playlake topics`: creates the pipeline's topics on the broker when missing
//! (existing topics are left as they are), then prints each with its partitions.

use anyhow::Context;
use playlake_transport::Transport;

use crate::config::Settings;
use crate::topics::Topics;

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let transport = crate::kafka::transport(settings)?;
    let topics = Topics::new(&settings.topic_prefix);
    for spec in topics.specs(settings.topic_partitions, settings.topic_replication) {
        transport
            .ensure_topic(&spec)
            .await
            .with_context(|| format!("creating topic {} on {}", spec.name, settings.brokers))?;
        let partitions = transport
            .partition_count(&spec.name)
            .await
            .with_context(|| format!("reading metadata of topic {}", spec.name))?;
        println!(
            "{}\tpartitions={partitions}\tcleanup.policy={}",
            spec.name,
            spec.cleanup_policy.as_str()
        );
    }
    Ok(())
}
