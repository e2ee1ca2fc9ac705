//! `playlake produce` against the real stack (Tansu and moto).
//!
//! What each test proves:
//! - Kafka: every generated record reaches `<prefix>.events` exactly once, keyed by
//!   uuid, and each key's records keep their generation order on the partition
//!   (chunks are pipelined, so this is what could break);
//! - the traffic-shaping flags (`--live-streams`, `--vod-streams`,
//!   `--heartbeat-interval-ms`, `--start-time`) reach the generator: the topic holds
//!   exactly the traffic of a generator configured with them;
//! - DynamoDB end to end: `produce --dynamodb-table` writes the traffic as items into
//!   a moto table with a stream, `playlake source dynamodb --until-caught-up` with the
//!   mapping produce describes publishes them, and the playback events on
//!   `<prefix>.events` are exactly the generated ones (same event ids, same fields),
//!   while every bad item is in `<prefix>.dlq` with the reason produce announced;
//! - a missing table is an error that says how to create it.
//!
//! Without the stack the tests print SKIPPED; under `CI=true` they fail instead.

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use playlake_generator::{BadReason, Generator, GeneratorConfig, RecordKind};
use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_schemas::{parse_playback_event, ChangeEvent, PlaybackEvent};
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::Record;

mod common;

async fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let transport = KafkaTransport::new(KafkaConfig::new(brokers.to_string())).expect("kafka");
    common::read_all(&transport, topic).await
}

/// Runs `playlake <args>` to completion; returns (success, stdout, stderr).
fn playlake(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args(args)
        .env_remove("PLAYLAKE_CONFIG")
        .env_remove("PLAYLAKE_DYNAMODB_ENDPOINT_URL")
        .env("AWS_REGION", &stack.aws_region)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run playlake");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `playlake produce` of the traffic [`common::produce_config`] describes (plus `extra`
/// flags) to `<prefix>.events`.
fn produce_to_kafka(
    stack: &Stack,
    prefix: &str,
    events: u64,
    viewers: u32,
    seed: u64,
    extra: &[&str],
) -> (bool, String, String) {
    let (events, viewers, seed) = (events.to_string(), viewers.to_string(), seed.to_string());
    let mut args = vec![
        "--brokers",
        &stack.brokers,
        "--topic-prefix",
        prefix,
        "produce",
        "--events",
        &events,
        "--viewers",
        &viewers,
        "--seed",
        &seed,
        "--bad-record-fraction",
        "0.002",
    ];
    args.extend_from_slice(extra);
    playlake(stack, &args)
}

fn report(stdout: &str, stderr: &str) -> serde_json::Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_gets_every_record_once_in_key_order() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let prefix = unique_name("produce");
    let (ok, stdout, stderr) = produce_to_kafka(&stack, &prefix, 30_000, 300, 5, &[]);
    assert!(ok, "produce failed:\n{stderr}");
    let report = report(&stdout, &stderr);
    let want = common::traffic(30_000, 300, 5);
    assert_eq!(report["records_sent"], want.records.len(), "{report}");
    assert_eq!(report["valid_events"], 30_000, "{report}");
    assert!(report["records_per_second"].as_f64().unwrap_or(0.0) > 0.0);
    let sending = report["sending_seconds"].as_f64().expect("sending_seconds");
    assert!(sending > 0.0 && Some(sending) <= report["seconds"].as_f64());

    let got = read_topic(&stack.brokers, &format!("{prefix}.events")).await;
    assert_eq!(got.len(), want.records.len());
    // Per key, the values on the topic in offset order are the generated ones in
    // generation order (one key lives on one partition).
    let mut got_by_key: HashMap<Vec<u8>, Vec<(i64, Vec<u8>)>> = HashMap::new();
    for r in got {
        got_by_key
            .entry(r.key.clone().expect("key"))
            .or_default()
            .push((r.offset, r.value.clone().expect("value")));
    }
    let mut want_by_key: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    for (key, value) in &want.records {
        want_by_key
            .entry(key.clone())
            .or_default()
            .push(value.clone());
    }
    assert_eq!(got_by_key.len(), want_by_key.len());
    for (key, mut records) in got_by_key {
        records.sort();
        let values: Vec<Vec<u8>> = records.into_iter().map(|(_, v)| v).collect();
        assert!(
            want_by_key.get(&key) == Some(&values),
            "records of key {} differ or are out of order",
            String::from_utf8_lossy(&key)
        );
    }
}

