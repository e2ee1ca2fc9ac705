//! Records to rows: the row of each record, its directory and its key digest, on
//! the sink's thread alone or split with one helper thread.
//!
//! Data flow: [`crate::partition::Writer::ingest`] hands a chunk of one partition's
//! records to [`RowDecoder::decode_all`] (or, while recorded cuts are re-made, one
//! record at a time to [`RowDecoder::decode`]); each record becomes a [`Decoded`]
//! row, or is counted in [`Skips`] and logged. The admit (dedup) and the write
//! that follow stay on the sink's thread, in offset order.
//!
//! Why a helper thread: decoding (JSON, the SPEC's validation and derived ids, the
//! directory, the key digest) is about two thirds of the sink's busiest thread, and
//! it depends on nothing but the record, so two threads can decode pieces of one
//! chunk at once (each takes the next piece, [`Shared`]). On the 2-core bench
//! machine that thread was the bottleneck (95% busy) while the Parquet encoder
//! left a third of a core idle. The result is the same rows in the same order
//! either way. The sink's thread never waits long for the helper: a piece the
//! helper has not finished within twice the sink's thread's own time per piece
//! is decoded again on the sink's thread (the helper may sit runnable for
//! milliseconds while the encoder holds the other core).
//!
//! Decoding ahead: once a chunk is decoded, the sink's thread admits and writes
//! its rows alone, and the helper would idle meanwhile. So the caller names the
//! chunk that comes next ([`RowDecoder::decode_ahead`]) and the helper starts on
//! its pieces at once; when that chunk's turn comes, [`RowDecoder::decode_all`]
//! finds the pieces the helper decoded and takes the rest as usual. Decoding
//! depends on nothing the admit changes, so the rows are the same; a chunk
//! decoded ahead that does not come next (another range, row type or hasher) is
//! abandoned: its rows go back to the bin and it is decoded again when it comes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use playlake_lake::{
    DecodeRow, KeyDigest, KeyHasher, PartitionConfig, PartitionPath, PathMemo, RecordMeta, RowBin,
};
use playlake_schemas::TimestampMs;
use playlake_transport::Record;

use crate::config::SinkReport;
use crate::partition::error_chain;

/// Below this many records a chunk is decoded on the sink's thread alone: waking
/// the helper costs microseconds, a record about one.
const SPLIT_MIN_RECORDS: usize = 256;

/// One decoded record, ready to be admitted and written.
#[derive(Debug)]
pub(crate) struct Decoded<R> {
    pub info: RowInfo,
    pub row: R,
}

/// What the admit and the grouping by directory need of a decoded row.
#[derive(Debug)]
pub(crate) struct RowInfo {
    pub path: PartitionPath,
    pub offset: i64,
    /// The record's timestamp (what the dedup index keeps with the key).
    pub record_ms: i64,
    pub key: KeyDigest,
}

/// Consecutive decoded records, the rows apart from their [`RowInfo`]: the rows
/// can go to the encoder thread as they are, without the sink's thread copying
/// them (they were often decoded on the other core, so that copy was a cache miss
/// per row).
#[derive(Debug)]
pub(crate) struct Piece<R> {
    pub info: Vec<RowInfo>,
    pub rows: Vec<R>,
}

impl<R> Piece<R> {
    /// An empty piece for `n` records whose rows vector comes from `bin` (old rows
    /// to decode into, when the encoder gave some back).
    fn recycled(n: usize, bin: &RowBin<R>) -> Self {
        Self {
            info: Vec::with_capacity(n),
            rows: bin.take(n),
        }
    }
}

/// Records that hold no row for the lake, by why (added to [`SinkReport`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skips {
    pub undecodable: u64,
    pub invalid_events: u64,
    pub path_too_long: u64,
}

impl Skips {
    fn add(&mut self, other: Skips) {
        self.undecodable += other.undecodable;
        self.invalid_events += other.invalid_events;
        self.path_too_long += other.path_too_long;
    }

    pub fn add_to(self, report: &mut SinkReport) {
        report.undecodable_records += self.undecodable;
        report.invalid_events_skipped += self.invalid_events;
        report.path_too_long_skipped += self.path_too_long;
    }
}

/// A run of one partition's records in offset order, shared (not copied) so that
/// the helper thread can decode part of it.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    records: Arc<Vec<Record>>,
    range: Range<usize>,
}

impl Chunk {
    /// `records` in runs of at most `max_records` records and, past the first
    /// record of a run, at most `max_bytes` bytes of keys and values.
    pub fn split(
        records: Vec<Record>,
        max_records: usize,
        max_bytes: usize,
    ) -> impl Iterator<Item = Chunk> {
        // `Arc<Vec<_>>`, not `Arc<[_]>`: the vector moves in, where converting it
        // to a slice copied every record struct of every poll (measured: 2-3% of
        // the sink benchmark's time).
        let records = Arc::new(records);
        let max_records = max_records.max(1);
        let mut start = 0;
        std::iter::from_fn(move || {
            let rest = records.get(start..)?;
            let first = rest.first()?;
            let mut bytes = record_bytes(first);
            let mut len = 1;
            for record in rest.iter().skip(1).take(max_records - 1) {
                bytes += record_bytes(record);
                if bytes > max_bytes {
                    break;
                }
                len += 1;
            }
            let range = start..start + len;
            start += len;
            Some(Chunk {
                records: Arc::clone(&records),
                range,
            })
        })
    }

