//! Consumer lag, the Kafka connector's Prometheus metric.
//!
//! Data flow: a [`KafkaTransport`](crate::KafkaTransport) given [`KafkaMetrics`]
//! hands a [`LagReporter`] to each consumer it creates. After a poll, at most once a
//! second, the consumer sums over its positioned partitions of each topic the high
//! watermark librdkafka cached from the last fetch response (no extra request; on
//! Tansu the fetch's watermark is the true end, unlike ListOffsets) minus the next
//! offset the stage will be given, and sets `playlake_consumer_lag_records{group,
//! topic}`. Groups and topics come from configuration, so the labels are bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use playlake_metrics::prometheus::IntGaugeVec;
use playlake_metrics::{Metrics, MetricsError};

/// How often a consumer recomputes its lag.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

/// The connector's metric families. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KafkaMetrics {
    consumer_lag: IntGaugeVec,
}

impl KafkaMetrics {
    pub fn new(metrics: &Metrics) -> Result<Self, MetricsError> {
        Ok(Self {
            consumer_lag: metrics.gauge_vec(
                "playlake_consumer_lag_records",
                "Records in the owned partitions of a topic not yet handed to the stage (high watermark of the last fetch minus the next offset)",
                &["group", "topic"],
            )?,
        })
    }

    /// The lag reporter of one consumer of `group`.
    pub fn reporter(&self, group: &str) -> LagReporter {
        LagReporter {
            gauge: self.consumer_lag.clone(),
            group: group.to_owned(),
            last: None,
            topics: BTreeSet::new(),
        }
    }
}

/// Sets one consumer's lag gauges.
#[derive(Debug)]
pub struct LagReporter {
    gauge: IntGaugeVec,
    group: String,
    last: Option<Instant>,
    /// Topics this reporter has set a value for (reset to 0 on close).
    topics: BTreeSet<String>,
}

impl LagReporter {
    /// Whether a new measurement is due.
    pub(crate) fn due(&self) -> bool {
        self.last.is_none_or(|at| at.elapsed() >= LAG_INTERVAL)
    }

    /// Sets each topic's lag from `(topic, lag)` per partition; topics seen before
    /// and absent now (revoked) go to 0.
    pub(crate) fn report(&mut self, partitions: impl IntoIterator<Item = (String, i64)>) {
        self.last = Some(Instant::now());
        let mut by_topic: BTreeMap<String, i64> =
            self.topics.iter().map(|t| (t.clone(), 0)).collect();
        for (topic, lag) in partitions {
            *by_topic.entry(topic).or_default() += lag.max(0);
        }
        for (topic, lag) in by_topic {
            self.gauge
                .with_label_values(&[self.group.as_str(), topic.as_str()])
                .set(lag);
            self.topics.insert(topic);
        }
    }

    /// The consumer closed: its lag no longer counts.
    pub(crate) fn closed(&mut self) {
        for topic in std::mem::take(&mut self.topics) {
            // Removing (not zeroing) keeps closed drain probes out of the scrape.
            let _ = self
                .gauge
                .remove_label_values(&[self.group.as_str(), topic.as_str()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_summed_per_topic_and_cleared_on_close() {
        let metrics = Metrics::new();
        let kafka = KafkaMetrics::new(&metrics).unwrap();
        let mut lag = kafka.reporter("g");
        assert!(lag.due());
        lag.report([
            ("t".to_owned(), 5),
            ("t".to_owned(), 7),
            ("u".to_owned(), -1),
        ]);
        let text = metrics.encode();
        assert!(
            text.contains("playlake_consumer_lag_records{group=\"g\",topic=\"t\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("playlake_consumer_lag_records{group=\"g\",topic=\"u\"} 0"),
            "{text}"
        );
        assert!(!lag.due());
        lag.report([("u".to_owned(), 3)]);
        let text = metrics.encode();
        assert!(
            text.contains("topic=\"t\"} 0"),
            "revoked topic goes to 0: {text}"
        );
        lag.closed();
        assert!(!metrics.encode().contains("group=\"g\""));
    }
}
