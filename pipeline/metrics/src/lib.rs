//! # playlake-metrics
//!
//! The one Prometheus registry of a `playlake` process, the metric families every
//! stage shares, and the stages' readiness behind `/readyz`.
//!
//! ```text
//!  playlake run / process / sink (binary)
//!     | Metrics::new()                       one per process
//!     |-- StageMetrics::new(&metrics, "process")   records in/out, DLQ, late, errors,
//!     |-- StageMetrics::new(&metrics, "sink")      retries, restarts, checkpoints, ready
//!     |-- <crate>::metrics::*Metrics::new(&metrics, ...)  stage-specific families
//!     v
//!  Metrics::encode()  -> GET /metrics (text format)
//!  Metrics::ready()   -> GET /readyz  (every registered stage connected and assigned)
//! ```
//!
//! Several stages run in one process (`playlake run`) and register the same shared
//! families (`playlake_records_in_total{stage=...}`); Prometheus refuses a second
//! registration of a name, so families are created through [`Metrics`], which hands
//! out the existing family when a name is asked for again with the same type.
//!
//! Naming follows `playlake_<what>_<unit>[_total]`. Labels are bounded: `stage`,
//! `topic`, `table`, `output`, `reason`, `operator`, `operation`, `kind` take values
//! from fixed sets or from configuration, never from record contents. The one
//! exception is the top-N concurrent viewers gauge of the processor, whose
//! `stream_id` label is capped by configuration.

mod stage;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

pub use prometheus;
pub use stage::{follow, StageMetrics, ERROR_KINDS};

/// Buckets of latency histograms, in seconds: 5 ms to 60 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of size histograms, in bytes: 1 KiB to 1 GiB, by factors of 4.
pub const SIZE_BUCKETS_BYTES: &[f64] = &[
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// Errors of registering a metric family.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric {name}: {source}")]
    Prometheus {
        name: String,
        #[source]
        source: prometheus::Error,
    },
    #[error("metric {name} is already registered with another type or other labels; give the new metric another name")]
    Conflict { name: String },
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// The process's registry and readiness; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: prometheus::Registry,
    /// Families created so far by name, to hand out again.
    families: Mutex<HashMap<String, Family>>,
    /// Readiness of each registered stage, by stage name.
    ready: Mutex<BTreeMap<String, Readiness>>,
}

/// A registered family: its label names and the family itself (type-erased).
type Family = (Vec<String>, Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Locks a mutex whose data stays valid after any panic (maps of handles).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// An empty registry. The binary makes one per process; tests and library
    /// callers that do not export metrics make a private one.
    pub fn new() -> Self {
        Self::default()
    }

    /// The underlying registry, to register collectors built elsewhere.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.registry
    }

    /// The family `name`, created by `make` and registered on first use, the same
    /// family afterwards (same type and label names required).
    pub fn family<T>(
        &self,
        name: &str,
        labels: &[&str],
        make: impl FnOnce() -> prometheus::Result<T>,
    ) -> Result<T>
    where
        T: Collector + Clone + Send + Sync + 'static,
    {
        let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut families = lock(&self.inner.families);
        if let Some((existing_labels, family)) = families.get(name) {
            return match family.downcast_ref::<T>() {
                Some(family) if *existing_labels == labels => Ok(family.clone()),
                _ => Err(MetricsError::Conflict {
                    name: name.to_owned(),
                }),
            };
        }
        let err = |source| MetricsError::Prometheus {
            name: name.to_owned(),
            source,
        };
        let family = make().map_err(err)?;
        self.inner
            .registry
            .register(Box::new(family.clone()))
            .map_err(err)?;
        families.insert(name.to_owned(), (labels, Box::new(family.clone())));
        Ok(family)
    }

    /// A counter family (`..._total`).
    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        self.family(name, labels, || {
            IntCounterVec::new(Opts::new(name, help), labels)
        })
    }

    /// An integer gauge family.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
        self.family(name, labels, || {
            IntGaugeVec::new(Opts::new(name, help), labels)
        })
    }

    /// A floating-point gauge family (seconds, ratios).
    pub fn float_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<prometheus::GaugeVec> {
        self.family(name, labels, || {
            prometheus::GaugeVec::new(Opts::new(name, help), labels)
        })
    }

    /// A histogram family with explicit buckets.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec> {
        self.family(name, labels, || {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        })
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let families = self.inner.registry.gather();
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a malformed family, which our
        // constructors cannot produce; an empty body is the safe answer then.
        if prometheus::TextEncoder::new()
            .encode(&families, &mut out)
            .is_err()
        {
            out.clear();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The readiness flag of `stage`, registered (not ready) on first use.
    pub fn readiness(&self, stage: &str) -> Readiness {
        lock(&self.inner.ready)
            .entry(stage.to_owned())
            .or_default()
            .clone()
    }

    /// Ready when at least one stage is registered and every registered stage is
    /// ready; also returns each stage's state for the `/readyz` body.
    pub fn ready(&self) -> (bool, Vec<(String, bool)>) {
        let stages: Vec<(String, bool)> = lock(&self.inner.ready)
            .iter()
            .map(|(stage, r)| (stage.clone(), r.get()))
            .collect();
        let ready = !stages.is_empty() && stages.iter().all(|(_, r)| *r);
        (ready, stages)
    }
}

/// One stage's readiness: connected to its input and given partitions (or shards)
/// to read. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_asked_for_twice_is_the_same_family() {
        let metrics = Metrics::new();
        let a = metrics
            .counter_vec("playlake_x_total", "x", &["stage"])
            .unwrap();
        let b = metrics
            .counter_vec("playlake_x_total", "x", &["stage"])
            .unwrap();
        a.with_label_values(&["process"]).inc();
        b.with_label_values(&["sink"]).inc_by(2);
        let text = metrics.encode();
        assert!(
            text.contains("playlake_x_total{stage=\"process\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("playlake_x_total{stage=\"sink\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn a_name_reused_with_another_type_or_labels_is_refused() {
        let metrics = Metrics::new();
        metrics
            .counter_vec("playlake_y_total", "y", &["stage"])
            .unwrap();
        let err = metrics
            .gauge_vec("playlake_y_total", "y", &["stage"])
            .unwrap_err();
        assert!(matches!(err, MetricsError::Conflict { .. }), "{err}");
        let err = metrics
            .counter_vec("playlake_y_total", "y", &["topic"])
            .unwrap_err();
        assert!(matches!(err, MetricsError::Conflict { .. }), "{err}");
    }

    #[test]
    fn ready_only_when_every_stage_is() {
        let metrics = Metrics::new();
        assert!(!metrics.ready().0, "no stage registered yet");
        let process = metrics.readiness("process");
        let sink = metrics.readiness("sink");
        process.set(true);
        assert!(!metrics.ready().0);
        sink.set(true);
        let (ready, stages) = metrics.ready();
        assert!(ready);
        assert_eq!(stages.len(), 2);
    }
}
