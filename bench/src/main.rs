//! # playlake-bench
//!
//! The benchmark driver behind `bench/run`. It measures playlake's own stages and
//! prints machine-readable figures (one JSON object per command on stdout); the script
//! runs the peers (DuckDB SQL, the hand-written Python sink and pipeline) on the same
//! data in the same run and prints both side by side.
//!
//! ```text
//! gen        playlake-generator --> records.bin (raw record values, as on the topic)
//!                               \-> events.parquet (the parsed events, for DuckDB)
//! processor  records.bin --parse--> PartitionProcessor --partials--> MergeOperator
//!            (one thread, every operator, outputs folded into checksums)
//! volume     generator thread --batches--> the same operators (seed 003's volume
//!            without a 20 GB file)
//! ```
//!
//! The checksums of the results (counts and sums per table) are compared with DuckDB's
//! by the script, so a fast wrong answer cannot pass as a benchmark result.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use clap::{Parser, Subcommand};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use playlake_generator::{Generator, GeneratorConfig, RecordKind};
use playlake_processor::{
    source::GROUP, EventOutcome, MergeOperator, PartialRecord, PartitionProcessor, ProcessorConfig,
    ResumeMerge, Settings,
};
use playlake_schemas::{
    parse_playback_event, parse_playback_event_into, DailyStat, EndedBy, PlaybackEvent, Session,
    ViewerWindow,
};
use serde::Serialize;

/// The same global allocator as the `playlake` binary, so the figures are its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod sink;

#[derive(Parser)]
#[command(
    name = "playlake-bench",
    about = "playlake benchmarks (driven by bench/run)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a dataset: records.bin (raw values) and events.parquet (parsed events).
    Gen {
        /// Valid events to generate (duplicates and bad records come on top).
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Concurrent viewer slots.
        #[arg(long, default_value_t = 20_000)]
        viewers: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run every operator over records.bin on one thread.
    Processor {
        /// Directory written by `gen`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// The sink without a broker: a busy hour through the in-process log (`sink gen`,
    /// `sink run`).
    Sink(sink::SinkArgs),
    /// Seed 003's volume: generate and merge N events in-process (no file).
    Volume {
        #[arg(long, default_value_t = 95_700_000)]
        events: u64,
        #[arg(long, default_value_t = 200_000)]
        viewers: u32,
        #[arg(long, default_value_t = 3)]
        seed: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Gen {
            events,
            viewers,
            seed,
            out,
        } => gen(events, viewers, seed, &out),
        Command::Processor { dir } => processor(&dir),
        Command::Sink(args) => sink::main(args),
        Command::Volume {
            events,
            viewers,
            seed,
        } => volume(events, viewers, seed),
    }
}

fn generator_config(events: u64, viewers: u32, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        viewers,
        live_streams: 20,
        vod_streams: 500,
        // Long enough that `max_events` ends the slice, at 5 s heartbeats.
        duration_ms: (events / u64::from(viewers.max(1)) + 10) * 5_000 * 2,
        max_events: Some(events),
        seed,
        ..GeneratorConfig::default()
    }
}

/// What `gen` leaves next to the data for `processor`.
#[derive(Serialize, serde::Deserialize)]
struct GenInfo {
    records: u64,
    valid: u64,
    duplicates: u64,
    bad: u64,
    now_ms: i64,
    seconds: f64,
}

