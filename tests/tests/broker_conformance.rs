//! `playlake-kafka` against a real Kafka-API broker (Tansu in the local stack).
//!
//! These tests check what the pipeline relies on from the broker and from our
//! librdkafka wiring: keyed placement, headers, consumer groups and rebalances,
//! positions set only by the stage, idempotent produce, topic configs, and durability
//! across a broker restart. The `tansu_deviation_*` tests pin down where Tansu 0.6.0
//! differs from Apache Kafka; each one asserts the deviation, so when Tansu fixes it
//! the test fails and DESIGN.md (and SPEC section 10's notes) should be updated.
//!
//! The broker comes from the local stack (`playlake_tests::stack::Stack::from_env`,
//! `PLAYLAKE_TEST_BROKERS`); the restart test also runs a Tansu of its own from
//! `PLAYLAKE_TEST_TANSU`. Without the stack a test fails under `CI=true` and otherwise
//! prints SKIPPED and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use playlake_kafka::rdkafka::config::ClientConfig;
use playlake_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use playlake_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use playlake_kafka::rdkafka::Message as _;
use playlake_kafka::{DeadLetter, DeadLetterOrigin, DlqWriter, KafkaConfig, KafkaTransport};
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::{
    partition_for_key, Consumer, ConsumerEvent, OutgoingRecord, Position, Record, TopicPartition,
    TopicSpec, Transport, TransportError,
};

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// The brokers of the running stack, or `None` (after printing SKIPPED) outside CI;
/// under `CI=true` a missing stack panics (see `playlake_tests::stack`).
fn brokers(_test: &str) -> Option<String> {
    Stack::from_env().map(|stack| stack.brokers)
}

/// The Tansu binary, for the test that runs a broker of its own.
fn tansu_binary(_test: &str) -> Option<String> {
    Stack::from_env().map(|stack| stack.tansu.display().to_string())
}

macro_rules! require {
    ($value:expr) => {
        match $value {
            Some(value) => value,
            None => return,
        }
    };
}

fn unique(name: &str) -> String {
    unique_name(&format!("bc-{name}"))
}

fn transport(brokers: &str) -> KafkaTransport {
    KafkaTransport::new(KafkaConfig::new(brokers).with_client_id("broker-conformance"))
        .expect("kafka transport")
}

fn keyed(topic: &str, key: &str, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        partition: None,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: Vec::new(),
    }
}

const WAIT: Duration = Duration::from_secs(60);

