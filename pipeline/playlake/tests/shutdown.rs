//! Graceful and forced shutdown of `playlake run` (issue 6: "SIGTERM during a busy
//! run: exit 0 within the deadline, and a restart shows nothing lost or
//! duplicated"; a second signal exits at once).
//!
//! Design of [`sigterm_during_a_busy_run_exits_0_within_the_deadline_and_loses_nothing`]:
//!
//! 1. Generated traffic (`common::traffic`: out-of-order, duplicates, bad records)
//!    goes to an 8-partition `<prefix>.events`: a quarter before the start, the rest
//!    by a feeder task in small paced batches *while* `playlake run` (processor and
//!    sink, one process, an `s3://` lake in moto, 1 s sink flushes, 500 ms processor
//!    checkpoints, `shutdown_deadline_seconds = 30` in the config file) works.
//! 2. Once `/readyz` is 200 and both stages have checkpointed a random amount of
//!    work since the start (seed printed; `PLAYLAKE_TEST_SEED` repeats it), SIGTERM
//!    is sent; the feeder must still be producing at that moment, so the signal lands
//!    in a busy run, not an idle one.
//! 3. The process must exit 0 within the configured deadline (measured from the
//!    signal), print both stages' reports, and leave a lake whose `events` table
//!    holds no duplicate and no unexpected row (a clean stop publishes only
//!    committed work).
//! 4. The feeder finishes (input kept arriving while the pipeline was down); then the
//!    pipeline restarts from the same config, groups and checkpoints in drain mode
//!    (`playlake process --drain`, then `playlake sink --drain`).
//! 5. Then: the lake's `events` table (DuckDB and pyarrow, which must agree) holds
//!    every distinct valid event exactly once and nothing else; the lake's
//!    `sessions` table holds exactly the batch reference's sessions, each once; the
//!    processor's output topics, deduplicated by natural key after the
//!    "never two values for one key" check, equal the batch reference
//!    (`playlake_processor::reference`), the DLQ holds every invalid record once and
//!    nothing is late.
//!
//! [`sigterm_to_a_lone_processor_during_a_broker_outage_exits_by_the_deadline`]:
//! `playlake process` run alone against a broker of the test's own (sqlite storage,
//! so it can come back); once the processor has checkpointed every partition, the
//! broker is SIGKILLed, and SIGTERM is sent once the processor's idle timeout has
//! passed, when it is waiting to deliver its partitions' idle announcements to the
//! dead broker. It must exit within its 5 s
//! `--shutdown-deadline-seconds` plus the runtime's grace, with status 1 and a line
//! saying it was abandoned without a final checkpoint. This once took minutes: the
//! processor notices its stop only between steps. (The group keeps its default 45 s
//! session timeout in that run, so librdkafka does not drop the assignment first.) Then the broker
//! comes back, the rest of the input arrives, `process --drain` finishes, and the
//! outputs equal the batch reference: abandoning the stage lost and doubled nothing.
//!
//! [`a_second_signal_exits_at_once`]: `playlake run` against a broker address where
//! nothing listens cannot drain, so after the first SIGTERM it waits for its 60 s
//! deadline; a second SIGTERM must end it at once (status 130) without waiting.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_exactly_once, assert_outputs_equal_reference, checkpoint_progress, dedup_by_key,
    lake_event_keys, outgoing, process_args, produce, read_lake_rows, read_process_outputs, s3_env,
    traffic, wait_for_progress, Rng, StageProcess, FAST_GROUP,
};
use playlake_checkpoint::Lake;
use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_schemas::Session;
use playlake_tests::stack::{s3_bucket, unique_name, Stack};
use playlake_transport::{TopicSpec, Transport};

const PARTITIONS: i32 = 8;
/// `[run] shutdown_deadline_seconds` of the busy run.
const DEADLINE_SECONDS: u64 = 30;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Status and body of `GET path`, or `None` when nothing answers.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Status of `GET /readyz`, or `None` when nothing answers yet.
fn readyz(addr: &str) -> Option<u16> {
    http_get(addr, "/readyz").map(|(status, _)| status)
}