fn gen(events: u64, viewers: u32, seed: u64, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let config = generator_config(events, viewers, seed);
    let now_ms = config.settled_now_ms();
    let started = Instant::now();
    let generator = Generator::new(config).context("generator config")?;
    let mut raw = BufWriter::with_capacity(1 << 20, File::create(out.join("records.bin"))?);
    let mut parquet = EventsParquet::create(&out.join("events.parquet"))?;
    let mut info = GenInfo {
        records: 0,
        valid: 0,
        duplicates: 0,
        bad: 0,
        now_ms,
        seconds: 0.0,
    };
    for record in generator {
        let len = u32::try_from(record.value.len()).context("record over 4 GiB")?;
        raw.write_all(&len.to_le_bytes())?;
        raw.write_all(&record.value)?;
        info.records += 1;
        match record.kind {
            RecordKind::Valid => info.valid += 1,
            RecordKind::Duplicate => info.duplicates += 1,
            RecordKind::Bad(_) => info.bad += 1,
        }
        if let Ok(event) = parse_playback_event(&record.value, now_ms) {
            parquet.push(&event)?;
        }
    }
    raw.flush()?;
    parquet.finish()?;
    info.seconds = started.elapsed().as_secs_f64();
    std::fs::write(out.join("gen.json"), serde_json::to_vec_pretty(&info)?)?;
    println!("{}", serde_json::to_string(&info)?);
    Ok(())
}

/// The parsed events as Parquet, the input DuckDB gets (its best case: no JSON parsing,
/// columnar, typed).
struct EventsParquet {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
    uuid: StringBuilder,
    event_id: StringBuilder,
    stream_id: StringBuilder,
    user_id: StringBuilder,
    event_type: StringBuilder,
    event_time: Int64Builder,
    position_start: Float64Builder,
    position_end: Float64Builder,
    rows: usize,
}

impl EventsParquet {
    fn create(path: &Path) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("uuid", DataType::Utf8, false),
            Field::new("event_id", DataType::Utf8, false),
            Field::new("stream_id", DataType::Utf8, false),
            Field::new("user_id", DataType::Utf8, true),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("event_time", DataType::Int64, false),
            Field::new("position_start", DataType::Float64, false),
            Field::new("position_end", DataType::Float64, false),
        ]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .build();
        let writer = ArrowWriter::try_new(File::create(path)?, schema.clone(), Some(props))?;
        Ok(Self {
            writer,
            schema,
            uuid: StringBuilder::new(),
            event_id: StringBuilder::new(),
            stream_id: StringBuilder::new(),
            user_id: StringBuilder::new(),
            event_type: StringBuilder::new(),
            event_time: Int64Builder::new(),
            position_start: Float64Builder::new(),
            position_end: Float64Builder::new(),
            rows: 0,
        })
    }

    fn push(&mut self, e: &PlaybackEvent) -> Result<()> {
        self.uuid.append_value(&e.uuid);
        self.event_id.append_value(&e.event_id);
        self.stream_id.append_value(&e.stream_id);
        self.user_id.append_option(e.user_id.as_deref());
        self.event_type.append_value(e.event_type.as_str());
        self.event_time.append_value(e.event_time.0);
        self.position_start.append_value(e.position_start);
        self.position_end.append_value(e.position_end);
        self.rows += 1;
        if self.rows >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.uuid.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.stream_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.event_time.finish()),
            Arc::new(self.position_start.finish()),
            Arc::new(self.position_end.finish()),
        ];
        self.writer
            .write(&RecordBatch::try_new(self.schema.clone(), columns)?)?;
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

/// Order-independent fingerprints of every result table, compared with DuckDB's.
#[derive(Debug, Default, Serialize)]
struct Checksums {
    sessions: u64,
    session_events: i64,
    session_seeks: i64,
    sessions_stop_ended: u64,
    session_watched_seconds: f64,
    viewer_rows: u64,
    viewers_sum: i64,
    viewers_max: i64,
    daily_rows: u64,
    daily_views: i64,
    daily_unique_users: i64,
    daily_watched_seconds: f64,
    daily_peak_viewers: i64,
    resume_points: u64,
}

impl Checksums {
    fn sessions(&mut self, sessions: &[Session]) {
        for s in sessions {
            self.sessions += 1;
            self.session_events += s.event_count;
            self.session_seeks += s.seek_count;
            self.sessions_stop_ended += u64::from(s.ended_by == EndedBy::Stop);
            self.session_watched_seconds += s.watched_seconds;
        }
    }

