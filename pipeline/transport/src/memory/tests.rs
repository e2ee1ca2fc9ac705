//! Unit tests of the in-process log (the cross-transport behaviour is also covered by
//! the conformance suite in `tests/`).

use std::time::Duration;

use super::*;
use crate::{ConsumerEvent, OutgoingRecord, Position, Record};

const SHORT: Duration = Duration::from_millis(10);

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn keyed(topic: &str, key: &str, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.into(),
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn to(topic: &str, partition: i32, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.into(),
        partition: Some(partition),
        value: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

async fn with_topic(name: &str, partitions: i32) -> MemoryTransport {
    let t = MemoryTransport::new();
    t.ensure_topic(&TopicSpec::new(name, partitions))
        .await
        .unwrap();
    t
}

fn records(events: &[ConsumerEvent]) -> Vec<&Record> {
    events
        .iter()
        .flat_map(|e| match e {
            ConsumerEvent::Records(r) => r.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn values(events: &[ConsumerEvent]) -> Vec<String> {
    records(events)
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn ensure_topic_is_idempotent_and_validates() {
    let t = MemoryTransport::new();
    t.ensure_topic(&TopicSpec::new("a", 3).compacted())
        .await
        .unwrap();
    t.ensure_topic(&TopicSpec::new("a", 5)).await.unwrap();
    assert_eq!(t.partition_count("a").await.unwrap(), 3);
    assert_eq!(t.cleanup_policy("a").unwrap(), CleanupPolicy::Compact);
    for bad in [
        TopicSpec::new("b", 0),
        TopicSpec::new("b c", 1),
        TopicSpec::new("", 1),
    ] {
        let err = t.ensure_topic(&bad).await.unwrap_err();
        assert!(matches!(err, TransportError::InvalidTopic { .. }), "{err}");
    }
    assert!(matches!(
        t.partition_count("b").await,
        Err(TransportError::UnknownTopic { .. })
    ));
    assert_eq!(t.topic_names(), vec!["a".to_string()]);
}

#[tokio::test]
async fn producer_places_records_and_numbers_offsets() {
    let t = with_topic("t", 3).await;
    let p = t.memory_producer();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let d = p
        .send_now(keys.iter().map(|k| keyed("t", k, "v")).collect())
        .unwrap();
    let mut next = [0i64; 3];
    for (key, delivery) in keys.iter().zip(&d) {
        assert_eq!(
            delivery.partition,
            crate::partition_for_key(key.as_bytes(), 3)
        );
        assert_eq!(delivery.offset, next[delivery.partition as usize]);
        next[delivery.partition as usize] += 1;
    }
    // Round robin without key.
    let unkeyed = (0..6)
        .map(|_| OutgoingRecord {
            topic: "t".into(),
            ..Default::default()
        })
        .collect();
    let d = p.send_now(unkeyed).unwrap();
    let mut per = [0; 3];
    for delivery in d {
        per[delivery.partition as usize] += 1;
    }
    assert_eq!(per, [2, 2, 2]);
    for (i, n) in next.iter().enumerate() {
        assert_eq!(t.end_offset(&tp("t", i as i32)).unwrap(), n + 2);
    }
}

#[tokio::test]
async fn a_bad_record_fails_the_whole_batch() {
    let t = with_topic("t", 2).await;
    let p = t.memory_producer();
    let err = p
        .send_now(vec![to("t", 0, "a"), to("t", 2, "b")])
        .unwrap_err();
    assert!(
        matches!(err, TransportError::UnknownPartition { .. }),
        "{err}"
    );
    let err = p
        .send_now(vec![to("t", 0, "a"), to("nope", 0, "b")])
        .unwrap_err();
    assert!(matches!(err, TransportError::UnknownTopic { .. }), "{err}");
    assert_eq!(t.end_offset(&tp("t", 0)).unwrap(), 0);
}

#[tokio::test]
async fn multi_topic_batches_keep_input_order() {
    let t = with_topic("a", 1).await;
    t.ensure_topic(&TopicSpec::new("b", 1)).await.unwrap();
    let d = t
        .memory_producer()
        .send_now(vec![to("b", 0, "1"), to("a", 0, "2"), to("b", 0, "3")])
        .unwrap();
    assert_eq!(
        d.iter().map(|d| d.offset).collect::<Vec<_>>(),
        vec![0, 0, 1]
    );
}

#[tokio::test]
async fn assign_reads_from_positions_and_reports_end_of_partition_once() {
    tokio::time::pause();
    let t = with_topic("t", 2).await;
    let p = t.memory_producer();
    p.send_now((0..5).map(|i| to("t", 0, &i.to_string())).collect())
        .unwrap();
    let mut c = t.memory_consumer("g");
    c.assign(&[
        (tp("t", 0), Position::Offset(2)),
        (tp("t", 1), Position::End),
    ])
    .unwrap();
    let events = c.poll(100, SHORT).await.unwrap();
    assert_eq!(values(&events), vec!["2", "3", "4"]);
    let eofs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ConsumerEvent::EndOfPartition {
                partition,
                next_offset,
            } => Some((partition.partition, *next_offset)),
            _ => None,
        })
        .collect();
    assert_eq!(eofs.len(), 2);
    assert!(eofs.contains(&(0, 5)) && eofs.contains(&(1, 0)));
    // Caught up and already reported: nothing more until new records arrive.
    assert!(c.poll(100, SHORT).await.unwrap().is_empty());
    p.send_now(vec![to("t", 0, "5")]).unwrap();
    let events = c.poll(100, SHORT).await.unwrap();
    assert_eq!(values(&events), vec!["5"]);
    assert_eq!(
        events.last(),
        Some(&ConsumerEvent::EndOfPartition {
            partition: tp("t", 0),
            next_offset: 6
        })
    );
    assert_eq!(records(&events)[0].offset, 5);
    assert!(records(&events)[0].timestamp_ms.is_some());
}

#[tokio::test]
async fn seek_moves_the_position_and_checks_it() {
    tokio::time::pause();
    let t = with_topic("t", 1).await;
    let p = t.memory_producer();
    p.send_now((0..3).map(|i| to("t", 0, &i.to_string())).collect())
        .unwrap();
    let mut c = t.memory_consumer("g");
    assert!(matches!(
        c.seek(&tp("t", 0), Position::Beginning),
        Err(TransportError::NotAssigned { .. })
    ));
    c.assign(&[(tp("t", 0), Position::End)]).unwrap();
    assert!(matches!(
        c.seek(&tp("t", 0), Position::Offset(-1)),
        Err(TransportError::InvalidOffset { .. })
    ));
    assert!(matches!(
        c.seek(&tp("t", 1), Position::Beginning),
        Err(TransportError::NotAssigned { .. })
    ));
    c.seek(&tp("t", 0), Position::Beginning).unwrap();
    assert_eq!(
        values(&c.poll(100, SHORT).await.unwrap()),
        vec!["0", "1", "2"]
    );
    // Beyond the end: wait for that offset, nothing before it.
    c.seek(&tp("t", 0), Position::Offset(5)).unwrap();
    p.send_now(vec![to("t", 0, "3")]).unwrap();
    assert!(c.poll(100, SHORT).await.unwrap().is_empty());
    p.send_now(vec![to("t", 0, "4")]).unwrap();
    // Caught up at 5 without reading anything.
    assert_eq!(
        c.poll(100, SHORT).await.unwrap(),
        vec![ConsumerEvent::EndOfPartition {
            partition: tp("t", 0),
            next_offset: 5
        }]
    );
    p.send_now(vec![to("t", 0, "5")]).unwrap();
    assert_eq!(values(&c.poll(100, SHORT).await.unwrap()), vec!["5"]);
}

#[tokio::test]
async fn poll_respects_max_records_and_rotates_partitions() {
    let t = with_topic("t", 2).await;
    let p = t.memory_producer();
    let mut batch: Vec<_> = (0..10).map(|i| to("t", 0, &format!("a{i}"))).collect();
    batch.extend((0..10).map(|i| to("t", 1, &format!("b{i}"))));
    p.send_now(batch).unwrap();
    let mut c = t.memory_consumer("g");
    c.assign(&[
        (tp("t", 0), Position::Beginning),
        (tp("t", 1), Position::Beginning),
    ])
    .unwrap();
    let first = c.poll(4, SHORT).await.unwrap();
    assert_eq!(values(&first), vec!["a0", "a1", "a2", "a3"]);
    let second = c.poll(4, SHORT).await.unwrap();
    assert_eq!(values(&second), vec!["b0", "b1", "b2", "b3"]);
}

#[tokio::test]
async fn poll_times_out_and_producers_wake_waiting_consumers() {
    tokio::time::pause();
    let t = with_topic("t", 1).await;
    let mut c = t.memory_consumer("g");
    c.assign(&[(tp("t", 0), Position::Beginning)]).unwrap();
    // The empty partition's EOF first.
    assert_eq!(c.poll(10, SHORT).await.unwrap().len(), 1);
    let start = tokio::time::Instant::now();
    assert!(c.poll(10, Duration::from_secs(5)).await.unwrap().is_empty());
    // The timer wheel rounds up to the next millisecond.
    let waited = start.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_millis(5_010)).contains(&waited),
        "{waited:?}"
    );

    let producer = t.memory_producer();
    let waiter = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let events = c.poll(10, Duration::from_secs(60)).await.unwrap();
        (events, start.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    producer.send_now(vec![to("t", 0, "x")]).unwrap();
    let (events, waited) = waiter.await.unwrap();
    assert_eq!(values(&events), vec!["x"]);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

/// Polls until the consumer's assignment stops changing, collecting events.
async fn settle(c: &mut MemoryConsumer) -> Vec<ConsumerEvent> {
    let mut all = Vec::new();
    loop {
        let events = c.poll(1000, SHORT).await.unwrap();
        if events.is_empty() {
            return all;
        }
        all.extend(events);
    }
}

#[tokio::test]
async fn group_members_split_partitions_and_rebalance() {
    tokio::time::pause();
    let t = with_topic("t", 4).await;
    t.memory_producer()
        .send_now((0..4).map(|p| to("t", p, "x")).collect())
        .unwrap();
    let mut a = t.memory_consumer("g");
    a.subscribe(&["t".into()]).unwrap();
    let events = settle(&mut a).await;
    let all: Vec<_> = (0..4).map(|p| tp("t", p)).collect();
    // Assigned, and no records before seek.
    assert_eq!(events, vec![ConsumerEvent::Assigned(all.clone())]);

    let mut b = t.memory_consumer("g");
    b.subscribe(&["t".into()]).unwrap();
    assert_eq!(
        settle(&mut a).await,
        vec![ConsumerEvent::Revoked(vec![tp("t", 2), tp("t", 3)])]
    );
    assert_eq!(
        settle(&mut b).await,
        vec![ConsumerEvent::Assigned(vec![tp("t", 2), tp("t", 3)])]
    );
    assert_eq!(
        t.group_assignment("g"),
        vec![all[..2].to_vec(), all[2..].to_vec()]
    );

    // Another group is independent.
    let mut other = t.memory_consumer("h");
    other.subscribe(&["t".into()]).unwrap();
    assert_eq!(
        settle(&mut other).await,
        vec![ConsumerEvent::Assigned(all.clone())]
    );
    assert!(settle(&mut a).await.is_empty());

    // Seeking only partition 2: only its record arrives.
    b.seek(&tp("t", 2), Position::Beginning).unwrap();
    let read = settle(&mut b).await;
    assert_eq!(
        records(&read)
            .iter()
            .map(|r| r.partition)
            .collect::<Vec<_>>(),
        vec![2]
    );

    drop(b);
    assert_eq!(
        settle(&mut a).await,
        vec![ConsumerEvent::Assigned(vec![tp("t", 2), tp("t", 3)])]
    );
    assert_eq!(a.assignment(), all);
    a.close().await.unwrap();
    assert!(t.group_assignment("g").is_empty());
    assert!(matches!(
        a.poll(10, SHORT).await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn a_waiting_member_wakes_on_rebalance() {
    tokio::time::pause();
    let t = with_topic("t", 2).await;
    let mut a = t.memory_consumer("g");
    a.subscribe(&["t".into()]).unwrap();
    settle(&mut a).await;
    let waiter = tokio::spawn(async move { a.poll(10, Duration::from_secs(60)).await.unwrap() });
    tokio::task::yield_now().await;
    let mut b = t.memory_consumer("g");
    b.subscribe(&["t".into()]).unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        vec![ConsumerEvent::Revoked(vec![tp("t", 1)])]
    );
}

#[tokio::test]
async fn subscribe_and_assign_check_their_input() {
    let t = with_topic("t", 1).await;
    let mut c = t.memory_consumer("g");
    assert!(matches!(
        c.subscribe(&["nope".into()]),
        Err(TransportError::UnknownTopic { .. })
    ));
    assert!(matches!(
        c.assign(&[(tp("t", 1), Position::Beginning)]),
        Err(TransportError::UnknownPartition { .. })
    ));
    c.subscribe(&["t".into()]).unwrap();
    assert!(matches!(
        c.assign(&[(tp("t", 0), Position::Beginning)]),
        Err(TransportError::Config(_))
    ));
}

#[tokio::test]
async fn commits_are_stored_per_group() {
    let t = with_topic("t", 1).await;
    let mut c = t.memory_consumer("g");
    c.commit(&[(tp("t", 0), 7)]).await.unwrap();
    assert_eq!(t.committed("g", &tp("t", 0)), Some(7));
    assert_eq!(t.committed("h", &tp("t", 0)), None);
    assert!(c.commit(&[(tp("t", 0), -1)]).await.is_err());
    assert!(c.commit(&[(tp("u", 0), 1)]).await.is_err());
    assert_eq!(t.committed("g", &tp("t", 0)), Some(7));
}
