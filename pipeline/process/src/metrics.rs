//! The processor's Prometheus metrics: the shared stage families (`stage="process"`)
//! plus watermark lag, open state and concurrent viewers.
//!
//! Data flow: the run loop (`runner.rs`) keeps exact totals in [`ProcessReport`];
//! after every step [`ProcessMetrics::follow_report`] adds their growth to the
//! counters, so the hot path counts nothing twice. About once a second the loop
//! reports the owned partitions' state sizes and watermarks
//! ([`ProcessMetrics::observe_state`]). The merge side hands each batch of final
//! viewer windows to [`ProcessMetrics::observe_viewers`].
//!
//! Concurrent viewers: a window is published as the gauges once a newer window has
//! started to arrive, because one window's rows come from every repartition
//! partition, each finalizing it when its own watermark passes; by the time a later
//! window shows up the earlier one is (nearly always) complete. The per-stream gauge
//! keeps only the `top_streams` largest streams of that window, which bounds its
//! label cardinality.

use std::collections::{BTreeMap, HashMap};

use playlake_metrics::prometheus::{Gauge, IntGauge, IntGaugeVec};
use playlake_metrics::{follow, Metrics, MetricsError, StageMetrics};
use playlake_schemas::ViewerWindow;

use crate::ProcessReport;

/// Stage label of the processor.
pub const STAGE: &str = "process";
/// Default number of streams the per-stream viewers gauge shows.
pub const DEFAULT_TOP_STREAMS: usize = 10;
/// Windows kept while waiting for a newer one (late partitions of older windows).
const WINDOWS_KEPT: usize = 3;

/// Operators of the late counter, initialised at 0.
const OPERATORS: &[&str] = &["sessions", "viewers", "daily"];
/// Outputs of the records-out counter.
const OUTPUTS: &[&str] = &[
    "sessions", "partials", "viewers", "daily", "resume", "late", "dlq",
];

/// Sizes of the state one instance holds, summed over its partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSummary {
    /// Open sessions (keys with state) of the source side.
    pub sessions: u64,
    /// Session events not yet folded into a summary.
    pub session_events: u64,
    /// Event ids remembered for deduplication.
    pub dedup_ids: u64,
    /// Open viewer windows and days of the source side's partials.
    pub windows: u64,
    /// Open windows and days of the merge side.
    pub merge_results: u64,
    /// Resume points held by the merge side.
    pub resume_points: u64,
    /// Partitions owned, both sides.
    pub partitions: u64,
    /// The lowest real watermark of the owned source partitions, epoch ms (`None`
    /// before any event).
    pub min_watermark_ms: Option<i64>,
}

/// Metric handles of one `playlake process` run. A restarted run makes new handles
/// from the same [`Metrics`] (the families are shared), so its report, which starts
/// at zero again, is followed from zero.
#[derive(Debug)]
pub struct ProcessMetrics {
    /// The families shared with every stage.
    pub stage: StageMetrics,
    watermark_lag_seconds: Gauge,
    open_state: IntGaugeVec,
    concurrent_viewers: IntGauge,
    viewers_window_start_seconds: Gauge,
    stream_viewers: IntGaugeVec,
    top_streams: usize,
    seen: Seen,
    /// Viewer windows being assembled, by window start.
    windows: BTreeMap<i64, WindowViewers>,
    /// The window the gauges show.
    published: Option<i64>,
}

/// Report values already added to the counters.
#[derive(Debug, Default)]
struct Seen {
    records_in: u64,
    dlq: HashMap<String, u64>,
    late: HashMap<String, u64>,
    outputs: [u64; 7],
    undecodable: u64,
    fenced: u64,
}

#[derive(Debug, Default)]
struct WindowViewers {
    total: i64,
    by_stream: Vec<(String, i64)>,
}

