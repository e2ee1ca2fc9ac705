//! One open Parquet file per (partition directory, input partition), encoded in
//! memory until it rolls, and its deterministic name.
//!
//! Data flow: [`crate::pool::WriterPool`] appends record batches to a
//! [`PartitionFile`], together with the Kafka offsets the rows came from; the pool's
//! [`crate::policy::RollPolicy`] reads [`PartitionFile::stats`] and decides when to
//! [`PartitionFile::finish`] it; the resulting [`FinishedFile`] goes to
//! [`crate::store::LakeStore::publish`]. A file only ever holds rows of one input
//! partition, in offset order, so its name can be derived from the Kafka identity of
//! its rows ([`file_name`]): a replay of the same offsets produces the same name and
//! the same bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::{LakeError, Result};
use crate::filebuf::{FileBuffer, FileBytes};
use crate::format::Codec;
use crate::partition::PartitionPath;
use crate::policy::FileStats;
use crate::rows::{LakeRow, RowBin, Rows};

/// Estimated fixed memory of one open writer that its own accounting does not
/// report (schema descriptors, column writer state, the output buffer's slack).
pub const PER_FILE_OVERHEAD_BYTES: u64 = 16 * 1024;

/// An input partition: the Kafka identity half of a file's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
}

/// The name of the file holding the rows of `source` from `first_offset` to
/// `last_offset` (inclusive) of one partition directory:
/// `part-<topic>-<partition>-<first>-<last>.<codec>.parquet`, offsets zero-padded to
/// 20 digits so names sort by offset.
pub fn file_name(
    source: &SourcePartition,
    first_offset: i64,
    last_offset: i64,
    codec: Codec,
) -> String {
    format!(
        "part-{}-{}-{:020}-{:020}.{}.parquet",
        source.topic,
        source.partition,
        first_offset,
        last_offset,
        codec.name()
    )
}

/// Batches handed to the encoder thread and not yet encoded, at most: the sink
/// waits rather than buffer more (memory stays bounded: a batch holds at most the
/// rows of one sink chunk, 1,000 records and about 1 MiB of them), and the rolling
/// policy's view of a file's size lags by no more than these. Not fewer: the
/// encoder works in bursts (a page or row group closing compresses a lot at once),
/// and with room for only 4 batches the decoding thread stopped at every burst
/// instead of going on with the next records (measured on the sink bench: 64 gave
/// 7% more rows per second, and let the decoding helper thread give its share).
const ENCODER_QUEUE_BATCHES: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// Where the files' Parquet encoding (dictionary, pages, zstd) runs: on the
/// caller's thread, or on one thread of its own that every file of a pool shares,
/// so that decoding and deduplicating the next records overlaps the encoding of the
/// last ones. Jobs run in the order they are given, so a file's batches are encoded
/// in offset order and its bytes are the same either way.
#[derive(Debug, Clone)]
pub struct Encoder {
    jobs: Option<SyncSender<Job>>,
}

impl Encoder {
    /// Encodes on the caller's thread.
    pub fn inline() -> Self {
        Self { jobs: None }
    }

    /// Encodes on a thread of its own (it ends when the last clone is dropped).
    pub fn background() -> Result<Self> {
        let (jobs, queue) = sync_channel::<Job>(ENCODER_QUEUE_BATCHES);
        std::thread::Builder::new()
            .name("parquet-encoder".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|source| LakeError::EncoderThread { source })?;
        Ok(Self { jobs: Some(jobs) })
    }

    fn run(&self, job: Job) {
        match &self.jobs {
            Some(jobs) => {
                // The thread only stops when every sender is gone; should it have
                // died anyway, the job runs here rather than being lost.
                if let Err(std::sync::mpsc::SendError(job)) = jobs.send(job) {
                    job();
                }
            }
            None => job(),
        }
    }
}

/// A file's writer as the encoder sees it, and the first error it met.
struct EncodeState {
    writer: Option<ArrowWriter<FileBuffer>>,
    error: Option<LakeError>,
}

