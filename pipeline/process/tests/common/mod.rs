//! Test support: a hand-made event set, producing it, running the processor, reading
//! the output topics back deduplicated by key.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use playlake_checkpoint::Lake;
use playlake_process::codec::{daily_key, session_key, viewer_key, Topics};
use playlake_process::ProcessConfig;
use playlake_processor::reference::{self, Results};
use playlake_processor::Settings;
use playlake_schemas::{
    DailyStat, EventType, PlaybackEvent, ResumePoint, Session, TimestampMs, ViewerWindow,
};
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{
    ConsumerEvent, OutgoingRecord, Position, Record, TopicPartition, TopicSpec, Transport,
};

/// `2025-06-01T23:57:00Z`: the events cross midnight.
pub const BASE: i64 = 1_748_822_220_000;
pub const PREFIX: &str = "t";
pub const PARTITIONS: i32 = 4;

#[allow(clippy::too_many_arguments)]
pub fn event(
    id: &str,
    uuid: &str,
    stream: &str,
    user: Option<&str>,
    event_type: EventType,
    t: i64,
    start: f64,
    end: f64,
) -> PlaybackEvent {
    PlaybackEvent {
        event_id: id.to_owned(),
        uuid: uuid.to_owned(),
        stream_id: stream.to_owned(),
        user_id: user.map(str::to_owned),
        event_type,
        event_time: TimestampMs(t),
        position_start: start,
        position_end: end,
    }
}

/// A deterministic set: 8 players on 2 streams over ~6 minutes across midnight, with
/// gaps (several sessions), stops, seeks, duplicates and disorder within 5 s.
pub fn events() -> Vec<PlaybackEvent> {
    let users = [Some("alice"), Some("bob"), None, Some("carol")];
    let mut out = Vec::new();
    let mut seed: u64 = 42;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for u in 0..8 {
        let uuid = format!("u{u}");
        let stream = if u % 3 == 0 { "s-a" } else { "s-b" };
        let user = users[u % 4];
        let mut t = BASE + (u as i64) * 1_300;
        let mut pos = 0.0;
        for i in 0..60 {
            let id = format!("{uuid}-{i}");
            let kind = match rnd(20) {
                0 => EventType::Seek,
                1 => EventType::Pause,
                2 if i > 10 => EventType::Stop,
                _ => EventType::Heartbeat,
            };
            let (start, end) = if kind == EventType::Seek {
                (pos, pos + 30.0)
            } else {
                (pos, pos + 5.0)
            };
            pos = end;
            out.push(event(&id, &uuid, stream, user, kind, t, start, end));
            if rnd(10) == 0 {
                out.push(event(&id, &uuid, stream, user, kind, t, start, end)); // duplicate
            }
            t += if rnd(12) == 0 { 45_000 } else { 5_000 };
        }
    }
    out.sort_by_key(|e| (e.event_time_ms(), e.event_id.clone()));
    // Disorder: swap some neighbours (at most a few seconds apart).
    for i in (1..out.len()).step_by(7) {
        if out[i].event_time_ms() - out[i - 1].event_time_ms() <= 5_000 {
            out.swap(i, i - 1);
        }
    }
    out
}

pub fn settings() -> Settings {
    Settings::default()
}

pub fn config(drain: bool) -> ProcessConfig {
    ProcessConfig {
        topic_prefix: PREFIX.to_owned(),
        group_id: "g".to_owned(),
        checkpoint_interval_ms: 50,
        settings: settings(),
        drain,
        repartition_partitions: 3,
        topic_partitions: PARTITIONS,
        poll_timeout_ms: 20,
        max_poll_records: 40,
    }
}

pub fn transport() -> MemoryTransport {
    MemoryTransport::new()
}

pub async fn create_events_topic(t: &MemoryTransport) {
    t.ensure_topic(&TopicSpec::new(Topics::new(PREFIX).events, PARTITIONS))
        .await
        .unwrap();
}

