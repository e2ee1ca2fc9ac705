//! The source side: owns the events partitions the consumer group gives this
//! instance, one [`PartitionProcessor`] each, restored from checkpoint scope
//! `events-<p>`.
//!
//! Per poll: every record is parsed (invalid -> DLQ) and processed (late -> late
//! topic); then the partitions' outputs are taken and sent (sessions, partials keyed
//! by stream, resume candidates keyed by user/stream), and once those are
//! acknowledged the changed watermark announcements go to every repartition
//! partition. Positions and state are checkpointed every interval, after the sends.
//!
//! Announcements cost the repartition topic `repartition_partitions` records a
//! round, whatever the number of source partitions: one
//! [`RepartitionRecord::Watermarks`] per repartition partition carries every owned
//! partition whose watermark changed, and a round goes out at most every
//! `ANNOUNCE_INTERVAL` (a forced keep-alive round at once). Live input moves every
//! partition's watermark at every poll; one record per (source, repartition)
//! partition at every poll was 1,024 records a poll at 32 x 32 partitions, about
//! 1,500 records/s with 2,000 live heartbeats/s through `playlake run` on Tansu,
//! which the merge side fell further behind on every second (DESIGN.md section 8).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use playlake_checkpoint::{CheckpointStore, Position as CkPosition};
use playlake_processor::source::GROUP;
use playlake_processor::{
    EventOutcome, PartitionProcessor, SourceOutput, SourceWatermark, Watermark,
};
use playlake_schemas::{parse_playback_event_into, resume_key, PlaybackEvent};
use playlake_transport::{
    Consumer, ConsumerEvent, OutgoingRecord, Position, Record, TopicPartition,
};
use tokio::time::Instant;

use crate::codec::{self, now_ms, RepartitionRecord};
use crate::metrics::StateSummary;
use crate::runner::{load_checkpoint, save_checkpoint, Saved, Shared};
use crate::ProcessError;

/// Changed watermarks are announced at most this often. It delays the merge side's
/// results by at most this much (windows are tens of seconds) and bounds the
/// announcement traffic and the awaited sends it costs the loop.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

struct Owned {
    processor: PartitionProcessor,
    store: CheckpointStore,
    next_offset: i64,
    /// Whether state changed since the last checkpoint.
    dirty: bool,
    /// The partition reported its end (drain mode waits for it).
    at_end: bool,
    /// Drained in this run.
    drained: bool,
    last_announced: Option<SourceWatermark>,
}

/// The source side of one instance.
pub(crate) struct SourceSide {
    consumer: Box<dyn Consumer>,
    owned: BTreeMap<i32, Owned>,
    /// Whether the group ever assigned this member a partition (drain mode must not
    /// finish before the first assignment, which Kafka delivers asynchronously).
    pub(crate) ever_assigned: bool,
    /// When the last announcement round went out.
    last_round: Option<Instant>,
    /// Records are parsed into these events, reusing their strings' buffers, and
    /// processed [`GROUP`] at a time.
    events: Vec<PlaybackEvent>,
}

fn scope(partition: i32) -> String {
    format!("events-{partition}")
}

impl SourceSide {
    pub(crate) fn new(consumer: Box<dyn Consumer>) -> Self {
        Self {
            consumer,
            owned: BTreeMap::new(),
            ever_assigned: false,
            last_round: None,
            events: Vec::with_capacity(GROUP),
        }
    }

