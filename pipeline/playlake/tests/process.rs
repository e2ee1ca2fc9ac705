//! `playlake process --drain` then `playlake sink --drain`, end to end against the
//! real test broker (Tansu): the sessions, viewer windows and daily stats published
//! equal the batch reference computed from the same events, invalid records reach
//! the DLQ, a second drain publishes nothing new, and DuckDB (an independent reader)
//! finds every result in the lake exactly once.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_processor::{reference, ProcessorConfig};
use playlake_schemas::{parse_playback_event, DailyStat, Session, ViewerWindow};
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

mod common;

const PARTITIONS: i32 = 3;
/// 2026-11-21T23:58:00Z: the traffic crosses midnight.
const START_MS: i64 = 1_763_769_480_000;

/// Deterministic traffic in event-time order (as players send it): 9 players over
/// 3 streams, 5 s heartbeats, one gap that splits a session, stops, seeks, a
/// duplicate per player, and two invalid records.
fn traffic() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(i64, String, Vec<u8>)> = Vec::new();
    for p in 0..9i64 {
        let uuid = format!("player-{p}");
        let stream = format!("stream-{}", p % 3);
        let user = if p % 2 == 0 {
            format!("\"user-{}\"", p / 2)
        } else {
            "null".into()
        };
        let mut t = START_MS + p * 1_000;
        let mut pos = 0.0f64;
        for i in 0..40i64 {
            let kind = match i {
                0 => "start",
                17 => "seek",
                39 if p % 3 == 0 => "stop",
                _ => "heartbeat",
            };
            let (from, to) = if kind == "seek" {
                (pos, pos + 100.0)
            } else {
                (pos, pos + 5.0)
            };
            let value = format!(
                r#"{{"uuid":"{uuid}","stream_id":"{stream}","user_id":{user},"event_type":"{kind}","event_time":{t},"position_start":{from},"position_end":{to}}}"#
            );
            let value = value.into_bytes();
            if i == 5 {
                // A byte-identical duplicate.
                out.push((t, uuid.clone(), value.clone()));
            }
            out.push((t, uuid.clone(), value));
            pos = to;
            // Player 4 pauses for 2 minutes once: its session is cut by the gap.
            t += if p == 4 && i == 20 { 120_000 } else { 5_000 };
        }
    }
    out.sort_by_key(|(t, _, _)| *t);
    let mut out: Vec<(String, Vec<u8>)> = out.into_iter().map(|(_, k, v)| (k, v)).collect();
    out.push(("bad-1".into(), b"not json".to_vec()));
    out.push((
        "bad-2".into(),
        format!(r#"{{"stream_id":"s","event_time":{START_MS},"position_end":1}}"#).into_bytes(),
    ));
    out
}

/// Every record value of a topic, read from the beginning to the end.
async fn read_all(transport: &KafkaTransport, topic: &str) -> Vec<Vec<u8>> {
    common::read_all(transport, topic)
        .await
        .into_iter()
        .filter_map(|r| r.value)
        .collect()
}

fn drain(stack: &Stack, prefix: &str, lake: &str) -> serde_json::Value {
    drain_stage("process", stack, prefix, lake)
}