/// Produces events keyed by uuid (plus any raw records), in order.
pub async fn produce(t: &MemoryTransport, events: &[PlaybackEvent]) {
    let records = events
        .iter()
        .map(|e| OutgoingRecord {
            topic: Topics::new(PREFIX).events,
            partition: None,
            key: Some(e.uuid.clone().into_bytes()),
            value: Some(serde_json::to_vec(e).unwrap()),
            headers: Vec::new(),
        })
        .collect();
    t.producer().unwrap().send(records).await.unwrap();
}

pub async fn produce_raw(t: &MemoryTransport, partition: i32, value: &[u8]) {
    t.producer()
        .unwrap()
        .send(vec![OutgoingRecord {
            topic: Topics::new(PREFIX).events,
            partition: Some(partition),
            key: None,
            value: Some(value.to_vec()),
            headers: Vec::new(),
        }])
        .await
        .unwrap();
}

pub fn lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(&format!("file://{}", dir.path().display())).unwrap()
}

pub fn arc(t: &MemoryTransport) -> Arc<dyn Transport> {
    Arc::new(t.clone())
}

/// Every record of `topic`, read to the end of each partition.
pub async fn read_all(t: &MemoryTransport, topic: &str) -> Vec<Record> {
    let n = t.partition_count(topic).await.unwrap();
    let mut c = t.consumer("reader").unwrap();
    let positions: Vec<_> = (0..n)
        .map(|p| (TopicPartition::new(topic, p), Position::Beginning))
        .collect();
    c.assign(&positions).unwrap();
    let mut ends = 0;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ends < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reading {topic} timed out"
        );
        for e in c.poll(1000, Duration::from_millis(100)).await.unwrap() {
            match e {
                ConsumerEvent::Records(r) => out.extend(r),
                ConsumerEvent::EndOfPartition { .. } => ends += 1,
                _ => {}
            }
        }
    }
    out
}

/// Results read back from the output topics, deduplicated by key; panics when one
/// key carries two different values.
pub async fn results(t: &MemoryTransport) -> Results {
    let topics = Topics::new(PREFIX);
    fn dedup<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
        records: Vec<Record>,
        key: impl Fn(&T) -> String,
        latest: bool,
    ) -> Vec<T> {
        let mut map = BTreeMap::new();
        for r in records {
            let row: T = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let k = key(&row);
            assert_eq!(
                r.key.as_deref(),
                Some(k.as_bytes()),
                "record key is the natural key"
            );
            match map.get(&k) {
                Some(old) if !latest => assert_eq!(old, &row, "key {k} has two values"),
                _ => {
                    map.insert(k, row);
                }
            }
        }
        map.into_values().collect()
    }
    let mut sessions: Vec<Session> = dedup(read_all(t, &topics.sessions).await, session_key, false);
    sessions.sort_by_key(Session::key);
    let mut viewers: Vec<ViewerWindow> =
        dedup(read_all(t, &topics.viewers).await, viewer_key, false);
    viewers.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut daily: Vec<DailyStat> = dedup(read_all(t, &topics.daily).await, daily_key, false);
    daily.sort_by(|a, b| a.key().cmp(&b.key()));
    let mut resume_records = read_all(t, &topics.resume).await;
    // Per key the latest record is in offset order (one key, one partition).
    resume_records.sort_by_key(|r| (r.partition, r.offset));
    let mut resume: Vec<ResumePoint> = dedup(resume_records, ResumePoint::key, true);
    resume.sort_by(|a, b| (&a.user_id, &a.stream_id).cmp(&(&b.user_id, &b.stream_id)));
    Results {
        sessions,
        viewers,
        daily,
        resume,
    }
}

pub fn expected(events: &[PlaybackEvent]) -> Results {
    reference::compute(events, &settings())
}

/// Compares field by field, for readable failures.
pub fn assert_results(got: &Results, want: &Results) {
    assert_eq!(got.sessions.len(), want.sessions.len(), "session count");
    assert_eq!(got.sessions, want.sessions);
    assert_eq!(got.viewers, want.viewers);
    assert_eq!(got.daily, want.daily);
    assert_eq!(got.resume, want.resume);
}