    pub fn records(&self) -> &[Record] {
        &self.records[self.range.clone()]
    }

    /// The records from index `from` of this chunk on.
    pub fn skip(&self, from: usize) -> Chunk {
        let start = (self.range.start + from).min(self.range.end);
        Chunk {
            records: Arc::clone(&self.records),
            range: start..self.range.end,
        }
    }
}

/// What each decoding thread keeps from one record to the next.
#[derive(Debug, Default)]
struct Scratch {
    /// The directories of the latest rows (rendered once, shared by their rows).
    paths: PathMemo,
    /// The natural key being digested (one buffer, not one per row).
    key: Vec<u8>,
}

fn record_bytes(record: &Record) -> usize {
    record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len)
}

/// Work for the helper thread, given the helper's own scratch.
type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// A thread that decodes pieces of big chunks beside the sink's thread. It lives
/// as long as the decoder: a thread per chunk would start a fresh allocator heap
/// every time.
#[derive(Debug)]
struct Helper {
    jobs: mpsc::Sender<Job>,
}

impl Helper {
    fn start() -> std::io::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sink-decode".into())
            .spawn(move || {
                let mut scratch = Scratch::default();
                // Ends when the decoder (the only sender) is dropped.
                while let Ok(job) = inbox.recv() {
                    job(&mut scratch);
                }
            })?;
        Ok(Self { jobs })
    }
}

/// Records a piece holds: small enough that the sink's thread, once out of pieces,
/// waits little for the one the helper is still decoding.
const PIECE_RECORDS: usize = 128;

/// How long the sink's thread waits for a piece the helper is still decoding, in
/// units of its own time per piece, before it decodes that piece itself: a helper
/// that is running finishes well within that; one the scheduler took off its core
/// (the encoder holds the other one) may not run again for milliseconds.
const PATIENCE_PIECES: u32 = 2;

/// Bounds of that wait, whatever the pieces' time.
const MIN_PATIENCE: Duration = Duration::from_micros(20);
const MAX_PATIENCE: Duration = Duration::from_millis(5);

/// One chunk being decoded by both threads: each takes the next piece until none
/// is left, so a helper that is slow to be scheduled holds nobody up: the sink's
/// thread decodes what the helper has not taken, and briefly waits for a piece
/// the helper has taken but not finished before decoding that one too (the first
/// result is kept, the helper's is then recycled).
struct Shared<R> {
    cx: Context,
    bin: RowBin<R>,
    pieces: usize,
    next: AtomicUsize,
    state: Mutex<Pieces<R>>,
    changed: Condvar,
}

struct Pieces<R> {
    done: Vec<Option<(Piece<R>, Skips)>>,
    /// The helper died while decoding a piece (a panic): its piece stays `None`.
    helper_failed: bool,
    /// The helper's clone of the chunk until the helper starts on it. The sink's
    /// thread takes it back when it collects the pieces: a helper that had not
    /// started by then does nothing.
    their_chunk: Option<Chunk>,
    /// The sink's thread has taken the pieces: what the helper finishes later is
    /// a piece the sink's thread decoded itself, and its rows go back to the bin.
    collected: bool,
}

impl<R: DecodeRow> Shared<R> {
    fn pieces(&self) -> MutexGuard<'_, Pieces<R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decodes pieces until none is left to take; `helper` wakes the sink's thread
    /// (the only one that waits) after each. Returns how many pieces this thread
    /// decoded and the time they took.
    fn work(&self, chunk: &Chunk, scratch: &mut Scratch, helper: bool) -> (u32, Duration) {
        let records = chunk.records();
        let started = Instant::now();
        let mut decoded = 0;
        loop {
            let piece = self.next.fetch_add(1, Ordering::Relaxed);
            if piece >= self.pieces {
                return (decoded, started.elapsed());
            }
            decoded += 1;
            let start = piece * PIECE_RECORDS;
            let end = (start + PIECE_RECORDS).min(records.len());
            let mut rows = Piece::recycled(end - start, &self.bin);
            let mut skips = Skips::default();
            decode_into(
                self.cx,
                scratch,
                &records[start..end],
                &mut skips,
                &mut rows,
            );
            let mut state = self.pieces();
            if state.collected {
                drop(state);
                self.bin.give(std::iter::once(rows.rows));
            } else if let Some(slot) = state.done.get_mut(piece) {
                *slot = Some((rows, skips));
            }
            if helper {
                self.changed.notify_all();
            }
        }
    }
}

/// Tells the sink's thread when the helper unwinds out of [`Shared::work`].
struct PanicNotice<'a, R: DecodeRow>(&'a Shared<R>);

impl<R: DecodeRow> Drop for PanicNotice<'_, R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.pieces().helper_failed = true;
            self.0.changed.notify_all();
        }
    }
}

