//! `playlake source dynamodb` against moto's DynamoDB + DynamoDB Streams and Tansu.
//!
//! What each test proves:
//! - every attribute type round-trips from PutItem to the Kafka record (numbers keep
//!   every digit), INSERT/MODIFY/REMOVE arrive in order per item, and a second run
//!   publishes nothing new (checkpoints hold);
//! - SIGKILL at random moments (10 times) while items are written: Kafka holds every
//!   change at least once, and every copy is byte-identical;
//! - `--backfill` while writes continue: replaying snapshot + stream per key gives the
//!   table's final state, and every change after the position is present;
//! - the playback mapping (seed 001's table shape) publishes valid playback events and
//!   sends unmappable items to the DLQ with the reason;
//! - two processes share the lease table; killing the owner hands the shard over;
//! - the source as a stage of `playlake run`, SIGKILLed 10 times at random moments
//!   while items are written: every change on the topic, copies identical (cdc,
//!   playback events and DLQ records alike), and the lake's cdc and errors tables
//!   (written by the sink) hold each change once.
//!
//! moto has one shard per table that never splits or closes; shard lineage is
//! tested in `connectors/dynamodb/tests/lineage.rs` against a scripted endpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as A, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use aws_sdk_dynamodb::Client;
use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_schemas::{parse_playback_event, ChangeEvent, ChangeEventName};
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::{Record, Transport};
use serde_json::json;

mod common;

async fn client(stack: &Stack) -> Client {
    playlake_dynamodb::aws::Clients::connect(Some(&stack.aws_endpoint), Some(&stack.aws_region))
        .await
        .dynamodb
}

/// A table named for this test with a NEW_AND_OLD_IMAGES stream; key `pk` (S) and,
/// when `sort` is given, that sort key (S).
async fn create_table(db: &Client, name: &str, hash: &str, sort: Option<&str>) {
    let mut req = db
        .create_table()
        .table_name(name)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream spec"),
        );
    for (attr, kind) in
        std::iter::once((hash, KeyType::Hash)).chain(sort.map(|s| (s, KeyType::Range)))
    {
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attr"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kind)
                    .build()
                    .expect("key"),
            );
    }
    req.send().await.expect("create table");
}

fn table_name(prefix: &str) -> String {
    unique_name(prefix).replace(['/', ':'], "-")
}