/// What the encoder publishes after each batch, for [`PartitionFile::stats`].
#[derive(Default)]
struct EncodedSize {
    encoded_bytes: AtomicU64,
    memory_bytes: AtomicU64,
    failed: AtomicBool,
}

/// The error of a file whose failed batch was reported by an earlier call.
fn failed_earlier(path: &PartitionPath) -> LakeError {
    LakeError::Encoder {
        path: path.to_string(),
        reason: "it failed earlier",
    }
}

/// A file's encoder state. A job that panicked while holding it (a bug in the
/// encoder) leaves the writer in an unknown state: the file fails from then on.
fn lock<'a>(
    state: &'a Mutex<EncodeState>,
    size: &EncodedSize,
    path: &PartitionPath,
) -> MutexGuard<'a, EncodeState> {
    state.lock().unwrap_or_else(|poisoned| {
        let mut state = poisoned.into_inner();
        if !size.failed.swap(true, Ordering::AcqRel) {
            state.error = Some(LakeError::Encoder {
                path: path.to_string(),
                reason: "its encoder panicked",
            });
        }
        state
    })
}

/// A Parquet file being written for one partition directory and one input partition.
pub struct PartitionFile {
    path: PartitionPath,
    source: SourcePartition,
    state: Arc<Mutex<EncodeState>>,
    size: Arc<EncodedSize>,
    encoder: Encoder,
    first_offset: Option<i64>,
    last_offset: i64,
    rows: u64,
    opened_at_ms: i64,
}

