//! The loop of one instance: both sides polled in turn, checkpoints every interval,
//! shutdown checked between steps, drain completion detected.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use playlake_checkpoint::{
    Checkpoint, CheckpointError, CheckpointStore, Lake, Position as CkPosition,
};
use playlake_transport::{
    ConsumerEvent, OutgoingRecord, Position, Producer, TopicPartition, Transport,
};
use tokio::time::Instant;

use crate::codec::{ensure_topics, Topics};
use crate::merge::MergeSide;
use crate::metrics::{ProcessMetrics, StateSummary};
use crate::source::SourceSide;
use crate::{ProcessConfig, ProcessError, ProcessReport, CHECKPOINT_STAGE};

/// How long drain mode waits to learn the end of the input partitions.
const END_OFFSETS_TIMEOUT_MS: u64 = 30_000;
/// How often state sizes and the watermark lag are measured for the metrics.
const STATE_METRICS_INTERVAL: Duration = Duration::from_secs(1);
/// How often drain mode asks the checkpoint store whether the whole group is done.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Announcements go out when a partition's watermark or idleness changes; an
/// unchanged one is repeated this often as a keep-alive. Not at every checkpoint:
/// with short checkpoint intervals the repeats were most of the repartition topic,
/// and every drain had to read through them.
const ANNOUNCE_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// What both sides share: the producer, the lake, names, settings and counters.
pub(crate) struct Shared {
    pub(crate) lake: Lake,
    pub(crate) topics: Topics,
    pub(crate) config: ProcessConfig,
    pub(crate) producer: Box<dyn Producer>,
    pub(crate) report: ProcessReport,
    pub(crate) metrics: ProcessMetrics,
    pub(crate) source_partitions: i32,
    pub(crate) repartition_partitions: i32,
}

impl Shared {
    pub(crate) fn poll_timeout(&self) -> Duration {
        Duration::from_millis(self.config.poll_timeout_ms / 2)
    }

    /// Sends and waits for every acknowledgement.
    pub(crate) async fn send(
        &mut self,
        out: Vec<OutgoingRecord>,
        what: &str,
    ) -> Result<(), ProcessError> {
        if out.is_empty() {
            return Ok(());
        }
        self.producer
            .send(out)
            .await
            .map(|_| ())
            .map_err(ProcessError::transport(what))
    }
}

/// Outcome of a checkpoint write.
pub(crate) enum Saved {
    Written,
    /// Another writer owns the scope now; the caller drops its state.
    Fenced,
}

/// Loads the latest checkpoint of `scope`; the restore time and size go to the log
/// and the report.
pub(crate) async fn load_checkpoint(
    ctx: &mut Shared,
    scope: &str,
) -> Result<(CheckpointStore, Option<Checkpoint>), ProcessError> {
    let err = |operation| {
        let scope = scope.to_owned();
        move |source| ProcessError::Checkpoint {
            scope,
            operation,
            source: Box::new(source),
        }
    };
    let mut store =
        CheckpointStore::new(&ctx.lake, CHECKPOINT_STAGE, scope).map_err(err("open"))?;
    let started = Instant::now();
    let checkpoint = store.load_latest().await.map_err(err("load"))?;
    let restore_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let bytes = checkpoint.as_ref().map_or(0, |c| c.state.len() as u64);
    ctx.report.restore_ms_max = ctx.report.restore_ms_max.max(restore_ms);
    let stage = &ctx.metrics.stage;
    stage
        .checkpoint_restore_seconds
        .observe(started.elapsed().as_secs_f64());
    if checkpoint.is_some() {
        stage.checkpoint_size_bytes.observe(bytes as f64);
    }
    tracing::info!(
        scope,
        restore_ms,
        checkpoint_bytes = bytes,
        "checkpoint restored"
    );
    Ok((store, checkpoint))
}

