//! `playlake-bench sink`: the sink's own speed, without a broker.
//!
//! `bench/run sink` measures topic to Parquet through Tansu, whose fetch rate bounds
//! both sinks. This measures the sink itself: the same record values as on
//! `playback.events` (JSON, keyed by uuid) are loaded into the in-process log
//! (`playlake_transport::memory`, the transport of `playlake demo`) before the clock
//! starts, then the real sink code (`playlake_sink::run`, `--drain`, events table)
//! writes them into a `file://` lake with its default settings (128 MiB target).
//!
//! ```text
//! gen  playlake-generator (one live stream, one hour) --> sink-records.bin
//!      ([u32 LE key length][key][u32 LE value length][value])*
//! run  sink-records.bin --send_now--> MemoryTransport <prefix>.events (N partitions)
//!      --playlake_sink::run (drain)--> <lake>/events/dt=.../hour=.../*.parquet
//! ```
//!
//! The busy hour puts every row into one lake partition directory
//! (`events/dt=2025-06-01/hour=00`), so its files roll on size. The Python peer
//! (`bench/peers/python_sink.py --file`) reads the same file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use playlake_checkpoint::Lake;
use playlake_generator::{Generator, GeneratorConfig, RecordKind};
use playlake_schemas::Table;
use playlake_sink::SinkConfig;
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};
use serde::{Deserialize, Serialize};

use crate::rss_bytes;

/// Records handed to the in-process log per append.
const LOAD_BATCH: usize = 10_000;
const RECORDS_FILE: &str = "sink-records.bin";
const INFO_FILE: &str = "sink-gen.json";

#[derive(Args)]
pub struct SinkArgs {
    #[command(subcommand)]
    command: SinkCommand,
}

