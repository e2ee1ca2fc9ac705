//! The run loop of `playlake sink`: consume, restore, write, roll, commit.
//!
//! Data flow: [`run`] subscribes to the input topics of the selected tables. Each
//! [`ConsumerEvent::Assigned`] partition is restored from its checkpoint and sought
//! to its `replay_from`; each batch of records goes to
//! [`Writer::ingest`](crate::partition::Writer); after every poll the rolling policy
//! is asked which files to finish (not while a partition is still re-making the cuts
//! of a previous run: those must end exactly where they were recorded), and their
//! partitions flush (intent, publish, commit). A [`ConsumerEvent::Revoked`]
//! partition finishes and commits its files first, or discards them when it can no
//! longer save. In drain mode the loop ends once every assigned partition reported
//! [`ConsumerEvent::EndOfPartition`]; on `shutdown` it finishes and commits every
//! open file. Either way it returns a [`SinkReport`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use playlake_checkpoint::Lake;
use playlake_lake::{LakeStore, PartitionConfig, PublishMode, WriterPool};
use playlake_schemas::Table;
use playlake_transport::{
    Consumer, ConsumerEvent, Position, Record, TopicPartition, TopicSpec, Transport,
};

use crate::config::{SinkConfig, SinkReport};
use crate::decode::{Chunk, RowDecoder};
use crate::error::{Result, SinkError};
use crate::metrics::SinkMetrics;
use crate::partition::{error_chain, now_ms, PartitionState, Writer};
use crate::retry::RetryBudget;

const MAX_POLL_RECORDS: usize = 10_000;
/// At most this many records of a partition are written between two looks at the
/// rolling policy (fewer when `max_rows_per_file` is smaller).
const MAX_CHUNK_RECORDS: u64 = 1_000;
/// ... and at most about this many bytes of them (keys and values; a chunk holds
/// one record at least). A chunk's rows wait in the encoder's queue as at most one
/// batch per directory, so this is what bounds that queue's memory with large
/// records (a DynamoDB item may hold 400 KB, a cdc record two of them).
const MAX_CHUNK_BYTES: usize = 1 << 20;
const POLL_TIMEOUT: Duration = Duration::from_millis(200);

