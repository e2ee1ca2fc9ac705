//! The transport conformance suite: one set of cases that every
//! [`Transport`] must pass, so that the in-process log
//! ([`playlake_transport::memory::MemoryTransport`]) and Kafka
//! (`playlake_kafka::KafkaTransport` against a real broker) behave alike.
//!
//! Each case is a public async function taking the transport under test and a
//! `names` function that turns a base name into a name unique to this run (topics and
//! consumer groups); it panics on the first broken expectation. A test file calls
//! [`run_all`] or, better, one `#[tokio::test]` per case (see
//! `tests/tests/transport_memory.rs`).
//!
//! Cases never sleep hoping for the best: they poll in short slices until the
//! condition they wait for holds, and fail after a deadline generous enough for a
//! real broker's group rebalances ([`GROUP_TIMEOUT`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use playlake_transport::{
    partition_for_key, Consumer, ConsumerEvent, Delivery, OutgoingRecord, Position, Record,
    TopicPartition, TopicSpec, Transport, TransportError,
};
use tokio::time::Instant;

/// Turns a base name into a topic or group name unique to this test run.
pub type Names<'a> = &'a dyn Fn(&str) -> String;

/// How long a case waits for records or end-of-partition events.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a case waits for a consumer group to (re)assign partitions; a broker's
/// rebalance can take several seconds.
pub const GROUP_TIMEOUT: Duration = Duration::from_secs(45);
/// One `poll` of a waiting loop; short so that two group members take turns.
const POLL_SLICE: Duration = Duration::from_millis(200);
const MAX_RECORDS: usize = 500;

/// Every case, one after the other, on one transport.
pub async fn run_all(t: &dyn Transport, names: Names<'_>) {
    ensure_topic_is_idempotent(t, names).await;
    keyed_records_round_trip(t, names).await;
    per_key_order_is_preserved(t, names).await;
    offsets_are_consecutive_per_partition(t, names).await;
    assign_and_seek(t, names).await;
    no_records_before_seek(t, names).await;
    end_of_partition(t, names).await;
    group_splits_and_rebalances(t, names).await;
    commit_is_accepted(t, names).await;
    unknown_topic_errors(t, names).await;
    produce_to_unknown_topic_fails(t, names).await;
}

/// `ensure_topic` creates once and leaves an existing topic alone; `partition_count`
/// reports what was created; fewer than one partition is refused.
pub async fn ensure_topic_is_idempotent(t: &dyn Transport, names: Names<'_>) {
    let topic = names("idempotent");
    t.ensure_topic(&TopicSpec::new(&topic, 3)).await.unwrap();
    t.ensure_topic(&TopicSpec::new(&topic, 3)).await.unwrap();
    assert_eq!(t.partition_count(&topic).await.unwrap(), 3);
    t.ensure_topic(&TopicSpec::new(&topic, 5))
        .await
        .expect("ensure_topic on an existing topic must succeed and leave it as it is");
    assert_eq!(t.partition_count(&topic).await.unwrap(), 3);

    let compacted = names("idempotent-compacted");
    t.ensure_topic(&TopicSpec::new(&compacted, 2).compacted())
        .await
        .unwrap();
    assert_eq!(t.partition_count(&compacted).await.unwrap(), 2);

    let zero = t
        .ensure_topic(&TopicSpec::new(names("idempotent-zero"), 0))
        .await;
    assert!(zero.is_err(), "a topic with 0 partitions must be refused");
}

