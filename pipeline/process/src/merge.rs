//! The merge side: owns the repartition partitions the merge consumer group
//! (`<group_id>.merge`) gives this instance; per partition a [`MergeOperator`]
//! (viewers, daily) and a [`ResumeMerge`], restored from scope `partials-<p>`.
//!
//! Partials are replaced by identity `(source partition, key)` inside the operator,
//! so partials replayed by a restarted source change nothing; a partial for a key
//! already final is dropped and counted. Final rows go to `<prefix>.viewers`,
//! `<prefix>.daily` and `<prefix>.resume`.
//!
//! Drain mode: a partition is finished once, for every source partition, a
//! [`RepartitionRecord::Drained`] marker arrived whose offset reaches the end that
//! source partition had when the run started; the markers seen are part of the
//! checkpointed state, so a restart does not wait for markers it already consumed.

use std::collections::BTreeMap;

use bytes::Bytes;
use playlake_checkpoint::{CheckpointStore, Position as CkPosition};
use playlake_processor::{
    MergeOperator, PartialOutcome, PartialRecord, ResumeCandidate, ResumeMerge,
};
use playlake_transport::{
    Consumer, ConsumerEvent, OutgoingRecord, Position, Record, TopicPartition,
};
use serde::{Deserialize, Serialize};

use crate::codec::{self, now_ms, RepartitionRecord};
use crate::metrics::StateSummary;
use crate::runner::{load_checkpoint, save_checkpoint, Saved, Shared};
use crate::ProcessError;

/// The checkpointed state of one repartition partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeState {
    /// Viewers and daily stats.
    pub merge: MergeOperator,
    /// Resume points.
    pub resume: ResumeMerge,
    /// Drain markers seen: source partition -> largest drained offset.
    pub drained: BTreeMap<i32, i64>,
}

struct Owned {
    state: MergeState,
    /// Resume candidates read since the last flush, applied together
    /// ([`ResumeMerge::apply_all`]) before the flush takes the changed points.
    resume_candidates: Vec<ResumeCandidate>,
    store: CheckpointStore,
    next_offset: i64,
    dirty: bool,
    finished: bool,
}

impl Owned {
    fn apply_resume_candidates(&mut self) {
        self.state.resume.apply_all(&mut self.resume_candidates);
    }
}

/// The merge side of one instance.
pub(crate) struct MergeSide {
    consumer: Box<dyn Consumer>,
    owned: BTreeMap<i32, Owned>,
    /// Whether the group ever assigned this member a partition (drain mode must not
    /// finish before the first assignment, which Kafka delivers asynchronously).
    pub(crate) ever_assigned: bool,
    /// Drain mode: the end of every events partition when the run started.
    drain_targets: Option<BTreeMap<i32, i64>>,
}

fn scope(partition: i32) -> String {
    format!("partials-{partition}")
}

impl MergeSide {
    pub(crate) fn new(
        consumer: Box<dyn Consumer>,
        drain_targets: Option<BTreeMap<i32, i64>>,
    ) -> Self {
        Self {
            consumer,
            owned: BTreeMap::new(),
            ever_assigned: false,
            drain_targets,
        }
    }