impl std::fmt::Debug for PartitionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionFile")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("first_offset", &self.first_offset)
            .field("last_offset", &self.last_offset)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl PartitionFile {
    /// Opens an empty file; `now_ms` is the wall clock, for the flush interval.
    pub fn new(
        path: PartitionPath,
        source: SourcePartition,
        properties: WriterProperties,
        encoder: Encoder,
        now_ms: i64,
    ) -> Result<Self> {
        let schema = path.table().arrow_schema();
        let writer = ArrowWriter::try_new(FileBuffer::default(), schema, Some(properties))
            .map_err(|e| LakeError::parquet("open a writer", &path, e))?;
        Ok(Self {
            path,
            source,
            state: Arc::new(Mutex::new(EncodeState {
                writer: Some(writer),
                error: None,
            })),
            size: Arc::default(),
            encoder,
            first_offset: None,
            last_offset: -1,
            rows: 0,
            opened_at_ms: now_ms,
        })
    }

    /// Appends rows read from offsets `first_offset..=last_offset` of the file's input
    /// partition. Offsets must grow from call to call.
    pub fn write(
        &mut self,
        batch: &RecordBatch,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<()> {
        let batch = batch.clone();
        let rows = batch.num_rows();
        self.submit(first_offset, last_offset, rows, move || Ok(batch))
    }

    /// [`PartitionFile::write`] of rows not yet in a batch: the encoder builds the
    /// batch (and frees the rows), off the caller's thread when it runs in the
    /// background.
    pub fn write_rows<R: LakeRow>(
        &mut self,
        rows: Vec<R>,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<()> {
        self.write_row_pieces(vec![rows], first_offset, last_offset, None)
    }

    /// [`PartitionFile::write_rows`] of rows in consecutive pieces, read in place by
    /// the encoder (the caller's thread does not copy them, nor does the encoder);
    /// once encoded, the pieces go to `recycle` when there is one.
    pub fn write_row_pieces<R: LakeRow>(
        &mut self,
        pieces: Vec<Vec<R>>,
        first_offset: i64,
        last_offset: i64,
        recycle: Option<RowBin<R>>,
    ) -> Result<()> {
        let count = pieces.iter().map(Vec::len).sum();
        self.submit(first_offset, last_offset, count, move || {
            let slices: Vec<&[R]> = pieces.iter().map(Vec::as_slice).collect();
            let batch = R::batch_of(Rows::new(&slices));
            drop(slices);
            if let Some(bin) = recycle {
                bin.give(pieces);
            }
            batch
        })
    }

    fn submit(
        &mut self,
        first_offset: i64,
        last_offset: i64,
        rows: usize,
        batch: impl FnOnce() -> Result<RecordBatch> + Send + 'static,
    ) -> Result<()> {
        if first_offset > last_offset || first_offset <= self.last_offset {
            return Err(LakeError::Manifest {
                reason: format!(
                    "rows for {} from {}/{} offsets {first_offset}..={last_offset} do not follow \
                     offset {}",
                    self.path, self.source.topic, self.source.partition, self.last_offset
                ),
            });
        }
        self.take_error()?;
        let (state, size, path) = (self.state.clone(), self.size.clone(), self.path.clone());
        self.encoder.run(Box::new(move || {
            let mut state = lock(&state, &size, &path);
            // Sticky: once a batch failed (its error maybe reported already), no
            // later batch goes into the writer.
            if size.failed.load(Ordering::Acquire) {
                return;
            }
            let Some(writer) = state.writer.as_mut() else {
                return;
            };
            let written = batch().and_then(|batch| {
                writer
                    .write(&batch)
                    .map_err(|e| LakeError::parquet("write rows", &path, e))
            });
            match written {
                Ok(()) => {
                    let written = writer.bytes_written() as u64;
                    let buffered = writer.inner().capacity() as u64;
                    size.encoded_bytes.store(
                        written + writer.in_progress_size() as u64,
                        Ordering::Relaxed,
                    );
                    size.memory_bytes
                        .store(buffered + writer.memory_size() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    state.error = Some(error);
                    size.failed.store(true, Ordering::Release);
                }
            }
        }));
        // Inline, this batch's own error; in the background, maybe an earlier one's.
        self.take_error()?;
        self.first_offset.get_or_insert(first_offset);
        self.last_offset = last_offset;
        self.rows += rows as u64;
        Ok(())
    }

    /// The error the encoder met with an earlier batch, if any (then every later
    /// call fails too: the file misses that batch's rows).
    fn take_error(&self) -> Result<()> {
        if !self.size.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut state = lock(&self.state, &self.size, &self.path);
        match state.error.take() {
            Some(error) => Err(error),
            None => Err(failed_earlier(&self.path)),
        }
    }

    /// Size, memory, rows and age, for the rolling policy. With a background
    /// [`Encoder`], size and memory are those of the batches encoded so far (at
    /// most [`ENCODER_QUEUE_BATCHES`] behind).
    pub fn stats(&self) -> FileStats {
        FileStats {
            encoded_bytes: self.size.encoded_bytes.load(Ordering::Relaxed),
            memory_bytes: self.size.memory_bytes.load(Ordering::Relaxed) + PER_FILE_OVERHEAD_BYTES,
            rows: self.rows,
            opened_at_ms: self.opened_at_ms,
        }
    }

    /// The partition directory of the file.
    pub fn path(&self) -> &PartitionPath {
        &self.path
    }

    /// The input partition of the file's rows.
    pub fn source(&self) -> &SourcePartition {
        &self.source
    }

    /// Offset of the first row, if any row was written.
    pub fn first_offset(&self) -> Option<i64> {
        self.first_offset
    }

    /// Offset of the last row written (-1 before the first).
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Closes the file: writes the footer and returns the complete bytes with their
    /// deterministic name. `None` when no row was ever written.
    pub fn finish(self, codec: Codec) -> Result<Option<FinishedFile>> {
        let Some(first_offset) = self.first_offset else {
            return Ok(None);
        };
        // Behind every batch of this file in the encoder's queue: the footer.
        let (done, finished) = sync_channel(1);
        let (state, size, path) = (self.state.clone(), self.size.clone(), self.path.clone());
        self.encoder.run(Box::new(move || {
            let mut state = lock(&state, &size, &path);
            let writer = state.writer.take();
            let result = match (size.failed.load(Ordering::Acquire), writer) {
                // Never a file without the rows of a batch that failed.
                (true, _) => Err(state.error.take().unwrap_or_else(|| failed_earlier(&path))),
                (false, Some(writer)) => writer
                    .into_inner()
                    .map(FileBuffer::finish)
                    .map_err(|e| LakeError::parquet("finish the file", &path, e)),
                (false, None) => Err(LakeError::Encoder {
                    path: path.to_string(),
                    reason: "it was finished already",
                }),
            };
            // The receiver waits below; nothing to do if it is gone.
            let _ = done.send(result);
        }));
        let bytes = finished.recv().map_err(|_| LakeError::Encoder {
            path: self.path.to_string(),
            reason: "the encoder thread stopped before the file was finished",
        })??;
        let name = file_name(&self.source, first_offset, self.last_offset, codec);
        Ok(Some(FinishedFile {
            path: self.path,
            source: self.source,
            name,
            first_offset,
            last_offset: self.last_offset,
            rows: self.rows,
            bytes,
        }))
    }
}

/// A complete Parquet file, ready to be published to the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFile {
    /// Partition directory.
    pub path: PartitionPath,
    /// Input partition of its rows.
    pub source: SourcePartition,
    /// Deterministic file name (see [`file_name`]).
    pub name: String,
    /// Offset of its first row.
    pub first_offset: i64,
    /// Offset of its last row.
    pub last_offset: i64,
    /// Number of rows.
    pub rows: u64,
    /// The encoded file.
    pub bytes: FileBytes,
}

impl FinishedFile {
    /// `<table>/<partition values>/<name>`, relative to the lake root.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.path, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::session;
    use crate::format::ParquetOptions;
    use crate::partition::PartitionConfig;
    use arrow::array::Int64Array;
    use playlake_schemas::Session;

    fn open(encoder: Encoder) -> PartitionFile {
        let first = session(0, "s");
        let path = first
            .partition(&crate::fixtures::meta("t", 0), &PartitionConfig::default())
            .unwrap();
        let source = SourcePartition {
            topic: "playback.sessions".into(),
            partition: 3,
        };
        let properties = ParquetOptions::default()
            .writer_properties(playlake_schemas::Table::Sessions)
            .unwrap();
        PartitionFile::new(path, source, properties, encoder, 0).unwrap()
    }

    fn write_all(file: &mut PartitionFile) {
        for chunk in 0..20 {
            let rows: Vec<Session> = (0..500).map(|i| session(chunk * 500 + i, "s")).collect();
            let batch = Session::to_batch(&rows).unwrap();
            file.write(&batch, chunk * 500, chunk * 500 + 499).unwrap();
        }
    }

    #[test]
    fn a_background_encoder_writes_the_same_bytes_as_the_callers_thread() {
        let mut inline = open(Encoder::inline());
        write_all(&mut inline);
        let background_encoder = Encoder::background().unwrap();
        let mut background = open(background_encoder.clone());
        let mut other = open(background_encoder);
        write_all(&mut background);
        write_all(&mut other);
        assert_eq!(background.stats().rows, 10_000);
        let inline_stats = inline.stats();
        assert!(inline_stats.encoded_bytes > 0 && inline_stats.memory_bytes > 0);
        let codec = Codec::default();
        let want = inline.finish(codec).unwrap().unwrap();
        let got = background.finish(codec).unwrap().unwrap();
        assert_eq!(got.rows, 10_000);
        assert_eq!((got.first_offset, got.last_offset), (0, 9_999));
        assert_eq!(got.name, want.name);
        assert!(got.bytes == want.bytes, "the files differ");
        // A file sharing the encoder is finished independently.
        assert!(other.finish(codec).unwrap().unwrap().bytes == want.bytes);
    }

    #[test]
    fn an_encoding_error_is_reported_by_a_later_call_and_the_file_never_finishes() {
        for encoder in [Encoder::inline(), Encoder::background().unwrap()] {
            let mut file = open(encoder);
            write_all(&mut file);
            // A batch of another table's schema: Parquet refuses it.
            let wrong = RecordBatch::try_from_iter([(
                "viewers",
                Arc::new(Int64Array::from(vec![1_i64])) as _,
            )])
            .unwrap();
            let first = file.write(&wrong, 20_000, 20_000);
            let next = file.write(&wrong, 20_001, 20_001);
            let finished = file.finish(Codec::default());
            assert!(
                finished.is_err(),
                "a file without a failed batch was finished"
            );
            let error = first.err().or(next.err()).or(finished.err());
            let error = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("sessions"), "{error}");
        }
    }
}