/// Keyed records come back with their key, value and headers, on the partition
/// Kafka's partitioner picks, at the offset the producer reported.
pub async fn keyed_records_round_trip(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("keyed"), 4).await;
    let sent: Vec<OutgoingRecord> = (0..40)
        .map(|i| OutgoingRecord {
            topic: topic.clone(),
            partition: None,
            key: Some(format!("viewer-{}", i % 10).into_bytes()),
            value: Some(format!("value-{i}").into_bytes()),
            headers: vec![
                ("playlake.seq".into(), i.to_string().into_bytes()),
                ("repeated".into(), b"first".to_vec()),
                ("repeated".into(), b"second".to_vec()),
            ],
        })
        .collect();
    let before_ms = now_ms();
    let deliveries = send(t, sent.clone()).await;
    for (record, delivery) in sent.iter().zip(&deliveries) {
        let key = record.key.as_deref().unwrap();
        assert_eq!(
            delivery.partition,
            partition_for_key(key, 4),
            "key {:?} must land on Kafka's partition",
            String::from_utf8_lossy(key)
        );
    }

    let mut reader = Reader::assign(
        t,
        &names("keyed-reader"),
        &all_from(&topic, 4, Position::Beginning),
    );
    reader
        .poll_until("40 keyed records", DATA_TIMEOUT, |events| {
            records_of(events).len() >= 40
        })
        .await;
    let got = records_of(&reader.events);
    assert_eq!(got.len(), 40, "no record may be delivered twice");
    let by_position: BTreeMap<(i32, i64), &Record> =
        got.iter().map(|r| ((r.partition, r.offset), *r)).collect();
    for (record, delivery) in sent.iter().zip(&deliveries) {
        let read = by_position
            .get(&(delivery.partition, delivery.offset))
            .unwrap_or_else(|| panic!("no record read at {delivery:?}"));
        assert_eq!(read.topic, topic);
        assert_eq!(read.key, record.key);
        assert_eq!(read.value, record.value);
        assert_eq!(read.headers, record.headers);
        assert_eq!(read.header("repeated"), Some(&b"first"[..]));
        let ts = read.timestamp_ms.expect("records carry a timestamp");
        assert!(
            (before_ms - 3_600_000..now_ms() + 3_600_000).contains(&ts),
            "timestamp {ts} is not near the produce time {before_ms}"
        );
    }
}

/// Records of one key keep the order they were sent in, across sends.
pub async fn per_key_order_is_preserved(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("order"), 3).await;
    let keys = ["a", "b", "c", "d"];
    let mut seq = BTreeMap::<&str, u32>::new();
    for _ in 0..5 {
        let batch = (0..20)
            .map(|i| {
                let key = keys[i % keys.len()];
                let n = seq.entry(key).or_default();
                *n += 1;
                OutgoingRecord {
                    topic: topic.clone(),
                    key: Some(key.as_bytes().to_vec()),
                    value: Some((*n - 1).to_string().into_bytes()),
                    ..Default::default()
                }
            })
            .collect();
        send(t, batch).await;
    }
    let mut reader = Reader::assign(
        t,
        &names("order-reader"),
        &all_from(&topic, 3, Position::Beginning),
    );
    reader
        .poll_until("100 records", DATA_TIMEOUT, |events| {
            records_of(events).len() >= 100
        })
        .await;
    let mut per_key = BTreeMap::<String, Vec<u32>>::new();
    for record in records_of(&reader.events) {
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        let value: u32 = String::from_utf8(record.value.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        per_key.entry(key).or_default().push(value);
    }
    assert_eq!(per_key.len(), keys.len());
    for (key, values) in per_key {
        assert_eq!(values, (0..25).collect::<Vec<_>>(), "order of key {key}");
    }
}