fn drain_stage(stage: &str, stack: &Stack, prefix: &str, lake: &str) -> serde_json::Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args([
            stage,
            "--drain",
            "--brokers",
            &stack.brokers,
            "--topic-prefix",
            prefix,
            "--lake",
            lake,
            "--group",
            &format!("{prefix}-{stage}"),
        ])
        .env_remove("PLAYLAKE_CONFIG")
        .env("RUST_LOG", "info,playlake_kafka=debug")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start playlake process");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            panic!(
                "{stage} --drain did not finish within 180 s; last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stage} --drain failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_publishes_exactly_the_reference_results() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let prefix = unique_name("proc");
    let lake_dir = tempfile::tempdir().expect("tempdir");
    let lake = format!("file://{}", lake_dir.path().display());
    let transport = KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka");
    let events_topic = format!("{prefix}.events");
    transport
        .ensure_topic(&TopicSpec::new(&events_topic, PARTITIONS))
        .await
        .expect("create events topic");

    let records = traffic();
    let producer = transport.producer().expect("producer");
    producer
        .send(
            records
                .iter()
                .map(|(key, value)| OutgoingRecord {
                    topic: events_topic.clone(),
                    key: Some(key.clone().into_bytes()),
                    value: Some(value.clone()),
                    ..Default::default()
                })
                .collect(),
        )
        .await
        .expect("produce");

    let now_ms = START_MS + 86_400_000;
    let valid: Vec<_> = records
        .iter()
        .filter_map(|(_, v)| parse_playback_event(v, now_ms).ok())
        .collect();
    let settings = ProcessorConfig::default().validate().expect("settings");
    let expected = reference::compute(&valid, &settings);
    assert!(
        expected.sessions.len() >= 10,
        "the traffic must make sessions"
    );

    let report = drain(&stack, &prefix, &lake);
    assert_eq!(report["records_in"], records.len() as u64, "{report}");
    assert_eq!(report["dlq_by_reason"]["not_json"], 1, "{report}");
    assert_eq!(report["dlq_by_reason"]["missing_field"], 1, "{report}");
    assert_eq!(report["duplicates"], 9, "{report}");
    assert_eq!(
        report["late_by_operator"],
        serde_json::json!({}),
        "{report}"
    );

    let by_key = |rows: Vec<Vec<u8>>| -> BTreeMap<String, serde_json::Value> {
        rows.iter()
            .map(|v| serde_json::from_slice::<serde_json::Value>(v).expect("json row"))
            .map(|row| (row.to_string(), row))
            .collect()
    };
    let mut sessions: Vec<Session> = read_all(&transport, &format!("{prefix}.sessions"))
        .await
        .iter()
        .map(|v| serde_json::from_slice(v).expect("session row"))
        .collect();
    sessions.sort_by_key(|row| row.key());
    let mut want_sessions = expected.sessions.clone();
    want_sessions.sort_by_key(|row| row.key());
    assert_eq!(sessions, want_sessions);

    let mut viewers: Vec<ViewerWindow> = read_all(&transport, &format!("{prefix}.viewers"))
        .await
        .iter()
        .map(|v| serde_json::from_slice(v).expect("viewer row"))
        .collect();
    viewers.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut want_viewers = expected.viewers.clone();
    want_viewers.sort_by(|a, b| a.key().cmp(&b.key()));
    assert_eq!(viewers, want_viewers);

    let mut daily: Vec<DailyStat> = read_all(&transport, &format!("{prefix}.daily"))
        .await
        .iter()
        .map(|v| serde_json::from_slice(v).expect("daily row"))
        .collect();
    daily.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut want_daily = expected.daily.clone();
    want_daily.sort_by(|a, b| a.key().cmp(&b.key()));
    assert_eq!(daily, want_daily);
    assert_eq!(daily.len(), 6, "3 streams on each side of midnight");

    let dlq = read_all(&transport, &format!("{prefix}.dlq")).await;
    assert_eq!(dlq.len(), 2);
    assert!(
        dlq.contains(&b"not json".to_vec()),
        "DLQ keeps the original bytes"
    );

    // A second drain resumes from the checkpoints: nothing new is read or published.
    let sessions_before = by_key(read_all(&transport, &format!("{prefix}.sessions")).await);
    let again = drain(&stack, &prefix, &lake);
    assert_eq!(again["records_in"], 0, "{again}");
    assert_eq!(again["sessions_out"], 0, "{again}");
    let sessions_after = by_key(read_all(&transport, &format!("{prefix}.sessions")).await);
    assert_eq!(sessions_before.len(), sessions_after.len());

    // The sink writes every table; DuckDB reads the lake with Hive partitioning.
    let sink = drain_stage("sink", &stack, &prefix, &lake);
    assert_eq!(sink["undecodable_records"], 0, "{sink}");
    let counts = stack.run_python(
        r#"
import sys, duckdb
root = sys.argv[1]
for table in ["sessions", "viewers", "daily", "events", "errors"]:
    n = duckdb.sql(f"select count(*) from read_parquet('{root}/{table}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    print(table, n)
keys = duckdb.sql(f"select count(*) - count(distinct (uuid, stream_id, session_start)) from read_parquet('{root}/sessions/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
print("duplicate_session_keys", keys)
watched = duckdb.sql(f"select sum(watched_seconds) from read_parquet('{root}/sessions/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
print("watched", repr(watched))
"#,
        &[&lake_dir.path().display().to_string()],
    );
    let counts: BTreeMap<&str, &str> = counts
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    let distinct_valid = valid
        .iter()
        .map(|e| (e.uuid.as_str(), e.event_id.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(
        counts["sessions"],
        want_sessions.len().to_string(),
        "{counts:?}"
    );
    assert_eq!(
        counts["viewers"],
        want_viewers.len().to_string(),
        "{counts:?}"
    );
    assert_eq!(counts["daily"], want_daily.len().to_string(), "{counts:?}");
    assert_eq!(counts["events"], distinct_valid.to_string(), "{counts:?}");
    assert_eq!(counts["errors"], "2", "{counts:?}");
    assert_eq!(counts["duplicate_session_keys"], "0", "{counts:?}");
    let watched: f64 = counts["watched"].parse().expect("watched seconds");
    let want_watched: f64 = want_sessions.iter().map(|s| s.watched_seconds).sum();
    assert!(
        (watched - want_watched).abs() < 1e-6,
        "{watched} vs {want_watched}"
    );

    // Draining the sink again writes nothing.
    let again = drain_stage("sink", &stack, &prefix, &lake);
    assert_eq!(again["files_written"], 0, "{again}");
}

/// `playlake produce` writes generated traffic that `process --drain` accounts for
/// completely: every record is read, bad records reach the DLQ, copies are dropped
/// as duplicates, and nothing is late (the jitter is inside the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_traffic_is_fully_accounted_for() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let prefix = unique_name("produce");
    let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args([
            "produce",
            "--brokers",
            &stack.brokers,
            "--topic-prefix",
            &prefix,
            "--events",
            "8000",
            "--viewers",
            "150",
            "--bad-record-fraction",
            "0.01",
        ])
        .env_remove("PLAYLAKE_CONFIG")
        .output()
        .expect("run playlake produce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let produced: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(produced["valid_events"], 8000, "{produced}");
    assert!(produced["bad_records"].as_u64() > Some(0), "{produced}");

    let lake_dir = tempfile::tempdir().expect("tempdir");
    let lake = format!("file://{}", lake_dir.path().display());
    let report = drain(&stack, &prefix, &lake);
    assert_eq!(report["records_in"], produced["records_sent"], "{report}");
    let dlq: u64 = report["dlq_by_reason"]
        .as_object()
        .expect("dlq map")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(Some(dlq), produced["bad_records"].as_u64(), "{report}");
    assert_eq!(report["duplicates"], produced["duplicates"], "{report}");
    assert_eq!(
        report["late_by_operator"],
        serde_json::json!({}),
        "{report}"
    );
}