    /// Polls once and handles everything that came.
    pub(crate) async fn step(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let events = self
            .consumer
            .poll(ctx.config.max_poll_records, ctx.poll_timeout())
            .await
            .map_err(ProcessError::transport("poll the repartition topic"))?;
        for event in events {
            match event {
                ConsumerEvent::Assigned(tps) => {
                    self.ever_assigned |= !tps.is_empty();
                    for tp in tps {
                        self.restore(ctx, &tp).await?;
                    }
                }
                ConsumerEvent::Revoked(tps) => {
                    for tp in tps {
                        self.owned.remove(&tp.partition);
                    }
                }
                ConsumerEvent::EndOfPartition { .. } => {}
                ConsumerEvent::Records(records) => {
                    for record in records {
                        self.handle(ctx, &record)?;
                    }
                }
            }
        }
        self.flush(ctx, Vec::new()).await?;
        if self.drain_targets.is_some() {
            self.drain_finished(ctx).await?;
        }
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Shared, record: &Record) -> Result<(), ProcessError> {
        let Some(owned) = self.owned.get_mut(&record.partition) else {
            return Ok(());
        };
        if record.offset < owned.next_offset {
            return Ok(());
        }
        owned.next_offset = record.offset + 1;
        owned.dirty = true;
        let bytes = record.value.as_deref().unwrap_or_default();
        let decoded: RepartitionRecord = match serde_json::from_slice(bytes) {
            Ok(decoded) => decoded,
            Err(error) => {
                ctx.report.repartition_undecodable += 1;
                tracing::error!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    %error, "undecodable repartition record: skipped (written by another version?)"
                );
                return Ok(());
            }
        };
        match decoded {
            RepartitionRecord::Viewers(p) => apply(ctx, owned, PartialRecord::Viewers(p)),
            RepartitionRecord::Daily(p) => apply(ctx, owned, PartialRecord::Daily(p)),
            RepartitionRecord::Watermark(w) => apply(ctx, owned, PartialRecord::Watermark(w)),
            RepartitionRecord::Watermarks(ws) => {
                for w in ws {
                    apply(ctx, owned, PartialRecord::Watermark(w));
                }
            }
            RepartitionRecord::Resume(candidate) => {
                owned.resume_candidates.push(candidate);
            }
            RepartitionRecord::Drained {
                partition,
                next_offset,
            } => {
                let seen = owned.state.drained.entry(partition).or_insert(next_offset);
                *seen = (*seen).max(next_offset);
            }
        }
        Ok(())
    }

    /// Takes every owned partition's finished rows and sends them.
    async fn flush(
        &mut self,
        ctx: &mut Shared,
        mut out: Vec<OutgoingRecord>,
    ) -> Result<(), ProcessError> {
        for owned in self.owned.values_mut() {
            owned.apply_resume_candidates();
            let (viewers, daily) = owned.state.merge.take_finished();
            for v in &viewers {
                out.push(codec::viewer_record(&ctx.topics.viewers, v)?);
            }
            for d in &daily {
                out.push(codec::daily_record(&ctx.topics.daily, d)?);
            }
            let (mut resume_out, mut failed) = (0u64, None);
            owned.state.resume.drain_changed(|point| {
                match codec::resume_record(&ctx.topics.resume, &point) {
                    Ok(record) => {
                        out.push(record);
                        resume_out += 1;
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            ctx.metrics.observe_viewers(&viewers);
            ctx.report.viewers_out += viewers.len() as u64;
            ctx.report.daily_out += daily.len() as u64;
            ctx.report.resume_out += resume_out;
        }
        ctx.send(out, "publish merge outputs").await
    }

    async fn restore(&mut self, ctx: &mut Shared, tp: &TopicPartition) -> Result<(), ProcessError> {
        if tp.topic != ctx.topics.partials {
            return Ok(());
        }
        let scope = scope(tp.partition);
        let (store, checkpoint) = load_checkpoint(ctx, &scope).await?;
        let (state, position, next_offset) = match checkpoint {
            Some(ck) => {
                let state: MergeState = serde_json::from_slice(&ck.state).map_err(|source| {
                    ProcessError::CorruptState {
                        scope: scope.clone(),
                        source,
                    }
                })?;
                let next = ck
                    .positions
                    .iter()
                    .find(|p| p.topic == tp.topic && p.partition == tp.partition)
                    .map_or(0, |p| p.next_offset);
                tracing::info!(
                    partition = %tp, next_offset = next, sequence = %ck.sequence,
                    state_bytes = ck.state.len(), watermark = state.merge.watermark().millis(),
                    "restored merge partition from checkpoint"
                );
                (state, Position::Offset(next), next)
            }
            None => (
                MergeState {
                    merge: MergeOperator::new(
                        &ctx.config.settings,
                        0..ctx.source_partitions,
                        now_ms(),
                    ),
                    resume: ResumeMerge::default(),
                    drained: BTreeMap::new(),
                },
                Position::Beginning,
                0,
            ),
        };
        self.consumer
            .seek(tp, position)
            .map_err(ProcessError::transport(format!("seek {tp}")))?;
        let fresh = matches!(position, Position::Beginning);
        self.owned.insert(
            tp.partition,
            Owned {
                state,
                resume_candidates: Vec::new(),
                store,
                next_offset,
                dirty: fresh,
                finished: false,
            },
        );
        Ok(())
    }

    /// Re-evaluates idleness and publishes what it made final.
    pub(crate) async fn tick(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let now = now_ms();
        for owned in self.owned.values_mut() {
            owned.state.merge.tick(now);
        }
        self.flush(ctx, Vec::new()).await
    }

    fn markers_complete(&self, owned: &Owned) -> bool {
        self.drain_targets
            .as_ref()
            .is_some_and(|targets| markers_reach(targets, &owned.state))
    }

    /// Drain mode: whether the whole group is done, judged from the checkpoint
    /// store rather than from this member's assignment (which is empty during every
    /// rebalance, and moves while members finish and leave). Every repartition
    /// partition must be finished here or have a checkpoint holding every source's
    /// drain marker: merge checkpoints are written after the drained results were
    /// published, and a marker comes after its source partition's drained outputs,
    /// so this covers the source side too.
    pub(crate) fn group_drained(
        &self,
        ctx: &Shared,
    ) -> impl std::future::Future<Output = Result<bool, ProcessError>> + Send + 'static {
        // Only owned data goes into the future: `self` holds the consumer, which
        // is not `Sync`, and the run loop's future must be `Send`.
        let others: Vec<i32> = (0..ctx.repartition_partitions)
            .filter(|r| !self.owned.get(r).is_some_and(|o| o.finished && !o.dirty))
            .collect();
        let targets = self.drain_targets.clone();
        let lake = ctx.lake.clone();
        async move { group_drained(lake, targets, others).await }
    }

    async fn drain_finished(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let ready: Vec<i32> = self
            .owned
            .iter()
            .filter(|(_, o)| !o.finished && self.markers_complete(o))
            .map(|(p, _)| *p)
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        for p in &ready {
            if let Some(owned) = self.owned.get_mut(p) {
                owned.state.merge.drain();
                owned.finished = true;
                owned.dirty = true;
                tracing::info!(partition = p, "drained merge partition");
            }
        }
        self.flush(ctx, Vec::new()).await?;
        self.checkpoint(ctx).await
    }

    /// Checkpoints every owned partition whose state changed (outputs already sent).
    pub(crate) async fn checkpoint(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let mut fenced = Vec::new();
        let mut written = Vec::new();
        for (p, owned) in self.owned.iter_mut().filter(|(_, o)| o.dirty) {
            // Normally done by the last flush; the state saved with the position must
            // reflect every record before it (a changed point stays marked in the
            // state and goes out with the next flush).
            owned.apply_resume_candidates();
            let state = serde_json::to_vec(&owned.state)
                .map_err(ProcessError::encode("merge partition state"))?;
            let positions = vec![CkPosition::new(
                ctx.topics.partials.clone(),
                *p,
                owned.next_offset,
            )];
            match save_checkpoint(
                ctx,
                &mut owned.store,
                &scope(*p),
                positions,
                Bytes::from(state),
            )
            .await?
            {
                Saved::Written => {
                    owned.dirty = false;
                    written.push((
                        TopicPartition::new(ctx.topics.partials.clone(), *p),
                        owned.next_offset,
                    ));
                }
                Saved::Fenced => fenced.push(*p),
            }
        }
        // Group offsets are advisory (lag monitoring); the checkpoint is the truth.
        if !written.is_empty() {
            if let Err(error) = self.consumer.commit(&written).await {
                tracing::warn!(%error, "committing advisory group offsets failed");
            }
        }
        for p in fenced {
            self.owned.remove(&p);
            let tp = TopicPartition::new(ctx.topics.partials.clone(), p);
            if self.consumer.assignment().contains(&tp) {
                self.restore(ctx, &tp).await?;
            }
        }
        Ok(())
    }

    /// Drain mode: every owned partition finished.
    /// Adds the owned partitions' state sizes (metrics).
    pub(crate) fn summarize(&self, state: &mut StateSummary) {
        for owned in self.owned.values() {
            state.merge_results += owned.state.merge.open_results() as u64;
            state.resume_points += owned.state.resume.len() as u64;
        }
        state.partitions += self.owned.len() as u64;
    }

    pub(crate) fn all_finished(&self) -> bool {
        self.owned.values().all(|o| o.finished)
    }

    pub(crate) async fn close(&mut self) {
        if let Err(error) = self.consumer.close().await {
            tracing::warn!(%error, "closing the repartition consumer failed");
        }
    }
}

/// Whether every partition in `partitions` has a checkpoint holding every source's
/// drain marker (see [`MergeSide::group_drained`]).
async fn group_drained(
    lake: playlake_checkpoint::Lake,
    targets: Option<BTreeMap<i32, i64>>,
    partitions: Vec<i32>,
) -> Result<bool, ProcessError> {
    let Some(targets) = targets else {
        return Ok(false);
    };
    for r in partitions {
        let scope = scope(r);
        let err = |operation| {
            let scope = scope.clone();
            move |source| ProcessError::Checkpoint {
                scope,
                operation,
                source: Box::new(source),
            }
        };
        let mut store =
            CheckpointStore::new(&lake, crate::CHECKPOINT_STAGE, &scope).map_err(err("open"))?;
        let Some(checkpoint) = store.load_latest().await.map_err(err("load"))? else {
            return Ok(false);
        };
        let state: MergeState = serde_json::from_slice(&checkpoint.state).map_err(|source| {
            ProcessError::CorruptState {
                scope: scope.clone(),
                source,
            }
        })?;
        if !markers_reach(&targets, &state) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when `state` holds, for every source partition, a drain marker at or past
/// its target.
fn markers_reach(targets: &BTreeMap<i32, i64>, state: &MergeState) -> bool {
    targets
        .iter()
        .all(|(p, end)| state.drained.get(p).is_some_and(|seen| seen >= end))
}

fn apply(ctx: &mut Shared, owned: &mut Owned, record: PartialRecord) {
    if owned.state.merge.apply(record, now_ms()) == PartialOutcome::AlreadyFinal {
        ctx.report.partials_already_final += 1;
    }
}