pub(crate) async fn save_checkpoint(
    ctx: &mut Shared,
    store: &mut CheckpointStore,
    scope: &str,
    positions: Vec<CkPosition>,
    state: Bytes,
) -> Result<Saved, ProcessError> {
    let bytes = state.len();
    let started = Instant::now();
    match store.save(positions, state).await {
        Ok(sequence) => {
            let stage = &ctx.metrics.stage;
            stage
                .checkpoint_write_seconds
                .observe(started.elapsed().as_secs_f64());
            stage.checkpoint_size_bytes.observe(bytes as f64);
            ctx.report.checkpoints_written += 1;
            ctx.report.checkpoint_bytes_max = ctx.report.checkpoint_bytes_max.max(bytes as u64);
            tracing::debug!(scope, %sequence, checkpoint_bytes = bytes, "checkpoint written");
            Ok(Saved::Written)
        }
        Err(error @ CheckpointError::Fenced { .. }) => {
            ctx.report.fenced += 1;
            tracing::error!(
                scope, %error,
                "fenced: another instance wrote a newer checkpoint; this instance stops owning the partition's state"
            );
            Ok(Saved::Fenced)
        }
        Err(source) => Err(ProcessError::Checkpoint {
            scope: scope.to_owned(),
            operation: "save",
            source: Box::new(source),
        }),
    }
}

/// The end offset of every partition of `topic`, learned from `EndOfPartition`
/// (never from ListOffsets, which Tansu under-reports).
async fn end_offsets(
    transport: &dyn Transport,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, ProcessError> {
    let mut consumer = transport
        .consumer(&format!("{group}.drain-probe"))
        .map_err(ProcessError::transport("create the drain probe consumer"))?;
    let positions: Vec<(TopicPartition, Position)> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), Position::End))
        .collect();
    consumer
        .assign(&positions)
        .map_err(ProcessError::transport(format!(
            "assign {topic} for the drain probe"
        )))?;
    let deadline = Instant::now() + Duration::from_millis(END_OFFSETS_TIMEOUT_MS);
    let mut ends = BTreeMap::new();
    while ends.len() < positions.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProcessError::EndOffsets {
                topic: topic.to_owned(),
                timeout_ms: END_OFFSETS_TIMEOUT_MS,
            });
        }
        let events = consumer
            .poll(1, left)
            .await
            .map_err(ProcessError::transport("poll the drain probe"))?;
        for event in events {
            if let ConsumerEvent::EndOfPartition {
                partition,
                next_offset,
            } = event
            {
                ends.insert(partition.partition, next_offset);
            }
        }
    }
    if let Err(error) = consumer.close().await {
        tracing::warn!(%error, "closing the drain probe failed");
    }
    Ok(ends)
}

