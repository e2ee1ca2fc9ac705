//! `playlake run`: every enabled stage in one process, the production default.
//!
//! ```text
//!  Settings + RunOptions
//!     | one Metrics registry -> serve.rs (/metrics, /healthz, /readyz)
//!     | one shutdown (SIGTERM / Ctrl-C -> watch channel)
//!     v
//!  supervise(stage) per enabled stage, each a tokio task:
//!     Stage::run(shutdown) -> report | error -> restart from the last checkpoint
//!                                               (backoff, at most max_stage_restarts
//!                                               consecutive failures)
//!     v
//!  first signal: every stage finishes in-flight work and commits, within
//!  shutdown_deadline_seconds -> exit 0 (else exit 1; a second signal exits 130)
//! ```
//!
//! Stages share nothing but the registry and the shutdown signal: each opens its own
//! Kafka clients and lake handle, exactly as when run as separate processes, so a
//! stage restarted after a failure restores its checkpoints like a fresh process.
//!
//! Stages: the DynamoDB source (when `[source.dynamodb]` names a table), the
//! processor and the sink. Adding one: implement [`Stage`] for it, add its
//! [`StageKind`] in `config.rs`, and build it in [`build_stage`].

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use playlake_checkpoint::Lake;
use playlake_kafka::KafkaMetrics;
use playlake_metrics::{Metrics, StageMetrics};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::{ProcessArgs, SinkArgs};
use crate::commands::source::DynamoArgs;
use crate::config::{self, RunOptions, Settings, StageKind};
use crate::signals::Shutdown;

/// First pause before restarting a failed stage; doubles up to [`MAX_RESTART_PAUSE`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(30);
/// A stage that ran this long since its last failure starts counting failures anew.
const HEALTHY_AFTER: Duration = Duration::from_secs(300);

/// What a stage returns: its report, printed as JSON at exit.
pub type StageFuture<'a> =
    Pin<Box<dyn Future<Output = anyhow::Result<serde_json::Value>> + Send + 'a>>;

/// One stage `playlake run` supervises.
pub trait Stage: Send + Sync {
    /// The stage's name: its `stage` metric label and its name in logs.
    fn name(&self) -> &'static str;

    /// Runs the stage once: until `shutdown` (then it finishes in-flight work,
    /// commits and returns its report) or until it fails. Called again after a
    /// failure; every call starts from the stage's checkpoints.
    fn run(&self, shutdown: Shutdown) -> StageFuture<'_>;
}

/// What stages need besides their own settings.
struct Shared {
    settings: Settings,
    metrics: Metrics,
    kafka: KafkaMetrics,
}

impl Shared {
    /// The Kafka transport (consumers report their lag) and the lake of a stage.
    fn open(
        &self,
        stage: &str,
        group: &str,
    ) -> anyhow::Result<(Arc<playlake_kafka::KafkaTransport>, Lake)> {
        let transport = crate::kafka::transport(&self.settings)?.with_metrics(self.kafka.clone());
        let lake = Lake::open(&self.settings.lake.to_string())
            .with_context(|| format!("opening the lake {}", self.settings.lake))?;
        tracing::info!(
            brokers = %self.settings.brokers,
            lake = %self.settings.lake,
            group,
            "{stage} starting"
        );
        Ok((Arc::new(transport), lake))
    }
}

struct ProcessStage {
    shared: Arc<Shared>,
    config: playlake_process::ProcessConfig,
}

impl Stage for ProcessStage {
    fn name(&self) -> &'static str {
        playlake_process::metrics::STAGE
    }

    fn run(&self, shutdown: Shutdown) -> StageFuture<'_> {
        Box::pin(async move {
            let (transport, lake) = self.shared.open("processor", &self.config.group_id)?;
            let metrics = playlake_process::ProcessMetrics::new(
                &self.shared.metrics,
                self.shared.settings.metrics_top_streams,
            )?;
            let report = playlake_process::run_with_metrics(
                transport,
                lake,
                self.config.clone(),
                metrics,
                shutdown.requested(),
            )
            .await
            .context("the processor stopped")?;
            Ok(serde_json::to_value(report)?)
        })
    }
}

struct SinkStage {
    shared: Arc<Shared>,
    config: playlake_sink::SinkConfig,
}

