//! End-to-end tests of `playlake process` over the in-process transport and a
//! `file://` lake in a temporary directory.

mod common;

use std::collections::BTreeSet;
use std::future::pending;
use std::time::Duration;

use common::*;
use playlake_checkpoint::CheckpointStore;
use playlake_process::codec::{RepartitionRecord, Topics};
use playlake_process::{run, ProcessConfig, CHECKPOINT_STAGE};
use playlake_processor::{PartitionProcessor, Watermark};
use playlake_schemas::{
    EventType, ERROR_HEADER, LATE_OPERATOR_HEADER, LATE_WATERMARK_HEADER, SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER,
};
use playlake_transport::{CleanupPolicy, TopicPartition, TopicSpec, Transport};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

async fn drain_run(
    t: &playlake_transport::memory::MemoryTransport,
    lake: playlake_checkpoint::Lake,
) -> playlake_process::ProcessReport {
    tokio::time::timeout(RUN_TIMEOUT, run(arc(t), lake, config(true), pending()))
        .await
        .expect("drain run finishes")
        .expect("drain run succeeds")
}

#[tokio::test]
async fn drain_equals_reference() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    produce(&t, &events).await;
    let dir = tempfile::tempdir().unwrap();
    let report = drain_run(&t, lake(&dir)).await;
    assert_eq!(report.records_in, events.len() as u64);
    assert_eq!(report.valid, report.records_in);
    assert!(report.duplicates > 0, "the set has duplicates");
    assert!(report.late_by_operator.is_empty(), "{report:?}");
    assert!(report.checkpoints_written > 0 && report.checkpoint_bytes_max > 0);
    let topics = Topics::new(PREFIX);
    assert_eq!(
        t.cleanup_policy(&topics.resume).unwrap(),
        CleanupPolicy::Compact
    );
    // Advisory group offsets follow the checkpoints.
    let committed: i64 = (0..PARTITIONS)
        .filter_map(|p| t.committed("g", &TopicPartition::new(topics.events.clone(), p)))
        .sum();
    assert_eq!(committed, events.len() as i64);
    let want = expected(&events);
    assert!(
        want.sessions.len() > 8 && want.daily.len() >= 4,
        "a meaningful set"
    );
    let got = results(&t).await;
    assert_results(&got, &want);
    assert_eq!(report.sessions_out, want.sessions.len() as u64);
    assert_eq!(report.viewers_out, want.viewers.len() as u64);
    assert_eq!(report.daily_out, want.daily.len() as u64);

    // The persisted watermark is the real one, not +infinity.
    let mut store = CheckpointStore::new(&lake(&dir), CHECKPOINT_STAGE, "events-0").unwrap();
    let ck = store.load_latest().await.unwrap().unwrap();
    let p: PartitionProcessor = serde_json::from_slice(&ck.state).unwrap();
    assert!(p.watermark() > Watermark::MIN && p.watermark() < Watermark::MAX);

    // A second drain over the same input re-emits nothing new and changes nothing.
    let again = drain_run(&t, lake(&dir)).await;
    assert_eq!(again.records_in, 0);
    assert_results(&results(&t).await, &want);
}