/// A chunk the helper decodes ahead, type-erased (the decoder holds one of any
/// row type).
trait Pending: Send {
    /// Stops the work: a helper that has not started does nothing, pieces done
    /// now or later go back to the bin.
    fn abandon(&self);

    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<R: DecodeRow> Pending for Arc<Shared<R>> {
    fn abandon(&self) {
        // No piece is taken from now on.
        self.next.store(self.pieces, Ordering::Relaxed);
        let mut state = self.pieces();
        let unstarted = state.their_chunk.take();
        state.collected = true;
        let done = std::mem::take(&mut state.done);
        drop(state);
        drop(unstarted);
        self.bin
            .give(done.into_iter().flatten().map(|(piece, _)| piece.rows));
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The chunk the helper is decoding ahead ([`RowDecoder::decode_ahead`]); abandoned
/// when dropped unused.
struct Ahead {
    chunk: Chunk,
    hasher: KeyHasher,
    row_type: TypeId,
    pending: Option<Box<dyn Pending>>,
}

impl Ahead {
    /// The work, if it is that of `chunk` decoded into `R` rows with `hasher`.
    fn take_if<R: DecodeRow>(
        &mut self,
        chunk: &Chunk,
        hasher: KeyHasher,
    ) -> Option<Arc<Shared<R>>> {
        let same = Arc::ptr_eq(&self.chunk.records, &chunk.records)
            && self.chunk.range == chunk.range
            && self.hasher == hasher
            && self.row_type == TypeId::of::<R>();
        if !same {
            return None;
        }
        let pending = self.pending.take()?;
        pending
            .into_any()
            .downcast::<Arc<Shared<R>>>()
            .ok()
            .map(|shared| *shared)
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abandon();
        }
    }
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead")
            .field("chunk", &self.chunk.range)
            .finish_non_exhaustive()
    }
}

/// Decodes records into rows; see the module docs.
#[derive(Debug)]
pub(crate) struct RowDecoder {
    config: PartitionConfig,
    /// The longest directory name the lake can hold: `Some(255)` on a local file
    /// system (NAME_MAX), `None` on object stores.
    max_dir_name_bytes: Option<usize>,
    scratch: Scratch,
    /// `None` on one core, or once the helper failed to start or died.
    helper: Option<Helper>,
    /// The [`RowBin`] of each row type decoded so far (by `TypeId`).
    bins: HashMap<TypeId, Box<dyn Any + Send>>,
    /// The last chunk decoded with the helper, held until the next one: the
    /// thread that lets go of a poll's records last frees them, and when that was
    /// the helper, freeing records allocated on the sink's thread cost 3% of the
    /// sink's CPU (mimalloc's cross-thread path). By the next chunk the helper has
    /// almost always dropped its clone.
    held: Option<Chunk>,
    /// The chunk the helper decodes ahead, until its turn.
    ahead: Option<Ahead>,
    /// The sink's thread's latest time per piece: the patience when the helper
    /// decoded every piece of a chunk ahead and this thread none.
    piece_time: Option<Duration>,
}

/// What decoding one record needs; copied to both threads.
#[derive(Debug, Clone, Copy)]
struct Context {
    config: PartitionConfig,
    max_dir_name_bytes: Option<usize>,
    hasher: KeyHasher,
}

impl RowDecoder {
    pub fn new(config: PartitionConfig, max_dir_name_bytes: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let helper = if cores > 1 {
            Helper::start()
                .inspect_err(|error| {
                    tracing::warn!(%error, "no decoding helper thread; decoding on one thread");
                })
                .ok()
        } else {
            None
        };
        Self {
            config,
            max_dir_name_bytes,
            scratch: Scratch::default(),
            helper,
            bins: HashMap::new(),
            held: None,
            ahead: None,
            piece_time: None,
        }
    }

    /// Where the encoder gives back the vectors of `R` rows it is done with, for
    /// this decoder to fill again.
    pub fn bin<R: DecodeRow>(&mut self) -> RowBin<R> {
        self.bins
            .entry(TypeId::of::<R>())
            .or_insert_with(|| Box::new(RowBin::<R>::default()))
            .downcast_ref::<RowBin<R>>()
            .cloned()
            // Unreachable (the map is keyed by the type); a bin of its own would
            // only mean no reuse.
            .unwrap_or_default()
    }

    /// The row of one record (`None`: counted in `skips` and logged).
    pub fn decode<R: DecodeRow>(
        &mut self,
        record: &Record,
        hasher: KeyHasher,
        skips: &mut Skips,
    ) -> Option<Decoded<R>> {
        decode_one(self.context(hasher), &mut self.scratch, record, skips)
    }

    fn context(&self, hasher: KeyHasher) -> Context {
        Context {
            config: self.config,
            max_dir_name_bytes: self.max_dir_name_bytes,
            hasher,
        }
    }