/// Polls until `done` says the collected events are enough, or panics after `WAIT`.
async fn poll_until(
    consumer: &mut dyn Consumer,
    what: &str,
    mut done: impl FnMut(&[ConsumerEvent]) -> bool,
) -> Vec<ConsumerEvent> {
    let started = Instant::now();
    let mut events = Vec::new();
    while !done(&events) {
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {what}; events so far: {events:#?}"
        );
        events.extend(
            consumer
                .poll(500, Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    events
}

fn records(events: &[ConsumerEvent]) -> Vec<Record> {
    events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::Records(r) => Some(r.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn ends(events: &[ConsumerEvent]) -> BTreeMap<TopicPartition, i64> {
    events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::EndOfPartition {
                partition,
                next_offset,
            } => Some((partition.clone(), *next_offset)),
            _ => None,
        })
        .collect()
}

/// Waits for the group to assign partitions, returns them (none is seeked).
async fn wait_assigned(consumer: &mut dyn Consumer) -> Vec<TopicPartition> {
    let events = poll_until(consumer, "an assignment", |events| {
        events
            .iter()
            .any(|e| matches!(e, ConsumerEvent::Assigned(p) if !p.is_empty()))
    })
    .await;
    assert!(
        records(&events).is_empty(),
        "records arrived before any seek: {events:#?}"
    );
    consumer.assignment()
}

/// Reads everything from the assigned partitions' current positions to their ends.
async fn read_to_end(consumer: &mut dyn Consumer, partitions: &[TopicPartition]) -> Vec<Record> {
    let wanted: BTreeSet<_> = partitions.iter().cloned().collect();
    let events = poll_until(consumer, "the end of every partition", |events| {
        let ended: BTreeSet<_> = ends(events).into_keys().collect();
        wanted.is_subset(&ended)
    })
    .await;
    records(&events)
}

/// Reads from the beginning of every partition of `topic` (manual assignment).
async fn read_topic(transport: &KafkaTransport, topic: &str, group: &str) -> Vec<Record> {
    let count = transport
        .partition_count(topic)
        .await
        .expect("partition count");
    let partitions: Vec<_> = (0..count).map(|p| TopicPartition::new(topic, p)).collect();
    let mut consumer = transport.consumer(group).expect("consumer");
    consumer
        .assign(
            &partitions
                .iter()
                .map(|p| (p.clone(), Position::Beginning))
                .collect::<Vec<_>>(),
        )
        .expect("assign");
    let read = read_to_end(consumer.as_mut(), &partitions).await;
    consumer.close().await.expect("close");
    read
}

// ---------------------------------------------------------------------------------
// What the pipeline relies on
// ---------------------------------------------------------------------------------

/// Keys land where `partition_for_key` says, offsets come back in input order, and
/// keys, values and headers survive the round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_produce_and_consume_with_headers() {
    let brokers = require!(brokers("keyed_produce_and_consume_with_headers"));
    let transport = transport(&brokers);
    let topic = unique("keyed");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 3))
        .await
        .expect("create topic");
    let mut outgoing = Vec::new();
    for i in 0..60 {
        let mut record = keyed(&topic, &format!("uuid-{}", i % 7), &format!("value-{i}"));
        record.headers = vec![
            ("seq".to_string(), i.to_string().into_bytes()),
            ("dup".to_string(), b"a".to_vec()),
            ("dup".to_string(), b"b".to_vec()),
        ];
        outgoing.push(record);
    }
    let producer = transport.producer().expect("producer");
    let deliveries = producer.send(outgoing.clone()).await.expect("send");
    assert_eq!(deliveries.len(), outgoing.len());
    for (record, delivery) in outgoing.iter().zip(&deliveries) {
        let key = record.key.as_deref().unwrap_or_default();
        assert_eq!(
            delivery.partition,
            partition_for_key(key, 3),
            "key {:?} placed off the murmur2 partition",
            String::from_utf8_lossy(key)
        );
    }

    let mut consumer = transport
        .consumer(&unique("keyed-group"))
        .expect("consumer");
    consumer
        .subscribe(std::slice::from_ref(&topic))
        .expect("subscribe");
    let assigned = wait_assigned(consumer.as_mut()).await;
    assert_eq!(assigned.len(), 3);
    for partition in &assigned {
        consumer.seek(partition, Position::Beginning).expect("seek");
    }
    let read = read_to_end(consumer.as_mut(), &assigned).await;
    assert_eq!(read.len(), outgoing.len());
    for (record, delivery) in outgoing.iter().zip(&deliveries) {
        let got = read
            .iter()
            .find(|r| r.partition == delivery.partition && r.offset == delivery.offset)
            .unwrap_or_else(|| panic!("no record at {delivery:?}"));
        assert_eq!(got.key, record.key);
        assert_eq!(got.value, record.value);
        assert_eq!(
            got.headers, record.headers,
            "headers, in order, with repeats"
        );
        assert!(got.timestamp_ms.is_some());
    }
    consumer.close().await.expect("close");
}

