//! [`StageMetrics`]: the families every stage reports under its `stage` label, so one
//! dashboard query covers the source, the processor and the sink alike.
//!
//! Stages count per poll or per batch, never per record: the run loops keep their
//! own report counters and add the difference after each step.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use crate::{Metrics, Readiness, Result, LATENCY_BUCKETS_SECONDS, SIZE_BUCKETS_BYTES};

/// The shared metrics of one stage (`source`, `process`, `sink`). Cheap to clone.
#[derive(Clone, Debug)]
pub struct StageMetrics {
    stage: &'static str,
    /// `playlake_records_in_total{stage}`: records read from the stage's input.
    pub records_in: IntCounter,
    records_out: IntCounterVec,
    dlq: IntCounterVec,
    late: IntCounterVec,
    errors: IntCounterVec,
    retries: IntCounterVec,
    /// `playlake_stage_restarts_total{stage}`: times `playlake run` restarted the
    /// stage after it failed.
    pub restarts: IntCounter,
    /// `playlake_assigned_partitions{stage}`: input partitions (or shards) owned.
    pub assigned_partitions: IntGauge,
    /// `playlake_checkpoint_write_seconds{stage}`.
    pub checkpoint_write_seconds: Histogram,
    /// `playlake_checkpoint_restore_seconds{stage}`: list and read of the latest.
    pub checkpoint_restore_seconds: Histogram,
    /// `playlake_checkpoint_size_bytes{stage}`: state bytes per checkpoint written
    /// or restored.
    pub checkpoint_size_bytes: Histogram,
    /// `playlake_commit_seconds{stage}`: from deciding to commit to the outputs and
    /// positions being durable.
    pub commit_seconds: Histogram,
    /// `playlake_stage_ready{stage}`: 1 once connected and assigned (`/readyz`).
    ready_gauge: IntGauge,
    readiness: Readiness,
}

/// Kinds of `playlake_errors_total`, initialised at 0 so rates exist from the start.
pub const ERROR_KINDS: &[&str] = &["undecodable", "fenced", "stage_failed"];

impl StageMetrics {
    /// Registers (or reuses) the shared families and binds them to `stage`. The
    /// stage starts not ready.
    pub fn new(metrics: &Metrics, stage: &'static str) -> Result<Self> {
        let labels = &["stage"];
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            Ok(metrics
                .counter_vec(name, help, labels)?
                .with_label_values(&[stage]))
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| -> Result<Histogram> {
            Ok(metrics
                .histogram_vec(name, help, labels, buckets)?
                .with_label_values(&[stage]))
        };
        let ready_gauge = metrics
            .gauge_vec(
                "playlake_stage_ready",
                "1 when the stage is connected and has been assigned input partitions or shards",
                labels,
            )?
            .with_label_values(&[stage]);
        let errors = metrics.counter_vec(
            "playlake_errors_total",
            "Errors the stage handled and went on from, by kind",
            &["stage", "kind"],
        )?;
        for kind in ERROR_KINDS {
            errors.with_label_values(&[stage, kind]);
        }
        let this = Self {
            stage,
            records_in: counter(
                "playlake_records_in_total",
                "Records read from the stage's input",
            )?,
            records_out: metrics.counter_vec(
                "playlake_records_out_total",
                "Records the stage wrote, by output (topic kind or lake table)",
                &["stage", "output"],
            )?,
            dlq: metrics.counter_vec(
                "playlake_dlq_records_total",
                "Records sent to the dead-letter topic, by reason",
                &["stage", "reason"],
            )?,
            late: metrics.counter_vec(
                "playlake_late_records_total",
                "Events behind an operator's watermark, sent to the late topic, by operator",
                &["stage", "operator"],
            )?,
            errors,
            retries: metrics.counter_vec(
                "playlake_retries_total",
                "Calls retried after a transient failure, by operation",
                &["stage", "operation"],
            )?,
            restarts: counter(
                "playlake_stage_restarts_total",
                "Times the stage was restarted after it failed",
            )?,
            assigned_partitions: metrics
                .gauge_vec(
                    "playlake_assigned_partitions",
                    "Input partitions (or shards) this instance owns",
                    labels,
                )?
                .with_label_values(&[stage]),
            checkpoint_write_seconds: histogram(
                "playlake_checkpoint_write_seconds",
                "Time to write one checkpoint",
                LATENCY_BUCKETS_SECONDS,
            )?,
            checkpoint_restore_seconds: histogram(
                "playlake_checkpoint_restore_seconds",
                "Time to find and read the latest checkpoint of a partition",
                LATENCY_BUCKETS_SECONDS,
            )?,
            checkpoint_size_bytes: histogram(
                "playlake_checkpoint_size_bytes",
                "State bytes of each checkpoint written or restored",
                SIZE_BUCKETS_BYTES,
            )?,
            commit_seconds: histogram(
                "playlake_commit_seconds",
                "Time from deciding to commit until outputs and positions are durable",
                LATENCY_BUCKETS_SECONDS,
            )?,
            ready_gauge,
            readiness: metrics.readiness(stage),
        };
        this.set_ready(false);
        Ok(this)
    }