    /// The rows of `chunk` in its order, as consecutive pieces (moving the rows
    /// into one vector would copy every row once more, from the other core's cache).
    pub fn decode_all<R: DecodeRow>(
        &mut self,
        chunk: &Chunk,
        hasher: KeyHasher,
        skips: &mut Skips,
    ) -> Vec<Piece<R>> {
        let ahead = self
            .ahead
            .take()
            .and_then(|mut ahead| ahead.take_if::<R>(chunk, hasher));
        if let Some(shared) = ahead.or_else(|| self.share::<R>(chunk, hasher)) {
            let (pieces, took) = shared.work(chunk, &mut self.scratch, false);
            if let Some(per_piece) = took.checked_div(pieces) {
                self.piece_time = Some(per_piece);
            }
            let patience = self
                .piece_time
                .map_or(MAX_PATIENCE, |per_piece| per_piece * PATIENCE_PIECES)
                .clamp(MIN_PATIENCE, MAX_PATIENCE);
            return self.collect(chunk, &shared, skips, patience);
        }
        vec![self.decode_here(chunk.records(), hasher, skips)]
    }

    /// Lets the helper start on `chunk`, the one [`RowDecoder::decode_all`] gets
    /// next (see the module docs); a chunk decoded ahead earlier and not asked for
    /// is abandoned.
    pub fn decode_ahead<R: DecodeRow>(&mut self, chunk: &Chunk, hasher: KeyHasher) {
        self.ahead = None;
        if let Some(shared) = self.share::<R>(chunk, hasher) {
            self.ahead = Some(Ahead {
                chunk: chunk.clone(),
                hasher,
                row_type: TypeId::of::<R>(),
                pending: Some(Box::new(shared)),
            });
        }
    }

    /// `chunk`'s pieces, shared with the helper, which is asked to start on them
    /// (`None`: the chunk is too small to share, or there is no helper).
    fn share<R: DecodeRow>(&mut self, chunk: &Chunk, hasher: KeyHasher) -> Option<Arc<Shared<R>>> {
        if chunk.range.len() < SPLIT_MIN_RECORDS || self.helper.is_none() {
            return None;
        }
        let pieces = chunk.range.len().div_ceil(PIECE_RECORDS);
        let shared = Arc::new(Shared::<R> {
            cx: self.context(hasher),
            bin: self.bin(),
            pieces,
            next: AtomicUsize::new(0),
            state: Mutex::new(Pieces {
                done: (0..pieces).map(|_| None).collect(),
                helper_failed: false,
                their_chunk: Some(chunk.clone()),
                collected: false,
            }),
            changed: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let job: Job = Box::new(move |scratch| {
            let _notice = PanicNotice(&theirs);
            // `None`: the sink's thread did every piece and took it back.
            let their_chunk = theirs.pieces().their_chunk.take();
            if let Some(their_chunk) = their_chunk {
                theirs.work(&their_chunk, scratch, true);
            }
        });
        if self.helper.as_ref()?.jobs.send(job).is_ok() {
            return Some(shared);
        }
        tracing::error!("the decoding helper thread is gone; decoding on one thread");
        self.helper = None;
        None
    }

    fn decode_here<R: DecodeRow>(
        &mut self,
        records: &[Record],
        hasher: KeyHasher,
        skips: &mut Skips,
    ) -> Piece<R> {
        let mut rows = Piece::recycled(records.len(), &self.bin());
        let cx = self.context(hasher);
        decode_into(cx, &mut self.scratch, records, skips, &mut rows);
        rows
    }

    /// Every piece, in order: waits up to `patience` for the pieces the helper
    /// is decoding, then decodes those still missing here.
    fn collect<R: DecodeRow>(
        &mut self,
        chunk: &Chunk,
        shared: &Shared<R>,
        skips: &mut Skips,
        patience: Duration,
    ) -> Vec<Piece<R>> {
        let deadline = Instant::now() + patience;
        let mut state = shared.pieces();
        while !state.helper_failed && !state.done.iter().all(Option::is_some) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            state = shared
                .changed
                .wait_timeout(state, left)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
        }
        let unstarted = state.their_chunk.take();
        state.collected = true;
        let done = std::mem::take(&mut state.done);
        let failed = state.helper_failed;
        drop(state);
        drop(unstarted);
        self.held = Some(chunk.clone());
        if failed {
            // A panic while decoding (reported by the panic hook): this thread
            // decodes from now on, and meets the same record itself.
            tracing::error!("the decoding helper thread stopped; decoding on one thread");
            self.helper = None;
        }
        let records = chunk.records();
        done.into_iter()
            .enumerate()
            .map(|(piece, result)| match result {
                Some((rows, skipped)) => {
                    skips.add(skipped);
                    rows
                }
                // The helper's piece, unfinished when the patience ran out (or
                // left by its panic): decoded here. Its bad records are logged
                // again, but counted once: only these `skips` are added.
                None => {
                    let start = piece * PIECE_RECORDS;
                    let end = (start + PIECE_RECORDS).min(records.len());
                    self.decode_here(&records[start..end], shared.cx.hasher, skips)
                }
            })
            .collect()
    }
}

/// Appends the rows of `records` to `out`. `out.rows` may hold old rows past the
/// decoded ones (a vector from the [`RowBin`]): each record is decoded into the
/// next of them, in place, and those left over are dropped at the end.
fn decode_into<R: DecodeRow>(
    cx: Context,
    scratch: &mut Scratch,
    records: &[Record],
    skips: &mut Skips,
    out: &mut Piece<R>,
) {
    let mut filled = out.info.len();
    for record in records {
        let meta = record_meta(record);
        let parsed = match out.rows.get_mut(filled) {
            Some(old) => matches!(parse(&meta, record, skips, Some(old)), Parsed::Refilled),
            None => match parse(&meta, record, skips, None) {
                Parsed::New(row) => {
                    out.rows.push(row);
                    true
                }
                Parsed::Refilled | Parsed::Skipped => false,
            },
        };
        if !parsed {
            continue;
        }
        // A row that fails here stays in the vector, the next record's to reuse.
        if let Some(info) = describe(cx, scratch, &meta, &out.rows[filled], skips) {
            out.info.push(info);
            filled += 1;
        }
    }
    out.rows.truncate(filled);
}

fn decode_one<R: DecodeRow>(
    cx: Context,
    scratch: &mut Scratch,
    record: &Record,
    skips: &mut Skips,
) -> Option<Decoded<R>> {
    let meta = record_meta(record);
    let Parsed::New(row) = parse(&meta, record, skips, None) else {
        return None;
    };
    let info = describe(cx, scratch, &meta, &row, skips)?;
    Some(Decoded { info, row })
}

fn record_meta(record: &Record) -> RecordMeta<'_> {
    RecordMeta {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: TimestampMs(record.timestamp_ms.unwrap_or(0)),
    }
}

/// What [`parse`] did with a record.
enum Parsed<R> {
    /// The record holds no row for the lake (counted and logged).
    Skipped,
    /// The old row given now holds the record's row.
    Refilled,
    /// The record's row, new (no old row was given).
    New(R),
}

/// The row in the record's value, decoded into `old` when there is one.
fn parse<R: DecodeRow>(
    meta: &RecordMeta,
    record: &Record,
    skips: &mut Skips,
    old: Option<&mut R>,
) -> Parsed<R> {
    let Some(value) = record.value.as_deref() else {
        undecodable(skips, meta, "the record has no value (tombstone)");
        return Parsed::Skipped;
    };
    let headers: Vec<(&str, &[u8])> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let decoded = match old {
        Some(old) => R::decode_into(meta, value, &headers, old)
            .map(|filled| filled.then_some(Parsed::Refilled)),
        None => R::decode(meta, value, &headers).map(|row| row.map(Parsed::New)),
    };
    match decoded {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            skips.invalid_events += 1;
            tracing::debug!(topic = %meta.topic, partition = meta.partition,
                offset = meta.offset, "invalid event left to the DLQ archive");
            Parsed::Skipped
        }
        Err(e) => {
            undecodable(skips, meta, &error_chain(&e));
            Parsed::Skipped
        }
    }
}