/// Two members share a topic's partitions; when one leaves, the other is given all
/// of them again (Revoked, then Assigned, each needing a seek).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_group_rebalances_when_a_member_leaves() {
    let brokers = require!(brokers("consumer_group_rebalances_when_a_member_leaves"));
    let transport = transport(&brokers);
    let topic = unique("group");
    let group = unique("group-g");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 4))
        .await
        .expect("create topic");
    let topics = vec![topic.clone()];

    let mut a = transport.consumer(&group).expect("consumer a");
    a.subscribe(&topics).expect("subscribe a");
    let first = wait_assigned(a.as_mut()).await;
    assert_eq!(first.len(), 4, "a single member gets every partition");
    for p in &first {
        a.seek(p, Position::Beginning).expect("seek");
    }

    let mut b = transport.consumer(&group).expect("consumer b");
    b.subscribe(&topics).expect("subscribe b");
    // Both members must poll for the group to settle.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < WAIT,
            "group did not split: a={:?} b={:?}",
            a.assignment(),
            b.assignment()
        );
        for consumer in [&mut a, &mut b] {
            for event in consumer
                .poll(100, Duration::from_millis(200))
                .await
                .expect("poll")
            {
                if let ConsumerEvent::Assigned(partitions) = event {
                    for p in &partitions {
                        consumer.seek(p, Position::Beginning).expect("seek");
                    }
                }
            }
        }
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (
            a.assignment().into_iter().collect(),
            b.assignment().into_iter().collect(),
        );
        if !sa.is_empty() && !sb.is_empty() && sa.is_disjoint(&sb) && sa.len() + sb.len() == 4 {
            break;
        }
    }

    b.close().await.expect("b leaves");
    let events = poll_until(a.as_mut(), "a to get all four partitions back", |events| {
        events
            .iter()
            .any(|e| matches!(e, ConsumerEvent::Assigned(p) if p.len() == 4))
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ConsumerEvent::Revoked(_))),
        "the eager protocol revokes before reassigning: {events:#?}"
    );
    assert_eq!(a.assignment().len(), 4);

    // The reassigned partitions deliver only after a seek.
    let producer = transport.producer().expect("producer");
    let sent = producer
        .send(
            (0..8)
                .map(|i| keyed(&topic, &format!("k{i}"), "v"))
                .collect(),
        )
        .await
        .expect("send");
    let quiet = a.poll(100, Duration::from_secs(2)).await.expect("poll");
    assert!(
        records(&quiet).is_empty(),
        "records before seek: {quiet:#?}"
    );
    let assignment = a.assignment();
    for p in &assignment {
        a.seek(p, Position::Beginning).expect("seek");
    }
    let read = read_to_end(a.as_mut(), &assignment).await;
    assert_eq!(read.len(), sent.len());
    a.close().await.expect("close a");
}

/// After `Assigned`, nothing is delivered until the stage seeks; the seek position
/// wins over the group's committed offset, which is advisory only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeking_to_stored_positions() {
    let brokers = require!(brokers("seeking_to_stored_positions"));
    let transport = transport(&brokers);
    let topic = unique("seek");
    let group = unique("seek-g");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("create topic");
    let producer = transport.producer().expect("producer");
    // One send (one batch) per record: Tansu's memory storage cannot fetch from inside
    // a batch (see tansu_deviation_memory_storage_fetch_inside_a_batch_skips_it).
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.extend(
            producer
                .send(vec![keyed(&topic, "k", &format!("v{i}"))])
                .await
                .expect("send"),
        );
    }
    assert_eq!(
        sent.iter().map(|d| d.offset).collect::<Vec<_>>(),
        (sent[0].offset..sent[0].offset + 10).collect::<Vec<_>>()
    );
    let base = sent[0].offset;
    let tp = TopicPartition::new(&topic, 0);

    // A member commits offset base+4 (advisory) and leaves.
    let mut first = transport.consumer(&group).expect("consumer");
    first
        .subscribe(std::slice::from_ref(&topic))
        .expect("subscribe");
    wait_assigned(first.as_mut()).await;
    first
        .commit(&[(tp.clone(), base + 4)])
        .await
        .expect("commit group offset");
    first.close().await.expect("close");

    // The next member is told nothing until it seeks, then reads from its own stored
    // position (base+7), not the committed one.
    let mut second = transport.consumer(&group).expect("consumer");
    second
        .subscribe(std::slice::from_ref(&topic))
        .expect("subscribe");
    wait_assigned(second.as_mut()).await;
    let quiet = second
        .poll(100, Duration::from_secs(2))
        .await
        .expect("poll");
    assert!(
        records(&quiet).is_empty(),
        "records before seek: {quiet:#?}"
    );
    second.seek(&tp, Position::Offset(base + 7)).expect("seek");
    let read = read_to_end(second.as_mut(), std::slice::from_ref(&tp)).await;
    assert_eq!(
        read.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![base + 7, base + 8, base + 9]
    );
    let end = base + 10;

    // Seeking back re-reads; the end of partition carries the fetch high watermark.
    second
        .seek(&tp, Position::Offset(base + 2))
        .expect("seek back");
    let events = poll_until(second.as_mut(), "end after seeking back", |e| {
        ends(e).contains_key(&tp)
    })
    .await;
    assert_eq!(records(&events).len(), 8);
    assert_eq!(ends(&events).get(&tp), Some(&end));

    // Seeking to the end delivers only what is produced afterwards.
    second.seek(&tp, Position::End).expect("seek end");
    poll_until(second.as_mut(), "end after seeking to the end", |e| {
        ends(e).contains_key(&tp)
    })
    .await;
    producer
        .send(vec![keyed(&topic, "k", "late")])
        .await
        .expect("send");
    let events = poll_until(second.as_mut(), "the new record", |e| {
        !records(e).is_empty()
    })
    .await;
    let new = records(&events);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].offset, end);
    assert_eq!(new[0].value.as_deref(), Some(&b"late"[..]));

    // Seeking a partition this member does not hold is refused.
    let other = TopicPartition::new(&topic, 5);
    assert!(matches!(
        second.seek(&other, Position::Beginning),
        Err(TransportError::NotAssigned { .. })
    ));
    second.close().await.expect("close");
}