    fn viewers(&mut self, viewers: &[ViewerWindow]) {
        for v in viewers {
            self.viewer_rows += 1;
            self.viewers_sum += v.viewers;
            self.viewers_max = self.viewers_max.max(v.viewers);
        }
    }

    fn daily(&mut self, daily: &[DailyStat]) {
        for d in daily {
            self.daily_rows += 1;
            self.daily_views += d.views;
            self.daily_unique_users += d.unique_users;
            self.daily_watched_seconds += d.watched_seconds;
            self.daily_peak_viewers += d.peak_viewers;
        }
    }
}

/// Every operator of one input partition plus the merge level, on one thread: the
/// work `playlake process` does per event, without Kafka and checkpoints.
struct Operators {
    now_ms: i64,
    source: PartitionProcessor,
    merge: MergeOperator,
    resume: ResumeMerge,
    sums: Checksums,
    valid: u64,
    invalid: u64,
    duplicates: u64,
    late: u64,
    max_open_sessions: usize,
    /// Resume points taken to publish (a key's point again each time it changes).
    resume_published: u64,
    /// Records are parsed into these events (reused), [`GROUP`] at a time.
    events: Vec<PlaybackEvent>,
    /// How many of `events` are parsed and not yet applied.
    filled: usize,
}

impl Operators {
    fn new(settings: &Settings, now_ms: i64) -> Self {
        Self {
            now_ms,
            source: PartitionProcessor::new(settings, 0, now_ms),
            merge: MergeOperator::new(settings, 0..1, now_ms),
            resume: ResumeMerge::default(),
            sums: Checksums::default(),
            valid: 0,
            invalid: 0,
            duplicates: 0,
            late: 0,
            max_open_sessions: 0,
            resume_published: 0,
            events: Vec::with_capacity(GROUP),
            filled: 0,
        }
    }

    fn record(&mut self, value: &[u8]) {
        if self.events.len() <= self.filled {
            self.events.push(PlaybackEvent::default());
        }
        let Some(event) = self.events.get_mut(self.filled) else {
            return;
        };
        match parse_playback_event_into(value, self.now_ms, event) {
            Ok(()) => {
                self.valid += 1;
                self.filled += 1;
                if self.filled == GROUP {
                    self.apply_parsed();
                }
            }
            Err(_) => {
                self.invalid += 1;
                self.source.observe_invalid(self.now_ms);
            }
        }
    }

    /// Applies the events parsed since the last call, as one group.
    fn apply_parsed(&mut self) {
        let (mut duplicates, mut late) = (0, 0);
        let events = self.events.get(..self.filled).unwrap_or_default();
        self.source
            .process_group(events, self.now_ms, |_, outcome| match outcome {
                EventOutcome::Duplicate => duplicates += 1,
                EventOutcome::Processed { late: l } => late += l.len() as u64,
            });
        self.duplicates += duplicates;
        self.late += late;
        self.filled = 0;
    }

    /// What `playlake process` does after each input batch: publish the source's
    /// output, route partials and the watermark to the merge level, collect results.
    fn publish(&mut self) {
        self.apply_parsed();
        // The key count only: the full state-size walk is a metrics-interval cost,
        // not per batch.
        let open = self.source.open_session_keys();
        self.max_open_sessions = self.max_open_sessions.max(open);
        let mut output = self.source.take_output();
        self.sums.sessions(&output.sessions);
        for v in output.viewer_partials {
            self.merge.apply(PartialRecord::Viewers(v), self.now_ms);
        }
        for d in output.daily_partials {
            self.merge.apply(PartialRecord::Daily(d), self.now_ms);
        }
        self.resume.apply_all(&mut output.resume_candidates);
        // The resume points to publish, as `playlake process` takes them per flush.
        let published = &mut self.resume_published;
        self.resume.drain_changed(|_| *published += 1);
        let announcement = self.source.announcement(self.now_ms);
        self.merge
            .apply(PartialRecord::Watermark(announcement), self.now_ms);
        self.collect();
    }