fn source_cmd(stack: &Stack, prefix: &str, table: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playlake"));
    cmd.args([
        "--brokers",
        &stack.brokers,
        "--topic-prefix",
        prefix,
        // Several sources run at once here: none may take the default metrics port.
        "--metrics-addr",
        "127.0.0.1:0",
        "source",
        "dynamodb",
        "--table",
        table,
        "--poll-interval-ms",
        "200",
        "--shard-sync-interval-ms",
        "1000",
        "--lease-duration-ms",
        "2000",
    ])
    .args(extra)
    .env_remove("PLAYLAKE_CONFIG")
    // moto, unless the test points the source elsewhere.
    .env("PLAYLAKE_DYNAMODB_ENDPOINT_URL", &stack.aws_endpoint)
    .env("AWS_REGION", &stack.aws_region)
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Runs the source with `--until-caught-up` and returns its JSON report.
fn run_until_caught_up(
    stack: &Stack,
    prefix: &str,
    table: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec!["--until-caught-up"];
    args.extend_from_slice(extra);
    let child = source_cmd(stack, prefix, table, &args)
        .spawn()
        .expect("start source");
    let out = wait_with_deadline(child, Duration::from_secs(120), "source --until-caught-up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "source failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn wait_with_deadline(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

/// Every record of a topic, from the beginning to the end.
async fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    let transport = KafkaTransport::new(KafkaConfig::new(brokers.to_string())).expect("kafka");
    common::read_all(&transport, topic).await
}

fn changes(records: &[Record]) -> Vec<(ChangeEvent, Vec<u8>)> {
    records
        .iter()
        .map(|r| {
            let value = r.value.clone().expect("value");
            let change: ChangeEvent = serde_json::from_slice(&value).expect("change event JSON");
            assert_eq!(
                r.key.as_deref(),
                Some(change.kafka_key().as_bytes()),
                "Kafka key must be the item key"
            );
            (change, value)
        })
        .collect()
}

/// Copies of one change (same event id) must be byte-identical; returns the distinct
/// changes per item key, ordered by sequence number, and the number of copies.
fn distinct_by_key(all: &[(ChangeEvent, Vec<u8>)]) -> (BTreeMap<String, Vec<ChangeEvent>>, usize) {
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut per_key: BTreeMap<String, Vec<ChangeEvent>> = BTreeMap::new();
    let mut copies = 0;
    for (change, bytes) in all {
        if let Some(first) = seen.get(&change.event_id) {
            assert_eq!(
                first, bytes,
                "redelivered copy of {} differs",
                change.event_id
            );
            copies += 1;
            continue;
        }
        seen.insert(change.event_id.clone(), bytes.clone());
        per_key
            .entry(change.kafka_key())
            .or_default()
            .push(change.clone());
    }
    for list in per_key.values_mut() {
        // Within a key, Kafka order (one partition) must already be sequence order.
        let seqs: Vec<u128> = list
            .iter()
            .filter_map(|c| c.sequence_number.as_ref().map(|s| s.parse().expect("seq")))
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "changes of one item out of order");
    }
    (per_key, copies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_in_order_and_checkpoints_hold() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("types");
    create_table(&db, &table, "pk", None).await;
    let big = "12345678901234567890123456789012345678";
    let item = |n: &str| {
        HashMap::from([
            ("pk".to_string(), A::S("item-1".into())),
            ("s".to_string(), A::S("héllo \"quoted\"".into())),
            ("n_big".to_string(), A::N(big.into())),
            ("n_frac".to_string(), A::N("0.1".into())),
            ("n_small".to_string(), A::N(n.into())),
            (
                "b".to_string(),
                A::B(aws_smithy_types::Blob::new(vec![0u8, 1, 254, 255])),
            ),
            ("t".to_string(), A::Bool(true)),
            ("z".to_string(), A::Null(true)),
            (
                "m".to_string(),
                A::M(HashMap::from([
                    ("inner".to_string(), A::N("-99999999999999999999.5".into())),
                    (
                        "l".to_string(),
                        A::L(vec![A::S("x".into()), A::Bool(false)]),
                    ),
                ])),
            ),
            ("ss".to_string(), A::Ss(vec!["a".into(), "b".into()])),
            ("ns".to_string(), A::Ns(vec!["7".into(), big.into()])),
            (
                "bs".to_string(),
                A::Bs(vec![aws_smithy_types::Blob::new(b"hi".to_vec())]),
            ),
        ])
    };
    db.put_item()
        .table_name(&table)
        .set_item(Some(item("1")))
        .send()
        .await
        .expect("put");
    db.put_item()
        .table_name(&table)
        .set_item(Some(item("2")))
        .send()
        .await
        .expect("update");
    db.delete_item()
        .table_name(&table)
        .key("pk", A::S("item-1".into()))
        .send()
        .await
        .expect("delete");
    let prefix = unique_name("src");
    let report = run_until_caught_up(&stack, &prefix, &table, &[]);
    assert_eq!(report["stream_records"], json!(3), "{report}");

    let records = read_topic(&stack.brokers, &format!("{prefix}.cdc.{table}")).await;
    let all = changes(&records);
    let (per_key, copies) = distinct_by_key(&all);
    assert_eq!(copies, 0);
    let list = &per_key[r#"{"pk":"item-1"}"#];
    let names: Vec<_> = list.iter().map(|c| c.event_name).collect();
    assert_eq!(
        names,
        vec![
            ChangeEventName::Insert,
            ChangeEventName::Modify,
            ChangeEventName::Remove
        ]
    );
    let expected = |n: i64| {
        json!({
            "pk": "item-1", "s": "héllo \"quoted\"", "n_big": big, "n_frac": 0.1, "n_small": n,
            "b": "AAH+/w==", "t": true, "z": null,
            "m": {"inner": "-99999999999999999999.5", "l": ["x", false]},
            "ss": ["a", "b"], "ns": [7, big], "bs": ["aGk="]
        })
    };
    assert_eq!(list[0].new_image.as_ref(), Some(&expected(1)));
    assert_eq!(list[0].old_image, None);
    assert_eq!(list[1].new_image.as_ref(), Some(&expected(2)));
    assert_eq!(list[1].old_image.as_ref(), Some(&expected(1)));
    assert_eq!(list[2].new_image, None);
    assert_eq!(list[2].old_image.as_ref(), Some(&expected(2)));
    assert!(list
        .iter()
        .all(|c| !c.ttl_expired && !c.snapshot && c.table == table));
    // The raw bytes carry the 38-digit number as written.
    let text = String::from_utf8_lossy(&all[0].1).to_string();
    assert!(text.contains(big), "{text}");

    // A second run starts from the checkpoints: nothing new.
    let again = run_until_caught_up(&stack, &prefix, &table, &[]);
    assert_eq!(again["stream_records"], json!(0), "{again}");
    let records = read_topic(&stack.brokers, &format!("{prefix}.cdc.{table}")).await;
    assert_eq!(records.len(), 3);
}

/// Writes `items` items (put, then update) from a background task.
fn writer(
    db: Client,
    table: String,
    items: usize,
    pace: Duration,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut writes = 0;
        for i in 0..items {
            for version in 0..2 {
                db.put_item()
                    .table_name(&table)
                    .item("pk", A::S(format!("k-{i:04}")))
                    .item("version", A::N(version.to_string()))
                    .send()
                    .await
                    .expect("put");
                writes += 1;
            }
            tokio::time::sleep(pace).await;
        }
        writes
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_copies_are_identical() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("kill");
    create_table(&db, &table, "pk", None).await;
    let prefix = unique_name("src");
    let items = 150;
    let write = writer(db.clone(), table.clone(), items, Duration::from_millis(20));
    // A tiny deterministic PRNG: kill moments vary but a failure is reproducible.
    let mut seed: u64 = 0x5eed_1234;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..10 {
        let mut child = source_cmd(&stack, &prefix, &table, &["--worker-id", "killed"])
            .spawn()
            .expect("start source");
        let wait_ms = 400 + next() % 1600;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        eprintln!("round {round}: killed after {wait_ms} ms");
    }
    let writes = write.await.expect("writer");
    assert_eq!(writes, items * 2);
    let report = run_until_caught_up(&stack, &prefix, &table, &["--worker-id", "killed"]);
    eprintln!("final run: {report}");

    let records = read_topic(&stack.brokers, &format!("{prefix}.cdc.{table}")).await;
    let all = changes(&records);
    let (per_key, copies) = distinct_by_key(&all);
    eprintln!("{} records, {copies} redelivered copies", all.len());
    assert_eq!(per_key.len(), items, "every item has its changes");
    for (key, list) in &per_key {
        let versions: Vec<_> = list
            .iter()
            .map(|c| c.new_image.as_ref().expect("image")["version"].clone())
            .collect();
        assert_eq!(versions, vec![json!(0), json!(1)], "{key}");
        assert_eq!(list[0].event_name, ChangeEventName::Insert);
        assert_eq!(list[1].event_name, ChangeEventName::Modify);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_while_writing_misses_nothing() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("backfill");
    create_table(&db, &table, "pk", None).await;
    // Existing items, some changed and one deleted before the source ever runs.
    for i in 0..200 {
        db.put_item()
            .table_name(&table)
            .item("pk", A::S(format!("old-{i:04}")))
            .item("v", A::N("0".into()))
            .send()
            .await
            .expect("put");
    }
    db.delete_item()
        .table_name(&table)
        .key("pk", A::S("old-0000".into()))
        .send()
        .await
        .expect("delete");
    let prefix = unique_name("src");
    // Writes continue during the backfill: new items and updates of old ones.
    let db2 = db.clone();
    let table2 = table.clone();
    let write = tokio::spawn(async move {
        for i in 0..100 {
            db2.put_item()
                .table_name(&table2)
                .item("pk", A::S(format!("old-{:04}", 1 + i)))
                .item("v", A::N("1".into()))
                .send()
                .await
                .expect("update");
            db2.put_item()
                .table_name(&table2)
                .item("pk", A::S(format!("new-{i:04}")))
                .item("v", A::N("0".into()))
                .send()
                .await
                .expect("put");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let first = run_until_caught_up(
        &stack,
        &prefix,
        &table,
        &[
            "--backfill",
            "--backfill-segments",
            "3",
            "--backfill-read-capacity-units-per-second",
            "1000",
        ],
    );
    write.await.expect("writer");
    let second = run_until_caught_up(&stack, &prefix, &table, &["--backfill"]);
    eprintln!("backfill run: {first}\nsecond run: {second}");
    assert_eq!(
        second["snapshot_items"],
        json!(0),
        "the backfill runs once: {second}"
    );
    assert!(
        first["snapshot_items"].as_u64().unwrap_or(0) >= 199,
        "{first}"
    );

    let records = read_topic(&stack.brokers, &format!("{prefix}.cdc.{table}")).await;
    let all = changes(&records);
    // Replay per key in Kafka order: snapshot rows set the state, stream changes
    // overwrite it. The result must equal the table now.
    let mut state: BTreeMap<String, Option<serde_json::Value>> = BTreeMap::new();
    let mut snapshot_keys = BTreeSet::new();
    for (change, _) in &all {
        if change.snapshot {
            snapshot_keys.insert(change.kafka_key());
        }
        state.insert(change.kafka_key(), change.new_image.clone());
    }
    let mut table_now: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan");
        for item in page.items() {
            let json = playlake_dynamodb::aws::table_item_json(item).expect("json");
            let key = json!({"pk": json["pk"]}).to_string();
            table_now.insert(key, json);
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    let replayed: BTreeMap<String, serde_json::Value> = state
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    assert_eq!(replayed.len(), table_now.len());
    assert_eq!(
        replayed, table_now,
        "snapshot + stream must rebuild the table"
    );
    assert!(snapshot_keys.len() >= 199);
    assert!(
        !snapshot_keys.contains(r#"{"pk":"old-0000"}"#),
        "deleted before the scan"
    );
    // Every change written after the source started is on the stream side.
    let streamed: BTreeSet<String> = all
        .iter()
        .filter(|(c, _)| {
            !c.snapshot
                && c.new_image
                    .as_ref()
                    .is_some_and(|i| i["pk"].as_str().is_some_and(|k| k.starts_with("new-")))
        })
        .map(|(c, _)| c.kafka_key())
        .collect();
    let new_in_table = table_now.keys().filter(|k| k.contains("new-")).count();
    let new_covered = table_now
        .keys()
        .filter(|k| k.contains("new-"))
        .filter(|k| streamed.contains(*k) || snapshot_keys.contains(*k))
        .count();
    assert_eq!(new_covered, new_in_table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_publishes_playback_events_and_dead_letters() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("live");
    create_table(&db, &table, "PK", Some("SK")).await;
    // Seed 001's table: PK = stream id, SK = uuid, expDate = TTL; plus the playhead.
    for i in 0..5 {
        db.put_item()
            .table_name(&table)
            .item("PK", A::S("stream-a".into()))
            .item("SK", A::S(format!("player-{i}")))
            .item("expDate", A::N("1893456000".into()))
            .item("position", A::N(format!("{}.5", 10 + i)))
            .send()
            .await
            .expect("put");
    }
    // Unmappable: no playhead; a negative playhead.
    db.put_item()
        .table_name(&table)
        .item("PK", A::S("stream-a".into()))
        .item("SK", A::S("no-position".into()))
        .send()
        .await
        .expect("put");
    db.put_item()
        .table_name(&table)
        .item("PK", A::S("stream-a".into()))
        .item("SK", A::S("negative".into()))
        .item("position", A::N("-4".into()))
        .send()
        .await
        .expect("put");
    // A removal (TTL expiry in seed 001) is not a playback event.
    db.delete_item()
        .table_name(&table)
        .key("PK", A::S("stream-a".into()))
        .key("SK", A::S("player-0".into()))
        .send()
        .await
        .expect("delete");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        "[source.dynamodb.mapping]\nstream_id = \"PK\"\nuuid = \"SK\"\nposition_end = \"position\"\n",
    )
    .expect("config");
    let prefix = unique_name("src");
    let config_arg = config.display().to_string();
    let report = run_until_caught_up(&stack, &prefix, &table, &["--config", &config_arg]);
    assert_eq!(report["events"], json!(5), "{report}");
    assert_eq!(report["dlq"], json!(2), "{report}");

    let events = read_topic(&stack.brokers, &format!("{prefix}.events")).await;
    assert_eq!(events.len(), 5);
    let mut uuids = BTreeSet::new();
    for r in &events {
        let e = parse_playback_event(r.value.as_deref().expect("value"), i64::MAX / 4)
            .expect("valid event");
        assert_eq!(r.key.as_deref(), Some(e.uuid.as_bytes()));
        assert_eq!(e.stream_id, "stream-a");
        uuids.insert(e.uuid.clone());
    }
    assert_eq!(uuids.len(), 5);
    let dlq = read_topic(&stack.brokers, &format!("{prefix}.dlq")).await;
    assert_eq!(dlq.len(), 2);
    let cdc_topic = format!("{prefix}.cdc.{table}");
    let mut reasons = Vec::new();
    for r in &dlq {
        assert_eq!(
            r.header("playlake.source.topic"),
            Some(cdc_topic.as_bytes())
        );
        let change: ChangeEvent =
            serde_json::from_slice(r.value.as_deref().expect("value")).expect("original change");
        reasons.push((
            change.keys["SK"].as_str().unwrap_or_default().to_string(),
            String::from_utf8_lossy(r.header("playlake.error").expect("reason")).to_string(),
        ));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, "negative");
    assert!(reasons[0].1.contains("position"), "{reasons:?}");
    assert_eq!(reasons[1].0, "no-position");
    assert!(reasons[1].1.contains("position_end"), "{reasons:?}");
}

async fn lease_owner(db: &Client, lease_table: &str) -> Option<String> {
    let page = db
        .scan()
        .table_name(lease_table)
        .consistent_read(true)
        .send()
        .await
        .ok()?;
    page.items()
        .iter()
        .filter(|i| {
            i.get("lease_key")
                .and_then(|k| k.as_s().ok())
                .is_some_and(|k| k != "__backfill__")
        })
        .find_map(|i| i.get("lease_owner").and_then(|o| o.as_s().ok()).cloned())
}

async fn cdc_count(stack: &Stack, topic: &str) -> usize {
    let all = changes(&read_topic(&stack.brokers, topic).await);
    let ids: BTreeSet<_> = all.iter().map(|(c, _)| c.event_id.clone()).collect();
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_leases_and_take_over_from_a_dead_one() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("pair");
    create_table(&db, &table, "pk", None).await;
    let prefix = unique_name("src");
    let topic = format!("{prefix}.cdc.{table}");
    let lease_table = format!("playlake-source-{table}");
    let a = source_cmd(&stack, &prefix, &table, &["--worker-id", "a"])
        .spawn()
        .expect("a");
    let b = source_cmd(&stack, &prefix, &table, &["--worker-id", "b"])
        .spawn()
        .expect("b");
    for i in 0..20 {
        db.put_item()
            .table_name(&table)
            .item("pk", A::S(format!("first-{i}")))
            .send()
            .await
            .expect("put");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner = loop {
        assert!(Instant::now() < deadline, "no process took the shard");
        if let Some(owner) = lease_owner(&db, &lease_table).await {
            if cdc_count_ready(&stack, &topic).await >= 20 {
                break owner;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Kill the owner; the other must take over after the lease expires.
    let (mut dead, survivor, survivor_id) = if owner == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    dead.kill().expect("SIGKILL");
    let _ = dead.wait();
    for i in 0..20 {
        db.put_item()
            .table_name(&table)
            .item("pk", A::S(format!("second-{i}")))
            .send()
            .await
            .expect("put");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the survivor did not take over");
        if lease_owner(&db, &lease_table).await.as_deref() == Some(survivor_id)
            && cdc_count_ready(&stack, &topic).await >= 40
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // SIGTERM: the survivor finishes its batch, releases its lease and exits 0.
    let pid = survivor.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let out = wait_with_deadline(survivor, Duration::from_secs(30), "survivor after SIGTERM");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lease_owner(&db, &lease_table).await,
        None,
        "lease released on SIGTERM"
    );
    let all = changes(&read_topic(&stack.brokers, &topic).await);
    let (per_key, copies) = distinct_by_key(&all);
    assert_eq!(per_key.len(), 40);
    eprintln!("{copies} redelivered copies after the takeover");
}

/// Distinct change count, or 0 while the topic does not exist yet.
async fn cdc_count_ready(stack: &Stack, topic: &str) -> usize {
    let transport = KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka");
    match transport.partition_count(topic).await {
        Ok(n) if n > 0 => cdc_count(stack, topic).await,
        _ => 0,
    }
}

/// The checkpoint of every shard lease of `lease_table`, joined (empty before the
/// source created any): it changes exactly when the source made durable progress.
async fn checkpoints(db: &Client, lease_table: &str) -> String {
    let leases = playlake_dynamodb::lease_table::LeaseTable::new(db.clone(), lease_table);
    match leases.list().await {
        Ok(list) => list
            .iter()
            .map(|l| format!("{}={}", l.key, l.checkpoint))
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => String::new(),
    }
}

/// The source as a stage of `playlake run` (`--stages source`, configured by
/// `[source.dynamodb]` with a playback mapping), SIGKILLed 10 times at random
/// moments while a writer keeps changing items; each run is killed only after it
/// moved a checkpoint, so every run counts. A last `playlake run` reads to the end
/// and stops on SIGTERM. Then Kafka holds every change at least once, copies are
/// byte-identical, each item's changes are in order, and the mapping's outputs are
/// identical copies too: playback events (same event id, same bytes) and DLQ records
/// (same key, value and headers, so the lake's errors table keeps one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_inside_playlake_run_loses_nothing_and_copies_are_identical() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let db = client(&stack).await;
    let table = table_name("runkill");
    create_table(&db, &table, "pk", None).await;
    let prefix = unique_name("src");
    let lease_table = format!("playlake-source-{table}");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nstages = [\"source\"]\nshutdown_deadline_seconds = 30\n\n\
             [source.dynamodb]\ntable = \"{table}\"\nendpoint_url = \"{}\"\n\
             worker_id = \"run-1\"\nlease_duration_ms = 2000\npoll_interval_ms = 200\n\
             shard_sync_interval_ms = 1000\n\n\
             [source.dynamodb.mapping]\nstream_id = \"stream\"\nuuid = \"pk\"\nposition_end = \"position\"\n",
            stack.aws_endpoint
        ),
    )
    .expect("config");
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--brokers",
        &stack.brokers,
        "--topic-prefix",
        &prefix,
        "--metrics-addr",
        "127.0.0.1:0",
        "run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let env = [("AWS_REGION".to_string(), stack.aws_region.clone())];

    // Writes go on until the last kill: put (version 0) then update (version 1) of
    // one item after another; every seventh item has no playhead, so the mapping
    // dead-letters both of its changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let write = {
        let (db, table, stop) = (db.clone(), table.clone(), stop.clone());
        tokio::spawn(async move {
            let mut items = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for version in 0..2 {
                    let mut put = db
                        .put_item()
                        .table_name(&table)
                        .item("pk", A::S(format!("k-{items:05}")))
                        .item("stream", A::S("stream-a".into()))
                        .item("version", A::N(version.to_string()));
                    if items % 7 != 3 {
                        put = put.item("position", A::N(format!("{}.5", items + version)));
                    }
                    put.send().await.expect("put");
                }
                items += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            items
        })
    };
    let mut rng = common::Rng::from_env("sigkill_inside_playlake_run");
    for round in 0..10 {
        let before = checkpoints(&db, &lease_table).await;
        let mut stage =
            common::StageProcess::spawn(dir.path(), &format!("run-{round}"), &args, &env);
        common::wait_for_progress(&mut stage, 1, Duration::from_secs(60), || {
            let (db, lease_table, before) = (db.clone(), lease_table.clone(), before.clone());
            async move {
                let now = checkpoints(&db, &lease_table).await;
                u64::from(!now.is_empty() && !now.contains("TRIM_HORIZON") && now != before)
            }
        })
        .await;
        // A random moment after that: mid-batch, between publish and checkpoint, idle.
        let wait_ms = rng.range(0, 1500);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        stage.assert_running();
        stage.sigkill();
        eprintln!("round {round}: killed {wait_ms} ms after progress");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let items = write.await.expect("writer");
    let dead_lettered = (0..items).filter(|i| i % 7 == 3).count();
    eprintln!("{items} items written, {dead_lettered} without playhead");

    // The last run reads to the end; then SIGTERM, and it exits 0 after its commit.
    let topic = format!("{prefix}.cdc.{table}");
    let mut last = common::StageProcess::spawn(dir.path(), "run-last", &args, &env);
    common::wait_for_progress(
        &mut last,
        (items * 2) as u64,
        Duration::from_secs(120),
        || {
            let (stack, topic) = (&stack, topic.as_str());
            async move { cdc_count_ready(stack, topic).await as u64 }
        },
    )
    .await;
    last.sigterm();
    let (status, _) = last.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", last.tail(40));

    let all = changes(&read_topic(&stack.brokers, &topic).await);
    let (per_key, copies) = distinct_by_key(&all);
    eprintln!("{} cdc records, {copies} redelivered copies", all.len());
    assert_eq!(per_key.len(), items, "every item has its changes");
    for (key, list) in &per_key {
        let versions: Vec<_> = list
            .iter()
            .map(|c| c.new_image.as_ref().expect("image")["version"].clone())
            .collect();
        assert_eq!(versions, vec![json!(0), json!(1)], "{key}");
    }

    // Playback events: one per mapped change, copies byte-identical.
    let events = read_topic(&stack.brokers, &format!("{prefix}.events")).await;
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    for r in &events {
        let value = r.value.clone().expect("value");
        let e = parse_playback_event(&value, i64::MAX / 4).expect("valid event");
        if let Some(first) = by_id.insert(e.event_id.clone(), value.clone()) {
            assert_eq!(first, value, "redelivered event {} differs", e.event_id);
        }
    }
    assert_eq!(by_id.len(), (items - dead_lettered) * 2);

    // DLQ: one distinct record per unmappable change, copies identical in key, value
    // and every header, so the errors table's natural key
    // (source topic, partition, offset) is the same for each copy.
    let dlq = read_topic(&stack.brokers, &format!("{prefix}.dlq")).await;
    // event id -> (value, sorted headers) of its first copy
    let mut distinct: HashMap<String, DlqCopy> = HashMap::new();
    for r in &dlq {
        let change: ChangeEvent =
            serde_json::from_slice(r.value.as_deref().expect("value")).expect("original change");
        let mut headers = r.headers.clone();
        headers.sort();
        let identity = (r.value.clone(), headers);
        if let Some(first) = distinct.insert(change.event_id.clone(), identity.clone()) {
            assert_eq!(
                first, identity,
                "redelivered DLQ record of {} differs",
                change.event_id
            );
        }
    }
    assert_eq!(
        distinct.len(),
        dead_lettered * 2,
        "{} DLQ records",
        dlq.len()
    );
    eprintln!(
        "{} events ({} distinct), {} DLQ records ({} distinct)",
        events.len(),
        by_id.len(),
        dlq.len(),
        distinct.len()
    );

    // The lake: the sink writes the cdc and errors tables (in process: `playlake
    // sink --tables cdc` cannot name the cdc topics, see `cdc_tables`), and each
    // holds every change once although Kafka holds copies.
    let lake_dir = tempfile::tempdir().expect("lake dir");
    let lake_url = format!("file://{}", lake_dir.path().display());
    let transport = std::sync::Arc::new(
        KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka"),
    );
    let sink_config = playlake_sink::SinkConfig {
        topic_prefix: prefix.clone(),
        group_id: unique_name("sink"),
        tables: vec![
            playlake_schemas::Table::Cdc,
            playlake_schemas::Table::Errors,
        ],
        cdc_tables: vec![table.clone()],
        drain: true,
        ..playlake_sink::SinkConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(180),
        playlake_sink::run(
            transport,
            playlake_checkpoint::Lake::open(&lake_url).expect("lake"),
            sink_config,
            std::future::pending::<()>(),
        ),
    )
    .await
    .expect("the sink drained in time")
    .expect("sink ran");
    eprintln!("sink: {report:?}");
    let cdc = lake_query(
        &lake_url,
        &format!("SELECT count(*), count(DISTINCT event_id) FROM cdc WHERE \"table\" = '{table}'"),
    );
    assert_eq!(
        cdc,
        vec![items * 2, items * 2],
        "cdc rows, distinct event ids"
    );
    let errors = lake_query(
        &lake_url,
        "SELECT count(*), count(DISTINCT source_offset) FROM errors",
    );
    assert_eq!(
        errors,
        vec![dead_lettered * 2, dead_lettered * 2],
        "errors rows, distinct identities"
    );
}

/// A DLQ record's value and its headers, sorted.
type DlqCopy = (Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

/// The numbers of the one row `sql` returns from the lake (`playlake query`).
fn lake_query(lake: &str, sql: &str) -> Vec<usize> {
    let out = Command::new(env!("CARGO_BIN_EXE_playlake"))
        .args(["--lake", lake, "query", "--format", "csv", sql])
        .env_remove("PLAYLAKE_CONFIG")
        .output()
        .expect("playlake query");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{sql}: no row in {stdout}"));
    row.split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{sql}: {v:?} ({e}) in {stdout}"))
        })
        .collect()
}

/// The scripted DynamoDB Streams endpoint of the connector's tests
/// (`connectors/dynamodb/tests/scripted_streams.py`): moto cannot produce
/// TrimmedDataAccessException, so its "trimmed" scenario serves one shard whose
/// records 100 and 101 the retention removed, forwarding DynamoDB calls to moto.
struct Scripted {
    child: Child,
    endpoint: String,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scripted(stack: &Stack, scenario: &str) -> Scripted {
    use std::io::BufRead;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../connectors/dynamodb/tests/scripted_streams.py"
    );
    let mut child = stack
        .python()
        .args([script, &stack.aws_endpoint, scenario])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the scripted endpoint");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("the script prints its port");
    Scripted {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// `playlake source dynamodb` meeting TrimmedDataAccess: by default it exits
/// non-zero and says what was lost and how to go on; with `on_trimmed_data =
/// "continue"` it exits 0 after reading the records still kept, and its report
/// counts the loss once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_data_exits_non_zero_unless_configured_to_continue() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let server = scripted(&stack, "trimmed");
    let db = client(&stack).await;
    let table = table_name("trim");
    create_table(&db, &table, "pk", None).await;
    // The shard's lease says it was read up to record 100, a day ago.
    let leases = playlake_dynamodb::lease_table::LeaseTable::new(
        db.clone(),
        format!("playlake-source-{table}"),
    );
    leases.ensure_table().await.expect("lease table");
    leases
        .create_if_missing(
            "shardId-0001-t",
            None,
            &playlake_dynamodb::lease::Checkpoint::After("100".into()),
        )
        .await
        .expect("lease");
    let prefix = unique_name("src");
    // Both DynamoDB and its stream through the scripted endpoint (moto behind it).
    let cmd = source_cmd(
        &stack,
        &prefix,
        &table,
        &["--until-caught-up", "--endpoint-url", &server.endpoint],
    )
    .spawn();
    let out = wait_with_deadline(
        cmd.expect("start source"),
        Duration::from_secs(120),
        "source meeting trimmed data",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "TrimmedDataAccessException",
        "shardId-0001-t",
        "changes are lost",
        "on_trimmed_data = \"continue\"",
        "--backfill",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("playlake.toml");
    std::fs::write(
        &config,
        "[source.dynamodb]\non_trimmed_data = \"continue\"\n",
    )
    .expect("config");
    let config_arg = config.display().to_string();
    let report = run_until_caught_up(
        &stack,
        &prefix,
        &table,
        &["--endpoint-url", &server.endpoint, "--config", &config_arg],
    );
    assert_eq!(report["trimmed"], json!(1), "{report}");
    assert_eq!(report["stream_records"], json!(3), "{report}");
    drop(server);
}