impl ProcessMetrics {
    /// Registers the processor's families in `metrics`; the per-stream viewers gauge
    /// shows at most `top_streams` streams.
    pub fn new(metrics: &Metrics, top_streams: usize) -> Result<Self, MetricsError> {
        let stage = StageMetrics::new(metrics, STAGE)?;
        for operator in OPERATORS {
            stage.late(operator);
        }
        for output in OUTPUTS {
            stage.records_out(output);
        }
        let labels = &["stage"];
        Ok(Self {
            watermark_lag_seconds: metrics
                .float_gauge_vec(
                    "playlake_watermark_lag_seconds",
                    "Wall clock minus the lowest event-time watermark of the owned partitions",
                    labels,
                )?
                .with_label_values(&[STAGE]),
            open_state: metrics.gauge_vec(
                "playlake_open_state",
                "Open operator state held in memory, by kind (sessions, windows, ...)",
                &["stage", "kind"],
            )?,
            concurrent_viewers: metrics
                .gauge_vec(
                    "playlake_concurrent_viewers",
                    "Concurrent viewers over all streams this instance merges, in the latest complete window",
                    labels,
                )?
                .with_label_values(&[STAGE]),
            viewers_window_start_seconds: metrics
                .float_gauge_vec(
                    "playlake_concurrent_viewers_window_start_seconds",
                    "Start of the window playlake_concurrent_viewers shows, epoch seconds",
                    labels,
                )?
                .with_label_values(&[STAGE]),
            stream_viewers: metrics.gauge_vec(
                "playlake_stream_concurrent_viewers",
                "Concurrent viewers of the busiest streams (at most the configured number) in the latest complete window",
                &["stream_id"],
            )?,
            top_streams,
            stage,
            seen: Seen::default(),
            windows: BTreeMap::new(),
            published: None,
        })
    }

    /// Metrics in a private registry, for callers that export nothing.
    pub fn unregistered() -> Self {
        match Self::new(&Metrics::new(), DEFAULT_TOP_STREAMS) {
            Ok(metrics) => metrics,
            // A fresh registry holds no name yet, so registration cannot conflict.
            Err(error) => unreachable!("a fresh registry refused a metric: {error}"),
        }
    }

    /// Adds what the report's counters grew by since the last call.
    pub fn follow_report(&mut self, report: &ProcessReport) {
        let stage = &self.stage;
        let seen = &mut self.seen;
        follow(&stage.records_in, &mut seen.records_in, report.records_in);
        for (reason, n) in &report.dlq_by_reason {
            let entry = seen.dlq.entry(reason.clone()).or_default();
            follow(&stage.dlq(reason), entry, *n);
        }
        let dlq_total: u64 = report.dlq_by_reason.values().sum();
        let late_total: u64 = report.late_by_operator.values().sum();
        for (operator, n) in &report.late_by_operator {
            let entry = seen.late.entry(operator.clone()).or_default();
            follow(&stage.late(operator), entry, *n);
        }
        // DLQ and late records are outputs too.
        let outputs = [
            ("sessions", report.sessions_out),
            ("partials", report.partials_out),
            ("viewers", report.viewers_out),
            ("daily", report.daily_out),
            ("resume", report.resume_out),
            ("late", late_total),
            ("dlq", dlq_total),
        ];
        for (i, (output, n)) in outputs.into_iter().enumerate() {
            follow(&stage.records_out(output), &mut seen.outputs[i], n);
        }
        follow(
            &stage.errors("undecodable"),
            &mut seen.undecodable,
            report.repartition_undecodable,
        );
        follow(&stage.errors("fenced"), &mut seen.fenced, report.fenced);
    }