    fn collect(&mut self) {
        let (viewers, daily) = self.merge.take_finished();
        self.sums.viewers(&viewers);
        self.sums.daily(&daily);
    }

    fn finish(&mut self) {
        self.apply_parsed();
        self.source.drain();
        self.publish();
        self.merge.drain();
        self.collect();
        self.sums.resume_points = self.resume.len() as u64;
    }
}

/// records.bin (4-byte little-endian length, value; repeated) mapped a window at a
/// time, the records parsed where they lie: the bench measures the operators, not
/// a copy of every record.
///
/// Read with `read(2)` into a buffer, the kernel's copy of the 2.1 GB file was 3% of
/// the bench. Mapped whole, the file's pages counted in the peak RSS; so an 8 MiB
/// window is mapped (pre-faulted, `MAP_POPULATE`), read, and unmapped before the
/// next: the RSS holds one window. The file must not shrink while it is read (a
/// mapped page past the end of a file raises SIGBUS); `gen` writes it once, before.
struct Chunks {
    file: File,
    /// Bytes in the file.
    len: usize,
    /// The mapped window.
    window: Window,
    /// Offset in the file of the next record.
    at: usize,
}

/// A read-only mapping of part of a file (nothing mapped when `len` is 0).
struct Window {
    ptr: *const u8,
    /// Offset in the file of the window's first byte (a multiple of the page size).
    offset: usize,
    len: usize,
}

