//! Shared support of the crash, scale-out and S3 tests of the `playlake` binary
//! against the real stack: generated traffic and its batch reference, producing and
//! reading topics on Tansu, running `playlake process`/`playlake sink` as child
//! processes that a test can SIGKILL, a seeded random source whose seed is printed,
//! and progress read from the checkpoint store (so kill moments follow real work,
//! not the wall clock).
//!
//! Data flow of a typical test: [`traffic`] -> [`produce`] to `<prefix>.events` ->
//! [`StageProcess::spawn`] (killed and restarted by the test) -> [`read_all`] of the
//! output topics or an independent reader (DuckDB, pyarrow) over the lake.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use playlake_checkpoint::{CheckpointStore, Lake};
use playlake_generator::{Generator, GeneratorConfig};
use playlake_kafka::KafkaTransport;
use playlake_schemas::{parse_playback_event, PlaybackEvent};
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::{
    ConsumerEvent, OutgoingRecord, Position, Record, TopicPartition, TopicSpec, Transport,
};

/// librdkafka settings that let the group notice a SIGKILLed member after 3 s
/// instead of the default 45 s: without them every restart waits for the dead
/// member's session to expire before partitions are assigned again.
pub const FAST_GROUP: [&str; 4] = [
    "--kafka-option",
    "session.timeout.ms=3000",
    "--kafka-option",
    "heartbeat.interval.ms=300",
];

/// Generated playback traffic and what it must give.
pub struct Traffic {
    /// `(key, value)` in delivery order, as `playlake produce` sends them.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    /// The valid events (copies included), parsed as the processor parses them.
    pub valid: Vec<PlaybackEvent>,
    /// Records that are not valid events (they must reach the DLQ).
    pub invalid: u64,
}

impl Traffic {
    /// Distinct `(uuid, event_id)` of the valid events: the rows of the `events` table.
    pub fn distinct_events(&self) -> BTreeSet<(String, String)> {
        self.valid
            .iter()
            .map(|e| (e.uuid.clone(), e.event_id.clone()))
            .collect()
    }
}

/// The same traffic `playlake produce --events N --viewers V --seed S` sends.
pub fn traffic(events: u64, viewers: u32, seed: u64) -> Traffic {
    traffic_of(produce_config(events, viewers, seed))
}

/// The generator settings of `playlake produce --events N --viewers V --seed S
/// --bad-record-fraction 0.002` (the other flags at their defaults).
pub fn produce_config(events: u64, viewers: u32, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        viewers,
        max_events: Some(events),
        duration_ms: 24 * 3_600_000,
        out_of_order_jitter_ms: 3_000,
        duplicate_fraction: 0.01,
        bad_record_fraction: 0.002,
        seed,
        ..GeneratorConfig::default()
    }
}

/// The traffic of `config`, parsed once it has all been delivered.
pub fn traffic_of(config: GeneratorConfig) -> Traffic {
    let now_ms = config.settled_now_ms();
    let generator = Generator::new(config).expect("valid generator settings");
    let records: Vec<(Vec<u8>, Vec<u8>)> = generator.map(|r| (r.key, r.value)).collect();
    let mut valid = Vec::new();
    let mut invalid = 0;
    for (_, value) in &records {
        match parse_playback_event(value, now_ms) {
            Ok(event) => valid.push(event),
            Err(_) => invalid += 1,
        }
    }
    Traffic {
        records,
        valid,
        invalid,
    }
}