/// The row's directory and key digest (`None`: counted in `skips` and logged).
fn describe<R: DecodeRow>(
    cx: Context,
    scratch: &mut Scratch,
    meta: &RecordMeta,
    row: &R,
    skips: &mut Skips,
) -> Option<RowInfo> {
    let path = match row
        .path_parts(meta, &cx.config)
        .and_then(|parts| scratch.paths.path(parts))
    {
        Ok(path) => path,
        Err(e) => {
            undecodable(skips, meta, &error_chain(&e));
            return None;
        }
    };
    if let Some(limit) = cx.max_dir_name_bytes {
        if path.longest_name_bytes() > limit {
            // Writing it would fail on every retry and wedge the partition.
            skips.path_too_long += 1;
            tracing::error!(
                topic = %meta.topic,
                partition = meta.partition,
                offset = meta.offset,
                bytes = path.longest_name_bytes(),
                limit,
                "row skipped: its partition directory name is longer than a local lake can hold (use an s3:// lake for stream ids this long); counted in path_too_long_skipped"
            );
            return None;
        }
    }
    row.write_natural_key(meta, &mut scratch.key);
    Some(RowInfo {
        key: cx.hasher.digest(&scratch.key),
        record_ms: meta.timestamp.as_millis(),
        offset: meta.offset,
        path,
    })
}