/// One `send` of many records with the same key: the idempotent producer keeps them
/// in order with contiguous offsets, no gaps and no duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_keeps_order_without_duplicates() {
    let brokers = require!(brokers("idempotent_produce_keeps_order_without_duplicates"));
    let transport = transport(&brokers);
    let topic = unique("idem");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 2))
        .await
        .expect("create topic");
    let producer = transport.producer().expect("producer");
    let n = 5_000;
    let sent = producer
        .send(
            (0..n)
                .map(|i| keyed(&topic, "same-key", &i.to_string()))
                .collect(),
        )
        .await
        .expect("send");
    let partition = partition_for_key(b"same-key", 2);
    assert!(sent.iter().all(|d| d.partition == partition));
    let first = sent[0].offset;
    assert!(sent
        .iter()
        .enumerate()
        .all(|(i, d)| d.offset == first + i as i64));

    let read = read_topic(&transport, &topic, &unique("idem-g")).await;
    let values: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(values, (0..n).map(|i| i.to_string()).collect::<Vec<_>>());
}

fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// The DLQ writer republishes the original key and value byte for byte, with the
/// reason and the source position in headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_writer_keeps_bytes_and_origin() {
    let brokers = require!(brokers("dlq_writer_keeps_bytes_and_origin"));
    let transport = transport(&brokers);
    let (input, dlq) = (unique("dlq-in"), unique("dlq"));
    for topic in [&input, &dlq] {
        transport
            .ensure_topic(&TopicSpec::new(topic.as_str(), 2))
            .await
            .expect("create topic");
    }
    let raw = vec![0xff, 0x00, b'{', b'x'];
    let mut bad = keyed(&input, "uuid-9", "");
    bad.value = Some(raw.clone());
    let sent = transport
        .producer()
        .expect("producer")
        .send(vec![bad])
        .await
        .expect("send");
    let read = read_topic(&transport, &input, &unique("dlq-g")).await;
    assert_eq!(read.len(), 1);
    let writer = DlqWriter::new(dlq.clone(), transport.producer().expect("producer"));
    writer
        .write(&[DeadLetter::new(read[0].clone(), "invalid JSON")])
        .await
        .expect("write dlq");
    let letters = read_topic(&transport, &dlq, &unique("dlq-g")).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key.as_deref(), Some(&b"uuid-9"[..]));
    assert_eq!(letters[0].value, Some(raw));
    assert_eq!(
        DeadLetterOrigin::from_record(&letters[0]),
        Some(DeadLetterOrigin {
            reason: "invalid JSON".into(),
            source_topic: input.clone(),
            source_partition: sent[0].partition,
            source_offset: sent[0].offset,
        })
    );
}

/// Topics are created with `cleanup.policy` and extra configs; an existing topic is
/// left alone; unknown topics are reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_admin_and_configs() {
    let brokers = require!(brokers("topic_admin_and_configs"));
    let transport = transport(&brokers);
    let topic = unique("compact");
    let mut spec = TopicSpec::new(&topic, 2).compacted();
    spec.config
        .push(("retention.ms".to_string(), "604800000".to_string()));
    transport
        .ensure_topic(&spec)
        .await
        .expect("create compacted");
    assert_eq!(transport.partition_count(&topic).await.expect("count"), 2);
    // Existing topic: success, and left as it was.
    transport
        .ensure_topic(&TopicSpec::new(&topic, 5))
        .await
        .expect("existing topic is success");
    assert_eq!(transport.partition_count(&topic).await.expect("count"), 2);

    match transport.admin().topic_configs(&topic).await {
        Ok(configs) => {
            eprintln!("DescribeConfigs({topic}) = {configs:?}");
            let policy = configs
                .iter()
                .find(|(k, _)| k == "cleanup.policy")
                .map(|(_, v)| v.as_str());
            assert_eq!(policy, Some("compact"), "{configs:?}");
        }
        Err(e) => eprintln!("DescribeConfigs is not supported by this broker: {e:?}"),
    }

    let missing = unique("missing");
    match transport.partition_count(&missing).await {
        Err(TransportError::UnknownTopic { topic }) => assert_eq!(topic, missing),
        other => panic!("expected UnknownTopic for {missing}, got {other:?}"),
    }
}