    /// Sets the state gauges from the owned partitions' sizes at wall clock `now_ms`.
    pub fn observe_state(&self, state: &StateSummary, now_ms: i64) {
        let kinds = [
            ("sessions", state.sessions),
            ("session_events", state.session_events),
            ("dedup_ids", state.dedup_ids),
            ("windows", state.windows),
            ("merge_results", state.merge_results),
            ("resume_points", state.resume_points),
        ];
        for (kind, n) in kinds {
            self.open_state
                .with_label_values(&[STAGE, kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.stage
            .assigned_partitions
            .set(i64::try_from(state.partitions).unwrap_or(i64::MAX));
        if let Some(watermark) = state.min_watermark_ms {
            let lag_ms = now_ms.saturating_sub(watermark).max(0);
            self.watermark_lag_seconds.set(lag_ms as f64 / 1000.0);
        }
    }

    /// Takes final viewer windows as the merge side publishes them.
    pub fn observe_viewers(&mut self, windows: &[ViewerWindow]) {
        if windows.is_empty() {
            return;
        }
        for w in windows {
            let start = w.window_start.as_millis();
            if self.published.is_some_and(|p| start <= p) {
                continue; // a straggler of a window already shown
            }
            let acc = self.windows.entry(start).or_default();
            acc.total += w.viewers;
            acc.by_stream.push((w.stream_id.clone(), w.viewers));
        }
        // Publish the newest window that has a newer one after it.
        let complete: Vec<i64> = self.windows.keys().rev().skip(1).copied().collect();
        if let Some(&newest_complete) = complete.first() {
            if let Some(acc) = self.windows.remove(&newest_complete) {
                self.publish(newest_complete, acc);
            }
            self.windows.retain(|start, _| *start > newest_complete);
        }
        while self.windows.len() > WINDOWS_KEPT {
            self.windows.pop_first();
        }
    }

    fn publish(&mut self, start: i64, mut acc: WindowViewers) {
        self.published = Some(start);
        self.concurrent_viewers.set(acc.total);
        self.viewers_window_start_seconds.set(start as f64 / 1000.0);
        acc.by_stream
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        acc.by_stream.truncate(self.top_streams);
        // Streams that left the top N disappear, so the label set stays bounded.
        self.stream_viewers.reset();
        for (stream, viewers) in &acc.by_stream {
            self.stream_viewers
                .with_label_values(&[stream.as_str()])
                .set(*viewers);
        }
    }
}

#[cfg(test)]
mod tests {
    use playlake_schemas::TimestampMs;

    use super::*;

    fn window(stream: &str, start: i64, viewers: i64) -> ViewerWindow {
        ViewerWindow {
            stream_id: stream.into(),
            window_start: TimestampMs(start),
            window_end: TimestampMs(start + 30_000),
            viewers,
        }
    }

    #[test]
    fn a_window_is_shown_once_a_newer_one_starts_with_only_the_top_streams() {
        let registry = Metrics::new();
        let mut m = ProcessMetrics::new(&registry, 2).unwrap();
        m.observe_viewers(&[window("a", 0, 5), window("b", 0, 7)]);
        assert_eq!(m.concurrent_viewers.get(), 0, "window 0 may still grow");
        m.observe_viewers(&[window("c", 0, 1), window("a", 30_000, 4)]);
        assert_eq!(m.concurrent_viewers.get(), 13);
        let text = registry.encode();
        assert!(
            text.contains("playlake_stream_concurrent_viewers{stream_id=\"b\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("playlake_stream_concurrent_viewers{stream_id=\"a\"} 5"),
            "{text}"
        );
        assert!(!text.contains("stream_id=\"c\""), "only the top 2: {text}");
        // A straggler of the shown window changes nothing.
        m.observe_viewers(&[window("d", 0, 100)]);
        assert_eq!(m.concurrent_viewers.get(), 13);
    }

    #[test]
    fn counters_follow_the_report() {
        let registry = Metrics::new();
        let mut m = ProcessMetrics::new(&registry, 2).unwrap();
        let mut report = ProcessReport {
            records_in: 10,
            valid: 9,
            sessions_out: 2,
            ..ProcessReport::default()
        };
        report.dlq_by_reason.insert("invalid_json".into(), 1);
        m.follow_report(&report);
        report.records_in = 15;
        report.late_by_operator.insert("sessions".into(), 2);
        m.follow_report(&report);
        m.follow_report(&report);
        assert_eq!(m.stage.records_in.get(), 15);
        assert_eq!(m.stage.dlq("invalid_json").get(), 1);
        assert_eq!(m.stage.records_out("late").get(), 2);
        assert_eq!(m.stage.records_out("dlq").get(), 1);
        assert_eq!(m.stage.records_out("sessions").get(), 2);
    }
}