impl Window {
    const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        offset: 0,
        len: 0,
    };

    /// `[offset, offset + len)` of the file, `offset` page-aligned, `len` > 0.
    fn map(file: &File, offset: usize, len: usize) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let file_offset = libc::off_t::try_from(offset).context("records.bin offset")?;
        // SAFETY: a new private read-only mapping of an open file (no fixed address);
        // failure is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                file_offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "records.bin: mmap of {len} bytes at {offset}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self {
            ptr: ptr.cast_const().cast(),
            offset,
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a live mapping of `len` readable bytes, unmapped only in `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps this window's own mapping, once; the slices lent by
            // `bytes` borrow `self`, so none outlives it.
            unsafe { libc::munmap(self.ptr.cast_mut().cast(), self.len) };
        }
    }
}

impl Chunks {
    const CHUNK_BYTES: usize = 8 << 20;
    /// Window offsets must be multiples of the page size (4 KiB, or a multiple of
    /// it: 64 KiB covers every Linux page size in use).
    const ALIGN: usize = 64 << 10;

    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("{}", path.display()))?;
        let len = usize::try_from(file.metadata()?.len()).context("records.bin size")?;
        Ok(Self {
            file,
            len,
            window: Window::EMPTY,
            at: 0,
        })
    }

    /// Maps the next window, starting at the next record; false at the end of the
    /// file.
    fn fill(&mut self) -> Result<bool> {
        if self.at >= self.len {
            return Ok(false);
        }
        let offset = self.at - self.at % Self::ALIGN;
        let mut len = (self.len - offset).min(Self::CHUNK_BYTES);
        // The next record must fit whole in the window.
        let head = self.at - offset;
        self.window = Window::EMPTY;
        let first = Window::map(&self.file, offset, len)?;
        let record_end = match first.bytes().get(head..head + 4) {
            Some(prefix) => {
                let n = u32::from_le_bytes(prefix.try_into().unwrap_or_default()) as usize;
                head + 4 + n
            }
            None => bail!("records.bin ends inside a record's length"),
        };
        if record_end > len {
            if offset + record_end > self.len {
                bail!("records.bin ends inside a record");
            }
            len = record_end;
            drop(first);
            self.window = Window::map(&self.file, offset, len)?;
        } else {
            self.window = first;
        }
        Ok(true)
    }

    /// The next whole record in the window.
    fn next_record(&mut self) -> Option<&[u8]> {
        let bytes = self.window.bytes();
        let head = self.at.checked_sub(self.window.offset)?;
        let len: [u8; 4] = bytes.get(head..head + 4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len) as usize;
        let record = bytes.get(head + 4..head + 4 + len)?;
        self.at += 4 + len;
        Some(record)
    }
}

/// Records per publish: `playlake process` publishes after each consumed batch.
const BATCH: u64 = 1_000;

#[derive(Serialize)]
struct ProcessorFigures {
    records: u64,
    valid: u64,
    invalid: u64,
    duplicates: u64,
    late: u64,
    resume_points_published: u64,
    seconds: f64,
    events_per_second: f64,
    cpu_seconds: f64,
    events_per_cpu_second: f64,
    peak_rss_bytes: u64,
    state_bytes: u64,
    max_open_sessions: usize,
    bytes_per_open_session: f64,
    checksums: Checksums,
}

fn processor(dir: &Path) -> Result<()> {
    let info: GenInfo = serde_json::from_slice(
        &std::fs::read(dir.join("gen.json")).context("gen.json: run `gen` first")?,
    )?;
    let settings = ProcessorConfig::default().validate()?;
    let mut reader = Chunks::open(&dir.join("records.bin"))?;
    let baseline = rss_bytes("VmRSS");
    let mut ops = Operators::new(&settings, info.now_ms);
    let mut records = 0u64;
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    while reader.fill()? {
        while let Some(value) = reader.next_record() {
            ops.record(value);
            records += 1;
            if records.is_multiple_of(BATCH) {
                ops.publish();
            }
        }
    }
    ops.finish();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    if records != info.records {
        bail!("read {records} records, gen wrote {}", info.records);
    }
    let peak = rss_bytes("VmHWM");
    let state_bytes = peak.saturating_sub(baseline);
    let figures = ProcessorFigures {
        records,
        valid: ops.valid,
        invalid: ops.invalid,
        duplicates: ops.duplicates,
        late: ops.late,
        resume_points_published: ops.resume_published,
        seconds,
        events_per_second: records as f64 / seconds,
        cpu_seconds: cpu,
        events_per_cpu_second: records as f64 / cpu.max(1e-9),
        peak_rss_bytes: peak,
        state_bytes,
        max_open_sessions: ops.max_open_sessions,
        bytes_per_open_session: state_bytes as f64 / ops.max_open_sessions.max(1) as f64,
        checksums: ops.sums,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

#[derive(Serialize)]
struct VolumeFigures {
    records: u64,
    valid: u64,
    seconds: f64,
    events_per_second: f64,
    peak_rss_bytes: u64,
    sessions: u64,
}

/// Seed 003's volume: a generator thread produces batches of raw records, this thread
/// runs every operator over them (the generator's own cost stays off this core).
fn volume(events: u64, viewers: u32, seed: u64) -> Result<()> {
    let config = generator_config(events, viewers, seed);
    let now_ms = config.settled_now_ms();
    let generator = Generator::new(config).context("generator config")?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(64);
    let producer = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH as usize);
        for record in generator {
            batch.push(record.value);
            if batch.len() as u64 == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH as usize));
                if tx.send(full).is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(batch);
    });
    let settings = ProcessorConfig::default().validate()?;
    let mut ops = Operators::new(&settings, now_ms);
    let mut records = 0u64;
    let started = Instant::now();
    for batch in rx {
        for value in &batch {
            ops.record(value);
        }
        records += batch.len() as u64;
        ops.publish();
    }
    ops.finish();
    let seconds = started.elapsed().as_secs_f64();
    if producer.join().is_err() {
        bail!("generator thread panicked");
    }
    let figures = VolumeFigures {
        records,
        valid: ops.valid,
        seconds,
        events_per_second: records as f64 / seconds,
        peak_rss_bytes: rss_bytes("VmHWM"),
        sessions: ops.sums.sessions,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// CPU time this process has run, in seconds (`/proc/self/schedstat`, ns), so a
/// figure measured on a busy machine can be read as work per CPU second too.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// A `/proc/self/status` memory figure (`VmRSS`, `VmHWM`) in bytes; 0 where unknown.
fn rss_bytes(field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