/// The traffic-shaping flags reach the generator: the topic holds exactly the traffic
/// of a generator configured by hand with one live stream, no VOD, 10 s heartbeats
/// from 2026-12-01T05:00:00Z (given as 06:00 at +01:00), and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_heartbeat_and_start_time_flags_shape_the_traffic() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let prefix = unique_name("produce-shape");
    let (ok, stdout, stderr) = produce_to_kafka(
        &stack,
        &prefix,
        3_000,
        40,
        9,
        &[
            "--live-streams",
            "1",
            "--vod-streams",
            "0",
            "--heartbeat-interval-ms",
            "10000",
            "--start-time",
            "2026-12-01T06:00:00+01:00",
        ],
    );
    assert!(ok, "produce failed:\n{stderr}");
    assert_eq!(report(&stdout, &stderr)["valid_events"], 3_000);
    const START_MS: i64 = 1_796_101_200_000; // 2026-12-01T05:00:00Z
    let want = common::traffic_of(GeneratorConfig {
        live_streams: 1,
        vod_streams: 0,
        heartbeat_interval_ms: 10_000,
        start_time_ms: START_MS,
        ..common::produce_config(3_000, 40, 9)
    });
    // The flags changed the traffic the way they say.
    let streams: std::collections::BTreeSet<&str> =
        want.valid.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams.len(), 1, "one live stream: {streams:?}");
    let first = want.valid.iter().map(|e| e.event_time_ms()).min();
    assert!(first.is_some_and(|t| (START_MS..START_MS + 10_000).contains(&t)));

    let mut got: Vec<Vec<u8>> = read_topic(&stack.brokers, &format!("{prefix}.events"))
        .await
        .into_iter()
        .map(|r| r.value.expect("value"))
        .collect();
    let mut expected: Vec<Vec<u8>> = want.records.into_iter().map(|(_, v)| v).collect();
    got.sort();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the topic holds other records than the generator's"
    );
}

async fn dynamodb(stack: &Stack) -> aws_sdk_dynamodb::Client {
    playlake_dynamodb::aws::Clients::connect(Some(&stack.aws_endpoint), Some(&stack.aws_region))
        .await
        .dynamodb
}

/// The table produce suggests: key uuid + event_id (strings), stream with images.
async fn create_table(db: &aws_sdk_dynamodb::Client, name: &str) {
    let mut request = db
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream spec"),
        );
    for (attr, kind) in [("uuid", KeyType::Hash), ("event_id", KeyType::Range)] {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kind)
                    .build()
                    .expect("key"),
            );
    }
    request.send().await.expect("create table");
}

/// The reason code the source's mapping gives produce's item for each bad record
/// (produce's `item_reason_code`; written out here as the contract).
fn item_reason_code(reason: BadReason) -> &'static str {
    match reason {
        BadReason::NotJson
        | BadReason::NotObject
        | BadReason::FloatEventTime
        | BadReason::InvalidUtf8 => "wrong_type",
        BadReason::MissingUuid | BadReason::MissingEventTime => "missing_field",
        BadReason::UnknownEventType => "unknown_event_type",
        BadReason::NegativePosition => "negative_position",
        BadReason::PositionOrder => "position_order",
        BadReason::EventTimeTooOld => "event_time_too_old",
        BadReason::InvalidTimestamp => "invalid_timestamp",
        BadReason::UuidTooLong => "id_length",
    }
}

const EVENTS: u64 = 2_000;
const VIEWERS: u32 = 40;
const SEED: u64 = 11;

/// What `produce --events 2000 --viewers 40 --seed 11 --duplicate-fraction 0.03
/// --bad-record-fraction 0.03` generates: the valid events by (uuid, event_id), and
/// the bad records' expected DLQ reason codes by the key of their item (uuid as
/// written, event_id + ".bad").
/// (uuid, event_id) of an event or item.
type Key = (String, String);