fn undecodable(skips: &mut Skips, meta: &RecordMeta, reason: &str) {
    skips.undecodable += 1;
    tracing::warn!(
        topic = %meta.topic,
        partition = meta.partition,
        offset = meta.offset,
        reason,
        "undecodable record skipped (counted in undecodable_records)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use playlake_schemas::PlaybackEvent;

    fn record(offset: i64, value: Option<&str>) -> Record {
        Record {
            topic: "playback.events".into(),
            partition: 3,
            offset,
            key: None,
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp_ms: Some(1_748_736_000_000 + offset),
        }
    }

    /// Good events, a few invalid ones and tombstones.
    fn records(n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| match i % 97 {
                13 => record(i, Some("not json")),
                29 => record(i, None),
                _ => {
                    let stream = format!("s{}", i % 5);
                    let json = format!(
                        r#"{{"uuid":"u{i}","stream_id":"{stream}","event_time":{},"position_end":{i}}}"#,
                        1_748_736_000_000 + i * 1_000
                    );
                    record(i, Some(&json))
                }
            })
            .collect()
    }

    type Summary = Vec<(String, i64, i64, KeyDigest, String)>;

    fn summary(pieces: &[Piece<PlaybackEvent>]) -> Summary {
        let mut out = Summary::new();
        for piece in pieces {
            assert_eq!(piece.info.len(), piece.rows.len());
            for (i, row) in piece.info.iter().zip(&piece.rows) {
                let path = i.path.as_str().to_owned();
                let row = format!("{row:?}");
                out.push((path, i.offset, i.record_ms, i.key, row));
            }
        }
        out
    }

    #[test]
    fn split_decoding_gives_the_rows_and_counts_of_one_thread() {
        let input = records(5_000);
        let hasher = KeyHasher::random();
        // `recycle`: the rows go back to the decoder's bin after each chunk, as the
        // encoder gives them back, so later chunks are decoded into old rows.
        let decode = |split: bool, recycle: bool, ahead: bool| {
            let mut decoder = RowDecoder::new(PartitionConfig::default(), Some(255));
            if split {
                assert!(
                    decoder.helper.is_some(),
                    "a test machine has 2 cores or more"
                );
            } else {
                decoder.helper = None;
            }
            let mut skips = Skips::default();
            let mut rows = Summary::new();
            // In chunks, as the sink hands them over, so the memos carry over; with
            // `ahead`, the next chunk is named before this one's rows are used.
            let mut chunks = Chunk::split(input.clone(), 1_000, usize::MAX).peekable();
            while let Some(chunk) = chunks.next() {
                let pieces = decoder.decode_all::<PlaybackEvent>(&chunk, hasher, &mut skips);
                if let (true, Some(next)) = (ahead, chunks.peek()) {
                    decoder.decode_ahead::<PlaybackEvent>(next, hasher);
                }
                rows.extend(summary(&pieces));
                if recycle {
                    decoder
                        .bin::<PlaybackEvent>()
                        .give(pieces.into_iter().map(|p| p.rows));
                }
            }
            (rows, skips)
        };
        let (one, one_skips) = decode(false, false, false);
        for (split, recycle, ahead) in [
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (true, false, true),
            (true, true, true),
        ] {
            let (two, two_skips) = decode(split, recycle, ahead);
            assert_eq!(one.len(), two.len());
            assert_eq!(one, two, "split {split}, recycle {recycle}, ahead {ahead}");
            assert_eq!(one_skips, two_skips);
        }
        // Both kinds of skip happened, in both halves of the chunks.
        assert_eq!(one_skips.invalid_events, 52, "{one_skips:?}");
        assert_eq!(one_skips.undecodable, 52, "{one_skips:?}");
        let total = one.len() as u64
            + one_skips.invalid_events
            + one_skips.undecodable
            + one_skips.path_too_long;
        assert_eq!(total, 5_000);
        assert!(one.windows(2).all(|w| w[0].1 < w[1].1), "offset order kept");
    }

    /// What a test does when a [`Hooked`] row is decoded, before decoding it.
    trait Hook: Send + 'static {
        fn before_decode(meta: &RecordMeta);
    }

    /// An event row whose decoding runs the hook `H` first.
    struct Hooked<H>(PlaybackEvent, std::marker::PhantomData<H>);

    impl<H> std::fmt::Debug for Hooked<H> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl<H: Hook> playlake_lake::LakeRow for Hooked<H> {
        const TABLE: playlake_schemas::Table = PlaybackEvent::TABLE;

        fn path_parts<'a>(
            &'a self,
            meta: &RecordMeta<'_>,
            config: &PartitionConfig,
        ) -> playlake_lake::Result<playlake_lake::PathParts<'a>> {
            self.0.path_parts(meta, config)
        }

        fn write_natural_key(&self, meta: &RecordMeta, out: &mut Vec<u8>) {
            self.0.write_natural_key(meta, out)
        }

        fn batch_of(
            rows: playlake_lake::Rows<'_, Self>,
        ) -> playlake_lake::Result<arrow::array::RecordBatch> {
            let rows: Vec<PlaybackEvent> = rows.iter().map(|r| r.0.clone()).collect();
            PlaybackEvent::to_batch(&rows)
        }
    }

    impl<H: Hook> DecodeRow for Hooked<H> {
        fn decode(
            meta: &RecordMeta,
            value: &[u8],
            headers: &[(&str, &[u8])],
        ) -> playlake_lake::Result<Option<Self>> {
            H::before_decode(meta);
            Ok(PlaybackEvent::decode(meta, value, headers)?
                .map(|event| Hooked(event, std::marker::PhantomData)))
        }
    }

    /// Decoding panics on the helper thread (and, for the record at offset 0, is
    /// slow on any other, so that the helper surely takes a piece meanwhile).
    struct Touchy;

    impl Hook for Touchy {
        fn before_decode(meta: &RecordMeta) {
            if std::thread::current().name() == Some("sink-decode") {
                panic!("decoding bug (expected by the test)");
            }
            if meta.offset == 0 {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
    }

    #[test]
    fn a_helper_that_panics_leaves_its_pieces_to_the_sink_thread() {
        let input = records(1_000);
        let hasher = KeyHasher::random();
        let chunk = Chunk::split(input.clone(), 1_000, usize::MAX)
            .next()
            .unwrap();
        let mut alone = RowDecoder::new(PartitionConfig::default(), None);
        alone.helper = None;
        let mut want_skips = Skips::default();
        let want = offsets(&alone.decode_all::<Hooked<Touchy>>(&chunk, hasher, &mut want_skips));
        assert!(want.len() > 900, "{}", want.len());

        let mut decoder = RowDecoder::new(PartitionConfig::default(), None);
        assert!(
            decoder.helper.is_some(),
            "a test machine has 2 cores or more"
        );
        // Every chunk gets all its rows whatever the helper does: the sink's
        // thread decodes the pieces the helper left. Once the helper's thread has
        // ended (its notice, or a job it can no longer receive, tells), it is not
        // asked again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut rounds = 0;
        while decoder.helper.is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the dead helper is still asked after {rounds} chunks"
            );
            let mut skips = Skips::default();
            let got = offsets(&decoder.decode_all::<Hooked<Touchy>>(&chunk, hasher, &mut skips));
            assert_eq!(got, want);
            assert_eq!(skips, want_skips);
            rounds += 1;
        }
        let mut skips = Skips::default();
        let got = offsets(&decoder.decode_all::<Hooked<Touchy>>(&chunk, hasher, &mut skips));
        assert_eq!(got, want);
    }

    /// Shut until a test opens it: the helper's decoding of a `Hooked<Stalled>`
    /// row waits here, as a helper descheduled mid-piece would. `(open, helpers
    /// stuck so far)`.
    static GATE: (Mutex<(bool, usize)>, Condvar) = (Mutex::new((false, 0)), Condvar::new());

    fn open_gate() {
        GATE.0.lock().unwrap().0 = true;
        GATE.1.notify_all();
    }

    /// Decoding stalls on the helper thread until the gate opens; on any other
    /// thread, the record at offset 0 waits until the helper is stuck in a piece.
    struct Stalled;

    impl Hook for Stalled {
        fn before_decode(meta: &RecordMeta) {
            let mut gate = GATE.0.lock().unwrap();
            if std::thread::current().name() == Some("sink-decode") {
                gate.1 += 1;
                GATE.1.notify_all();
                while !gate.0 {
                    gate = GATE.1.wait(gate).unwrap();
                }
            } else if meta.offset == 0 && !gate.0 {
                // Bounded, so a helper that never starts fails the test below
                // rather than hanging it.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while gate.1 == 0 {
                    let Some(left) = deadline.checked_duration_since(std::time::Instant::now())
                    else {
                        break;
                    };
                    gate = GATE.1.wait_timeout(gate, left).unwrap().0;
                }
            }
        }
    }

    fn offsets<R>(pieces: &[Piece<R>]) -> Vec<i64> {
        pieces
            .iter()
            .flat_map(|p| &p.info)
            .map(|i| i.offset)
            .collect()
    }

    #[test]
    fn the_sink_thread_decodes_a_piece_the_helper_is_stuck_in_rather_than_wait() {
        let input = records(2_000);
        let hasher = KeyHasher::random();
        let mut chunks = Chunk::split(input, 1_000, usize::MAX);
        let (first, second) = (chunks.next().unwrap(), chunks.next().unwrap());
        let mut alone = RowDecoder::new(PartitionConfig::default(), None);
        alone.helper = None;
        let mut want_skips = Skips::default();
        // The same decoding, without the gate.
        let want_first =
            offsets(&alone.decode_all::<PlaybackEvent>(&first, hasher, &mut want_skips));
        let want_second =
            offsets(&alone.decode_all::<PlaybackEvent>(&second, hasher, &mut want_skips));

        let mut decoder = RowDecoder::new(PartitionConfig::default(), None);
        assert!(
            decoder.helper.is_some(),
            "a test machine has 2 cores or more"
        );
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let mut skips = Skips::default();
            let pieces = decoder.decode_all::<Hooked<Stalled>>(&first, hasher, &mut skips);
            tx.send(offsets(&pieces)).unwrap();
            // The helper is still stuck in its piece of the first chunk; once it
            // is let go, the next chunk is shared as usual.
            open_gate();
            let pieces = decoder.decode_all::<Hooked<Stalled>>(&second, hasher, &mut skips);
            (offsets(&pieces), skips, decoder.helper.is_some())
        });
        // Waiting for the stuck helper would never return: give it a generous
        // bound, then let the helper go so the test fails instead of hanging.
        let got_first = rx.recv_timeout(std::time::Duration::from_secs(60));
        open_gate();
        let got_first = got_first.expect("the sink's thread waited for the stuck helper");
        let (got_second, skips, helper_alive) = worker.join().unwrap();
        assert_eq!(got_first, want_first);
        assert_eq!(got_second, want_second);
        assert_eq!(skips, want_skips, "each record counted once");
        assert!(helper_alive, "a slow helper is not a dead one");
        assert!(
            GATE.0.lock().unwrap().1 > 0,
            "the helper was stuck in a piece"
        );
    }

    /// The offsets decoded so far by the helper thread (`true`) or another one.
    static TRACKED: (Mutex<Vec<(i64, bool)>>, Condvar) = (Mutex::new(Vec::new()), Condvar::new());

    /// Decoding notes which thread decoded each record.
    struct Tracked;

    impl Hook for Tracked {
        fn before_decode(meta: &RecordMeta) {
            let on_helper = std::thread::current().name() == Some("sink-decode");
            TRACKED.0.lock().unwrap().push((meta.offset, on_helper));
            TRACKED.1.notify_all();
        }
    }

    #[test]
    fn a_chunk_decoded_ahead_is_taken_not_decoded_again_and_others_are_abandoned() {
        let input = records(3_000);
        let hasher = KeyHasher::random();
        let chunks: Vec<Chunk> = Chunk::split(input, 1_000, usize::MAX).collect();
        let mut alone = RowDecoder::new(PartitionConfig::default(), None);
        alone.helper = None;
        let mut want_skips = Skips::default();
        let want: Vec<Vec<i64>> = chunks
            .iter()
            .map(|c| offsets(&alone.decode_all::<PlaybackEvent>(c, hasher, &mut want_skips)))
            .collect();

        let mut decoder = RowDecoder::new(PartitionConfig::default(), None);
        assert!(
            decoder.helper.is_some(),
            "a test machine has 2 cores or more"
        );
        let mut skips = Skips::default();
        // The first chunk is decoded ahead: the helper decodes every record of it
        // before the chunk's turn comes ...
        decoder.decode_ahead::<Hooked<Tracked>>(&chunks[0], hasher);
        // (Tombstones never reach the row's decoding.)
        let records: Vec<&Record> = chunks[0]
            .records()
            .iter()
            .filter(|r| r.value.is_some())
            .collect();
        let decoded = |log: &Vec<(i64, bool)>| {
            records
                .iter()
                .filter(|r| log.iter().any(|(offset, _)| *offset == r.offset))
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut log = TRACKED.0.lock().unwrap();
        while decoded(&log) < records.len() {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .expect("the helper decoded the chunk ahead within 60 s");
            log = TRACKED.1.wait_timeout(log, left).unwrap().0;
        }
        assert!(log.iter().all(|(_, on_helper)| *on_helper), "{log:?}");
        drop(log);
        // ... and then its rows are taken as they are, none decoded again.
        let got = offsets(&decoder.decode_all::<Hooked<Tracked>>(&chunks[0], hasher, &mut skips));
        assert_eq!(got, want[0]);
        let decodings = TRACKED.0.lock().unwrap().len();
        assert_eq!(decodings, records.len(), "each record decoded once");

        // A chunk decoded ahead that does not come next is abandoned: the one
        // that comes is decoded in full, and the abandoned one when it comes.
        decoder.decode_ahead::<PlaybackEvent>(&chunks[2], hasher);
        let got = offsets(&decoder.decode_all::<PlaybackEvent>(&chunks[1], hasher, &mut skips));
        assert_eq!(got, want[1]);
        assert!(decoder.ahead.is_none(), "abandoned");
        // The same range of another row type or hasher is not taken either.
        decoder.decode_ahead::<Hooked<Tracked>>(&chunks[2], hasher);
        decoder.decode_ahead::<PlaybackEvent>(&chunks[2], KeyHasher::random());
        let got = offsets(&decoder.decode_all::<PlaybackEvent>(&chunks[2], hasher, &mut skips));
        assert_eq!(got, want[2]);
        assert_eq!(skips, want_skips, "each record counted once");
    }

    #[test]
    fn chunks_end_at_the_record_or_byte_limit_and_cover_every_record() {
        let sizes = [10usize, 10, 10, 500, 10, 10, 10, 10, 10];
        let input: Vec<Record> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| record(i as i64, Some(&"x".repeat(*n))))
            .collect();
        let ranges = |records: usize, bytes: usize| -> Vec<Vec<i64>> {
            Chunk::split(input.clone(), records, bytes)
                .map(|c| c.records().iter().map(|r| r.offset).collect())
                .collect()
        };
        assert_eq!(
            ranges(4, usize::MAX),
            [vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8]]
        );
        // 30 bytes fit, the 500-byte record starts a chunk of its own (a chunk
        // always takes its first record), then 4 records of 10 reach 40.
        assert_eq!(
            ranges(100, 40),
            [vec![0, 1, 2], vec![3], vec![4, 5, 6, 7], vec![8]]
        );
        assert_eq!(ranges(0, 0).len(), 9, "at least one record a chunk");
        assert_eq!(Chunk::split(Vec::new(), 10, 10).count(), 0);
    }
}