/// With `sqlite://` storage, everything acknowledged before a broker restart is
/// still there afterwards, and producing and consuming resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_with_sqlite_storage_loses_nothing() {
    let test = "broker_restart_with_sqlite_storage_loses_nothing";
    let tansu = require!(tansu_binary(test));
    let dir = std::env::temp_dir().join(unique("tansu-sqlite"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let sqlite = "sqlite://tansu.db";
    let mut broker = TansuProcess::start(&tansu, port, &dir, sqlite, "tansu-1.log");
    let transport = transport(&brokers);
    let topic = unique("restart");
    let spec = TopicSpec::new(&topic, 3);
    retry_until_up(|| transport.ensure_topic(&spec)).await;
    let producer = transport.producer().expect("producer");
    let first: Vec<_> = (0..300)
        .map(|i| keyed(&topic, &format!("k{}", i % 17), &format!("before-{i}")))
        .collect();
    producer
        .send(first.clone())
        .await
        .expect("send before restart");

    broker.kill();
    let _broker = TansuProcess::start(&tansu, port, &dir, sqlite, "tansu-2.log");
    // The same clients reconnect on their own.
    let second: Vec<_> = (0..100)
        .map(|i| keyed(&topic, &format!("k{}", i % 17), &format!("after-{i}")))
        .collect();
    producer
        .send(second.clone())
        .await
        .expect("send after restart");

    let read = read_topic(&transport, &topic, &unique("restart-g")).await;
    let mut got: Vec<_> = read
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let mut want: Vec<_> = first
        .iter()
        .chain(&second)
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------
// Tansu 0.6.0 deviations from Apache Kafka
// ---------------------------------------------------------------------------------

fn transactional_producer(brokers: &str, id: &str) -> FutureProducer {
    let mut config = producer_config(brokers);
    config
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "10000");
    config.create().expect("transactional producer")
}

/// DEVIATION: Tansu routes no EndTxn request, so `commit_transaction` fails although
/// `init_transactions` and `begin_transaction` succeed. This is why playlake's
/// exactly-once does not use Kafka transactions (DESIGN.md). If this test starts
/// failing, Tansu got fixed: update DESIGN.md and SPEC section 10's notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_deviation_commit_transaction_fails() {
    let brokers = require!(brokers("tansu_deviation_commit_transaction_fails"));
    let transport = transport(&brokers);
    let topic = unique("txn-commit");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("create topic");
    let id = unique("txn");
    let result = tokio::task::spawn_blocking(move || {
        let producer = transactional_producer(&brokers, &id);
        producer
            .init_transactions(Duration::from_secs(30))
            .expect("init_transactions works on Tansu");
        producer.begin_transaction().expect("begin_transaction");
        let record = FutureRecord::<str, str>::to(&topic)
            .key("k")
            .payload("in-txn");
        // The delivery report is not awaited: the transaction's outcome is the point.
        let _pending = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        producer.commit_transaction(Duration::from_secs(20))
    })
    .await
    .expect("join");
    eprintln!("commit_transaction on Tansu: {result:?}");
    assert!(
        result.is_err(),
        "commit_transaction succeeded: Tansu now supports EndTxn; update DESIGN.md"
    );
}

