//! `playlake produce`: the load generator and reference producer. Generated records
//! go to `<prefix>.events` in batches, each batch acknowledged before the next, and
//! paced to `--rate-per-second` when one is set. Prints what it sent and the rate it
//! achieved.

use std::time::{Duration, Instant};

use anyhow::Context;
use playlake_generator::{Generator, GeneratorConfig};
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

use crate::cli::ProduceArgs;
use crate::config::Settings;
use crate::topics::Topics;

/// Records per acknowledged batch.
const BATCH_RECORDS: usize = 5_000;

pub async fn run(settings: &Settings, args: &ProduceArgs) -> anyhow::Result<()> {
    let config = GeneratorConfig {
        viewers: args.viewers,
        max_events: Some(args.events),
        duration_ms: 24 * 3_600_000,
        out_of_order_jitter_ms: args.jitter_ms,
        duplicate_fraction: args.duplicate_fraction,
        bad_record_fraction: args.bad_record_fraction,
        seed: args.seed,
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(config).context("invalid traffic settings")?;
    let transport = crate::kafka::transport(settings)?;
    let topic = Topics::new(&settings.topic_prefix).events();
    transport
        .ensure_topic(&TopicSpec {
            replication_factor: settings.topic_replication,
            ..TopicSpec::new(topic.clone(), settings.topic_partitions)
        })
        .await
        .with_context(|| format!("creating {topic} on {}", settings.brokers))?;
    let producer = transport.producer()?;

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut batch = Vec::with_capacity(BATCH_RECORDS);
    loop {
        let record = generator.next();
        let done = record.is_none();
        if let Some(record) = record {
            batch.push(OutgoingRecord {
                topic: topic.clone(),
                key: Some(record.key),
                value: Some(record.value),
                ..OutgoingRecord::default()
            });
        }
        if batch.len() == BATCH_RECORDS || (done && !batch.is_empty()) {
            let n = batch.len() as u64;
            producer
                .send(std::mem::take(&mut batch))
                .await
                .with_context(|| format!("producing to {topic} after {sent} records"))?;
            sent += n;
            if args.rate_per_second > 0 {
                let due = Duration::from_secs_f64(sent as f64 / args.rate_per_second as f64);
                tokio::time::sleep_until((started + due).into()).await;
            }
        }
        if done {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = generator.summary();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "topic": topic,
            "records_sent": sent,
            "valid_events": summary.valid_events,
            "duplicates": summary.duplicates,
            "bad_records": summary.bad_records,
            "seconds": seconds,
            "records_per_second": sent as f64 / seconds.max(1e-9),
        }))?
    );
    Ok(())
}