impl Stage for SinkStage {
    fn name(&self) -> &'static str {
        playlake_sink::metrics::STAGE
    }

    fn run(&self, shutdown: Shutdown) -> StageFuture<'_> {
        Box::pin(async move {
            let (transport, lake) = self.shared.open("sink", &self.config.group_id)?;
            let metrics = playlake_sink::SinkMetrics::new(&self.shared.metrics)?;
            let report = playlake_sink::run_with_metrics(
                transport,
                lake,
                self.config.clone(),
                metrics,
                shutdown.requested(),
            )
            .await
            .context("the sink stopped")?;
            Ok(serde_json::to_value(report)?)
        })
    }
}

struct SourceStage {
    shared: Arc<Shared>,
    config: playlake_dynamodb::SourceConfig,
    /// Registered once: a restarted stage reuses the same collectors.
    metrics: playlake_dynamodb::SourceMetrics,
    stage: StageMetrics,
}

impl Stage for SourceStage {
    fn name(&self) -> &'static str {
        crate::commands::source::STAGE
    }

    fn run(&self, shutdown: Shutdown) -> StageFuture<'_> {
        Box::pin(async move {
            tracing::info!(
                table = %self.config.table,
                brokers = %self.shared.settings.brokers,
                "source starting"
            );
            crate::commands::source::run_stage(
                &self.shared.settings,
                self.config.clone(),
                self.metrics.clone(),
                &self.stage,
                shutdown.requested(),
            )
            .await
        })
    }
}

/// Builds one enabled stage from the settings (stage settings come from the config
/// file's sections; `playlake run` has no per-stage flags).
fn build_stage(kind: StageKind, shared: &Arc<Shared>) -> anyhow::Result<Arc<dyn Stage>> {
    Ok(match kind {
        StageKind::Process => Arc::new(ProcessStage {
            shared: Arc::clone(shared),
            config: config::resolve_process(&shared.settings, &ProcessArgs::default())?,
        }),
        StageKind::Sink => Arc::new(SinkStage {
            shared: Arc::clone(shared),
            config: config::resolve_sink(&shared.settings, &SinkArgs::default())?,
        }),
        StageKind::Source => Arc::new(SourceStage {
            shared: Arc::clone(shared),
            config: crate::commands::source::resolve(&shared.settings, &DynamoArgs::default())?,
            metrics: playlake_dynamodb::SourceMetrics::new(shared.metrics.registry())?,
            stage: StageMetrics::new(&shared.metrics, crate::commands::source::STAGE)?,
        }),
    })
}