/// Offsets start at 0 and increase by one per record in each partition, across sends;
/// records without key or partition land on an existing partition.
pub async fn offsets_are_consecutive_per_partition(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("offsets"), 2).await;
    let first = send(
        t,
        (0..7)
            .map(|i| to(&topic, i % 2, &format!("first-{i}")))
            .collect(),
    )
    .await;
    let offsets = |ds: &[Delivery], p: i32| -> Vec<i64> {
        ds.iter()
            .filter(|d| d.partition == p)
            .map(|d| d.offset)
            .collect()
    };
    assert_eq!(offsets(&first, 0), vec![0, 1, 2, 3]);
    assert_eq!(offsets(&first, 1), vec![0, 1, 2]);
    let second = send(
        t,
        (0..3)
            .map(|i| to(&topic, 1, &format!("second-{i}")))
            .collect(),
    )
    .await;
    assert_eq!(offsets(&second, 1), vec![3, 4, 5]);

    let unkeyed = send(
        t,
        (0..4)
            .map(|i| OutgoingRecord {
                topic: topic.clone(),
                value: Some(format!("unkeyed-{i}").into_bytes()),
                ..Default::default()
            })
            .collect(),
    )
    .await;
    let mut next = [4i64, 6];
    for d in &unkeyed {
        assert!((0..2).contains(&d.partition), "{d:?}");
        assert_eq!(d.offset, next[d.partition as usize], "{d:?}");
        next[d.partition as usize] += 1;
    }

    let mut reader = Reader::assign(
        t,
        &names("offsets-reader"),
        &all_from(&topic, 2, Position::Beginning),
    );
    reader
        .poll_until("14 records", DATA_TIMEOUT, |events| {
            records_of(events).len() >= 14
        })
        .await;
    for p in 0..2 {
        let read = offsets_of(&reader.events, &topic, p);
        assert_eq!(
            read,
            (0..next[p as usize]).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
}

/// `assign` starts at the given positions; `seek` moves to an offset, the beginning
/// or the end; seeking an unassigned partition or a negative offset fails.
pub async fn assign_and_seek(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("seek"), 3).await;
    let (p0, p1) = (tp(&topic, 0), tp(&topic, 1));
    let mut batch: Vec<_> = (0..10).map(|i| to(&topic, 0, &format!("p0-{i}"))).collect();
    batch.extend((0..10).map(|i| to(&topic, 1, &format!("p1-{i}"))));
    send(t, batch).await;

    let mut reader = Reader::assign(
        t,
        &names("seek-reader"),
        &[
            (p0.clone(), Position::Offset(3)),
            (p1.clone(), Position::Beginning),
        ],
    );
    reader
        .poll_until("both partitions read to offset 9", DATA_TIMEOUT, |events| {
            has_offset(events, &p0, 9) && has_offset(events, &p1, 9)
        })
        .await;
    assert_eq!(
        offsets_of(&reader.events, &topic, 0),
        (3..10).collect::<Vec<_>>()
    );
    assert_eq!(
        offsets_of(&reader.events, &topic, 1),
        (0..10).collect::<Vec<_>>()
    );

    reader.consumer.seek(&p0, Position::Offset(7)).unwrap();
    let mark = reader.events.len();
    reader
        .poll_until(
            "partition 0 re-read from offset 7",
            DATA_TIMEOUT,
            |events| has_offset(&events[mark..], &p0, 9),
        )
        .await;
    assert_eq!(offsets_of(&reader.events[mark..], &topic, 0), vec![7, 8, 9]);
    assert!(offsets_of(&reader.events[mark..], &topic, 1).is_empty());

    reader.consumer.seek(&p0, Position::Beginning).unwrap();
    let mark = reader.events.len();
    reader
        .poll_until(
            "partition 0 re-read from the beginning",
            DATA_TIMEOUT,
            |events| has_offset(&events[mark..], &p0, 9),
        )
        .await;
    assert_eq!(
        offsets_of(&reader.events[mark..], &topic, 0),
        (0..10).collect::<Vec<_>>()
    );

    // End: only records appended after the seek. A broker may resolve "end" lazily,
    // so keep appending one record until one arrives rather than guessing a delay.
    reader.consumer.seek(&p1, Position::End).unwrap();
    let mark = reader.events.len();
    let deadline = Instant::now() + DATA_TIMEOUT;
    let mut appended = 0;
    while offsets_of(&reader.events[mark..], &topic, 1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing read after seeking to the end"
        );
        send(t, vec![to(&topic, 1, &format!("late-{appended}"))]).await;
        appended += 1;
        reader.poll_once(Duration::from_secs(1)).await;
    }
    for record in records_of(&reader.events[mark..]) {
        assert_eq!(record.partition, 1, "only partition 1 had new records");
        assert!(
            record.offset >= 10,
            "seek to End re-read offset {}",
            record.offset
        );
        assert!(record.value.as_deref().unwrap().starts_with(b"late-"));
    }

    let unassigned = reader.consumer.seek(&tp(&topic, 2), Position::Beginning);
    assert!(
        matches!(unassigned, Err(TransportError::NotAssigned { .. })),
        "seek on an unassigned partition: {unassigned:?}"
    );
    assert!(
        reader.consumer.seek(&p0, Position::Offset(-1)).is_err(),
        "a negative offset must be refused"
    );
}