/// DEVIATION: a transaction cannot be aborted either (`abort_transaction` also needs
/// EndTxn), so the "aborted" records stay in the log with no abort marker and are not
/// hidden from `read_committed` readers. What a reader sees depends on the storage:
/// with `sqlite://`, `read_committed` (librdkafka's default) delivers the aborted
/// record like any other; with `memory://`, it delivers nothing past it, as the
/// never-ended transaction holds the partition's last stable offset back, while
/// `read_uncommitted` delivers it on both. playlake writes no transactions, but one
/// transactional producer on a shared Tansu topic would leak or stall readers. If
/// this test starts failing, Tansu got fixed: update DESIGN.md and SPEC section 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_deviation_aborted_transaction_stays_in_the_log() {
    let brokers = require!(brokers(
        "tansu_deviation_aborted_transaction_stays_in_the_log"
    ));
    let transport = transport(&brokers);
    let topic = unique("txn-abort");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("create topic");
    let (id, t, b) = (unique("txn"), topic.clone(), brokers.clone());
    let abort = tokio::task::spawn_blocking(move || {
        let producer = transactional_producer(&b, &id);
        producer
            .init_transactions(Duration::from_secs(30))
            .expect("init_transactions");
        producer.begin_transaction().expect("begin_transaction");
        let record = FutureRecord::<str, str>::to(&t).key("k").payload("aborted");
        // The delivery report is not awaited: the transaction's outcome is the point.
        let _pending = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        producer.flush(Duration::from_secs(20)).expect("flush");
        producer.abort_transaction(Duration::from_secs(20))
    })
    .await
    .expect("join");
    eprintln!("abort_transaction on Tansu: {abort:?}");
    assert!(
        abort.is_err(),
        "abort_transaction succeeded: Tansu supports EndTxn now"
    );

    let uncommitted = read_raw(&brokers, &topic, "read_uncommitted").await;
    let committed = read_raw(&brokers, &topic, "read_committed").await;
    eprintln!("read_uncommitted: {uncommitted:?}; read_committed: {committed:?}");
    assert_eq!(uncommitted, vec!["aborted".to_string()]);
    assert!(
        committed == uncommitted || committed.is_empty(),
        "read_committed delivered {committed:?}: Tansu's transaction handling changed; update DESIGN.md"
    );
}

/// Reads partition 0 of `topic` from the beginning with a raw librdkafka consumer,
/// until partition EOF or 20 s.
async fn read_raw(brokers: &str, topic: &str, isolation: &str) -> Vec<String> {
    let mut config = producer_config(brokers);
    config
        .set("group.id", unique("raw"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut tpl = playlake_kafka::rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, playlake_kafka::rdkafka::Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut values = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => values
                    .push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
                Some(Err(playlake_kafka::rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                _ => {}
            }
        }
        values
    })
    .await
    .expect("join")
}

/// DEVIATION: Tansu accepts `cleanup.policy=compact` and compacts only now and then
/// (in most runs every version of a key stays readable for seconds; in some, only the
/// latest one is left). playlake's readers take the latest record per key and never
/// rely on either behaviour, so this pins what they do rely on: whatever Tansu keeps,
/// each key's latest version is there, versions of a key keep their order, and no
/// record is duplicated. The test prints which behaviour this run saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_compacted_topics_keep_the_latest_version_of_every_key() {
    let brokers = require!(brokers(
        "tansu_compacted_topics_keep_the_latest_version_of_every_key"
    ));
    let transport = transport(&brokers);
    let topic = unique("compaction");
    let mut spec = TopicSpec::new(&topic, 1).compacted();
    spec.config.extend([
        ("segment.ms".to_string(), "100".to_string()),
        ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
        ("delete.retention.ms".to_string(), "100".to_string()),
    ]);
    transport.ensure_topic(&spec).await.expect("create topic");
    let producer = transport.producer().expect("producer");
    const KEYS: usize = 10;
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        producer
            .send(
                (0..KEYS)
                    .map(|k| keyed(&topic, &format!("key-{k}"), &format!("key-{k}/{round}")))
                    .collect(),
            )
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut read = read_topic(&transport, &topic, &unique("compaction-g")).await;
    read.sort_by_key(|record| record.offset);
    let read: Vec<String> = read
        .iter()
        .map(|record| {
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
        })
        .collect();
    let mut rounds_by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for value in &read {
        let (key, round) = value
            .split_once('/')
            .and_then(|(key, round)| Some((key.to_string(), round.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("a value this test did not write: {value:?}"));
        rounds_by_key.entry(key).or_default().push(round);
    }
    assert_eq!(rounds_by_key.len(), KEYS, "keys missing: {rounds_by_key:?}");
    for (key, rounds) in &rounds_by_key {
        assert!(
            rounds.windows(2).all(|pair| pair[0] < pair[1]),
            "{key}: versions out of order or duplicated: {rounds:?}"
        );
        assert_eq!(
            rounds.last(),
            Some(&(ROUNDS - 1)),
            "{key}: the latest version is missing: {rounds:?}"
        );
    }
    eprintln!(
        "compacted topic: {} of {} versions remain ({})",
        read.len(),
        KEYS * ROUNDS,
        if read.len() == KEYS * ROUNDS {
            "nothing compacted in this run"
        } else {
            "Tansu compacted in this run"
        }
    );
}

// ---------------------------------------------------------------------------------
// A Tansu of the test's own (restart test)
// ---------------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct TansuProcess {
    child: Option<Child>,
}