/// Runs the enabled stages until a signal (exit 0 after a clean drain within the
/// deadline, 1 past it) or until a stage fails beyond its restarts (an error).
pub async fn run(settings: &Settings, options: &RunOptions) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new();
    register_process_info(&metrics)?;
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        kafka: KafkaMetrics::new(&metrics)?,
        metrics: metrics.clone(),
    });
    let stages = options
        .stages
        .iter()
        .map(|kind| build_stage(*kind, &shared))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every stage is registered (not ready) before the server answers /readyz.
    for stage in &stages {
        StageMetrics::new(&metrics, stage.name())?;
    }
    let server = crate::serve::start(settings.metrics_addr, metrics.clone()).await?;

    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for stage in stages {
        let shutdown = Shutdown(stopped.clone());
        let stage_metrics = StageMetrics::new(&metrics, stage.name())?;
        let max_restarts = options.max_stage_restarts;
        tasks.spawn(async move {
            let name = stage.name();
            (
                name,
                supervise(stage, shutdown, stage_metrics, max_restarts).await,
            )
        });
    }
    tracing::info!(
        stages = ?options.stages.iter().map(|s| s.name()).collect::<Vec<_>>(),
        metrics = %server.addr(),
        "playlake run started"
    );

    let mut reports = serde_json::Map::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut record = |joined: Result<
        (&'static str, anyhow::Result<serde_json::Value>),
        tokio::task::JoinError,
    >| {
        match joined {
            Ok((name, Ok(report))) => {
                reports.insert(name.to_owned(), report);
            }
            Ok((name, Err(error))) => {
                let error = error.context(format!("stage {name} failed"));
                failure.get_or_insert(error);
            }
            Err(error) => {
                failure.get_or_insert(anyhow::Error::new(error).context("a stage task panicked"));
            }
        }
    };

    // Until a signal, or until a stage ends by itself (a failure beyond its
    // restarts): then the others are stopped too, so the process exits as one.
    tokio::select! {
        () = crate::signals::shutdown() => {}
        Some(joined) = tasks.join_next() => {
            record(joined);
            tracing::error!("a stage stopped; stopping the others (they commit first)");
        }
    }
    let _ = stop.send(true);

    let deadline = Duration::from_secs(options.shutdown_deadline_seconds);
    let drained = tokio::time::timeout(deadline, async {
        while let Some(joined) = tasks.join_next().await {
            record(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::error!(
            shutdown_deadline_seconds = options.shutdown_deadline_seconds,
            "stages did not finish within the shutdown deadline; exiting without their final commit (the next start replays from their last checkpoints)"
        );
        tasks.abort_all();
        return Ok(ExitCode::FAILURE);
    }
    drop(server);
    if let Some(error) = failure {
        return Err(error);
    }
    println!("{}", serde_json::to_string_pretty(&reports)?);
    tracing::info!("playlake run stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Runs `stage`, restarting it after a failure from its last checkpoint, with a
/// growing pause, until `max_restarts` consecutive failures; returns its report once
/// it stops after `shutdown`.
async fn supervise(
    stage: Arc<dyn Stage>,
    shutdown: Shutdown,
    metrics: StageMetrics,
    max_restarts: u32,
) -> anyhow::Result<serde_json::Value> {
    let name = stage.name();
    let mut failures = 0u32;
    let mut pause = FIRST_RESTART_PAUSE;
    loop {
        let started = tokio::time::Instant::now();
        let error = match stage.run(shutdown.clone()).await {
            Ok(report) => return Ok(report),
            Err(error) => error,
        };
        metrics.set_ready(false);
        metrics.errors("stage_failed").inc();
        if shutdown.is_requested() {
            return Err(error);
        }
        if started.elapsed() >= HEALTHY_AFTER {
            failures = 0;
            pause = FIRST_RESTART_PAUSE;
        }
        failures += 1;
        if failures > max_restarts {
            tracing::error!(
                stage = name,
                failures,
                error = format!("{error:#}"),
                "stage failed again; giving up after max_stage_restarts restarts and stopping playlake run"
            );
            return Err(error);
        }
        tracing::error!(
            stage = name,
            failures,
            restart_in_seconds = pause.as_secs(),
            error = format!("{error:#}"),
            "stage failed; restarting it from its last checkpoint"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.clone().requested() => return Err(error),
        }
        metrics.restarts.inc();
        pause = (pause * 2).min(MAX_RESTART_PAUSE);
    }
}

/// `playlake_build_info{version}` and `playlake_start_time_seconds`, to tell
/// versions apart and count process restarts (`changes(...)`).
fn register_process_info(metrics: &Metrics) -> anyhow::Result<()> {
    metrics
        .gauge_vec(
            "playlake_build_info",
            "Always 1; the version label says which playlake runs",
            &["version"],
        )?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics
        .float_gauge_vec(
            "playlake_start_time_seconds",
            "When this process started, epoch seconds",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Fails `failures` times, then waits for shutdown and reports how often it ran.
    struct Flaky {
        runs: AtomicU32,
        failures: u32,
    }

    impl Stage for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        fn run(&self, shutdown: Shutdown) -> StageFuture<'_> {
            Box::pin(async move {
                let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
                if run <= self.failures {
                    anyhow::bail!("broker unreachable (run {run})");
                }
                shutdown.requested().await;
                Ok(serde_json::json!({ "runs": run }))
            })
        }
    }

    #[tokio::test]
    async fn a_failed_stage_is_restarted_and_counted() {
        let metrics = Metrics::new();
        let stage_metrics = StageMetrics::new(&metrics, "flaky").unwrap();
        let (stop, stopped) = watch::channel(false);
        let stage = Arc::new(Flaky {
            runs: AtomicU32::new(0),
            failures: 2,
        });
        let task = tokio::spawn(supervise(
            stage.clone(),
            Shutdown(stopped),
            stage_metrics.clone(),
            5,
        ));
        while stage.runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send(true).unwrap();
        let report = task.await.unwrap().unwrap();
        assert_eq!(report["runs"], 3);
        assert_eq!(stage_metrics.restarts.get(), 2);
        assert_eq!(stage_metrics.errors("stage_failed").get(), 2);
    }

    #[tokio::test]
    async fn a_stage_failing_beyond_its_restarts_stops() {
        let metrics = Metrics::new();
        let stage_metrics = StageMetrics::new(&metrics, "flaky").unwrap();
        let (_stop, stopped) = watch::channel(false);
        let stage = Arc::new(Flaky {
            runs: AtomicU32::new(0),
            failures: u32::MAX,
        });
        let error = supervise(stage.clone(), Shutdown(stopped), stage_metrics.clone(), 2)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("broker unreachable"), "{error}");
        assert_eq!(
            stage.runs.load(Ordering::SeqCst),
            3,
            "the first run and 2 restarts"
        );
        assert_eq!(stage_metrics.restarts.get(), 2);
    }
}