/// After `Assigned`, a partition delivers nothing until the stage seeks it, and then
/// reads from the position it was given.
pub async fn no_records_before_seek(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("noseek"), 2).await;
    let (p0, p1) = (tp(&topic, 0), tp(&topic, 1));
    let mut batch: Vec<_> = (0..5).map(|i| to(&topic, 0, &i.to_string())).collect();
    batch.extend((0..5).map(|i| to(&topic, 1, &i.to_string())));
    send(t, batch).await;

    let mut reader = Reader::subscribe(t, &names("noseek-group"), &topic);
    let all: BTreeSet<_> = [p0.clone(), p1.clone()].into();
    reader
        .poll_until("both partitions assigned", GROUP_TIMEOUT, |events| {
            owned(events) == all
        })
        .await;
    assert!(
        records_of(&reader.events).is_empty(),
        "records delivered before any seek"
    );

    reader.consumer.seek(&p0, Position::Beginning).unwrap();
    reader
        .poll_until("partition 0 read to its end", DATA_TIMEOUT, |events| {
            has_offset(events, &p0, 4) && eof_offsets(events, &p0).contains(&5)
        })
        .await;
    assert!(
        offsets_of(&reader.events, &topic, 1).is_empty(),
        "partition 1 delivered records before it was sought"
    );

    reader.consumer.seek(&p1, Position::Offset(2)).unwrap();
    reader
        .poll_until("partition 1 read from offset 2", DATA_TIMEOUT, |events| {
            has_offset(events, &p1, 4)
        })
        .await;
    assert_eq!(offsets_of(&reader.events, &topic, 1), vec![2, 3, 4]);
    assert_eq!(
        offsets_of(&reader.events, &topic, 0),
        (0..5).collect::<Vec<_>>()
    );
    reader.consumer.close().await.unwrap();
}

/// `EndOfPartition` comes after the partition's last record, with its end offset,
/// once per catch-up, and again after new records are read; the consumer's end
/// offset hint agrees with it then.
pub async fn end_of_partition(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("eof"), 2).await;
    let (p0, p1) = (tp(&topic, 0), tp(&topic, 1));
    let mut batch: Vec<_> = (0..3).map(|i| to(&topic, 0, &i.to_string())).collect();
    batch.extend((0..2).map(|i| to(&topic, 1, &i.to_string())));
    send(t, batch).await;

    let mut reader = Reader::assign(
        t,
        &names("eof-reader"),
        &all_from(&topic, 2, Position::Beginning),
    );
    reader
        .poll_until("end of both partitions", DATA_TIMEOUT, |events| {
            !eof_offsets(events, &p0).is_empty() && !eof_offsets(events, &p1).is_empty()
        })
        .await;
    assert_eq!(eof_offsets(&reader.events, &p0), vec![3]);
    assert_eq!(eof_offsets(&reader.events, &p1), vec![2]);
    assert_eq!(offsets_before_eof(&reader.events, &p0), vec![0, 1, 2]);
    assert_eq!(offsets_before_eof(&reader.events, &p1), vec![0, 1]);
    // The end as the consumer last saw it: a sizing hint, known once read to the end.
    assert_eq!(reader.consumer.end_offset_hint(&p0), Some(3));
    assert_eq!(reader.consumer.end_offset_hint(&p1), Some(2));

    let mark = reader.events.len();
    send(t, (3..5).map(|i| to(&topic, 0, &i.to_string())).collect()).await;
    reader
        .poll_until("end of partition 0 again", DATA_TIMEOUT, |events| {
            !eof_offsets(&events[mark..], &p0).is_empty()
        })
        .await;
    let after = &reader.events[mark..];
    assert_eq!(eof_offsets(after, &p0), vec![5]);
    assert_eq!(offsets_before_eof(after, &p0), vec![3, 4]);
    assert_eq!(reader.consumer.end_offset_hint(&p0), Some(5));
    assert!(
        eof_offsets(after, &p1).is_empty(),
        "partition 1 did not change, its end must not be reported again"
    );
}