impl TansuProcess {
    /// Starts `tansu broker` in `dir` with `storage` (`memory://tansu/` or
    /// `sqlite://tansu.db`; Tansu resolves a sqlite path relative to its working
    /// directory, even one written as `sqlite:///abs/path`).
    fn start(binary: &str, port: u16, dir: &std::path::Path, storage: &str, log: &str) -> Self {
        let log = dir.join(log);
        let log = std::fs::File::create(log).expect("tansu log file");
        let err = log.try_clone().expect("tansu log file");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .current_dir(dir)
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child: Some(child) }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn retry_until_up<F, Fut>(mut op: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), TransportError>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Ok(()) => return,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("broker not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("broker never came up: {e:?}"),
        }
    }
}

/// DEVIATION (memory:// and s3:// storage, Tansu's "dynostore"): a Fetch from an
/// offset inside a stored batch returns only the batches that *start* at or after
/// that offset, so the rest of the batch is silently skipped (a single-batch
/// partition returns nothing at all, and the consumer never reaches the end).
/// (Tansu also re-sends the later batches; our consumer drops records below the
/// last delivered offset, so the stage sees 10, 11 once.) `sqlite://` storage
/// stores records one by one and fetches correctly. Positions
/// from a checkpoint are usually inside a batch, so the local stack must run Tansu
/// with sqlite storage for restarts to be exact. If this test starts failing, Tansu
/// got fixed: update DESIGN.md and SPEC section 10's notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_deviation_memory_storage_fetch_inside_a_batch_skips_it() {
    let test = "tansu_deviation_memory_storage_fetch_inside_a_batch_skips_it";
    let tansu = require!(tansu_binary(test));
    let mut seen = BTreeMap::new();
    for storage in ["memory://tansu/", "sqlite://tansu.db"] {
        let dir = std::env::temp_dir().join(unique("tansu-batch"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let _broker = TansuProcess::start(&tansu, port, &dir, storage, "tansu.log");
        let transport = transport(&format!("127.0.0.1:{port}"));
        let topic = unique("batch");
        let spec = TopicSpec::new(&topic, 1);
        retry_until_up(|| transport.ensure_topic(&spec)).await;
        let producer = transport.producer().expect("producer");
        // Offsets 0..=9 in one batch, then 10 and 11 in batches of their own.
        producer
            .send(
                (0..10)
                    .map(|i| keyed(&topic, "k", &format!("v{i}")))
                    .collect(),
            )
            .await
            .expect("send batch");
        for i in 10..12 {
            producer
                .send(vec![keyed(&topic, "k", &format!("v{i}"))])
                .await
                .expect("send");
        }
        let tp = TopicPartition::new(&topic, 0);
        let mut consumer = transport.consumer(&unique("batch-g")).expect("consumer");
        consumer
            .assign(&[(tp.clone(), Position::Offset(7))])
            .expect("assign");
        let events = poll_until(consumer.as_mut(), "the end", |e| ends(e).contains_key(&tp)).await;
        let offsets: Vec<i64> = records(&events).iter().map(|r| r.offset).collect();
        eprintln!("{storage}: fetch from offset 7 delivered {offsets:?}");
        seen.insert(storage, offsets);
        consumer.close().await.expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_eq!(seen["sqlite://tansu.db"], vec![7, 8, 9, 10, 11]);
    let memory = &seen["memory://tansu/"];
    assert!(
        !memory.contains(&7) && memory.ends_with(&[10, 11]),
        "memory storage delivered {memory:?} from offset 7: Tansu got fixed; update DESIGN.md"
    );
}
