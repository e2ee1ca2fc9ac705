//! One input partition of the sink, and the writer that drives the lake protocol
//! for it (DESIGN.md section 9).
//!
//! Data flow: when the group assigns a partition, [`Writer::restore`] loads its
//! manifest from the checkpoint scope `<group>.<topic>-<partition>` (or starts a
//! fresh one) and pins the files of cuts recorded before a crash. Records then go
//! through [`Writer::ingest`]: decode ([`DecodeRow`], on this thread and a helper,
//! [`crate::decode`]) → admit (dedup by natural key,
//! skip what is durable) → the writer pool; while recorded cuts are replayed, their
//! files are finished exactly at each cut's last offset, checked against the cut and
//! published again, then the manifest commits. Files that the rolling policy, a
//! drain or a revocation finishes go through [`Writer::flush`]: record the cuts, then
//! a [`Flight`] saves the intent checkpoint and publishes every file beside the
//! decoding thread; [`Writer::land`] collects it between polls, commits and starts
//! the commit save (with the intent of files that finished meanwhile).
//! [`Writer::settle`] waits for all of it (drain, revocation, shutdown). Positions
//! advance only in a commit save, after the files they cover are durable. Every
//! save first writes the dedup keys learnt since the previous one as a key segment
//! (a checkpoint attachment) that the manifest then lists; a restore reads them back
//! and deletes orphan segments (DESIGN.md section 9).

use std::collections::VecDeque;

use bytes::Bytes;
use playlake_checkpoint::{CheckpointStore, Lake, Position, Sequence};
use playlake_lake::{
    DecodeRow, FinishedFile, LakeError, LakeRow, LakeStore, PartitionPath, RollReason,
    SinkManifest, SourcePartition, WriterPool,
};
use playlake_schemas::{
    ChangeEvent, DailyStat, DlqRecord, PlaybackEvent, Session, Table, ViewerWindow,
};
use playlake_transport::TopicPartition;

use crate::config::SinkReport;
use crate::decode::{Chunk, Decoded, RowDecoder, Skips};
use crate::error::{Result, SinkError};
use crate::flight::{self, Flight, Job, JobIo};
use crate::metrics::SinkMetrics;
use crate::retry::{Backoff, RetryBudget};

/// The stage name of the sink's checkpoints.
pub const CHECKPOINT_STAGE: &str = "sink";

/// The checkpoint scope of one input partition.
pub fn checkpoint_scope(group_id: &str, topic: &str, partition: i32) -> String {
    format!("{group_id}.{topic}-{partition}")
}

/// What the sink knows about one assigned input partition.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub tp: TopicPartition,
    pub source: SourcePartition,
    pub table: Table,
    pub manifest: SinkManifest,
    /// The partition's checkpoint store; `None` while `flight` holds it.
    pub checkpoint: Option<CheckpointStore>,
    pub scope: String,
    /// The save and publishes running beside the decoding thread, if any.
    pub flight: Option<Flight>,
    /// Batches of finished files waiting for the running flight to land before
    /// their flush, oldest first (at most one cut per directory in a batch).
    pub queued: VecDeque<Vec<(FinishedFile, RollReason)>>,
    /// The offset after the last record processed, once one was.
    pub next_offset: Option<i64>,
    /// The consumer reported the end of the partition and nothing came since.
    pub caught_up: bool,
    /// Whether the manifest was restored from a checkpoint.
    pub restored: bool,
}

impl PartitionState {
    /// False for a record at `offset` that the transport delivered again (below the
    /// replay position or the offsets already processed).
    fn unread(&self, offset: i64) -> bool {
        offset >= self.manifest.replay_from() && self.next_offset.is_none_or(|n| offset >= n)
    }

    /// True while recorded cuts of a previous run are still being re-made.
    pub fn replaying(&self) -> bool {
        !self.manifest.replay_complete()
    }

    fn position(&self, next: i64) -> Vec<Position> {
        vec![Position::new(
            self.tp.topic.clone(),
            self.tp.partition,
            next,
        )]
    }
}

/// The writer pool, the lake store and the counters, shared by every partition.
#[derive(Debug)]
pub(crate) struct Writer {
    pub pool: WriterPool,
    pub store: LakeStore,
    /// Records to rows (and their directories and key digests).
    pub decoder: RowDecoder,
    pub retry: RetryBudget,
    pub dedup_retention_ms: i64,
    pub report: SinkReport,
    pub metrics: SinkMetrics,
    /// Positions saved since the consumer last committed its group offsets.
    pub to_commit: Vec<(TopicPartition, i64)>,
}