    /// Polls once and handles everything that came.
    pub(crate) async fn step(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let events = self
            .consumer
            .poll(ctx.config.max_poll_records, ctx.poll_timeout())
            .await
            .map_err(ProcessError::transport("poll the events topic"))?;
        let mut out = Vec::new();
        let mut touched = Vec::new();
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
                        // Not saved here: the next owner replays from the last
                        // checkpoint and re-emits identical outputs.
                        self.owned.remove(&tp.partition);
                    }
                }
                ConsumerEvent::EndOfPartition {
                    partition,
                    next_offset,
                } => {
                    // Everything up to the end was delivered (and handled above).
                    if let Some(owned) = self.owned.get_mut(&partition.partition) {
                        owned.next_offset = owned.next_offset.max(next_offset);
                        owned.at_end = true;
                    }
                }
                ConsumerEvent::Records(records) => {
                    self.handle(ctx, &records, &mut out, &mut touched);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for p in touched {
            if let Some(owned) = self.owned.get_mut(&p) {
                collect_output(ctx, owned.processor.take_output(), &mut out)?;
            }
        }
        ctx.send(out, "publish source outputs").await?;
        self.announce(ctx, false).await?;
        if ctx.config.drain {
            self.drain_finished(ctx).await?;
        }
        Ok(())
    }

    /// Handles the records of one poll, in order; pushes each owned partition that
    /// got one onto `touched`.
    ///
    /// Consecutive valid events of a partition are parsed into `self.events` and
    /// processed as one group ([`PartitionProcessor::process_group`]: their state is
    /// fetched from memory together); an invalid record goes to the DLQ at once.
    fn handle(
        &mut self,
        ctx: &mut Shared,
        records: &[Record],
        out: &mut Vec<OutgoingRecord>,
        touched: &mut Vec<i32>,
    ) {
        // One wall clock for the poll: idleness is judged in seconds.
        let now = now_ms();
        // The records of the parsed, not yet processed events (one partition's).
        let mut group: Vec<&Record> = Vec::with_capacity(GROUP);
        for record in records {
            if group
                .first()
                .is_some_and(|r| r.partition != record.partition)
            {
                self.process_group(ctx, &mut group, now, out);
            }
            let Some(owned) = self.owned.get_mut(&record.partition) else {
                continue;
            };
            if record.offset < owned.next_offset {
                continue; // already applied (a redelivery)
            }
            touched.push(record.partition);
            ctx.report.records_in += 1;
            owned.next_offset = record.offset + 1;
            owned.dirty = true;
            owned.at_end = false;
            if self.events.len() <= group.len() {
                self.events.push(PlaybackEvent::default());
            }
            let Some(event) = self.events.get_mut(group.len()) else {
                continue;
            };
            let bytes = record.value.as_deref().unwrap_or_default();
            match parse_playback_event_into(bytes, now, event) {
                Err(invalid) => {
                    *ctx.report
                        .dlq_by_reason
                        .entry(invalid.reason_code().to_owned())
                        .or_default() += 1;
                    out.push(codec::dlq_record(&ctx.topics.dlq, record, &invalid));
                    owned.processor.observe_invalid(now);
                }
                Ok(()) => {
                    ctx.report.valid += 1;
                    group.push(record);
                    if group.len() == GROUP {
                        self.process_group(ctx, &mut group, now, out);
                    }
                }
            }
        }
        self.process_group(ctx, &mut group, now, out);
    }

    /// Processes the events parsed for `group`'s records (all of one partition) and
    /// empties it; late events go to the late topic.
    fn process_group(
        &mut self,
        ctx: &mut Shared,
        group: &mut Vec<&Record>,
        now: i64,
        out: &mut Vec<OutgoingRecord>,
    ) {
        let Some(partition) = group.first().map(|r| r.partition) else {
            return;
        };
        let events = self.events.get(..group.len()).unwrap_or_default();
        if let Some(owned) = self.owned.get_mut(&partition) {
            owned.processor.process_group(events, now, |i, outcome| {
                if outcome == EventOutcome::Duplicate {
                    ctx.report.duplicates += 1;
                }
                let Some(record) = group.get(i) else {
                    return;
                };
                for late in outcome.late() {
                    *ctx.report
                        .late_by_operator
                        .entry(late.operator.as_str().to_owned())
                        .or_default() += 1;
                    out.push(codec::late_record(&ctx.topics.late, record, late));
                }
            });
        }
        group.clear();
    }

    async fn restore(&mut self, ctx: &mut Shared, tp: &TopicPartition) -> Result<(), ProcessError> {
        if tp.topic != ctx.topics.events {
            return Ok(());
        }
        let scope = scope(tp.partition);
        let (store, checkpoint) = load_checkpoint(ctx, &scope).await?;
        let now = now_ms();
        let (processor, position, next_offset) =
            match checkpoint {
                Some(ck) => {
                    let mut processor: PartitionProcessor = serde_json::from_slice(&ck.state)
                        .map_err(|source| ProcessError::CorruptState {
                            scope: scope.clone(),
                            source,
                        })?;
                    processor.restored(now);
                    let next = ck
                        .positions
                        .iter()
                        .find(|p| p.topic == tp.topic && p.partition == tp.partition)
                        .map_or(0, |p| p.next_offset);
                    tracing::info!(
                        partition = %tp, next_offset = next, sequence = %ck.sequence,
                        state_bytes = ck.state.len(), watermark = processor.watermark().millis(),
                        "restored source partition from checkpoint"
                    );
                    (processor, Position::Offset(next), next)
                }
                None => {
                    tracing::info!(partition = %tp, "no checkpoint: reading from the beginning");
                    (
                        PartitionProcessor::new(&ctx.config.settings, tp.partition, now),
                        Position::Beginning,
                        0,
                    )
                }
            };
        self.consumer
            .seek(tp, position)
            .map_err(ProcessError::transport(format!("seek {tp}")))?;
        let fresh = matches!(position, Position::Beginning);
        self.owned.insert(
            tp.partition,
            Owned {
                processor,
                store,
                next_offset,
                // A first checkpoint even for an empty partition: it records ownership.
                dirty: fresh,
                at_end: false,
                drained: false,
                last_announced: None,
            },
        );
        Ok(())
    }

    /// Announces the owned partitions' watermarks that changed (every one, when
    /// `force`) to every repartition partition, in one
    /// [`RepartitionRecord::Watermarks`] per repartition partition; unforced rounds
    /// at most every `ANNOUNCE_INTERVAL`.
    pub(crate) async fn announce(
        &mut self,
        ctx: &mut Shared,
        force: bool,
    ) -> Result<(), ProcessError> {
        if !force
            && self
                .last_round
                .is_some_and(|at| at.elapsed() < ANNOUNCE_INTERVAL)
        {
            return Ok(());
        }
        self.last_round = Some(Instant::now());
        let now = now_ms();
        // An idle partition's open partials go out before its idle announcement:
        // the merge stops waiting for it, so it must hold what it has seen.
        let mut provisional = Vec::new();
        for owned in self.owned.values_mut() {
            let (viewer_partials, daily_partials) = owned.processor.idle_partials(now);
            if viewer_partials.is_empty() && daily_partials.is_empty() {
                continue;
            }
            ctx.report.provisional_partials +=
                (viewer_partials.len() + daily_partials.len()) as u64;
            let output = SourceOutput {
                viewer_partials,
                daily_partials,
                ..SourceOutput::default()
            };
            collect_output(ctx, output, &mut provisional)?;
        }
        ctx.send(provisional, "publish an idle partition's open partials")
            .await?;
        let mut changed = Vec::new();
        for owned in self.owned.values_mut() {
            let announcement = owned.processor.announcement(now);
            if !force && owned.last_announced == Some(announcement) {
                continue;
            }
            owned.last_announced = Some(announcement);
            changed.push(announcement);
        }
        if changed.is_empty() {
            return Ok(());
        }
        let record = RepartitionRecord::Watermarks(changed);
        let out = (0..ctx.repartition_partitions)
            .map(|r| codec::repartition_to(&ctx.topics.partials, r, &record))
            .collect::<Result<Vec<_>, _>>()?;
        ctx.send(out, "announce watermarks").await
    }

    /// Drain mode: drains every owned partition that reached its end.
    async fn drain_finished(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let ready: Vec<i32> = self
            .owned
            .iter()
            .filter(|(_, o)| o.at_end && !o.drained)
            .map(|(p, _)| *p)
            .collect();
        for p in ready {
            let Some(owned) = self.owned.get_mut(&p) else {
                continue;
            };
            owned.processor.drain();
            let mut out = Vec::new();
            collect_output(ctx, owned.processor.take_output(), &mut out)?;
            ctx.send(out, "publish drained outputs").await?;
            let announcement = owned.processor.announcement(now_ms());
            owned.last_announced = Some(announcement);
            let mut markers = Vec::new();
            for record in [
                RepartitionRecord::Watermark(announcement),
                RepartitionRecord::Drained {
                    partition: p,
                    next_offset: owned.next_offset,
                },
            ] {
                for r in 0..ctx.repartition_partitions {
                    markers.push(codec::repartition_to(&ctx.topics.partials, r, &record)?);
                }
            }
            ctx.send(markers, "send drain markers").await?;
            owned.drained = true;
            owned.dirty = true;
            tracing::info!(
                partition = p,
                next_offset = owned.next_offset,
                "drained source partition"
            );
        }
        self.checkpoint(ctx).await
    }

    /// Checkpoints every owned partition whose state changed. Every output was sent
    /// (and acknowledged) before this is called.
    pub(crate) async fn checkpoint(&mut self, ctx: &mut Shared) -> Result<(), ProcessError> {
        let mut fenced = Vec::new();
        let mut written = Vec::new();
        for (p, owned) in self.owned.iter_mut().filter(|(_, o)| o.dirty) {
            let state = serde_json::to_vec(&owned.processor)
                .map_err(ProcessError::encode("source partition state"))?;
            let positions = vec![CkPosition::new(
                ctx.topics.events.clone(),
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
                        TopicPartition::new(ctx.topics.events.clone(), *p),
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
            let tp = TopicPartition::new(ctx.topics.events.clone(), p);
            if self.consumer.assignment().contains(&tp) {
                // Still ours by the group: a previous owner wrote after we restored.
                // Take its newer checkpoint as the truth and replay from there.
                self.restore(ctx, &tp).await?;
            }
        }
        Ok(())
    }

    /// Adds the owned partitions' state sizes and lowest watermark (metrics).
    pub(crate) fn summarize(&self, state: &mut StateSummary) {
        for owned in self.owned.values() {
            let sizes = owned.processor.state_sizes();
            state.sessions += sizes.session_keys as u64;
            state.session_events += sizes.session_events as u64;
            state.dedup_ids += sizes.dedup_ids as u64;
            state.windows += sizes.open_results as u64;
            let watermark = owned.processor.watermark();
            if watermark != Watermark::MIN {
                let w = watermark.millis();
                state.min_watermark_ms = Some(state.min_watermark_ms.map_or(w, |m| m.min(w)));
            }
        }
        state.partitions += self.owned.len() as u64;
    }

    /// Drain mode: every owned partition drained.
    pub(crate) fn all_drained(&self) -> bool {
        self.owned.values().all(|o| o.drained)
    }

    pub(crate) async fn close(&mut self) {
        if let Err(error) = self.consumer.close().await {
            tracing::warn!(%error, "closing the events consumer failed");
        }
    }
}

/// Turns a partition's output into records: sessions, then partials and candidates.
fn collect_output(
    ctx: &mut Shared,
    output: SourceOutput,
    out: &mut Vec<OutgoingRecord>,
) -> Result<(), ProcessError> {
    for session in &output.sessions {
        out.push(codec::session_record(&ctx.topics.sessions, session)?);
    }
    ctx.report.sessions_out += output.sessions.len() as u64;
    let topic = &ctx.topics.partials;
    let mut partials = 0u64;
    for partial in output.viewer_partials {
        let key = partial.stream_id.clone();
        out.push(codec::repartition_keyed(
            topic,
            key,
            &RepartitionRecord::Viewers(partial),
        )?);
        partials += 1;
    }
    for partial in output.daily_partials {
        let key = partial.stream_id.clone();
        out.push(codec::repartition_keyed(
            topic,
            key,
            &RepartitionRecord::Daily(partial),
        )?);
        partials += 1;
    }
    for candidate in output.resume_candidates {
        let key = resume_key(&candidate.user_id, &candidate.stream_id);
        out.push(codec::repartition_keyed(
            topic,
            key,
            &RepartitionRecord::Resume(candidate),
        )?);
        partials += 1;
    }
    ctx.report.partials_out += partials;
    Ok(())
}