#[tokio::test]
async fn invalid_records_go_to_the_dlq_with_headers() {
    let t = transport();
    create_events_topic(&t).await;
    produce_raw(&t, 1, b"not json at all").await;
    produce_raw(&t, 2, br#"{"uuid":"u1"}"#).await;
    let valid = vec![event(
        "e1",
        "u1",
        "s",
        None,
        EventType::Heartbeat,
        BASE,
        0.0,
        5.0,
    )];
    produce(&t, &valid).await;
    let dir = tempfile::tempdir().unwrap();
    let report = drain_run(&t, lake(&dir)).await;
    assert_eq!(report.records_in, 3);
    assert_eq!(report.valid, 1);
    assert_eq!(report.dlq_by_reason.values().sum::<u64>(), 2);
    assert_eq!(report.dlq_by_reason.get("not_json"), Some(&1));

    let topics = Topics::new(PREFIX);
    let mut dlq = read_all(&t, &topics.dlq).await;
    dlq.sort_by_key(|r| r.header(SOURCE_PARTITION_HEADER).map(<[u8]>::to_vec));
    assert_eq!(dlq.len(), 2);
    assert_eq!(dlq[0].value.as_deref(), Some(&b"not json at all"[..]));
    assert_eq!(dlq[1].value.as_deref(), Some(&br#"{"uuid":"u1"}"#[..]));
    for (r, partition) in dlq.iter().zip(["1", "2"]) {
        let error = String::from_utf8(r.header(ERROR_HEADER).unwrap().to_vec()).unwrap();
        assert!(error.contains(':'), "{error}");
        assert_eq!(
            r.header(SOURCE_TOPIC_HEADER),
            Some(topics.events.as_bytes())
        );
        assert_eq!(
            r.header(SOURCE_PARTITION_HEADER),
            Some(partition.as_bytes())
        );
        assert_eq!(r.header(SOURCE_OFFSET_HEADER), Some(&b"0"[..]));
    }
    assert!(dlq[0]
        .header(ERROR_HEADER)
        .unwrap()
        .starts_with(b"not_json:"));
}

#[tokio::test]
async fn late_events_go_to_the_late_topic_with_headers() {
    let t = transport();
    create_events_topic(&t).await;
    // Same uuid, same partition: the watermark reaches BASE + 300 s - 10 s.
    let on_time: Vec<_> = (0..=60)
        .map(|i| {
            event(
                &format!("e{i}"),
                "u1",
                "s",
                Some("al"),
                EventType::Heartbeat,
                BASE + i * 5_000,
                0.0,
                5.0,
            )
        })
        .collect();
    produce(&t, &on_time).await;
    // 200 s behind the watermark: late for every operator.
    let late = event(
        "late",
        "u1",
        "s",
        Some("al"),
        EventType::Heartbeat,
        BASE + 90_000,
        0.0,
        5.0,
    );
    produce(&t, std::slice::from_ref(&late)).await;
    let dir = tempfile::tempdir().unwrap();
    let report = drain_run(&t, lake(&dir)).await;
    assert_eq!(
        report.late_by_operator.get("sessions"),
        Some(&1),
        "{report:?}"
    );
    assert_eq!(report.late_by_operator.get("viewers"), Some(&1));
    // The watermark crossed midnight: the event's day is final too.
    assert_eq!(report.late_by_operator.get("daily"), Some(&1));
    let records = read_all(&t, &Topics::new(PREFIX).late).await;
    assert_eq!(records.len(), 3);
    let watermark = (BASE + 300_000 - 10_000).to_string();
    let mut operators: Vec<_> = records
        .iter()
        .map(|r| {
            assert_eq!(
                r.value.as_deref(),
                Some(serde_json::to_vec(&late).unwrap().as_slice())
            );
            assert_eq!(r.header(LATE_WATERMARK_HEADER), Some(watermark.as_bytes()));
            String::from_utf8(r.header(LATE_OPERATOR_HEADER).unwrap().to_vec()).unwrap()
        })
        .collect();
    operators.sort();
    assert_eq!(operators, ["daily", "sessions", "viewers"]);
}

/// Sum over the events partitions of their latest checkpoint sequence (0: none).
async fn checkpoint_sum(dir: &tempfile::TempDir) -> u64 {
    let mut sum = 0;
    for p in 0..PARTITIONS {
        let store =
            CheckpointStore::new(&lake(dir), CHECKPOINT_STAGE, &format!("events-{p}")).unwrap();
        sum += store
            .list_sequences()
            .await
            .unwrap()
            .last()
            .map_or(0, |s| s.get());
    }
    sum
}

/// Waits (polling, with a deadline) until [`checkpoint_sum`] reaches `min`.
async fn wait_for_checkpoints(dir: &tempfile::TempDir, min: u64) {
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while checkpoint_sum(dir).await < min {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoints written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_gives_each_result_once() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    let (first, second) = events.split_at(events.len() / 2);
    produce(&t, first).await;
    let dir = tempfile::tempdir().unwrap();

    let task = tokio::spawn(run(arc(&t), lake(&dir), config(false), pending()));
    // Every partition checkpointed (at assignment), then more input in chunks, with a
    // checkpoint in between; the crash comes right after the last chunk, so its
    // outputs (and possibly some of the previous ones) are replayed after restart.
    wait_for_checkpoints(&dir, PARTITIONS as u64).await;
    let chunks: Vec<_> = second.chunks(second.len() / 3 + 1).collect();
    for chunk in &chunks[..chunks.len() - 1] {
        let before = checkpoint_sum(&dir).await;
        produce(&t, chunk).await;
        wait_for_checkpoints(&dir, before + 1).await;
    }
    produce(&t, chunks[chunks.len() - 1]).await;
    tokio::task::yield_now().await;
    task.abort(); // a crash: no final checkpoint, outputs after the last one replayed
    let _ = task.await;

    // The restored watermark is the real one, never minus infinity (partitions that
    // received events; keyed by uuid, some may hold none).
    let mut with_events = 0;
    for p in 0..PARTITIONS {
        let mut store =
            CheckpointStore::new(&lake(&dir), CHECKPOINT_STAGE, &format!("events-{p}")).unwrap();
        let ck = store.load_latest().await.unwrap().unwrap();
        let state: PartitionProcessor = serde_json::from_slice(&ck.state).unwrap();
        if ck.positions[0].next_offset > 0 {
            with_events += 1;
            assert!(state.watermark() > Watermark::MIN, "partition {p}");
        }
    }
    assert!(with_events >= 2, "events on several partitions");

    drain_run(&t, lake(&dir)).await;
    assert_results(&results(&t).await, &expected(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_then_drain() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    produce(&t, &events).await;
    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(arc(&t), lake(&dir), config(false), async {
        let _ = stopped.await;
    }));
    wait_for_checkpoints(&dir, PARTITIONS as u64).await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(RUN_TIMEOUT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.checkpoints_written > 0);
    drain_run(&t, lake(&dir)).await;
    assert_results(&results(&t).await, &expected(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    produce(&t, &events).await;
    let dir = tempfile::tempdir().unwrap();
    let a = tokio::spawn(run(arc(&t), lake(&dir), config(true), pending()));
    let b = tokio::spawn(run(arc(&t), lake(&dir), config(true), pending()));
    let a = tokio::time::timeout(RUN_TIMEOUT, a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let b = tokio::time::timeout(RUN_TIMEOUT, b)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(a.records_in + b.records_in >= events.len() as u64);
    assert_results(&results(&t).await, &expected(&events));
    let _ = t
        .partition_count(&Topics::new(PREFIX).events)
        .await
        .unwrap();
}

/// Viewer partials on the repartition topic, as (partition, value bytes).
async fn viewer_partials(t: &playlake_transport::memory::MemoryTransport) -> Vec<(i32, Vec<u8>)> {
    let topic = Topics::new(PREFIX).partials;
    if !t.topic_names().contains(&topic) {
        return Vec::new(); // the run has not created it yet
    }
    read_all(t, &Topics::new(PREFIX).partials)
        .await
        .into_iter()
        .filter_map(|r| {
            let value = r.value?;
            value
                .starts_with(b"{\"viewers\"")
                .then_some((r.partition, value))
        })
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_crashes_replay_identical_outputs() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    let chunks: Vec<_> = events.chunks(events.len() / 6 + 1).collect();
    let dir = tempfile::tempdir().unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        // Odd rounds checkpoint mid-way; even rounds crash before any checkpoint of
        // what they processed, so all of it is replayed by the next run.
        let mut cfg = config(false);
        cfg.checkpoint_interval_ms = if i % 2 == 0 { 60_000 } else { 30 };
        let task = tokio::spawn(run(arc(&t), lake(&dir), cfg, pending()));
        let before = viewer_partials(&t).await.len();
        let checkpoints = checkpoint_sum(&dir).await;
        produce(&t, chunk).await;
        wait_until("viewer partials", || async {
            viewer_partials(&t).await.len() > before
        })
        .await;
        if i % 2 == 1 {
            wait_for_checkpoints(&dir, checkpoints + 1).await;
        }
        task.abort();
        let _ = task.await;
    }
    drain_run(&t, lake(&dir)).await;
    // Replays happened and were identical copies (`results` also checks that no key
    // carries two different values).
    let partials = viewer_partials(&t).await;
    let unique: std::collections::BTreeSet<_> = partials.iter().collect();
    assert!(unique.len() < partials.len(), "some partials were replayed");
    assert_results(&results(&t).await, &expected(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_partitions_and_survive_a_dead_member() {
    let t = transport();
    create_events_topic(&t).await;
    let events = events();
    let (first, second) = events.split_at(events.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let a = tokio::spawn(run(arc(&t), lake(&dir), config(false), async {
        let _ = stopped_a.await;
    }));
    let b = tokio::spawn(run(arc(&t), lake(&dir), config(false), pending()));
    // Both members own part of each group before any input arrives.
    for group in ["g", "g.merge"] {
        wait_until("a split assignment", || async {
            let members = t.group_assignment(group);
            members.len() == 2 && members.iter().all(|m| !m.is_empty())
        })
        .await;
    }
    produce(&t, first).await;
    let checkpoints = checkpoint_sum(&dir).await;
    wait_for_checkpoints(&dir, checkpoints + 2).await;
    // B dies; A takes its partitions over from B's checkpoints and replays.
    b.abort();
    let _ = b.await;
    wait_until("A owning everything", || async {
        t.group_assignment("g").len() == 1
    })
    .await;
    produce(&t, second).await;
    let checkpoints = checkpoint_sum(&dir).await;
    wait_for_checkpoints(&dir, checkpoints + 1).await;
    stop_a.send(()).unwrap();
    let report_a = tokio::time::timeout(RUN_TIMEOUT, a)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report_a.records_in > 0 && report_a.records_in < events.len() as u64 * 2);
    // A final drain finalizes what is still open.
    drain_run(&t, lake(&dir)).await;
    assert_results(&results(&t).await, &expected(&events));
}

/// The watermark announcements on repartition partition `r`: the source partitions
/// announced, the announcement records and the watermarks they carry.
async fn announcements(
    t: &playlake_transport::memory::MemoryTransport,
    r: i32,
) -> (BTreeSet<i32>, usize, usize) {
    let topic = Topics::new(PREFIX).partials;
    if !t.topic_names().contains(&topic) {
        return (BTreeSet::new(), 0, 0);
    }
    let mut partitions = BTreeSet::new();
    let (mut records, mut watermarks) = (0, 0);
    for record in read_all(t, &topic).await {
        if record.partition != r {
            continue;
        }
        let decoded: RepartitionRecord =
            serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let announced = match decoded {
            RepartitionRecord::Watermarks(ws) => ws,
            RepartitionRecord::Watermark(w) => vec![w],
            _ => continue,
        };
        records += 1;
        watermarks += announced.len();
        partitions.extend(announced.iter().map(|w| w.partition));
    }
    (partitions, records, watermarks)
}

/// Live input moves every source partition's watermark at every poll. An
/// announcement round must cost the repartition topic one record per repartition
/// partition, however many source partitions the instance owns: one record per
/// (source, repartition) partition was 1,024 records a poll at 32 x 32, which the
/// merge side of `playlake run` could not read back as fast as Tansu took them, so
/// with 32 partitions its viewer windows fell ever further behind (bench/scrape.py).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_announcement_record_per_repartition_partition_a_round() {
    const WIDE: i32 = 32;
    let t = transport();
    t.ensure_topic(&TopicSpec::new(Topics::new(PREFIX).events, WIDE))
        .await
        .unwrap();
    let events = events();
    produce(&t, &events).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ProcessConfig {
        repartition_partitions: WIDE,
        topic_partitions: WIDE,
        ..config(false)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(arc(&t), lake(&dir), config, async {
        let _ = stopped.await;
    }));
    // Progress condition only: every source partition announced everywhere.
    wait_until(
        "every source partition announced on every partition",
        || {
            let t = t.clone();
            async move {
                for r in 0..WIDE {
                    if announcements(&t, r).await.0.len() < WIDE as usize {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(RUN_TIMEOUT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (_, rounds, _) = announcements(&t, 0).await;
    for r in 0..WIDE {
        let (partitions, records, watermarks) = announcements(&t, r).await;
        assert_eq!(partitions.len(), WIDE as usize, "partition {r}");
        // Every round reaches every repartition partition with one record.
        assert_eq!(records, rounds, "partition {r}");
        // The first round alone announced all 32 new partitions in one record, so
        // there are fewer records than watermarks (one each, before).
        assert!(
            records + (WIDE as usize - 1) <= watermarks,
            "partition {r}: {records} records for {watermarks} watermarks"
        );
    }
    // The batched announcements give the reference results.
    drain_run(&t, lake(&dir)).await;
    assert_results(&results(&t).await, &expected(&events));
}