    /// A stage's metrics in a private registry, for callers that export nothing.
    pub fn unregistered(stage: &'static str) -> Self {
        match Self::new(&Metrics::new(), stage) {
            Ok(metrics) => metrics,
            // A fresh registry holds no name yet, so registration cannot conflict.
            Err(error) => unreachable!("a fresh registry refused a metric: {error}"),
        }
    }

    pub fn stage(&self) -> &'static str {
        self.stage
    }

    /// `playlake_records_out_total{stage, output}`.
    pub fn records_out(&self, output: &str) -> IntCounter {
        self.records_out.with_label_values(&[self.stage, output])
    }

    /// `playlake_dlq_records_total{stage, reason}`.
    pub fn dlq(&self, reason: &str) -> IntCounter {
        self.dlq.with_label_values(&[self.stage, reason])
    }

    /// `playlake_late_records_total{stage, operator}`.
    pub fn late(&self, operator: &str) -> IntCounter {
        self.late.with_label_values(&[self.stage, operator])
    }

    /// `playlake_errors_total{stage, kind}`; see [`ERROR_KINDS`].
    pub fn errors(&self, kind: &str) -> IntCounter {
        self.errors.with_label_values(&[self.stage, kind])
    }

    /// `playlake_retries_total{stage, operation}`.
    pub fn retries(&self, operation: &str) -> IntCounter {
        self.retries.with_label_values(&[self.stage, operation])
    }

    /// Marks the stage ready (`/readyz`) or not.
    pub fn set_ready(&self, ready: bool) {
        self.readiness.set(ready);
        self.ready_gauge.set(i64::from(ready));
    }
}

/// Adds to `counter` what `now` grew past `*seen` and remembers `now`: run loops keep
/// exact totals in their reports, and metrics follow them once per step.
pub fn follow(counter: &IntCounter, seen: &mut u64, now: u64) {
    if now > *seen {
        counter.inc_by(now - *seen);
    }
    *seen = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_stages_share_families_under_their_own_label() {
        let metrics = Metrics::new();
        let process = StageMetrics::new(&metrics, "process").unwrap();
        let sink = StageMetrics::new(&metrics, "sink").unwrap();
        process.records_in.inc_by(3);
        sink.records_out("sessions").inc();
        process.set_ready(true);
        let text = metrics.encode();
        assert!(
            text.contains("playlake_records_in_total{stage=\"process\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("playlake_records_in_total{stage=\"sink\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("playlake_records_out_total{output=\"sessions\",stage=\"sink\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("playlake_errors_total{kind=\"fenced\",stage=\"sink\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("playlake_stage_ready{stage=\"process\"} 1"),
            "{text}"
        );
        assert!(!metrics.ready().0, "the sink is not ready yet");
    }

    #[test]
    fn follow_adds_only_growth() {
        let counter = StageMetrics::unregistered("x").records_in;
        let mut seen = 0;
        follow(&counter, &mut seen, 5);
        follow(&counter, &mut seen, 5);
        follow(&counter, &mut seen, 7);
        assert_eq!(counter.get(), 7);
    }
}
