//! `playlake source dynamodb --table T`: the DynamoDB Streams source. Merges the
//! flags and environment over `[source.dynamodb]` in the config file, creates the
//! output topics when missing, and runs `playlake_dynamodb::run` over the Kafka
//! producer until SIGTERM (or, with `--until-caught-up`, until every shard is read
//! to its current end). Exits non-zero when the source stops on an error, including
//! TrimmedDataAccess unless `on_trimmed_data = "continue"`.

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use playlake_dynamodb::{SourceConfig, SourceMetrics};
use playlake_transport::{Producer, TopicSpec, Transport};

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct SourceArgs {
    #[command(subcommand)]
    pub kind: SourceKind,
}

#[derive(Debug, Subcommand)]
pub enum SourceKind {
    /// Tail a DynamoDB table's stream into `<prefix>.cdc.<table>` (every shard,
    /// parents before children, checkpoints and leases in a DynamoDB table), with an
    /// optional `--backfill` snapshot and a playback mapping to `<prefix>.events`
    /// (`[source.dynamodb.mapping]`). Run more processes on one table to split its
    /// shards; a dead process's shards are taken over after the lease expires.
    Dynamodb(DynamoArgs),
}

#[derive(Debug, Args, Default)]
pub struct DynamoArgs {
    /// The DynamoDB table (its stream must be enabled, NEW_AND_OLD_IMAGES preferred).
    #[arg(long, env = "PLAYLAKE_SOURCE_TABLE", value_name = "TABLE")]
    pub table: Option<String>,

    /// Snapshot the existing items first (parallel, rate-limited Scan), then stream
    /// from a position taken before the scan. Run it in one process only.
    #[arg(long)]
    pub backfill: bool,

    /// Exit 0 once every shard this process owns returned no new records and its
    /// checkpoint is written, and no other process owns a shard (tests, batch runs).
    #[arg(long)]
    pub until_caught_up: bool,

    /// DynamoDB and DynamoDB Streams endpoint (moto, LocalStack) [default: the AWS
    /// variables, e.g. AWS_ENDPOINT_URL].
    #[arg(long, env = "PLAYLAKE_DYNAMODB_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Table holding leases and checkpoints [default: playlake-source-<table>].
    #[arg(long, env = "PLAYLAKE_SOURCE_LEASE_TABLE", value_name = "TABLE")]
    pub lease_table: Option<String>,

    /// This process's name in the leases; a restart with the same id resumes its
    /// leases at once [default: host name and process id].
    #[arg(long, env = "PLAYLAKE_SOURCE_WORKER_ID", value_name = "ID")]
    pub worker_id: Option<String>,

    /// A lease not renewed for this long is taken over [default: 10000].
    #[arg(long, env = "PLAYLAKE_SOURCE_LEASE_DURATION_MS", value_name = "MS")]
    pub lease_duration_ms: Option<u64>,

    /// Pause before polling a shard that returned nothing [default: 1000].
    #[arg(long, env = "PLAYLAKE_SOURCE_POLL_INTERVAL_MS", value_name = "MS")]
    pub poll_interval_ms: Option<u64>,

    /// How often to look for new shards [default: 10000].
    #[arg(
        long,
        env = "PLAYLAKE_SOURCE_SHARD_SYNC_INTERVAL_MS",
        value_name = "MS"
    )]
    pub shard_sync_interval_ms: Option<u64>,

    /// Parallel Scan segments of the backfill [default: 4].
    #[arg(long, env = "PLAYLAKE_BACKFILL_SEGMENTS", value_name = "N")]
    pub backfill_segments: Option<i32>,

    /// Read capacity the backfill may use per second [default: 100].
    #[arg(long, env = "PLAYLAKE_BACKFILL_RCU_PER_SECOND", value_name = "RCU")]
    pub backfill_read_capacity_units_per_second: Option<f64>,
}