fn expected() -> (
    BTreeMap<Key, PlaybackEvent>,
    BTreeMap<Key, &'static str>,
    u64,
) {
    let config = GeneratorConfig {
        viewers: VIEWERS,
        max_events: Some(EVENTS),
        duration_ms: 24 * 3_600_000,
        out_of_order_jitter_ms: 3_000,
        duplicate_fraction: 0.03,
        bad_record_fraction: 0.03,
        seed: SEED,
        ..GeneratorConfig::default()
    };
    let now = config.settled_now_ms();
    let mut valid = BTreeMap::new();
    let mut bad = BTreeMap::new();
    let mut records = 0;
    for record in Generator::new(config).expect("generator") {
        records += 1;
        match record.kind {
            RecordKind::Valid | RecordKind::Duplicate => {
                let e = parse_playback_event(&record.value, now).expect("valid event");
                valid.insert((e.uuid.clone(), e.event_id.clone()), e);
            }
            RecordKind::Bad(reason) => {
                let original = record.original.as_deref().expect("original");
                let e = parse_playback_event(original, now).expect("original event");
                let uuid = if reason == BadReason::UuidTooLong {
                    e.uuid.repeat(4)
                } else {
                    e.uuid.clone()
                };
                bad.insert(
                    (uuid, format!("{}.bad", e.event_id)),
                    item_reason_code(reason),
                );
            }
        }
    }
    (valid, bad, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_items_come_back_through_the_source_as_the_same_events() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = dynamodb(&stack).await;
    let table = unique_name("plays").replace(['/', ':'], "-");
    create_table(&db, &table).await;
    let prefix = unique_name("produce-ddb");

    let (ok, stdout, stderr) = playlake(
        &stack,
        &[
            "produce",
            "--dynamodb-table",
            &table,
            "--endpoint-url",
            &stack.aws_endpoint,
            "--events",
            &EVENTS.to_string(),
            "--viewers",
            &VIEWERS.to_string(),
            "--seed",
            &SEED.to_string(),
            "--duplicate-fraction",
            "0.03",
            "--bad-record-fraction",
            "0.03",
            "--dynamodb-writers",
            "4",
        ],
    );
    assert!(ok, "produce failed:\n{stderr}");
    let produced = report(&stdout, &stderr);
    let (valid, bad, records) = expected();
    assert_eq!(produced["records_sent"], records, "{produced}");
    assert_eq!(produced["valid_events"], EVENTS, "{produced}");
    assert_eq!(produced["bad_records"], bad.len(), "{produced}");
    assert!(!bad.is_empty() && produced["duplicates"].as_u64() > Some(0));
    assert!(produced["records_per_second"].as_f64().unwrap_or(0.0) > 0.0);

    // The mapping produce uses without a config: attributes named like the fields.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        "[source.dynamodb.mapping]\nuuid = \"uuid\"\nstream_id = \"stream_id\"\n\
         user_id = \"user_id\"\nevent_type = \"event_type\"\nevent_time = \"event_time\"\n\
         position_start = \"position_start\"\nposition_end = \"position_end\"\n\
         event_id = \"event_id\"\n",
    )
    .expect("config");
    let config_arg = config.display().to_string();
    let (ok, stdout, stderr) = playlake(
        &stack,
        &[
            "--config",
            &config_arg,
            "--brokers",
            &stack.brokers,
            "--topic-prefix",
            &prefix,
            "--metrics-addr",
            "127.0.0.1:0",
            "source",
            "dynamodb",
            "--table",
            &table,
            "--endpoint-url",
            &stack.aws_endpoint,
            "--until-caught-up",
            "--poll-interval-ms",
            "200",
        ],
    );
    assert!(ok, "source failed:\n{stderr}");
    let source = report(&stdout, &stderr);
    assert_eq!(source["dlq"], bad.len(), "{source}");

    // Events: every copy (moto streams a rewritten duplicate as a MODIFY) identical,
    // and the distinct ones exactly the generated valid events.
    let mut got: BTreeMap<Key, PlaybackEvent> = BTreeMap::new();
    for r in read_topic(&stack.brokers, &format!("{prefix}.events")).await {
        let e = parse_playback_event(r.value.as_deref().expect("value"), i64::MAX / 4)
            .expect("the source publishes valid events");
        assert_eq!(r.key.as_deref(), Some(e.uuid.as_bytes()));
        let key = (e.uuid.clone(), e.event_id.clone());
        if let Some(previous) = got.insert(key, e.clone()) {
            assert_eq!(previous, e, "two different events with one event_id");
        }
    }
    assert_eq!(got.len(), valid.len());
    for (key, want) in &valid {
        assert_eq!(got.get(key), Some(want), "event {key:?}");
    }

    // DLQ: exactly the bad items, each with the announced reason code.
    let dlq = read_topic(&stack.brokers, &format!("{prefix}.dlq")).await;
    let mut dead: BTreeMap<Key, String> = BTreeMap::new();
    for r in &dlq {
        let change: ChangeEvent =
            serde_json::from_slice(r.value.as_deref().expect("value")).expect("change event");
        let key = (
            change.keys["uuid"].as_str().unwrap_or_default().to_string(),
            change.keys["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let reason =
            String::from_utf8_lossy(r.header("playlake.error").expect("reason")).into_owned();
        dead.insert(key, reason);
    }
    assert_eq!(dead.len(), bad.len());
    let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, code) in &bad {
        let reason = dead
            .get(key)
            .unwrap_or_else(|| panic!("bad item {key:?} is not in the DLQ"));
        assert!(
            reason.starts_with(&format!("{code}:")),
            "{key:?}: want {code}, got {reason}"
        );
        *codes.entry(code).or_default() += 1;
    }
    assert_eq!(produced["dlq_reason_codes"], serde_json::json!(codes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_says_how_to_create_it() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let table = unique_name("missing").replace(['/', ':'], "-");
    let (ok, _, stderr) = playlake(
        &stack,
        &[
            "produce",
            "--dynamodb-table",
            &table,
            "--endpoint-url",
            &stack.aws_endpoint,
            "--events",
            "10",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(
        stderr.contains("aws dynamodb create-table")
            && stderr.contains(&format!("--table-name {table}"))
            && stderr.contains("StreamEnabled=true"),
        "{stderr}"
    );
}