/// Two members of a group split the partitions disjointly and cover them all; when
/// one closes, the other is assigned the rest and can read them after seeking.
pub async fn group_splits_and_rebalances(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("group"), 4).await;
    let group = names("group-members");
    let all: BTreeSet<_> = (0..4).map(|p| tp(&topic, p)).collect();
    send(
        t,
        (0..8)
            .map(|i| to(&topic, i % 4, &format!("r{i}")))
            .collect(),
    )
    .await;

    let mut a = Reader::subscribe(t, &group, &topic);
    a.poll_until(
        "the first member owns every partition",
        GROUP_TIMEOUT,
        |events| owned(events) == all,
    )
    .await;

    let mut b = Reader::subscribe(t, &group, &topic);
    poll_both_until(
        &mut a,
        &mut b,
        "two members split the partitions",
        |a, b| {
            let (a, b) = (owned(a), owned(b));
            !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && (&a | &b) == all
        },
    )
    .await;
    let (owned_a, owned_b) = (owned(&a.events), owned(&b.events));
    assert_eq!(set(a.consumer.assignment()), owned_a);
    assert_eq!(set(b.consumer.assignment()), owned_b);
    assert!(
        records_of(&a.events).is_empty() && records_of(&b.events).is_empty(),
        "records delivered before any seek"
    );

    // Each member reads exactly its own partitions.
    for (reader, mine) in [(&mut a, &owned_a), (&mut b, &owned_b)] {
        for partition in mine {
            reader
                .consumer
                .seek(partition, Position::Beginning)
                .unwrap();
        }
    }
    poll_both_until(&mut a, &mut b, "every record read once", |a, b| {
        records_of(a).len() + records_of(b).len() >= 8
    })
    .await;
    for (reader, mine) in [(&a, &owned_a), (&b, &owned_b)] {
        for record in records_of(&reader.events) {
            assert!(
                mine.contains(&record.topic_partition()),
                "a member read {}, which it does not own",
                record.topic_partition()
            );
        }
        assert_eq!(records_of(&reader.events).len(), 2 * mine.len());
    }

    // The survivor takes over.
    b.consumer.close().await.unwrap();
    let mark = a.events.len();
    a.poll_until(
        "the survivor owns every partition",
        GROUP_TIMEOUT,
        |events| owned(events) == all,
    )
    .await;
    let newly: BTreeSet<TopicPartition> = a.events[mark..]
        .iter()
        .flat_map(|e| match e {
            ConsumerEvent::Assigned(tps) => tps.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert!(
        newly.is_superset(&owned_b),
        "the survivor was not assigned the closed member's partitions: {newly:?}"
    );
    assert_eq!(set(a.consumer.assignment()), all);
    for partition in &newly {
        a.consumer.seek(partition, Position::Beginning).unwrap();
    }
    a.poll_until("the taken-over partitions read", DATA_TIMEOUT, |events| {
        owned_b
            .iter()
            .all(|p| offsets_of(&events[mark..], &p.topic, p.partition).len() >= 2)
    })
    .await;
    for p in &owned_b {
        assert_eq!(
            offsets_of(&a.events[mark..], &p.topic, p.partition),
            vec![0, 1]
        );
    }
    a.consumer.close().await.unwrap();
}

/// A consumer can store group offsets.
pub async fn commit_is_accepted(t: &dyn Transport, names: Names<'_>) {
    let topic = create(t, &names("commit"), 1).await;
    send(t, (0..3).map(|i| to(&topic, 0, &i.to_string())).collect()).await;
    let p0 = tp(&topic, 0);
    let mut reader = Reader::new(t, &names("commit-group"));
    reader
        .consumer
        .assign(&[(p0.clone(), Position::Beginning)])
        .unwrap();
    reader
        .poll_until("3 records", DATA_TIMEOUT, |events| {
            has_offset(events, &p0, 2)
        })
        .await;
    reader.consumer.commit(&[(p0, 3)]).await.unwrap();
}

/// Asking about a topic that does not exist fails with `UnknownTopic`.
pub async fn unknown_topic_errors(t: &dyn Transport, names: Names<'_>) {
    let missing = names("missing");
    match t.partition_count(&missing).await {
        Err(TransportError::UnknownTopic { topic }) => assert_eq!(topic, missing),
        other => panic!("partition_count of a missing topic: {other:?}"),
    }
}

/// Producing to a topic that does not exist fails (topics are created explicitly).
pub async fn produce_to_unknown_topic_fails(t: &dyn Transport, names: Names<'_>) {
    let producer = t.producer().unwrap();
    let record = to(&names("missing-produce"), 0, "x");
    let result = tokio::time::timeout(2 * DATA_TIMEOUT, producer.send(vec![record]))
        .await
        .expect("send to a missing topic must fail, not hang");
    assert!(result.is_err(), "send to a missing topic: {result:?}");
}

// ---------------------------------------------------------------------------------
// Helpers.

/// A consumer and every event it has returned so far.
struct Reader {
    consumer: Box<dyn Consumer>,
    events: Vec<ConsumerEvent>,
}

impl Reader {
    fn new(t: &dyn Transport, group: &str) -> Self {
        Self {
            consumer: t.consumer(group).unwrap(),
            events: Vec::new(),
        }
    }

    fn assign(t: &dyn Transport, group: &str, positions: &[(TopicPartition, Position)]) -> Self {
        let mut reader = Self::new(t, group);
        reader.consumer.assign(positions).unwrap();
        reader
    }

    fn subscribe(t: &dyn Transport, group: &str, topic: &str) -> Self {
        let mut reader = Self::new(t, group);
        reader.consumer.subscribe(&[topic.to_owned()]).unwrap();
        reader
    }

    async fn poll_once(&mut self, timeout: Duration) {
        let events = self.consumer.poll(MAX_RECORDS, timeout).await.unwrap();
        self.events.extend(events);
    }

    /// Polls until `done` holds for every event seen so far; panics after `timeout`.
    async fn poll_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[ConsumerEvent]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.events) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; events: {}",
                summary(&self.events)
            );
            self.poll_once(POLL_SLICE).await;
        }
    }
}