/// Runs the sink until `shutdown` completes (or, with `config.drain`, until every
/// assigned partition is written to its end), then finishes and commits every open
/// file and returns what was done.
///
/// `lake` is the opened lake (`playlake_checkpoint::Lake::open(url)`): files and the
/// checkpoints under `_playlake/` go to its store and root. Dropping the returned
/// future is a crash: nothing is lost, the next run replays from the checkpoints.
pub async fn run(
    transport: Arc<dyn Transport>,
    lake: Lake,
    config: SinkConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<SinkReport> {
    run_with_metrics(
        transport,
        lake,
        config,
        SinkMetrics::unregistered(),
        shutdown,
    )
    .await
}

/// [`run`], reporting into `metrics` (made from the process's shared registry).
pub async fn run_with_metrics(
    transport: Arc<dyn Transport>,
    lake: Lake,
    config: SinkConfig,
    metrics: SinkMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<SinkReport> {
    config.validate()?;
    let topics = config.topics()?;
    for topic in topics.keys() {
        transport
            .ensure_topic(&TopicSpec::new(topic.clone(), config.topic_partitions))
            .await
            .map_err(|e| SinkError::transport("create a missing input topic", e))?;
    }
    let mut consumer = transport
        .consumer(&config.group_id)
        .map_err(|e| SinkError::transport("create the consumer", e))?;
    let names: Vec<String> = topics.keys().cloned().collect();
    consumer
        .subscribe(&names)
        .map_err(|e| SinkError::transport("subscribe to the input topics", e))?;
    let pool = WriterPool::new(&config.parquet_options(), config.roll_policy())
        .map_err(|e| SinkError::config("parquet options / roll policy", error_chain(&e)))?;
    let store = LakeStore::new(
        Arc::clone(lake.store()),
        lake.root().clone(),
        PublishMode::for_url(lake.url()),
    );
    let mut sink = Sink {
        writer: Writer {
            pool,
            store,
            decoder: RowDecoder::new(
                PartitionConfig {
                    time_zone: config.time_zone,
                },
                lake.url().starts_with("file://").then_some(255),
            ),
            retry: RetryBudget::new(Duration::from_secs(config.storage_retry_max_seconds)),
            dedup_retention_ms: i64::try_from(config.dedup_retention_seconds)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
            report: SinkReport::default(),
            metrics,
            to_commit: Vec::new(),
        },
        partitions: BTreeMap::new(),
        topics,
        lake,
        group_id: config.group_id.clone(),
        assigned_once: false,
        fenced: Vec::new(),
        chunk_records: usize::try_from(config.max_rows_per_file.clamp(1, MAX_CHUNK_RECORDS))
            .unwrap_or(1),
    };
    tracing::info!(topics = ?names, group = %config.group_id, drain = config.drain, "sink started");
    let outcome = sink
        .run_until_stopped(consumer.as_mut(), config.drain, shutdown)
        .await;
    if let Err(e) = consumer.close().await {
        tracing::warn!(error = %error_chain(&e), "closing the consumer failed");
    }
    sink.writer.metrics.follow_report(&sink.writer.report);
    outcome?;
    tracing::info!(report = ?sink.writer.report, "sink stopped");
    Ok(sink.writer.report)
}

struct Sink {
    writer: Writer,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    topics: BTreeMap<String, Table>,
    lake: Lake,
    group_id: String,
    assigned_once: bool,
    /// Partitions whose checkpoint was fenced, to restore again if still ours.
    fenced: Vec<TopicPartition>,
    /// Records ingested between two looks at the rolling policy.
    chunk_records: usize,
}

impl Sink {
    /// Runs the loop while watching `shutdown` even in the middle of a step: a
    /// shutdown during a storage outage stops the retries (the loop itself notices
    /// the request at its next poll), so SIGTERM is served within the deadline. An
    /// interrupted retry is a clean stop: nothing was committed past durable files.
    async fn run_until_stopped(
        &mut self,
        consumer: &mut dyn Consumer,
        drain: bool,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let budget = self.writer.retry.clone();
        let outcome = {
            let body = self.run(consumer, drain);
            tokio::pin!(body);
            tokio::pin!(shutdown);
            tokio::select! {
                outcome = &mut body => outcome,
                () = &mut shutdown => {
                    tracing::info!("shutdown requested: finishing open files");
                    budget.stop();
                    body.await
                }
            }
        };
        match outcome {
            Err(e) if e.is_interrupted() => {
                tracing::warn!(error = %error_chain(&e),
                    "stopped during a storage outage; files not yet durable are re-made from the last checkpoint on the next start");
                Ok(())
            }
            other => other,
        }
    }

    async fn run(&mut self, consumer: &mut dyn Consumer, drain: bool) -> Result<()> {
        loop {
            if self.writer.retry.stopping() {
                return self.finish_all().await;
            }
            let events = consumer
                .poll(MAX_POLL_RECORDS, POLL_TIMEOUT)
                .await
                .map_err(|e| SinkError::transport("poll", e))?;
            for event in events {
                self.handle(consumer, event).await?;
            }
            self.roll().await?;
            self.restore_fenced(consumer).await?;
            self.commit_offsets(consumer).await;
            let metrics = &mut self.writer.metrics;
            metrics.follow_report(&self.writer.report);
            metrics.stage.set_ready(self.assigned_once);
            metrics
                .stage
                .assigned_partitions
                .set(i64::try_from(self.partitions.len()).unwrap_or(i64::MAX));
            if drain && self.assigned_once && self.partitions.values().all(|p| p.caught_up) {
                tracing::info!(
                    partitions = self.partitions.len(),
                    "drained every partition"
                );
                self.finish_all().await?;
                self.commit_offsets(consumer).await;
                return Ok(());
            }
        }
    }

    async fn handle(&mut self, consumer: &mut dyn Consumer, event: ConsumerEvent) -> Result<()> {
        match event {
            ConsumerEvent::Assigned(tps) => {
                self.assigned_once = true;
                for tp in tps {
                    let Some(table) = self.topics.get(&tp.topic).copied() else {
                        continue;
                    };
                    self.restore(consumer, tp, table).await?;
                }
            }
            ConsumerEvent::Revoked(tps) => {
                for tp in tps {
                    let Some(mut st) = self.partitions.remove(&tp) else {
                        continue;
                    };
                    if st.replaying() {
                        // Its recorded cuts are not re-made yet: the next owner
                        // restores and re-makes them from the same checkpoint.
                        self.writer.pool.discard_source(&st.source);
                        continue;
                    }
                    let outcome = self.writer.finish_partition(&mut st).await;
                    self.settle(&mut st, outcome)?;
                }
            }
            ConsumerEvent::Records(records) => {
                self.writer
                    .metrics
                    .stage
                    .records_in
                    .inc_by(records.len() as u64);
                for (tp, records) in by_partition(records) {
                    // A backlog ahead: size the dedup index for it once.
                    let end = consumer.end_offset_hint(&tp);
                    if let (Some(end), Some(first), Some(st)) =
                        (end, records.first(), self.partitions.get_mut(&tp))
                    {
                        st.manifest.expect_records(end - first.offset);
                    }
                    // In chunks, with the rolling policy asked after each, so a big
                    // poll does not overshoot the row and size limits by much.
                    let mut chunks =
                        Chunk::split(records, self.chunk_records, MAX_CHUNK_BYTES).peekable();
                    while let Some(chunk) = chunks.next() {
                        let Some(mut st) = self.partitions.remove(&tp) else {
                            break; // revoked or fenced meanwhile
                        };
                        st.caught_up = false;
                        let outcome = self.writer.ingest(&mut st, &chunk, chunks.peek()).await;
                        if self.settle(&mut st, outcome)? {
                            self.partitions.insert(tp.clone(), st);
                        }
                        self.roll().await?;
                    }
                }
            }
            ConsumerEvent::EndOfPartition { partition, .. } => {
                if let Some(st) = self.partitions.get_mut(&partition) {
                    st.caught_up = true;
                }
            }
        }
        Ok(())
    }

    /// Restores a partition from its latest checkpoint and seeks it there.
    async fn restore(
        &mut self,
        consumer: &mut dyn Consumer,
        tp: TopicPartition,
        table: Table,
    ) -> Result<()> {
        let st = self
            .writer
            .restore(&self.lake, &self.group_id, tp.clone(), table)
            .await?;
        let position = if st.restored {
            Position::Offset(st.manifest.replay_from())
        } else {
            Position::Beginning
        };
        consumer
            .seek(&tp, position)
            .map_err(|e| SinkError::transport("seek an assigned partition", e))?;
        self.partitions.insert(tp, st);
        Ok(())
    }

    /// A fenced partition that the group still assigns to this member was saved by
    /// its previous owner after this member restored it (a rebalance race): restore
    /// it again from the newer checkpoint. Others are left to their new owner.
    async fn restore_fenced(&mut self, consumer: &mut dyn Consumer) -> Result<()> {
        if self.fenced.is_empty() {
            return Ok(());
        }
        let assigned = consumer.assignment();
        for tp in std::mem::take(&mut self.fenced) {
            let table = self.topics.get(&tp.topic).copied();
            if let (true, Some(table)) = (assigned.contains(&tp), table) {
                tracing::info!(partition = %tp, "restoring a fenced partition from its newest checkpoint");
                self.restore(consumer, tp, table).await?;
            }
        }
        Ok(())
    }

    /// Turns a partition's fence into dropping it (another instance owns it now and
    /// replays its rows itself); passes other errors on. `Ok(true)`: keep it.
    fn settle(&mut self, st: &mut PartitionState, outcome: Result<()>) -> Result<bool> {
        match outcome {
            Ok(()) => Ok(true),
            Err(e) if e.is_fenced() => {
                tracing::warn!(partition = %st.tp, error = %error_chain(&e),
                    "another sink instance took over this partition; dropping its open files");
                self.writer.pool.discard_source(&st.source);
                self.writer.report.fenced_partitions += 1;
                self.fenced.push(st.tp.clone());
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Collects the flights that are over, then finishes the files the rolling
    /// policy names and starts their partitions' flushes.
    async fn roll(&mut self) -> Result<()> {
        let landed: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.flight.as_ref().is_some_and(|f| f.is_done()))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in landed {
            let Some(mut st) = self.partitions.remove(&tp) else {
                continue;
            };
            let outcome = self.writer.land(&mut st, false).await;
            if self.settle(&mut st, outcome)? {
                self.partitions.insert(tp, st);
            }
        }
        if self.partitions.values().any(PartitionState::replaying) {
            return Ok(()); // recorded cuts decide where files end until they are re-made
        }
        let rolled = self
            .writer
            .pool
            .poll(now_ms())
            .map_err(|e| SinkError::lake("roll files", e))?;
        let mut by_source: BTreeMap<TopicPartition, Vec<_>> = BTreeMap::new();
        for (file, reason) in rolled {
            let tp = TopicPartition::new(file.source.topic.clone(), file.source.partition);
            by_source.entry(tp).or_default().push((file, reason));
        }
        for (tp, files) in by_source {
            let Some(mut st) = self.partitions.remove(&tp) else {
                continue;
            };
            let outcome = self.writer.flush(&mut st, files).await;
            if self.settle(&mut st, outcome)? {
                self.partitions.insert(tp, st);
            }
        }
        Ok(())
    }

    async fn finish_all(&mut self) -> Result<()> {
        let tps: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for tp in tps {
            let Some(mut st) = self.partitions.remove(&tp) else {
                continue;
            };
            if st.replaying() {
                tracing::warn!(partition = %tp,
                    "stopping before the recorded cuts were re-made; the next run re-makes them");
                self.writer.pool.discard_source(&st.source);
                continue;
            }
            let outcome = self.writer.finish_partition(&mut st).await;
            if self.settle(&mut st, outcome)? {
                self.partitions.insert(tp, st);
            }
        }
        Ok(())
    }

    /// Stores group offsets for lag monitoring (advisory; failures are only logged).
    async fn commit_offsets(&mut self, consumer: &mut dyn Consumer) {
        if self.writer.to_commit.is_empty() {
            return;
        }
        let positions = std::mem::take(&mut self.writer.to_commit);
        if let Err(e) = consumer.commit(&positions).await {
            tracing::warn!(error = %error_chain(&e), "committing group offsets failed (advisory)");
        }
    }
}

/// Records grouped by partition, each group in offset order.
fn by_partition(records: Vec<Record>) -> BTreeMap<TopicPartition, Vec<Record>> {
    // A poll of one partition (a busy partition's backlog) is kept as it came: no
    // record is moved.
    if let Some(first) = records.first() {
        let tp = first.topic_partition();
        if records
            .iter()
            .all(|r| r.partition == tp.partition && r.topic == tp.topic)
        {
            return BTreeMap::from([(tp, records)]);
        }
    }
    let mut out: BTreeMap<TopicPartition, Vec<Record>> = BTreeMap::new();
    for record in records {
        out.entry(record.topic_partition())
            .or_default()
            .push(record);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, offset: i64) -> Record {
        Record {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    fn offsets(groups: &BTreeMap<TopicPartition, Vec<Record>>) -> Vec<(String, i32, Vec<i64>)> {
        groups
            .iter()
            .map(|(tp, records)| {
                let offsets = records.iter().map(|r| r.offset).collect();
                (tp.topic.clone(), tp.partition, offsets)
            })
            .collect()
    }

    #[test]
    fn records_are_grouped_by_partition_in_offset_order() {
        let one = by_partition(vec![record("a", 1, 5), record("a", 1, 6)]);
        assert_eq!(offsets(&one), [("a".into(), 1, vec![5, 6])]);
        let mixed = by_partition(vec![
            record("a", 1, 5),
            record("b", 1, 9),
            record("a", 0, 2),
            record("a", 1, 6),
        ]);
        assert_eq!(
            offsets(&mixed),
            [
                ("a".into(), 0, vec![2]),
                ("a".into(), 1, vec![5, 6]),
                ("b".into(), 1, vec![9]),
            ]
        );
        let topics = by_partition(vec![record("a", 1, 5), record("b", 1, 6)]);
        assert_eq!(topics.len(), 2, "same partition number, two topics");
        let partitions = by_partition(vec![record("a", 0, 5), record("a", 1, 6)]);
        assert_eq!(partitions.len(), 2, "one topic, two partitions");
        assert!(by_partition(Vec::new()).is_empty());
    }
}
