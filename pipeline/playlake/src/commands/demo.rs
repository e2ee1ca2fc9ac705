//! `playlake demo`: the whole pipeline in one process with no server at all.
//!
//! Deterministic, realistic playback traffic (`playlake-generator`: live streams and
//! VODs, 5 s heartbeats, seeks, pauses, stops, out-of-order and duplicate delivery, a
//! few bad records) goes into the in-process log, then through the very same
//! processor (`playlake_process::run`) and sink (`playlake_sink::run`) code the
//! Kafka deployment runs, in drain mode, into a local lake. It ends by printing what
//! each stage did and the answers to three of the shipped questions
//! (`deploy/athena/queries/`), read back from the lake by `playlake query`'s engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use playlake_checkpoint::Lake;
use playlake_generator::{Generator, GeneratorConfig};
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

use crate::config::{LakeUrl, Settings};
use crate::topics::Topics;

/// Marks a lake directory as the demo's own, so a re-run may replace it.
const DEMO_MARKER: &str = "_playlake/demo-lake";
/// Records handed to the in-process log per append.
const BATCH_RECORDS: usize = 10_000;

pub struct DemoOptions {
    pub events: u64,
    pub viewers: u32,
    pub seed: u64,
    pub partitions: i32,
}

pub async fn run(
    settings: &Settings,
    process: playlake_process::ProcessConfig,
    sink: playlake_sink::SinkConfig,
    options: DemoOptions,
) -> anyhow::Result<()> {
    let LakeUrl::File(dir) = &settings.lake else {
        bail!(
            "playlake demo writes a local lake; give --lake file://DIR (it was {})",
            settings.lake
        );
    };
    prepare_lake_dir(dir)?;
    let started = Instant::now();

    let transport = MemoryTransport::new();
    let topics = Topics::new(&settings.topic_prefix);
    transport
        .ensure_topic(&TopicSpec::new(topics.events(), options.partitions))
        .await?;

    // 1. Generate and append the traffic.
    let generator_config = GeneratorConfig {
        viewers: options.viewers,
        max_events: Some(options.events),
        duration_ms: 24 * 3_600_000,
        seed: options.seed,
        ..GeneratorConfig::default()
    };
    let mut generator =
        Generator::new(generator_config).context("the demo's traffic settings are invalid")?;
    let producer = transport.memory_producer();
    let events_topic = topics.events();
    let mut batch = Vec::with_capacity(BATCH_RECORDS);
    for record in generator.by_ref() {
        batch.push(OutgoingRecord {
            topic: events_topic.clone(),
            key: Some(record.key),
            value: Some(record.value),
            ..OutgoingRecord::default()
        });
        if batch.len() == BATCH_RECORDS {
            producer.send_now(std::mem::take(&mut batch))?;
        }
    }
    producer.send_now(batch)?;
    let generated = generator.summary();
    eprintln!(
        "generated {} records ({} events, {} duplicates, {} bad) from {} players on {} streams",
        generated.records,
        generated.valid_events,
        generated.duplicates,
        generated.bad_records,
        generated.distinct_uuids,
        generated.distinct_streams
    );

    // 2. The processor, in drain mode: every session, window and day becomes final.
    let lake = Lake::open(&settings.lake.to_string())
        .with_context(|| format!("opening the lake {}", settings.lake))?;
    let shared: Arc<dyn Transport> = Arc::new(transport.clone());
    let process_started = Instant::now();
    let processed = playlake_process::run(
        shared.clone(),
        lake.clone(),
        process,
        std::future::pending::<()>(),
    )
    .await
    .context("the processor failed")?;
    let process_seconds = process_started.elapsed().as_secs_f64();
    eprintln!("processed in {process_seconds:.1} s");

    // 3. The sink, in drain mode: results and raw streams into Parquet.
    let sink_started = Instant::now();
    let written = playlake_sink::run(shared, lake, sink, std::future::pending::<()>())
        .await
        .context("the sink failed")?;
    let sink_seconds = sink_started.elapsed().as_secs_f64();

    let late: u64 = processed.late_by_operator.values().sum();
    let dlq: u64 = processed.dlq_by_reason.values().sum();
    println!(
        "playlake demo: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  records in        {}", processed.records_in);
    println!("  valid events      {}", processed.valid);
    println!("  duplicates        {}", processed.duplicates);
    println!("  to the DLQ        {dlq}  {:?}", processed.dlq_by_reason);
    println!(
        "  late (per op.)    {late}  {:?}",
        processed.late_by_operator
    );
    println!("  sessions          {}", processed.sessions_out);
    println!("  viewer windows    {}", processed.viewers_out);
    println!("  daily stats       {}", processed.daily_out);
    println!("  resume points     {}", processed.resume_out);
    println!(
        "  processor         {:.0} records/s",
        processed.records_in as f64 / process_seconds.max(1e-9)
    );
    println!(
        "  lake              {} files, {} bytes, {} rows {:?} ({:.0} rows/s)",
        written.files_written,
        written.bytes_written,
        written.total_rows(),
        written.rows_written,
        written.total_rows() as f64 / sink_seconds.max(1e-9)
    );
    println!("  lake path         {}", dir.display());

    // 4. Answers to sample questions, with the shipped SQL and the engine of
    //    `playlake query`, read back from the Parquet files just written.
    print_sample_answers(&settings.lake.to_string()).await?;
    Ok(())
}

/// Shipped queries (`deploy/athena/queries/`) whose answers the demo prints.
const SAMPLE_QUERIES: [&str; 3] = [
    "top_streams_by_watch_time.sql",
    "peak_viewers_per_day.sql",
    "sessions_per_uuid.sql",
];
/// Rows shown per sample answer.
const SAMPLE_ROWS: usize = 5;

async fn print_sample_answers(lake: &str) -> anyhow::Result<()> {
    let engine = playlake_query::LakeQuery::open(lake)
        .await
        .context("opening the demo lake to answer the sample questions")?;
    for file in SAMPLE_QUERIES {
        let Some(query) = playlake_query::shipped(file) else {
            bail!("{file} is not a shipped query");
        };
        let result = engine
            .sql(query.sql)
            .await
            .with_context(|| format!("running deploy/athena/queries/{file}"))?;
        println!();
        println!("{} (deploy/athena/queries/{file}):", query.title);
        println!("{}", result.to_table(SAMPLE_ROWS)?);
        let rows = result.num_rows();
        if rows > SAMPLE_ROWS {
            println!(
                "  ... {} more rows: playlake query --lake {lake} --file deploy/athena/queries/{file}",
                rows - SAMPLE_ROWS
            );
        }
    }
    Ok(())
}

/// The demo owns its lake: a directory it made before is replaced, so re-running is
/// safe; any other non-empty directory is refused rather than touched.
fn prepare_lake_dir(dir: &Path) -> anyhow::Result<()> {
    let marker: PathBuf = dir.join(DEMO_MARKER);
    let non_empty = dir
        .read_dir()
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if non_empty {
        if !marker.exists() {
            bail!(
                "{} is not empty and was not made by playlake demo; give the demo its own --lake file://DIR",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo lake {}", dir.display()))?;
    }
    if let Some(parent) = marker.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the demo lake {}", dir.display()))?;
    }
    std::fs::write(&marker, b"made by playlake demo; replaced on every run\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}