/// Polls two group members in turns (a broker rebalance needs both to poll) until
/// `done` holds for their events so far.
async fn poll_both_until(
    a: &mut Reader,
    b: &mut Reader,
    what: &str,
    done: impl Fn(&[ConsumerEvent], &[ConsumerEvent]) -> bool,
) {
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while !done(&a.events, &b.events) {
        assert!(
            Instant::now() < deadline,
            "timed out after {GROUP_TIMEOUT:?} waiting for {what}; first: {}; second: {}",
            summary(&a.events),
            summary(&b.events)
        );
        a.poll_once(POLL_SLICE).await;
        b.poll_once(POLL_SLICE).await;
    }
}

async fn create(t: &dyn Transport, topic: &str, partitions: i32) -> String {
    t.ensure_topic(&TopicSpec::new(topic, partitions))
        .await
        .unwrap();
    topic.to_owned()
}

async fn send(t: &dyn Transport, records: Vec<OutgoingRecord>) -> Vec<Delivery> {
    let count = records.len();
    let deliveries = t.producer().unwrap().send(records).await.unwrap();
    assert_eq!(deliveries.len(), count, "one delivery per record");
    deliveries
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn to(topic: &str, partition: i32, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_owned(),
        partition: Some(partition),
        value: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn all_from(topic: &str, partitions: i32, position: Position) -> Vec<(TopicPartition, Position)> {
    (0..partitions).map(|p| (tp(topic, p), position)).collect()
}

fn set(partitions: Vec<TopicPartition>) -> BTreeSet<TopicPartition> {
    partitions.into_iter().collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn records_of(events: &[ConsumerEvent]) -> Vec<&Record> {
    events
        .iter()
        .flat_map(|e| match e {
            ConsumerEvent::Records(records) => records.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn offsets_of(events: &[ConsumerEvent], topic: &str, partition: i32) -> Vec<i64> {
    records_of(events)
        .into_iter()
        .filter(|r| r.topic == topic && r.partition == partition)
        .map(|r| r.offset)
        .collect()
}

fn has_offset(events: &[ConsumerEvent], partition: &TopicPartition, offset: i64) -> bool {
    offsets_of(events, &partition.topic, partition.partition).contains(&offset)
}

fn eof_offsets(events: &[ConsumerEvent], partition: &TopicPartition) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::EndOfPartition {
                partition: p,
                next_offset,
            } if p == partition => Some(*next_offset),
            _ => None,
        })
        .collect()
}

/// Offsets of the partition's records that came before its first `EndOfPartition`.
fn offsets_before_eof(events: &[ConsumerEvent], partition: &TopicPartition) -> Vec<i64> {
    let end = events
        .iter()
        .position(
            |e| matches!(e, ConsumerEvent::EndOfPartition { partition: p, .. } if p == partition),
        )
        .unwrap_or(events.len());
    offsets_of(&events[..end], &partition.topic, partition.partition)
}

/// The partitions a group member owns after these events.
fn owned(events: &[ConsumerEvent]) -> BTreeSet<TopicPartition> {
    let mut owned = BTreeSet::new();
    for event in events {
        match event {
            ConsumerEvent::Assigned(tps) => owned.extend(tps.iter().cloned()),
            ConsumerEvent::Revoked(tps) => {
                for tp in tps {
                    owned.remove(tp);
                }
            }
            _ => {}
        }
    }
    owned
}

/// A short description of events for failure messages.
fn summary(events: &[ConsumerEvent]) -> String {
    let parts: Vec<String> = events
        .iter()
        .map(|e| match e {
            ConsumerEvent::Records(r) => format!("{} records", r.len()),
            ConsumerEvent::Assigned(tps) => format!("assigned {tps:?}"),
            ConsumerEvent::Revoked(tps) => format!("revoked {tps:?}"),
            ConsumerEvent::EndOfPartition {
                partition,
                next_offset,
            } => format!("end of {partition} at {next_offset}"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