/// Loads of a manifest whose key segments vanished meanwhile, before giving up.
const LOAD_ATTEMPTS: usize = 5;

/// A writer id usable in an object name (ASCII letters, digits, `.`, `_`, `-`).
fn segment_tag(writer_id: &str) -> String {
    writer_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The wall clock in epoch milliseconds (rolling by interval, dedup retention).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Writer {
    /// Loads the manifest of `tp` (or a fresh one) and pins its pending cuts' files.
    pub async fn restore(
        &mut self,
        lake: &Lake,
        group_id: &str,
        tp: TopicPartition,
        table: Table,
    ) -> Result<PartitionState> {
        let scope = checkpoint_scope(group_id, &tp.topic, tp.partition);
        let mut checkpoint = CheckpointStore::new(lake, CHECKPOINT_STAGE, &scope).map_err(|e| {
            SinkError::Checkpoint {
                operation: "open",
                scope: scope.clone(),
                attempts: 1,
                source: Box::new(e),
            }
        })?;
        let started = std::time::Instant::now();
        let source = SourcePartition {
            topic: tp.topic.clone(),
            partition: tp.partition,
        };
        let (loaded, restored_bytes) = self.load_manifest(&mut checkpoint, &scope).await?;
        let stage = &self.metrics.stage;
        stage
            .checkpoint_restore_seconds
            .observe(started.elapsed().as_secs_f64());
        let restored = loaded.is_some();
        if restored {
            stage.checkpoint_size_bytes.observe(restored_bytes as f64);
        }
        let manifest = match loaded {
            Some((sequence, manifest)) => {
                Self::delete_orphan_segments(&checkpoint, sequence, &manifest).await;
                manifest
            }
            None => SinkManifest::new(&source, 0),
        };
        if manifest.source() != source {
            return Err(SinkError::lake(
                "restore the manifest",
                LakeError::Manifest {
                    reason: format!(
                        "checkpoint {scope} holds the manifest of {}/{}",
                        manifest.source().topic,
                        manifest.source().partition
                    ),
                },
            ));
        }
        for key in manifest
            .pending_file_keys()
            .map_err(|e| SinkError::lake("pin the pending cuts", e))?
        {
            self.pool.pin(key);
        }
        tracing::info!(
            partition = %tp,
            replay_from = manifest.replay_from(),
            pending_cuts = manifest.pending().len(),
            dedup_keys = manifest.remembered_keys(),
            key_segments = manifest.key_segments().len(),
            restored_bytes,
            restore_ms = started.elapsed().as_millis() as u64,
            restored,
            "sink partition restored"
        );
        Ok(PartitionState {
            tp,
            source,
            table,
            manifest,
            checkpoint: Some(checkpoint),
            scope,
            flight: None,
            queued: VecDeque::new(),
            next_offset: None,
            caught_up: false,
            restored,
        })
    }

    /// Loads the latest manifest of a scope and the key segments of its dedup index
    /// (with the bytes read). A segment missing means a newer writer superseded that
    /// checkpoint meanwhile: load again.
    async fn load_manifest(
        &mut self,
        checkpoint: &mut CheckpointStore,
        scope: &str,
    ) -> Result<(Option<(Sequence, SinkManifest)>, usize)> {
        let mut backoff = Backoff::new("load", &self.retry);
        let retries = self.metrics.stage.retries("checkpoint_load");
        for _ in 0..LOAD_ATTEMPTS {
            let loaded = loop {
                let call = checkpoint.load_latest();
                if let Some(loaded) = backoff.attempt(scope, &retries, call).await? {
                    break loaded;
                }
            };
            let Some(found) = loaded else {
                return Ok((None, 0));
            };
            let mut bytes_read = found.state.len();
            let mut manifest = SinkManifest::decode(&found.state)
                .map_err(|e| SinkError::lake("decode the restored manifest", e))?;
            let mut complete = true;
            for segment in manifest.key_segments().to_vec() {
                let read = loop {
                    let call = checkpoint.get_attachment(&segment.name);
                    if let Some(read) = backoff.attempt(scope, &retries, call).await? {
                        break read;
                    }
                };
                let Some(bytes) = read else {
                    tracing::warn!(scope, segment = %segment.name,
                        "key segment gone (a newer writer replaced the checkpoint); loading again");
                    complete = false;
                    break;
                };
                bytes_read += bytes.len();
                manifest
                    .load_key_segment(&segment.name, &bytes)
                    .map_err(|e| SinkError::lake("read a key segment of the dedup index", e))?;
            }
            if complete && manifest.keys_loaded() {
                return Ok((Some((found.sequence, manifest)), bytes_read));
            }
        }
        Err(SinkError::lake(
            "restore the manifest",
            LakeError::Manifest {
                reason: format!(
                    "the key segments of checkpoint {scope} kept disappearing during \
                     {LOAD_ATTEMPTS} attempts (another sink instance keeps replacing it?)"
                ),
            },
        ))
    }

    /// Deletes key segments that no checkpoint will list again: not in the restored
    /// manifest and written for a sequence up to the restored one (orphans of saves
    /// that crashed, retirements whose delete failed). Failures only log.
    async fn delete_orphan_segments(
        checkpoint: &CheckpointStore,
        sequence: Sequence,
        manifest: &SinkManifest,
    ) {
        let names = match checkpoint.list_attachments().await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(error = %error, "could not list key segments to clean up");
                return;
            }
        };
        let listed: std::collections::HashSet<&str> = manifest
            .key_segments()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        for name in names {
            let written_for = name
                .split('-')
                .next()
                .and_then(|digits| digits.parse::<u64>().ok());
            if listed.contains(name.as_str()) || written_for.is_none_or(|n| n > sequence.get()) {
                continue;
            }
            if let Err(error) = checkpoint.delete_attachment(&name).await {
                tracing::warn!(segment = %name, error = %error, "could not delete an orphan key segment");
            }
        }
    }

    /// Feeds records of one partition (in offset order) to the pool; re-makes and
    /// publishes recorded cuts that end among them, and commits once all are re-made.
    /// `next`: the partition's chunk that comes next, if the caller has it already
    /// (decoded ahead while this one is admitted and written).
    pub async fn ingest(
        &mut self,
        st: &mut PartitionState,
        records: &Chunk,
        next: Option<&Chunk>,
    ) -> Result<()> {
        let remade = match st.table {
            Table::Sessions => self.ingest_rows::<Session>(st, records, next)?,
            Table::Viewers => self.ingest_rows::<ViewerWindow>(st, records, next)?,
            Table::Daily => self.ingest_rows::<DailyStat>(st, records, next)?,
            Table::Events => self.ingest_rows::<PlaybackEvent>(st, records, next)?,
            Table::Cdc => self.ingest_rows::<ChangeEvent>(st, records, next)?,
            Table::Errors => self.ingest_rows::<DlqRecord>(st, records, next)?,
        };
        if remade.is_empty() {
            return Ok(());
        }
        self.settle(st).await?;
        let io = self.job_io();
        for file in &remade {
            flight::publish(&io, file).await?;
            self.published(file, RollReason::Cut);
        }
        if st.manifest.replay_complete() {
            self.commit_now(st).await?;
        }
        Ok(())
    }

    fn ingest_rows<R: DecodeRow>(
        &mut self,
        st: &mut PartitionState,
        chunk: &Chunk,
        next: Option<&Chunk>,
    ) -> Result<Vec<FinishedFile>> {
        let records = chunk.records();
        let mut rows: Vec<(PartitionPath, i64, R)> = Vec::with_capacity(records.len());
        let mut remade = Vec::new();
        // While recorded cuts are re-made, record by record: a cut's file must end
        // exactly at its offset.
        for record in records {
            if !st.replaying() {
                break;
            }
            let offset = record.offset;
            if !st.unread(offset) {
                continue;
            }
            self.remake_due(st, offset - 1, &mut rows, &mut remade)?;
            st.next_offset = Some(offset + 1);
            let mut skips = Skips::default();
            let decoded = self
                .decoder
                .decode::<R>(record, st.manifest.key_hasher(), &mut skips);
            skips.add_to(&mut self.report);
            if let Some(Decoded { info, row }) = decoded {
                let admit = st
                    .manifest
                    .admit(info.path.as_str(), info.key, offset, info.record_ms);
                if self.report.tally(admit) {
                    rows.push((info.path, offset, row));
                }
            }
            self.remake_due(st, offset, &mut rows, &mut remade)?;
        }
        if !st.replaying() {
            // Replay, once complete, never starts again: the rest of the poll is one
            // batch.
            let done = st.next_offset.unwrap_or(i64::MIN);
            let rest = records.partition_point(|r| r.offset < done);
            self.ingest_batch(st, &chunk.skip(rest), next, &mut rows)?;
        }
        self.write(st, rows)?;
        Ok(remade)
    }

    /// Decodes `chunk` (no recorded cut is being re-made), then admits its rows in
    /// offset order. Deciding after decoding lets the dedup index look the whole
    /// chunk up first ([`SinkManifest::warm`]). When every row is admitted into one
    /// directory (a busy partition's usual case) and `rows` is empty, the decoded
    /// rows go to their file as they are; otherwise the rows to write are appended
    /// to `rows`.
    fn ingest_batch<R: DecodeRow>(
        &mut self,
        st: &mut PartitionState,
        chunk: &Chunk,
        next: Option<&Chunk>,
        rows: &mut Vec<(PartitionPath, i64, R)>,
    ) -> Result<()> {
        let unread = chunk.records().partition_point(|r| !st.unread(r.offset));
        let chunk = chunk.skip(unread);
        let Some(last_record) = chunk.records().last() else {
            return Ok(());
        };
        st.next_offset = Some(last_record.offset + 1);
        let mut skips = Skips::default();
        let pieces = self
            .decoder
            .decode_all::<R>(&chunk, st.manifest.key_hasher(), &mut skips);
        skips.add_to(&mut self.report);
        if let Some(next) = next {
            // The helper decodes it while this thread admits and writes these rows.
            self.decoder
                .decode_ahead::<R>(next, st.manifest.key_hasher());
        }
        let info = || pieces.iter().flat_map(|p| &p.info);
        let Some((path, first)) = info().next().map(|i| (i.path.clone(), i.offset)) else {
            return Ok(()); // no row in the chunk
        };
        st.manifest.warm(info().map(|i| &i.key));
        let mut keep = Vec::with_capacity(info().count());
        let (mut one_directory, mut last) = (true, first);
        for i in info() {
            let admit = st
                .manifest
                .admit(i.path.as_str(), i.key, i.offset, i.record_ms);
            keep.push(self.report.tally(admit));
            one_directory &= i.path == path;
            last = i.offset;
        }
        if rows.is_empty() && one_directory && keep.iter().all(|k| *k) {
            let pieces: Vec<Vec<R>> = pieces.into_iter().map(|p| p.rows).collect();
            let recycle = Some(self.decoder.bin::<R>());
            return self
                .pool
                .write_row_pieces(&st.source, path, pieces, first, last, now_ms(), recycle)
                .map_err(|e| SinkError::lake("write rows", e));
        }
        let mut keep = keep.into_iter();
        for piece in pieces {
            for (i, row) in piece.info.into_iter().zip(piece.rows) {
                if keep.next().unwrap_or(false) {
                    rows.push((i.path, i.offset, row));
                }
            }
        }
        Ok(())
    }

    fn write<R: LakeRow>(
        &mut self,
        st: &PartitionState,
        rows: Vec<(PartitionPath, i64, R)>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.pool
            .write_partitioned_rows(&st.source, rows, now_ms())
            .map_err(|e| SinkError::lake("write rows", e))
    }

    /// Finishes the files of recorded cuts that end at or before `through`.
    fn remake_due<R: LakeRow>(
        &mut self,
        st: &mut PartitionState,
        through: i64,
        rows: &mut Vec<(PartitionPath, i64, R)>,
        remade: &mut Vec<FinishedFile>,
    ) -> Result<()> {
        let due = st.manifest.due_cuts(through);
        if due.is_empty() {
            return Ok(());
        }
        self.write(st, std::mem::take(rows))?;
        for cut in due {
            let missing = || LakeError::Manifest {
                reason: format!("recorded cut {cut:?} has no open file to re-make it from"),
            };
            let path = PartitionPath::from_relative(&cut.path)
                .ok_or_else(|| SinkError::lake("re-make a recorded cut", missing()))?;
            let key = (path, st.source.clone());
            let file = self
                .pool
                .finish(&key)
                .map_err(|e| SinkError::lake("finish a re-made file", e))?
                .ok_or_else(|| SinkError::lake("re-make a recorded cut", missing()))?;
            st.manifest
                .remade(&file)
                .map_err(|e| SinkError::lake("check a re-made file", e))?;
            tracing::info!(partition = %st.tp, file = %file.name, "recorded cut re-made");
            remade.push(file);
        }
        Ok(())
    }

    /// Records the cuts of finished files and starts their flush (intent save, then
    /// publish) beside the decoding thread ([`Flight`]). Files of a partition whose
    /// previous flush is still running wait for it in `queued`; when a batch already
    /// waits, this waits for the running flight first, so a partition holds at most
    /// one flight and one waiting batch of finished files.
    pub async fn flush(
        &mut self,
        st: &mut PartitionState,
        files: Vec<(FinishedFile, RollReason)>,
    ) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        // Queued before anything else: a commit must see every finished file that
        // is not published yet (`commit_position`).
        st.queued.push_back(files);
        if st.flight.is_none() {
            return self.start_next(st);
        }
        while st.queued.len() > 1 {
            self.land(st, true).await?;
        }
        Ok(())
    }

    /// Starts the flush of the oldest waiting batch, if any.
    fn start_next(&mut self, st: &mut PartitionState) -> Result<()> {
        match st.queued.pop_front() {
            Some(files) => self.start_flush(st, files),
            None => Ok(()),
        }
    }

    fn start_flush(
        &mut self,
        st: &mut PartitionState,
        files: Vec<(FinishedFile, RollReason)>,
    ) -> Result<()> {
        st.manifest
            .record_cuts(files.iter().map(|(f, _)| f))
            .map_err(|e| SinkError::lake("record the cuts", e))?;
        let next = st.manifest.replay_from();
        let mut job = self.prepare(st, "save the intent", next, None)?;
        job.files = files;
        self.launch(st, job)
    }

    /// Collects the partition's flight when it is over (waits for it with `wait`).
    /// After published files it commits and launches the commit save, which also
    /// records the cuts of files that rolled meanwhile; after a commit save it
    /// starts the flush of files that wait.
    pub async fn land(&mut self, st: &mut PartitionState, wait: bool) -> Result<()> {
        let Some(flight) = st.flight.take() else {
            return Ok(());
        };
        if !wait && !flight.is_done() {
            st.flight = Some(flight);
            return Ok(());
        }
        let (checkpoint, job, outcome) = flight.land(&st.scope).await?;
        st.checkpoint = Some(checkpoint);
        outcome?;
        let published = !job.files.is_empty();
        let files_started = job.files_started;
        self.conclude(job);
        if !published {
            return self.start_next(st);
        }
        // Every file of the flight is durable: commit, merged with the intent of
        // the oldest batch that rolled meanwhile (waiting files hold `next` back).
        let next = self.commit_position(st);
        self.commit_manifest(st, next)?;
        let files = st.queued.pop_front().unwrap_or_default();
        st.manifest
            .record_cuts(files.iter().map(|(f, _)| f))
            .map_err(|e| SinkError::lake("record the cuts", e))?;
        let operation = if files.is_empty() {
            "save the commit"
        } else {
            "save the commit and intent"
        };
        let mut job = self.prepare(st, operation, next, Some(files_started))?;
        job.files = files;
        self.launch(st, job)
    }

    /// Waits until the partition has no flight and no files waiting: everything
    /// finished so far is published and committed.
    pub async fn settle(&mut self, st: &mut PartitionState) -> Result<()> {
        while st.flight.is_some() || !st.queued.is_empty() {
            if st.flight.is_none() {
                self.start_next(st)?;
            }
            self.land(st, true).await?;
        }
        Ok(())
    }

    /// Finishes and flushes every open file of the partition and waits until they
    /// are committed (drain, shutdown, revocation).
    pub async fn finish_partition(&mut self, st: &mut PartitionState) -> Result<()> {
        let files = self
            .pool
            .finish_source(&st.source)
            .map_err(|e| SinkError::lake("finish files", e))?;
        let files = files.into_iter().map(|f| (f, RollReason::Cut)).collect();
        self.flush(st, files).await?;
        self.settle(st).await
    }

    /// Commits and saves in place (after re-made cuts were published).
    async fn commit_now(&mut self, st: &mut PartitionState) -> Result<()> {
        let next = self.commit_position(st);
        self.commit_manifest(st, next)?;
        let mut job = self.prepare(st, "save the commit", next, Some(std::time::Instant::now()))?;
        let mut checkpoint = st.checkpoint.take().ok_or_else(|| in_flight(st))?;
        let outcome = flight::run(&mut checkpoint, &mut job, &self.job_io()).await;
        st.checkpoint = Some(checkpoint);
        outcome?;
        self.conclude(job);
        Ok(())
    }

    /// The position a commit may save: the first offset still only in an open
    /// file or in a finished file not yet published, else the next unread offset.
    fn commit_position(&self, st: &PartitionState) -> i64 {
        let waiting = st
            .queued
            .iter()
            .flatten()
            .map(|(f, _)| f.first_offset)
            .min();
        let open = self.pool.first_open_offset(&st.source);
        [waiting, open]
            .into_iter()
            .flatten()
            .min()
            .or(st.next_offset)
            .unwrap_or(st.manifest.replay_from())
            .max(st.manifest.replay_from())
    }

    fn commit_manifest(&mut self, st: &mut PartitionState, next: i64) -> Result<()> {
        let cutoff = now_ms().saturating_sub(self.dedup_retention_ms);
        st.manifest
            .commit(next, cutoff)
            .map_err(|e| SinkError::lake("commit the manifest", e))
    }

    /// A save of the manifest as it is now, with position `next`: cheap, the new
    /// keys are framed and written by the job. `commits`: when the flush this save
    /// commits started (a commit save). Files added to the job flush from now.
    fn prepare(
        &mut self,
        st: &mut PartitionState,
        operation: &'static str,
        next: i64,
        commits: Option<std::time::Instant>,
    ) -> Result<Job> {
        let checkpoint = st.checkpoint.as_ref().ok_or_else(|| in_flight(st))?;
        // The keys learnt since the last save go first, into their own segment: the
        // manifest saved next lists it, so it must be durable before.
        let name = format!(
            "{:020}-{}.keys",
            checkpoint.next_sequence().get(),
            segment_tag(checkpoint.writer_id())
        );
        let segment = st.manifest.seal_keys(&name).map(|keys| (name, keys));
        let state = Bytes::from(
            st.manifest
                .encode()
                .map_err(|e| SinkError::lake("encode the manifest", e))?,
        );
        Ok(Job {
            operation,
            scope: st.scope.clone(),
            segment,
            state,
            positions: st.position(next),
            retired: st.manifest.take_retired(),
            files: Vec::new(),
            commits: commits.map(|since| (st.tp.clone(), next, since)),
            files_started: std::time::Instant::now(),
        })
    }

    fn launch(&mut self, st: &mut PartitionState, job: Job) -> Result<()> {
        let checkpoint = st.checkpoint.take().ok_or_else(|| in_flight(st))?;
        st.flight = Some(Flight::launch(checkpoint, job, self.job_io()));
        Ok(())
    }

    /// Books what a successful job did: its files in the report and metrics, its
    /// committed position for the group offsets.
    fn conclude(&mut self, job: Job) {
        for (file, reason) in &job.files {
            self.published(file, *reason);
        }
        if let Some((tp, next, since)) = job.commits {
            self.to_commit.push((tp, next));
            self.metrics
                .stage
                .commit_seconds
                .observe(since.elapsed().as_secs_f64());
        }
    }

    fn job_io(&self) -> JobIo {
        let stage = &self.metrics.stage;
        JobIo {
            store: self.store.clone(),
            retry: self.retry.clone(),
            checkpoint_retries: stage.retries("checkpoint_save"),
            publish_retries: stage.retries("publish"),
            checkpoint_write_seconds: stage.checkpoint_write_seconds.clone(),
            checkpoint_size_bytes: stage.checkpoint_size_bytes.clone(),
        }
    }

    fn published(&mut self, file: &FinishedFile, reason: RollReason) {
        let report = &mut self.report;
        *report
            .rows_written
            .entry(file.path.table().name().to_owned())
            .or_default() += file.rows;
        *report
            .files_by_reason
            .entry(reason.as_str().to_owned())
            .or_default() += 1;
        report.files_written += 1;
        report.bytes_written += file.bytes.len() as u64;
        self.metrics
            .file_published(file.path.table().name(), file.bytes.len());
        tracing::info!(
            file = %file.relative_path(),
            rows = file.rows,
            bytes = file.bytes.len(),
            reason = reason.as_str(),
            "file published"
        );
    }
}

/// The error for a checkpoint store that a flight holds when the decoding thread
/// needs it (a bug: every such path lands the flight first).
fn in_flight(st: &PartitionState) -> SinkError {
    SinkError::Background {
        scope: st.scope.clone(),
        reason: "the checkpoint store is still held by a running flight".to_owned(),
    }
}

/// An error and its causes on one line, for logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
