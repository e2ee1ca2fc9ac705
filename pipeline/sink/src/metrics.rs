//! The sink's Prometheus metrics: the shared stage families (`stage="sink"`) plus
//! the lake writer's files, bytes, rows and file sizes per table.
//!
//! Data flow: the run loop counts records in per poll; the writer observes each
//! published file's size, each commit's and checkpoint's latency and the retries of
//! its storage calls as they happen; the report's other totals (rows, files, bytes,
//! skipped and undecodable records) are followed once per poll
//! ([`SinkMetrics::follow_report`]).

use std::collections::HashMap;

use playlake_metrics::prometheus::{HistogramVec, IntCounterVec};
use playlake_metrics::{follow, Metrics, MetricsError, StageMetrics, SIZE_BUCKETS_BYTES};
use playlake_schemas::Table;

use crate::SinkReport;

/// Stage label of the sink.
pub const STAGE: &str = "sink";

/// Metric handles of one sink run. A restarted run makes new handles from the same
/// [`Metrics`] (the families are shared), so its report, which starts at zero
/// again, is followed from zero.
#[derive(Debug)]
pub struct SinkMetrics {
    /// The families shared with every stage.
    pub stage: StageMetrics,
    files: IntCounterVec,
    bytes: IntCounterVec,
    file_size_bytes: HistogramVec,
    skipped: IntCounterVec,
    seen: Seen,
}

/// Report values already added to the counters.
#[derive(Debug, Default)]
struct Seen {
    rows: HashMap<String, u64>,
    duplicates: u64,
    durable: u64,
    invalid_events: u64,
    path_too_long: u64,
    undecodable: u64,
    fenced: u64,
}

impl SinkMetrics {
    /// Registers the sink's families in `metrics`.
    pub fn new(metrics: &Metrics) -> Result<Self, MetricsError> {
        let stage = StageMetrics::new(metrics, STAGE)?;
        let this = Self {
            files: metrics.counter_vec(
                "playlake_lake_files_written_total",
                "Parquet files published to the lake, by table",
                &["table"],
            )?,
            bytes: metrics.counter_vec(
                "playlake_lake_bytes_written_total",
                "Bytes of the Parquet files published to the lake, by table",
                &["table"],
            )?,
            file_size_bytes: metrics.histogram_vec(
                "playlake_lake_file_size_bytes",
                "Size of each Parquet file published, by table",
                &["table"],
                SIZE_BUCKETS_BYTES,
            )?,
            skipped: metrics.counter_vec(
                "playlake_skipped_records_total",
                "Records read but not written again: duplicates, already durable (replay), invalid events (in the DLQ instead), rows whose partition directory name a local lake cannot hold",
                &["stage", "reason"],
            )?,
            stage,
            seen: Seen::default(),
        };
        // Every table's series exists from the start, so rates are 0 rather than absent.
        for table in Table::ALL {
            let name = table.name();
            this.files.with_label_values(&[name]);
            this.bytes.with_label_values(&[name]);
            this.file_size_bytes.with_label_values(&[name]);
            this.stage.records_out(name);
        }
        for reason in ["duplicate", "durable", "invalid_event", "path_too_long"] {
            this.skipped.with_label_values(&[STAGE, reason]);
        }
        for operation in ["publish", "checkpoint_save", "checkpoint_load"] {
            this.stage.retries(operation);
        }
        Ok(this)
    }

    /// Metrics in a private registry, for callers that export nothing.
    pub fn unregistered() -> Self {
        match Self::new(&Metrics::new()) {
            Ok(metrics) => metrics,
            // A fresh registry holds no name yet, so registration cannot conflict.
            Err(error) => unreachable!("a fresh registry refused a metric: {error}"),
        }
    }

    /// One published file of `table`.
    pub fn file_published(&self, table: &str, bytes: usize) {
        self.files.with_label_values(&[table]).inc();
        self.bytes.with_label_values(&[table]).inc_by(bytes as u64);
        self.file_size_bytes
            .with_label_values(&[table])
            .observe(bytes as f64);
    }

    /// Adds what the report's counters grew by since the last call.
    pub fn follow_report(&mut self, report: &SinkReport) {
        let stage = &self.stage;
        let seen = &mut self.seen;
        for (table, rows) in &report.rows_written {
            let entry = seen.rows.entry(table.clone()).or_default();
            follow(&stage.records_out(table), entry, *rows);
        }
        let skipped = |reason: &str| self.skipped.with_label_values(&[STAGE, reason]);
        follow(
            &skipped("duplicate"),
            &mut seen.duplicates,
            report.duplicates_skipped,
        );
        follow(
            &skipped("durable"),
            &mut seen.durable,
            report.durable_skipped,
        );
        follow(
            &skipped("invalid_event"),
            &mut seen.invalid_events,
            report.invalid_events_skipped,
        );
        follow(
            &skipped("path_too_long"),
            &mut seen.path_too_long,
            report.path_too_long_skipped,
        );
        follow(
            &stage.errors("undecodable"),
            &mut seen.undecodable,
            report.undecodable_records,
        );
        follow(
            &stage.errors("fenced"),
            &mut seen.fenced,
            report.fenced_partitions,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_report_totals_reach_the_registry() {
        let registry = Metrics::new();
        let mut m = SinkMetrics::new(&registry).unwrap();
        m.file_published("sessions", 2048);
        let mut report = SinkReport::default();
        report.rows_written.insert("sessions".into(), 10);
        report.duplicates_skipped = 3;
        m.follow_report(&report);
        m.follow_report(&report);
        let text = registry.encode();
        for line in [
            "playlake_lake_files_written_total{table=\"sessions\"} 1",
            "playlake_lake_bytes_written_total{table=\"sessions\"} 2048",
            "playlake_lake_file_size_bytes_count{table=\"sessions\"} 1",
            "playlake_records_out_total{output=\"sessions\",stage=\"sink\"} 10",
            "playlake_skipped_records_total{reason=\"duplicate\",stage=\"sink\"} 3",
            "playlake_lake_files_written_total{table=\"viewers\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
