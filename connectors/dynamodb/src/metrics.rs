//! The source's Prometheus metrics: one struct of handles built from the registry
//! the binary serves on `/metrics` (or that `playlake run` shares between stages).
//!
//! Names follow `playlake_<what>_<unit>[_total]`; the only label is the DynamoDB
//! table (a handful per deployment) plus a fixed set of reasons, so cardinality is
//! bounded. Counters are bumped per batch, not per record.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Handles for one source; clone freely (prometheus handles are shared).
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    /// Stream records and snapshot items read.
    pub records_in: IntCounterVec,
    /// Records acknowledged by Kafka, by output (`cdc`, `events`, `dlq`).
    pub records_out: IntCounterVec,
    /// Items the playback mapping sent to the DLQ.
    pub dlq: IntCounterVec,
    /// Age of the newest record read (now - its approximate creation time).
    pub iterator_age_seconds: IntGaugeVec,
    /// Retries, by reason (`throttle`, `expired_iterator`, `transient`).
    pub retries: IntCounterVec,
    /// TrimmedDataAccess events: records lost to the stream's retention.
    pub trimmed_data: IntCounterVec,
    /// Shards whose lease this process holds.
    pub shards_owned: IntGaugeVec,
    /// Items snapshotted by the backfill.
    pub backfill_items: IntCounterVec,
    /// Backfill progress in per mille of the table's approximate item count.
    pub backfill_progress_permille: IntGaugeVec,
}

impl SourceMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["table"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            records_in: counter(
                "playlake_source_records_in_total",
                "DynamoDB stream records and snapshot items read",
                &["table"],
            )?,
            records_out: counter(
                "playlake_source_records_out_total",
                "records acknowledged by Kafka, by output (cdc, events, dlq)",
                &["table", "output"],
            )?,
            dlq: counter(
                "playlake_source_dlq_total",
                "changes the playback mapping could not map (sent to the DLQ)",
                &["table"],
            )?,
            iterator_age_seconds: gauge(
                "playlake_source_iterator_age_seconds",
                "age of the newest stream record read",
            )?,
            retries: counter(
                "playlake_source_retries_total",
                "DynamoDB calls retried, by reason (throttle, expired_iterator, transient, trimmed)",
                &["table", "reason"],
            )?,
            trimmed_data: counter(
                "playlake_source_trimmed_data_total",
                "TrimmedDataAccess: shards whose stream records were lost to the 24 h retention before they were read (once per shard and process)",
                &["table"],
            )?,
            shards_owned: gauge(
                "playlake_source_shards_owned",
                "shards whose lease this process holds",
            )?,
            backfill_items: counter(
                "playlake_source_backfill_items_total",
                "items snapshotted by the backfill scan",
                &["table"],
            )?,
            backfill_progress_permille: gauge(
                "playlake_source_backfill_progress_permille",
                "backfill progress in per mille of the table's approximate item count",
            )?,
        })
    }
}
