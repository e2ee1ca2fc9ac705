//! Shared helpers of the sink's tests: a memory log with sample records, a
//! `file://` lake in a temporary directory, and two independent readers of it (our
//! Parquet reader and pyarrow).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use playlake_checkpoint::Lake;
use playlake_schemas::{EndedBy, Session, TimestampMs};
use playlake_sink::SinkConfig;
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

/// 2025-06-01T00:00:00Z.
pub const T0: i64 = 1_748_736_000_000;
pub const PREFIX: &str = "playback";

pub fn session(i: i64) -> Session {
    Session {
        uuid: format!("u{i}"),
        stream_id: ["s1", "s2", "a/b"][(i % 3) as usize].into(),
        user_id: (i % 2 == 0).then(|| format!("user{i}")),
        // Spread over two days.
        session_start: TimestampMs(T0 + i * 3_600_000 % (48 * 3_600_000)),
        session_end: TimestampMs(T0 + i * 3_600_000 % (48 * 3_600_000) + 30_000),
        position_start: 0.0,
        position_end: 30.0,
        watched_seconds: 30.0,
        event_count: 3,
        seek_count: 0,
        ended_by: EndedBy::Stop,
        start_ordinal: 0,
    }
}

pub fn session_record(s: &Session) -> OutgoingRecord {
    OutgoingRecord {
        topic: format!("{PREFIX}.sessions"),
        partition: None,
        key: Some(format!("{}/{}", s.uuid, s.stream_id).into_bytes()),
        value: Some(serde_json::to_vec(s).expect("session json")),
        headers: Vec::new(),
    }
}

/// A memory log whose input topics exist with `partitions` partitions.
pub async fn transport(partitions: i32) -> MemoryTransport {
    let transport = MemoryTransport::default();
    for suffix in ["sessions", "viewers", "daily", "events", "dlq"] {
        transport
            .ensure_topic(&TopicSpec::new(format!("{PREFIX}.{suffix}"), partitions))
            .await
            .expect("topic");
    }
    transport
}

pub async fn send(transport: &MemoryTransport, records: Vec<OutgoingRecord>) {
    let producer = transport.producer().expect("producer");
    producer.send(records).await.expect("send");
}

pub fn lake(dir: &Path) -> Lake {
    Lake::open(&format!("file://{}", dir.display())).expect("lake")
}

pub fn config(drain: bool) -> SinkConfig {
    SinkConfig {
        drain,
        max_rows_per_file: 7,
        ..SinkConfig::default()
    }
}

pub fn dyn_transport(t: &MemoryTransport) -> Arc<dyn Transport> {
    Arc::new(t.clone())
}

/// Every Parquet file of the tables (not under `_playlake/`).
pub fn parquet_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "_playlake" {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// Rows per partition directory (relative to the lake root), read by our reader.
pub fn rows_per_directory(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for file in parquet_files(root) {
        let rows: usize = read(&file).iter().map(|b| b.num_rows()).sum();
        let dir = file
            .parent()
            .and_then(|p| p.strip_prefix(root).ok())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        *out.entry(dir).or_default() += rows;
    }
    out
}

fn read(file: &Path) -> Vec<arrow::array::RecordBatch> {
    let bytes = bytes::Bytes::from(std::fs::read(file).expect("read file"));
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

/// How often each session uuid occurs in the lake.
pub fn session_uuids(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for file in parquet_files(&root.join("sessions")) {
        for batch in read(&file) {
            let uuid = batch
                .column_by_name("uuid")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .expect("uuid column");
            for i in 0..uuid.len() {
                *out.entry(uuid.value(i).to_owned()).or_default() += 1;
            }
        }
    }
    out
}

/// Rows per partition directory as pyarrow reads them, or `None` (SKIPPED) when
/// no interpreter with pyarrow is there (a failure under `CI=true`).
pub fn pyarrow_rows_per_directory(root: &Path) -> Option<BTreeMap<String, usize>> {
    let python = std::env::var("PLAYLAKE_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
        venv.to_owned()
    });
    let script = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
out = {}
for d, subdirs, files in os.walk(root):
    subdirs[:] = [s for s in subdirs if s != "_playlake"]
    for f in files:
        if f.endswith(".parquet"):
            rel = os.path.relpath(d, root)
            out[rel] = out.get(rel, 0) + pq.ParquetFile(os.path.join(d, f)).read().num_rows
print(json.dumps(out))
"#;
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(root)
        .output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match output {
        Ok(o) if o.status.success() => {
            Some(serde_json::from_slice(&o.stdout).expect("pyarrow output is JSON"))
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(!ci, "pyarrow reader unavailable under CI ({python}): {why}");
            println!("SKIPPED pyarrow check: {python} unavailable: {why}");
            None
        }
    }
}

/// Waits until `check` holds, failing after `deadline`.
pub async fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