/// The progress-related lines of `/metrics`, for a failure message.
fn progress_metrics(addr: &str) -> String {
    let Some((_, body)) = http_get(addr, "/metrics") else {
        return "(no /metrics answer)".into();
    };
    body.lines()
        .filter(|l| {
            [
                "playlake_records_in_total",
                "playlake_records_out_total",
                "playlake_consumer_lag_records",
                "playlake_stage_ready",
                "playlake_assigned_partitions",
                "playlake_retries_total",
                "playlake_errors_total",
            ]
            .iter()
            .any(|m| l.starts_with(m))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Global flags of every child: the config file, the stack and the fast group.
fn global_args(config: &Path, brokers: &str, prefix: &str, lake: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--brokers",
        brokers,
        "--topic-prefix",
        prefix,
        "--lake",
        lake,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(FAST_GROUP.iter().map(|s| s.to_string()));
    args
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Polls until `stage` exits; returns its status and how long that took. Panics
/// with the log tail after `timeout`.
async fn exit_within(
    stage: &mut StageProcess,
    timeout: Duration,
) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = stage.exited() {
            return (status, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "{} did not exit within {timeout:?} of the signal; last lines:\n{}",
            stage.name,
            stage.tail(60)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_busy_run_exits_0_within_the_deadline_and_loses_nothing() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let mut rng = Rng::from_env("sigterm_during_a_busy_run_exits_0_within_the_deadline");
    let prefix = unique_name("shutdown");
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = s3_bucket(&stack);
    let lake_url = format!("s3://{bucket}/lake");
    let lake = Lake::open_with(&lake_url, &stack.s3_options()).expect("lake");
    let env = s3_env(&stack, &stack.aws_endpoint);
    let transport =
        Arc::new(KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka"));
    let topic = format!("{prefix}.events");
    transport
        .ensure_topic(&TopicSpec::new(&topic, PARTITIONS))
        .await
        .expect("create the events topic");

    let traffic = traffic(60_000, 400, 31);
    let records = outgoing(&topic, &traffic.records);
    let (first, rest) = records.split_at(records.len() / 4);
    let producer = Arc::new(transport.producer().expect("producer"));
    producer.send(first.to_vec()).await.expect("produce");

    let process_group = format!("{prefix}-process");
    let sink_group = format!("{prefix}-sink");
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        format!(
            "[process]\ngroup_id = \"{process_group}\"\ncheckpoint_interval_ms = 500\n\n\
             [sink]\ngroup_id = \"{sink_group}\"\nflush_interval_seconds = 1\n\n\
             [run]\nstages = [\"process\", \"sink\"]\nshutdown_deadline_seconds = {DEADLINE_SECONDS}\n"
        ),
    )
    .expect("config");
    let global = global_args(&config, &stack.brokers, &prefix, &lake_url);
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut run = StageProcess::spawn(
        dir.path(),
        "run",
        &with(global.clone(), &["--metrics-addr", &metrics_addr, "run"]),
        &env,
    );

    // Ready: both stages connected and assigned.
    let deadline = Instant::now() + Duration::from_secs(120);
    while readyz(&metrics_addr) != Some(200) {
        run.assert_running();
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within 120 s; last lines:\n{}",
            run.tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The rest arrives while the run works: ~2,000 records/s.
    let feeder = {
        let producer = Arc::clone(&producer);
        let rest = rest.to_vec();
        tokio::spawn(async move {
            for piece in rest.chunks(400) {
                producer.send(piece.to_vec()).await.expect("produce");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // Busy: both stages have checkpointed work since the start, a random amount.
    let process_scopes: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| [format!("events-{p}"), format!("partials-{p}")])
        .collect();
    let sink_scopes: Vec<String> = (0..PARTITIONS)
        .map(|p| playlake_sink::checkpoint_scope(&sink_group, &topic, p))
        .collect();
    let process_target = rng.range(4, 40);
    let sink_target = rng.range(2, 3 * PARTITIONS as u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (process_done, sink_done) = loop {
        let p = checkpoint_progress(&lake, "process", &process_scopes).await;
        let s = checkpoint_progress(&lake, "sink", &sink_scopes).await;
        if p >= process_target && s >= sink_target {
            break (p, s);
        }
        run.assert_running();
        assert!(
            Instant::now() < deadline,
            "no progress to process {process_target} / sink {sink_target} within 120 s \
             (at {p} / {s}); metrics:\n{}\nlast lines:\n{}",
            progress_metrics(&metrics_addr),
            run.tail(60)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delay = rng.range(0, 500);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    run.assert_running();
    assert!(
        !feeder.is_finished(),
        "input stopped arriving before the signal: the run was not busy"
    );

    run.sigterm();
    let (status, took) = exit_within(&mut run, Duration::from_secs(DEADLINE_SECONDS + 30)).await;
    eprintln!(
        "SIGTERM at checkpoint progress process {process_done} / sink {sink_done} (+{delay} ms): \
         {status} after {took:?}"
    );
    assert!(
        status.success(),
        "playlake run exited with {status} after SIGTERM; last lines:\n{}",
        run.tail(80)
    );
    assert!(
        took <= Duration::from_secs(DEADLINE_SECONDS),
        "exit took {took:?}, past the {DEADLINE_SECONDS} s deadline"
    );
    let (_, out) = run.wait(Duration::from_secs(5)).await;
    let reports: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("playlake run's report is not JSON ({e}):\n{out}"));
    assert!(
        reports["process"]["records_in"].as_u64().unwrap_or(0) > 0
            && reports["sink"]["files_written"].as_u64().unwrap_or(0) > 0,
        "both stages worked before the signal: {reports}"
    );
    assert!(
        std::fs::read_to_string(&run.log)
            .unwrap_or_default()
            .contains("playlake run stopped cleanly"),
        "{}",
        run.tail(40)
    );

    // What a clean stop left in the lake: committed work only, so no copy and
    // nothing that is not a valid event.
    let want_events = traffic.distinct_events();
    let stopped_keys = lake_event_keys(&stack, &lake_url);
    let mut seen = BTreeSet::new();
    for key in &stopped_keys {
        assert!(want_events.contains(key), "unexpected lake row {key:?}");
        assert!(
            seen.insert(key),
            "lake row {key:?} twice after a clean stop"
        );
    }
    assert!(!stopped_keys.is_empty(), "the sink wrote before the signal");
    eprintln!(
        "after the stop: {} of {} events in the lake",
        stopped_keys.len(),
        want_events.len()
    );

    // Input kept arriving while the pipeline was down.
    feeder.await.expect("feeder");

    // Restart from the same config, groups and checkpoints, in drain mode.
    let mut process = StageProcess::spawn(
        dir.path(),
        "process-drain",
        &with(
            global.clone(),
            &["--metrics-addr", "127.0.0.1:0", "process", "--drain"],
        ),
        &env,
    );
    let report = process.report(Duration::from_secs(240)).await;
    eprintln!("process drain: {report}");
    let mut sink = StageProcess::spawn(
        dir.path(),
        "sink-drain",
        &with(
            global.clone(),
            &["--metrics-addr", "127.0.0.1:0", "sink", "--drain"],
        ),
        &env,
    );
    let report = sink.report(Duration::from_secs(240)).await;
    eprintln!("sink drain: {report}");

    // Every valid event exactly once in the lake.
    let keys = lake_event_keys(&stack, &lake_url);
    assert_exactly_once(&keys, &want_events);

    // The processor's results equal the batch reference.
    let outputs = read_process_outputs(&transport, &prefix).await;
    assert_outputs_equal_reference(&outputs, &traffic);

    // The lake's sessions: the reference's, each exactly once, read by both readers.
    let settings = playlake_processor::ProcessorConfig::default()
        .validate()
        .expect("settings");
    let reference = playlake_processor::reference::compute(&traffic.valid, &settings);
    let mut want_sessions: Vec<Session> = dedup_by_key(
        "reference sessions",
        reference.sessions,
        playlake_process::codec::session_key,
    )
    .into_values()
    .collect();
    want_sessions.sort_by_key(|s| s.key());
    let read = read_lake_rows(&stack, &lake_url, &stack.aws_endpoint, &["sessions"]);
    for reader in ["duckdb", "pyarrow"] {
        let mut got: Vec<Session> = read.rows(reader, "sessions");
        got.sort_by_key(|s| s.key());
        if got != want_sessions {
            let mut counts: BTreeMap<_, usize> = BTreeMap::new();
            for s in &got {
                *counts.entry(s.key()).or_default() += 1;
            }
            let copies: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
            let missing: Vec<_> = want_sessions
                .iter()
                .filter(|s| !got.contains(s))
                .take(5)
                .collect();
            panic!(
                "lake sessions by {reader}: {} rows, reference {}; copies (first 5): \
                 {copies:?}; missing or different (first 5): {missing:?}",
                got.len(),
                want_sessions.len()
            );
        }
    }
    eprintln!(
        "after the restart: {} events and {} sessions in the lake, each once",
        keys.len(),
        want_sessions.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_lone_processor_during_a_broker_outage_exits_by_the_deadline() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    /// `--shutdown-deadline-seconds` of the processor.
    const LONE_DEADLINE_SECONDS: u64 = 5;
    /// What may come on top: the runtime's grace for blocking work left behind
    /// (5 s) and process start-up and exit.
    const SLACK_SECONDS: u64 = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_dir = dir.path().join("tansu");
    std::fs::create_dir(&broker_dir).expect("broker dir");
    let mut broker = stack.own_tansu(&broker_dir);
    let brokers = broker.brokers();
    let transport = KafkaTransport::new(KafkaConfig::new(brokers.clone())).expect("kafka");
    let prefix = unique_name("outage");
    let topic = format!("{prefix}.events");
    let traffic = traffic(20_000, 200, 41);
    let (first, rest) = traffic.records.split_at(traffic.records.len() / 2);
    produce(&transport, &topic, PARTITIONS, first).await;

    let lake_url = format!("file://{}", dir.path().join("lake").display());
    let lake = Lake::open(&lake_url).expect("lake");
    let scopes: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| [format!("events-{p}"), format!("partials-{p}")])
        .collect();
    let mut args = process_args(&brokers, &prefix, &lake_url, &format!("{prefix}-process"));
    args.extend(
        [
            "--checkpoint-interval-ms",
            "200",
            "--shutdown-deadline-seconds",
            &LONE_DEADLINE_SECONDS.to_string(),
        ]
        .map(String::from),
    );
    // The group's default session timeout (45 s), not the tests' fast one (3 s):
    // with that, librdkafka drops the assignment 3 s into the outage, the processor
    // owns nothing, and nothing of it waits on the broker any more.
    let mut slow_group = args.clone();
    slow_group.extend(["--kafka-option", "session.timeout.ms=45000"].map(String::from));
    let mut run = StageProcess::spawn(dir.path(), "process", &slow_group, &[]);
    wait_for_progress(
        &mut run,
        2 * PARTITIONS as u64,
        Duration::from_secs(120),
        || checkpoint_progress(&lake, "process", &scopes),
    )
    .await;

    broker.kill();
    // Not a wait for a result but for a known state: no record arrives during the
    // outage, so once the idle timeout (default, counted from each partition's last
    // record, all before the kill) has passed, the processor announces its
    // partitions idle: a send that waits on the dead broker. Without it the signal
    // could find the loop idle, which stops quickly anyway.
    let idle = Duration::from_millis(playlake_processor::config::DEFAULT_IDLE_TIMEOUT_MS as u64);
    tokio::time::sleep(idle + Duration::from_secs(2)).await;
    run.assert_running();
    run.sigterm();
    let (status, took) = exit_within(
        &mut run,
        Duration::from_secs(LONE_DEADLINE_SECONDS + SLACK_SECONDS + 30),
    )
    .await;
    eprintln!("SIGTERM during the broker outage: {status} after {took:?}");
    assert!(
        took <= Duration::from_secs(LONE_DEADLINE_SECONDS + SLACK_SECONDS),
        "exit took {took:?}, past the {LONE_DEADLINE_SECONDS} s deadline; last lines:\n{}",
        run.tail(40)
    );
    assert_eq!(
        status.code(),
        Some(1),
        "stuck on the dead broker, the processor is abandoned at the deadline (exit 1); last lines:\n{}",
        run.tail(40)
    );
    let log = std::fs::read_to_string(&run.log).unwrap_or_default();
    assert!(
        log.contains("did not stop within shutdown_deadline_seconds"),
        "the exit says why; last lines:\n{}",
        run.tail(40)
    );

    broker.start();
    produce(&transport, &topic, PARTITIONS, rest).await;
    args.push("--drain".into());
    let mut finish = StageProcess::spawn(dir.path(), "process-drain", &args, &[]);
    let report = finish.report(Duration::from_secs(240)).await;
    eprintln!("drain after the outage: {report}");
    let outputs = read_process_outputs(&transport, &prefix).await;
    assert_outputs_equal_reference(&outputs, &traffic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("playlake.toml");
    std::fs::write(&config, "[run]\nshutdown_deadline_seconds = 60\n").expect("config");
    // A broker address nothing listens on: the stages can never finish a drain, so
    // only the deadline or a second signal ends the process.
    let brokers = format!("127.0.0.1:{}", free_port());
    let lake = format!("file://{}", dir.path().join("lake").display());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut run = StageProcess::spawn(
        dir.path(),
        "run",
        &with(
            global_args(&config, &brokers, &unique_name("twice"), &lake),
            &["--metrics-addr", &metrics_addr, "run"],
        ),
        &[],
    );
    // Up: the server answers (503: not assigned).
    let deadline = Instant::now() + Duration::from_secs(60);
    while readyz(&metrics_addr).is_none() {
        run.assert_running();
        assert!(
            Instant::now() < deadline,
            "no server within 60 s:\n{}",
            run.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.sigterm();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&run.log)
        .unwrap_or_default()
        .contains("shutdown requested")
    {
        run.assert_running();
        assert!(
            Instant::now() < deadline,
            "the first SIGTERM was not acknowledged within 30 s:\n{}",
            run.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining, and stuck at it: still running after the first signal.
    run.assert_running();
    run.sigterm();
    let (status, took) = exit_within(&mut run, Duration::from_secs(10)).await;
    eprintln!("second SIGTERM: {status} after {took:?}");
    assert_eq!(
        status.code(),
        Some(130),
        "status {status} (signal {:?}); last lines:\n{}",
        status.signal(),
        run.tail(40)
    );
    assert!(
        took < Duration::from_secs(5),
        "the second signal took {took:?}, not at once"
    );
    assert!(
        std::fs::read_to_string(&run.log)
            .unwrap_or_default()
            .contains("second signal"),
        "{}",
        run.tail(40)
    );
}