/// Creates `topic` with `partitions` and sends `records` (keyed), in batches.
/// Keyed records for `topic`, placed by key.
pub fn outgoing(topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Vec<OutgoingRecord> {
    records
        .iter()
        .map(|(key, value)| OutgoingRecord {
            topic: topic.to_owned(),
            key: Some(key.clone()),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

pub async fn produce(
    transport: &KafkaTransport,
    topic: &str,
    partitions: i32,
    records: &[(Vec<u8>, Vec<u8>)],
) {
    transport
        .ensure_topic(&TopicSpec::new(topic, partitions))
        .await
        .expect("create the input topic");
    let producer = transport.producer().expect("producer");
    for chunk in records.chunks(5_000) {
        producer
            .send(outgoing(topic, chunk))
            .await
            .expect("produce");
    }
}

/// Every record of every partition of `topic`, from the beginning to the end.
pub async fn read_all(transport: &KafkaTransport, topic: &str) -> Vec<Record> {
    let partitions = transport
        .partition_count(topic)
        .await
        .unwrap_or_else(|e| panic!("partition count of {topic}: {e}"));
    let mut consumer = transport
        .consumer(&unique_name("reader"))
        .expect("consumer");
    let positions: Vec<_> = (0..partitions)
        .map(|p| (TopicPartition::new(topic, p), Position::Beginning))
        .collect();
    consumer.assign(&positions).expect("assign");
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach the end of every partition within 120 s"
        );
        for event in consumer
            .poll(10_000, Duration::from_millis(500))
            .await
            .expect("poll")
        {
            match event {
                ConsumerEvent::Records(records) => out.extend(records),
                ConsumerEvent::EndOfPartition { partition, .. } => {
                    done.insert(partition.partition);
                }
                _ => {}
            }
        }
    }
    let _ = consumer.close().await;
    out
}

/// Groups `rows` by natural key and checks that no key ever carries two different
/// values; returns one value per key. `what` names the topic in the failure.
pub fn dedup_by_key<T, K>(what: &str, rows: Vec<T>, key: impl Fn(&T) -> K) -> BTreeMap<K, T>
where
    T: PartialEq + std::fmt::Debug,
    K: Ord + std::fmt::Debug,
{
    let mut out: BTreeMap<K, T> = BTreeMap::new();
    for row in rows {
        let k = key(&row);
        match out.get(&k) {
            Some(seen) => assert_eq!(
                seen, &row,
                "{what}: natural key {k:?} was published with two different values"
            ),
            None => {
                out.insert(k, row);
            }
        }
    }
    out
}

/// A small seeded random source (SplitMix64). The seed comes from
/// `PLAYLAKE_TEST_SEED` when set, else from the clock, and is printed so a failing
/// run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("PLAYLAKE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("{test}: PLAYLAKE_TEST_SEED={seed}");
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// One `playlake <stage>` child process with its log in a file. `Child::kill` sends
/// SIGKILL on Unix: no shutdown hook runs, as in a crash.
pub struct StageProcess {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    stdout: PathBuf,
}

impl StageProcess {
    /// Starts `playlake <args...>` with `env`, logging to `<dir>/<name>.log`.
    pub fn spawn(dir: &Path, name: &str, args: &[String], env: &[(String, String)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let stdout = dir.join(format!("{name}.out"));
        let err = std::fs::File::create(&log).expect("create the log file");
        let out = std::fs::File::create(&stdout).expect("create the stdout file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_playlake"));
        cmd.args(args)
            .env_remove("PLAYLAKE_CONFIG")
            // PLAYLAKE_TEST_STAGE_LOG=debug,... to debug a stage spawned by a test.
            .env(
                "RUST_LOG",
                std::env::var("PLAYLAKE_TEST_STAGE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start playlake {args:?}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
            stdout,
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// The exit status when the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with the log tail when the process has already exited (it should not
    /// exit by itself).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited by itself with {status}; last lines:\n{}",
                self.name,
                self.tail(60)
            );
        }
    }

    /// Waits for the process to exit on its own within `timeout`; returns its exit
    /// status and stdout. Panics with the log tail on timeout.
    pub async fn wait(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
                return (status, out);
            }
            if Instant::now() > deadline {
                self.sigkill();
                panic!(
                    "{} did not finish within {timeout:?}; last lines:\n{}",
                    self.name,
                    self.tail(80)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a successful exit and parses the JSON report it printed.
    pub async fn report(&mut self, timeout: Duration) -> serde_json::Value {
        let (status, out) = self.wait(timeout).await;
        assert!(
            status.success(),
            "{} failed with {status}; last lines:\n{}",
            self.name,
            self.tail(80)
        );
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: report is not JSON ({e}):\n{out}", self.name))
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        self.sigkill();
    }
}

/// The environment a child needs to reach moto's S3 at `endpoint`.
pub fn s3_env(stack: &Stack, endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.to_owned()),
        ("AWS_REGION".into(), stack.aws_region.clone()),
        ("AWS_ACCESS_KEY_ID".into(), stack.aws_access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            stack.aws_secret_access_key.clone(),
        ),
        // Fail fast on a dead endpoint so retries (not one long hang) show up.
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// Progress of a stage: the sum over `scopes` of the latest checkpoint sequence
/// (each checkpoint is written after the work it covers is durable).
pub async fn checkpoint_progress(lake: &Lake, stage: &str, scopes: &[String]) -> u64 {
    let mut sum = 0;
    for scope in scopes {
        let store = CheckpointStore::new(lake, stage, scope).expect("checkpoint store");
        // A listing may race with garbage collection; a failed one counts as no news.
        if let Ok(sequences) = store.list_sequences().await {
            sum += sequences.iter().map(|s| s.get()).max().unwrap_or(0);
        }
    }
    sum
}

/// Polls `progress` until it reaches `target`, while `stage` keeps running; panics
/// after `timeout` with the stage's log tail.
pub async fn wait_for_progress<F, Fut>(
    stage: &mut StageProcess,
    target: u64,
    timeout: Duration,
    mut progress: F,
) -> u64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let now = progress().await;
        if now >= target {
            return now;
        }
        stage.assert_running();
        assert!(
            Instant::now() < deadline,
            "{} made no progress to {target} (at {now}) within {timeout:?}; last lines:\n{}",
            stage.name,
            stage.tail(60)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `playlake process` arguments common to the tests.
pub fn process_args(stack_brokers: &str, prefix: &str, lake: &str, group: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "process",
        "--brokers",
        stack_brokers,
        "--topic-prefix",
        prefix,
        "--lake",
        lake,
        "--group",
        group,
        // No two children may compete for the default metrics port.
        "--metrics-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(FAST_GROUP.iter().map(|s| s.to_string()));
    args
}

/// The processor's outputs read back from the topics, each deduplicated by natural
/// key after checking that no key was ever published with two different values.
pub struct ProcessOutputs {
    pub sessions: BTreeMap<String, playlake_schemas::Session>,
    pub viewers: BTreeMap<String, playlake_schemas::ViewerWindow>,
    pub daily: BTreeMap<String, playlake_schemas::DailyStat>,
    /// The last record of each `<prefix>.resume` key (compacted-topic semantics).
    pub resume: BTreeMap<String, playlake_schemas::ResumePoint>,
    /// DLQ records by source coordinates `(partition, offset)`.
    pub dlq: BTreeSet<(String, String)>,
    /// Records of `<prefix>.late`.
    pub late: usize,
    /// Records read from the sessions topic (copies included).
    pub session_records: usize,
}

fn decode<T: serde::de::DeserializeOwned>(topic: &str, record: &Record) -> T {
    let value = record.value.as_deref().unwrap_or_default();
    serde_json::from_slice(value).unwrap_or_else(|e| {
        panic!(
            "{topic}[{}]@{}: not a result row ({e}): {}",
            record.partition,
            record.offset,
            String::from_utf8_lossy(value)
        )
    })
}

/// Reads every output topic of the processor under `prefix`.
pub async fn read_process_outputs(transport: &KafkaTransport, prefix: &str) -> ProcessOutputs {
    use playlake_process::codec::{daily_key, session_key, viewer_key};
    let topic = |suffix: &str| format!("{prefix}.{suffix}");
    let sessions_raw = read_all(transport, &topic("sessions")).await;
    let session_records = sessions_raw.len();
    let sessions = dedup_by_key(
        "sessions",
        sessions_raw
            .iter()
            .map(|r| decode::<playlake_schemas::Session>("sessions", r))
            .collect(),
        session_key,
    );
    let viewers = dedup_by_key(
        "viewers",
        read_all(transport, &topic("viewers"))
            .await
            .iter()
            .map(|r| decode::<playlake_schemas::ViewerWindow>("viewers", r))
            .collect(),
        viewer_key,
    );
    let daily = dedup_by_key(
        "daily",
        read_all(transport, &topic("daily"))
            .await
            .iter()
            .map(|r| decode::<playlake_schemas::DailyStat>("daily", r))
            .collect(),
        daily_key,
    );
    let mut resume_records = read_all(transport, &topic("resume")).await;
    resume_records.sort_by_key(|r| (r.partition, r.offset));
    let mut resume = BTreeMap::new();
    for record in &resume_records {
        let row: playlake_schemas::ResumePoint = decode("resume", record);
        resume.insert(row.key(), row);
    }
    let header = |r: &Record, name: &str| {
        String::from_utf8_lossy(r.header(name).unwrap_or_default()).into_owned()
    };
    let dlq = read_all(transport, &topic("dlq"))
        .await
        .iter()
        .map(|r| {
            (
                header(r, playlake_schemas::SOURCE_PARTITION_HEADER),
                header(r, playlake_schemas::SOURCE_OFFSET_HEADER),
            )
        })
        .collect();
    let late = read_all(transport, &topic("late")).await.len();
    ProcessOutputs {
        sessions,
        viewers,
        daily,
        resume,
        dlq,
        late,
        session_records,
    }
}

/// Asserts that `outputs` equal the batch reference of `traffic`, row for row.
pub fn assert_outputs_equal_reference(outputs: &ProcessOutputs, traffic: &Traffic) {
    use playlake_process::codec::{daily_key, session_key, viewer_key};
    use playlake_processor::{reference, ProcessorConfig};
    let settings = ProcessorConfig::default().validate().expect("settings");
    let expected = reference::compute(&traffic.valid, &settings);
    // The reference itself must not give one natural key two different rows,
    // or "dedup by key" could not be exactly-once.
    let want_sessions = dedup_by_key("reference sessions", expected.sessions, session_key);
    let want_viewers = dedup_by_key("reference viewers", expected.viewers, viewer_key);
    let want_daily = dedup_by_key("reference daily", expected.daily, daily_key);
    let want_resume: BTreeMap<String, _> =
        expected.resume.into_iter().map(|r| (r.key(), r)).collect();
    assert!(want_sessions.len() > 100, "the traffic must make sessions");
    let diff = |what: &str, got: usize, want: usize, missing: Vec<String>, extra: Vec<String>| {
        format!(
            "{what}: {got} rows, reference {want}; missing (first 5): {missing:?}; \
             unexpected (first 5): {extra:?}"
        )
    };
    macro_rules! same {
        ($what:literal, $got:expr, $want:expr) => {
            if $got != $want {
                let missing: Vec<String> = $want
                    .iter()
                    .filter(|(k, v)| $got.get(*k) != Some(*v))
                    .take(5)
                    .map(|(k, v)| format!("{k}: {v:?} (got {:?})", $got.get(k)))
                    .collect();
                let extra: Vec<String> = $got
                    .keys()
                    .filter(|k| !$want.contains_key(*k))
                    .take(5)
                    .cloned()
                    .collect();
                panic!("{}", diff($what, $got.len(), $want.len(), missing, extra));
            }
        };
    }
    same!("sessions", outputs.sessions, want_sessions);
    same!("viewers", outputs.viewers, want_viewers);
    same!("daily", outputs.daily, want_daily);
    same!("resume", outputs.resume, want_resume);
    assert_eq!(
        outputs.dlq.len() as u64,
        traffic.invalid,
        "every invalid record reaches the DLQ once (by source coordinates)"
    );
    assert_eq!(
        outputs.late, 0,
        "nothing is late: the jitter is inside the bound"
    );
}

/// Reads a lake's tables with DuckDB and with pyarrow, independently of our code:
/// prints every data file's path relative to the lake root, then every row of each
/// table as JSON per reader. For `s3://` roots, pyarrow reads moto directly
/// (`S3FileSystem`) and DuckDB reads a boto3 download. Partition columns other than
/// `stream_id` are dropped (they are not row fields); `stream_id` of `sessions`
/// lives only in the path, so it comes from the Hive partition (a null, Hive's
/// empty-or-null directory, is given as "").
const READ_LAKE: &str = r#"
import sys, os, json, tempfile
import duckdb, boto3
import pyarrow as pa, pyarrow.dataset as ds, pyarrow.fs as pafs
root, tables = sys.argv[1], [t for t in sys.argv[2].split(",") if t]
PARTS = {"sessions": ["dt", "stream_id"], "viewers": ["dt", "stream_id"], "daily": ["dt"],
         "errors": ["dt"], "events": ["dt", "hour"], "cdc": ["table", "dt", "hour"]}
if root.startswith("s3://"):
    bucket, _, prefix = root[5:].partition("/")
    prefix = prefix.strip("/")
    s3 = boto3.client("s3")
    local = tempfile.mkdtemp()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) + 1:]
            print(json.dumps({"path": rel}))
            dest = os.path.join(local, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            s3.download_file(bucket, o["Key"], dest)
    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http",
                           access_key=os.environ["AWS_ACCESS_KEY_ID"],
                           secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                           region=os.environ["AWS_REGION"])
    arrow_root = bucket + "/" + prefix
else:
    local = root
    for d, _, files in os.walk(root):
        for f in files:
            print(json.dumps({"path": os.path.relpath(os.path.join(d, f), root)}))
    fs = pafs.LocalFileSystem()
    arrow_root = root

def clean(table, row):
    for c in PARTS[table]:
        if c == "stream_id" and table in ("sessions", "viewers"):
            if row.get(c) is None:
                row[c] = ""
        else:
            row.pop(c, None)
    return row

for table in tables:
    if not os.path.isdir(os.path.join(local, table)):
        continue
    rel = duckdb.sql(f"select * from read_parquet('{local}/{table}/**/*.parquet', hive_partitioning=true, hive_types_autocast=false)")
    cols = [f'epoch_ms("{c}") as "{c}"' if "TIMESTAMP" in str(t).upper() else f'"{c}"' for c, t in zip(rel.columns, rel.types)]
    rel = duckdb.sql(f"select {', '.join(cols)} from read_parquet('{local}/{table}/**/*.parquet', hive_partitioning=true, hive_types_autocast=false)")
    for values in rel.fetchall():
        row = clean(table, dict(zip(rel.columns, values)))
        print(json.dumps({"reader": "duckdb", "table": table, "row": row}))
    part = ds.partitioning(pa.schema([(c, pa.string()) for c in PARTS[table]]), flavor="hive")
    data = ds.dataset(arrow_root + "/" + table, format="parquet", partitioning=part, filesystem=fs).to_table()
    for i, field in enumerate(data.schema):
        if pa.types.is_timestamp(field.type):
            data = data.set_column(i, field.name, data.column(i).cast(pa.int64()))
    for row in data.to_pylist():
        print(json.dumps({"reader": "pyarrow", "table": table, "row": clean(table, row)}))
"#;

/// What [`read_lake_rows`] found.
pub struct LakeRead {
    /// Paths of every object/file under the lake root, relative to it.
    pub paths: Vec<String>,
    /// `(reader, table)` -> rows as JSON objects.
    pub rows: BTreeMap<(String, String), Vec<serde_json::Value>>,
}

impl LakeRead {
    /// The rows `reader` found in `table`, decoded as `T`.
    pub fn rows<T: serde::de::DeserializeOwned>(&self, reader: &str, table: &str) -> Vec<T> {
        self.rows
            .get(&(reader.to_owned(), table.to_owned()))
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        serde_json::from_value(row.clone()).unwrap_or_else(|e| {
                            panic!("{reader} {table}: row does not decode ({e}): {row}")
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads `tables` of the lake at `root` (a local directory or `s3://bucket/prefix`)
/// with DuckDB and pyarrow; S3 requests go to `endpoint`.
pub fn read_lake_rows(stack: &Stack, root: &str, endpoint: &str, tables: &[&str]) -> LakeRead {
    let mut python = stack.clone();
    python.aws_endpoint = endpoint.to_owned();
    let out = python.run_python(READ_LAKE, &[root, &tables.join(",")]);
    let mut read = LakeRead {
        paths: Vec::new(),
        rows: BTreeMap::new(),
    };
    for line in out.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("reader output ({e}): {line}"));
        if let Some(path) = value["path"].as_str() {
            read.paths.push(path.to_owned());
        } else {
            let key = (
                value["reader"].as_str().unwrap_or_default().to_owned(),
                value["table"].as_str().unwrap_or_default().to_owned(),
            );
            read.rows.entry(key).or_default().push(value["row"].clone());
        }
    }
    read
}

/// `(uuid, event_id)` of every row of the lake's `events` table, as DuckDB counts
/// them (copies included). `stack.aws_endpoint` must point at the lake's S3.
pub fn lake_event_keys(stack: &Stack, lake: &str) -> Vec<(String, String)> {
    let root = lake.strip_prefix("file://").unwrap_or(lake);
    let read = read_lake_rows(stack, root, &stack.aws_endpoint, &["events"]);
    let keys = |reader: &str| -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = read
            .rows
            .get(&(reader.to_owned(), "events".to_owned()))
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r["uuid"].as_str().unwrap_or_default().to_owned(),
                            r["event_id"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let duckdb = keys("duckdb");
    assert_eq!(duckdb, keys("pyarrow"), "DuckDB and pyarrow disagree");
    duckdb
}

/// Asserts every expected key is present exactly once and nothing else is.
pub fn assert_exactly_once(got: &[(String, String)], want: &BTreeSet<(String, String)>) {
    let mut counts: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for key in got {
        *counts.entry(key).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let missing: Vec<_> = want
        .iter()
        .filter(|k| !counts.contains_key(k))
        .take(5)
        .collect();
    let unexpected: Vec<_> = counts
        .keys()
        .filter(|k| !want.contains(**k))
        .take(5)
        .collect();
    assert!(
        duplicated.is_empty() && missing.is_empty() && unexpected.is_empty(),
        "{} rows, {} distinct, {} expected; duplicated (first 5): {duplicated:?}; \
         missing (first 5): {missing:?}; unexpected (first 5): {unexpected:?}",
        got.len(),
        counts.len(),
        want.len()
    );
}