#[derive(Subcommand)]
enum SinkCommand {
    /// A busy hour: one live stream watched by `--viewers` for one hour, every event
    /// in one lake partition directory (events/dt=2025-06-01/hour=00).
    Gen {
        /// Concurrent viewer slots (about 600 events each per hour).
        #[arg(long, default_value_t = 15_000)]
        viewers: u32,
        /// Stop after this many valid events (default: the whole hour).
        #[arg(long)]
        events: Option<u64>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load the records into the in-process log, then run the sink (`--drain`, events
    /// table) to completion into a file:// lake; prints the figures as JSON.
    Run {
        /// Directory written by `sink gen`.
        #[arg(long)]
        dir: PathBuf,
        /// Lake directory (emptied first).
        #[arg(long)]
        lake: PathBuf,
        /// Partitions of the input topic (files are per directory and input partition).
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Roll files at this size (default: the sink's default, 128 MiB).
        #[arg(long)]
        target_file_bytes: Option<u64>,
    },
}

pub fn main(args: SinkArgs) -> Result<()> {
    match args.command {
        SinkCommand::Gen {
            viewers,
            events,
            seed,
            out,
        } => gen(viewers, events, seed, &out),
        SinkCommand::Run {
            dir,
            lake,
            partitions,
            target_file_bytes,
        } => run(&dir, &lake, partitions, target_file_bytes),
    }
}

/// One live stream, one hour from 2025-06-01T00:00Z: every event_time falls in
/// hour 00. No duplicates: the Python peer does not deduplicate (ours does, by
/// natural key), so with duplicates the two lakes could not hold the same rows.
fn busy_hour(viewers: u32, events: Option<u64>, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        viewers,
        live_streams: 1,
        vod_streams: 0,
        live_fraction: 1.0,
        duration_ms: 3_600_000,
        duplicate_fraction: 0.0,
        max_events: events,
        seed,
        ..GeneratorConfig::default()
    }
}

#[derive(Serialize, Deserialize)]
struct SinkGenInfo {
    records: u64,
    valid: u64,
    bad: u64,
    value_bytes: u64,
    viewers: u32,
    seconds: f64,
}

fn gen(viewers: u32, events: Option<u64>, seed: u64, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = Instant::now();
    let generator = Generator::new(busy_hour(viewers, events, seed)).context("generator config")?;
    let mut file = BufWriter::with_capacity(1 << 20, File::create(out.join(RECORDS_FILE))?);
    let mut info = SinkGenInfo {
        records: 0,
        valid: 0,
        bad: 0,
        value_bytes: 0,
        viewers,
        seconds: 0.0,
    };
    for record in generator {
        for part in [&record.key, &record.value] {
            let len = u32::try_from(part.len()).context("record over 4 GiB")?;
            file.write_all(&len.to_le_bytes())?;
            file.write_all(part)?;
        }
        info.records += 1;
        info.value_bytes += record.value.len() as u64;
        match record.kind {
            RecordKind::Valid => info.valid += 1,
            RecordKind::Duplicate => bail!("the busy hour has no duplicates"),
            RecordKind::Bad(_) => info.bad += 1,
        }
    }
    file.flush()?;
    info.seconds = started.elapsed().as_secs_f64();
    std::fs::write(out.join(INFO_FILE), serde_json::to_vec_pretty(&info)?)?;
    println!("{}", serde_json::to_string(&info)?);
    Ok(())
}

/// Reads one length-prefixed field; `None` at a clean end of file.
fn read_field(reader: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<()>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    buf.resize(u32::from_le_bytes(len) as usize, 0);
    reader.read_exact(buf)?;
    Ok(Some(()))
}

/// Appends every record of the file to `topic`; returns (records, value bytes).
fn load(path: &Path, transport: &MemoryTransport, topic: &str) -> Result<(u64, u64)> {
    let mut reader = BufReader::with_capacity(
        1 << 20,
        File::open(path).with_context(|| format!("{}: run `sink gen` first", path.display()))?,
    );
    let producer = transport.memory_producer();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut batch = Vec::with_capacity(LOAD_BATCH);
    let mut key = Vec::new();
    let mut value = Vec::new();
    while read_field(&mut reader, &mut key)?.is_some() {
        if read_field(&mut reader, &mut value)?.is_none() {
            bail!("{}: truncated after {records} records", path.display());
        }
        records += 1;
        bytes += value.len() as u64;
        batch.push(OutgoingRecord {
            topic: topic.to_owned(),
            key: Some(key.clone()),
            value: Some(value.clone()),
            ..OutgoingRecord::default()
        });
        if batch.len() == LOAD_BATCH {
            producer.send_now(std::mem::take(&mut batch))?;
        }
    }
    producer.send_now(batch)?;
    Ok((records, bytes))
}

#[derive(Serialize)]
struct LakeFile {
    dir: String,
    bytes: u64,
    rows: u64,
}

#[derive(Serialize)]
struct SinkFigures {
    records: u64,
    rows: u64,
    input_bytes: u64,
    partitions: i32,
    seconds: f64,
    rows_per_second: f64,
    mb_per_second: f64,
    cpu_seconds: f64,
    rows_per_cpu_second: f64,
    /// Peak RSS of the process while the sink ran (the loaded log included).
    peak_rss_bytes: u64,
    /// RSS once the log was loaded, before the sink started.
    rss_after_load_bytes: u64,
    /// Peak RSS above that: the sink's own memory.
    sink_peak_bytes: u64,
    target_file_bytes: u64,
    report: playlake_sink::SinkReport,
    files: Vec<LakeFile>,
    load_seconds: f64,
}

fn run(dir: &Path, lake_dir: &Path, partitions: i32, target: Option<u64>) -> Result<()> {
    let defaults = SinkConfig::default();
    let config = SinkConfig {
        group_id: "bench-sink".into(),
        tables: vec![Table::Events],
        topic_partitions: partitions,
        target_file_size_bytes: target.unwrap_or(defaults.target_file_size_bytes),
        drain: true,
        ..defaults
    };
    let topic = format!("{}.events", config.topic_prefix);
    if lake_dir.exists() {
        std::fs::remove_dir_all(lake_dir)
            .with_context(|| format!("emptying {}", lake_dir.display()))?;
    }
    std::fs::create_dir_all(lake_dir)?;
    let lake_dir = lake_dir.canonicalize()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let transport = MemoryTransport::new();
    runtime.block_on(transport.ensure_topic(&TopicSpec::new(topic.clone(), partitions)))?;
    let load_started = Instant::now();
    let (records, input_bytes) = load(&dir.join(RECORDS_FILE), &transport, &topic)?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let rss_after_load = rss_bytes("VmRSS");
    reset_peak_rss();

    let lake = Lake::open(&format!("file://{}", lake_dir.display()))?;
    let shared: Arc<dyn Transport> = Arc::new(transport.clone());
    let target_file_bytes = config.target_file_size_bytes;
    let cpu_started = cpu_seconds();
    let started = Instant::now();
    let report = runtime
        .block_on(playlake_sink::run(
            shared,
            lake,
            config,
            std::future::pending::<()>(),
        ))
        .context("the sink failed")?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_started;
    let peak = rss_bytes("VmHWM");
    drop(transport);

    let mut files = Vec::new();
    collect_files(&lake_dir, &lake_dir, &mut files)?;
    let rows = report.total_rows();
    let figures = SinkFigures {
        records,
        rows,
        input_bytes,
        partitions,
        seconds,
        rows_per_second: rows as f64 / seconds,
        mb_per_second: input_bytes as f64 / seconds / 1e6,
        cpu_seconds: cpu,
        rows_per_cpu_second: rows as f64 / cpu.max(1e-9),
        peak_rss_bytes: peak,
        rss_after_load_bytes: rss_after_load,
        sink_peak_bytes: peak.saturating_sub(rss_after_load),
        target_file_bytes,
        report,
        files,
        load_seconds,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// Every Parquet file of the lake's tables (not `_playlake/`), with its directory
/// relative to the lake and its row count from the footer.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<LakeFile>) -> Result<()> {
    // In name order: a directory's files by offset (their names), after it.
    let mut entries = std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "_playlake" {
                collect_files(root, &path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "parquet") {
            let reader = parquet::file::reader::SerializedFileReader::new(File::open(&path)?)?;
            let rows = parquet::file::reader::FileReader::metadata(&reader)
                .file_metadata()
                .num_rows();
            out.push(LakeFile {
                dir: dir.strip_prefix(root)?.to_string_lossy().into_owned(),
                bytes: entry.metadata()?.len(),
                rows: u64::try_from(rows)?,
            });
        }
    }
    Ok(())
}

/// User plus system CPU time of every thread of this process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the peak measured
/// afterwards is the sink's, not the loading's.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS ({e}); peak_rss_bytes includes the loading");
    }
}