fn validate(config: &ProcessConfig) -> Result<(), ProcessError> {
    if config.topic_prefix.is_empty() {
        return Err(ProcessError::Config(
            "topic_prefix must not be empty".into(),
        ));
    }
    if config.group_id.is_empty() {
        return Err(ProcessError::Config("group_id must not be empty".into()));
    }
    if config.checkpoint_interval_ms == 0 {
        return Err(ProcessError::Config(
            "checkpoint_interval_ms must be at least 1".into(),
        ));
    }
    if config.repartition_partitions < 1 || config.topic_partitions < 1 {
        return Err(ProcessError::Config(
            "repartition_partitions and topic_partitions must be at least 1".into(),
        ));
    }
    if config.max_poll_records == 0 {
        return Err(ProcessError::Config(
            "max_poll_records must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Runs one `playlake process` instance until `shutdown` completes (then it
/// checkpoints and returns) or, in drain mode, until everything present at start is
/// processed, published and checkpointed. See the crate docs for the data flow.
/// Metrics go to a private registry; see [`run_with_metrics`].
pub async fn run(
    transport: Arc<dyn Transport>,
    lake: Lake,
    config: ProcessConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<ProcessReport, ProcessError> {
    run_with_metrics(
        transport,
        lake,
        config,
        ProcessMetrics::unregistered(),
        shutdown,
    )
    .await
}

/// [`run`], reporting into `metrics` (made from the process's shared registry).
pub async fn run_with_metrics(
    transport: Arc<dyn Transport>,
    lake: Lake,
    config: ProcessConfig,
    metrics: ProcessMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<ProcessReport, ProcessError> {
    validate(&config)?;
    let topics = Topics::new(&config.topic_prefix);
    ensure_topics(transport.as_ref(), &topics, &config).await?;
    let count = |topic: String| {
        let transport = Arc::clone(&transport);
        async move {
            transport
                .partition_count(&topic)
                .await
                .map_err(ProcessError::transport(format!(
                    "count the partitions of {topic}"
                )))
        }
    };
    let source_partitions = count(topics.events.clone()).await?;
    let repartition_partitions = count(topics.partials.clone()).await?;
    let drain_targets = if config.drain {
        Some(
            end_offsets(
                transport.as_ref(),
                &config.group_id,
                &topics.events,
                source_partitions,
            )
            .await?,
        )
    } else {
        None
    };
    let producer = transport
        .producer()
        .map_err(ProcessError::transport("create the producer"))?;
    let mut source_consumer = transport
        .consumer(&config.group_id)
        .map_err(ProcessError::transport("create the events consumer"))?;
    source_consumer
        .subscribe(std::slice::from_ref(&topics.events))
        .map_err(ProcessError::transport(format!(
            "subscribe to {}",
            topics.events
        )))?;
    let mut merge_consumer = transport
        .consumer(&format!("{}.merge", config.group_id))
        .map_err(ProcessError::transport("create the repartition consumer"))?;
    merge_consumer
        .subscribe(std::slice::from_ref(&topics.partials))
        .map_err(ProcessError::transport(format!(
            "subscribe to {}",
            topics.partials
        )))?;

    let interval = Duration::from_millis(config.checkpoint_interval_ms);
    let drain = config.drain;
    let mut ctx = Shared {
        lake,
        topics,
        config,
        producer,
        report: ProcessReport::default(),
        metrics,
        source_partitions,
        repartition_partitions,
    };
    let mut source = SourceSide::new(source_consumer);
    let mut merge = MergeSide::new(merge_consumer, drain_targets);
    tracing::info!(
        source_partitions, repartition_partitions, drain,
        group = %ctx.config.group_id, "process started"
    );
    let result = run_loop(&mut ctx, &mut source, &mut merge, interval, drain, shutdown).await;
    source.close().await;
    merge.close().await;
    ctx.metrics.follow_report(&ctx.report);
    result.map(|()| ctx.report)
}

async fn run_loop(
    ctx: &mut Shared,
    source: &mut SourceSide,
    merge: &mut MergeSide,
    interval: Duration,
    drain: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProcessError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_checkpoint = Instant::now();
    let mut last_refresh = Instant::now();
    let mut last_state_metrics: Option<Instant> = None;
    let mut last_drain_check: Option<Instant> = None;
    loop {
        if futures::poll!(shutdown.as_mut()).is_ready() {
            tracing::info!("shutdown requested: checkpointing");
            source.checkpoint(ctx).await?;
            merge.checkpoint(ctx).await?;
            return Ok(());
        }
        source.step(ctx).await?;
        merge.step(ctx).await?;
        if last_checkpoint.elapsed() >= interval {
            let started = Instant::now();
            let refresh = last_refresh.elapsed() >= ANNOUNCE_REFRESH_INTERVAL;
            if refresh {
                last_refresh = Instant::now();
            }
            source.announce(ctx, refresh).await?;
            merge.tick(ctx).await?;
            source.checkpoint(ctx).await?;
            merge.checkpoint(ctx).await?;
            ctx.metrics
                .stage
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            last_checkpoint = Instant::now();
        }
        ctx.metrics.follow_report(&ctx.report);
        // Ready once both consumer groups assigned this member partitions.
        ctx.metrics
            .stage
            .set_ready(source.ever_assigned && merge.ever_assigned);
        if last_state_metrics.is_none_or(|at| at.elapsed() >= STATE_METRICS_INTERVAL) {
            let mut state = StateSummary::default();
            source.summarize(&mut state);
            merge.summarize(&mut state);
            ctx.metrics.observe_state(&state, crate::codec::now_ms());
            last_state_metrics = Some(Instant::now());
        }
        // Drain: done once every partition this member owns on both sides is
        // finished *and* the checkpoint store shows the whole group finished. The
        // member's own assignment alone is not enough: it is empty during every
        // rebalance, and partitions of members that die or leave move to the ones
        // still here, so a member that left early could strand them.
        if drain
            && (source.ever_assigned || merge.ever_assigned)
            && source.all_drained()
            && merge.all_finished()
            && last_drain_check.is_none_or(|at| at.elapsed() >= DRAIN_CHECK_INTERVAL)
        {
            source.checkpoint(ctx).await?;
            merge.checkpoint(ctx).await?;
            last_drain_check = Some(Instant::now());
            if merge.group_drained(ctx).await? {
                tracing::info!(report = ?ctx.report, "drain finished");
                return Ok(());
            }
        }
    }
}