/// Flags and environment over `[source.dynamodb]` over defaults, validated.
pub fn resolve(settings: &Settings, args: &DynamoArgs) -> anyhow::Result<SourceConfig> {
    let file = settings.source.dynamodb.clone().unwrap_or_default();
    let table = args
        .table
        .clone()
        .or_else(|| file.table.clone())
        .context("no table given\nhint: pass --table T (or PLAYLAKE_SOURCE_TABLE, or table = \"T\" in [source.dynamodb])")?;
    let mut config = SourceConfig::from_file(table, settings.topic_prefix.clone(), &file);
    if let Some(v) = &args.endpoint_url {
        config.endpoint_url = Some(v.clone());
    }
    if let Some(v) = &args.lease_table {
        config.lease_table = v.clone();
    }
    if let Some(v) = &args.worker_id {
        config.worker_id = v.clone();
    }
    if let Some(v) = args.lease_duration_ms {
        config.lease_duration_ms = v;
    }
    if let Some(v) = args.poll_interval_ms {
        config.poll_interval_ms = v;
    }
    if let Some(v) = args.shard_sync_interval_ms {
        config.shard_sync_interval_ms = v;
    }
    if let Some(v) = args.backfill_segments {
        config.backfill_segments = v;
    }
    if let Some(v) = args.backfill_read_capacity_units_per_second {
        config.backfill_read_capacity_units_per_second = v;
    }
    config.backfill = args.backfill;
    config.until_caught_up = args.until_caught_up;
    config.validate()?;
    Ok(config)
}

/// The standalone command: the source with its own /metrics, /healthz and /readyz
/// server, until SIGTERM (or caught up).
pub async fn run(settings: &Settings, config: SourceConfig) -> anyhow::Result<()> {
    let metrics = playlake_metrics::Metrics::new();
    let stage = playlake_metrics::StageMetrics::new(&metrics, STAGE)?;
    let source_metrics = SourceMetrics::new(metrics.registry())?;
    let server = crate::serve::start(settings.metrics_addr, metrics.clone()).await?;
    let report =
        crate::signals::run_until_signalled("source", settings.shutdown_deadline_seconds, |stop| {
            run_stage(settings, config, source_metrics, &stage, stop.requested())
        })
        .await;
    drop(server);
    let report = report??;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The stage's name in metrics and logs.
pub const STAGE: &str = "source";

/// Creates the output topics when missing and runs the source into Kafka until
/// `shutdown` (shared by the standalone command and `playlake run`). Ready (for
/// `/readyz`) once Kafka answered and the source started; not ready after it stops.
pub async fn run_stage(
    settings: &Settings,
    config: SourceConfig,
    source_metrics: SourceMetrics,
    stage: &playlake_metrics::StageMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<serde_json::Value> {
    let transport = crate::kafka::transport(settings)?;
    let mut topics = vec![config.cdc_topic()];
    if config.mapping.is_some() {
        topics.push(config.events_topic());
        topics.push(config.dlq_topic());
    }
    for name in topics {
        let mut spec = TopicSpec::new(name.clone(), settings.topic_partitions);
        spec.replication_factor = settings.topic_replication;
        transport
            .ensure_topic(&spec)
            .await
            .with_context(|| format!("creating topic {name} on {}", settings.brokers))?;
    }
    let producer: Arc<dyn Producer> = Arc::new(transport.kafka_producer().clone());
    let table = config.table.clone();
    stage.set_ready(true);
    let report = playlake_dynamodb::run(config, producer, source_metrics, shutdown).await;
    stage.set_ready(false);
    let report = report.with_context(|| format!("the DynamoDB source of table {table} stopped"))?;
    Ok(serde_json::json!({
        "stream_records": report.stream_records,
        "snapshot_items": report.snapshot_items,
        "events": report.events,
        "dlq": report.dlq,
        "shards_finished": report.shards_finished,
        "trimmed": report.trimmed,
    }))
}
