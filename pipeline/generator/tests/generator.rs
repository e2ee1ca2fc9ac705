//! Properties of the generated traffic: validity against the real parser, delivery
//! order and bounds, duplicates, determinism, realism, and the summary.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use playlake_generator::{BadReason, GeneratedRecord, Generator, GeneratorConfig, RecordKind};
use playlake_schemas::{parse_playback_event, EventType, PlaybackEvent};

fn config(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        viewers: 300,
        live_streams: 3,
        vod_streams: 20,
        duration_ms: 40 * 60 * 1000,
        out_of_order_jitter_ms: 4_000,
        duplicate_fraction: 0.02,
        bad_record_fraction: 0.01,
        seed,
        ..GeneratorConfig::default()
    }
}

fn all(cfg: &GeneratorConfig) -> (Vec<GeneratedRecord>, playlake_generator::Summary) {
    let mut generator = Generator::new(cfg.clone()).unwrap();
    let records: Vec<_> = generator.by_ref().collect();
    (records, generator.summary())
}

#[test]
fn valid_records_parse_and_bad_records_are_rejected_for_their_reason() {
    let cfg = config(1);
    let now = cfg.settled_now_ms();
    let (records, _) = all(&cfg);
    assert!(records.len() > 100_000, "sample of {}", records.len());
    let mut reasons = BTreeSet::new();
    for r in &records {
        match r.kind {
            RecordKind::Valid | RecordKind::Duplicate => {
                let ev = parse_playback_event(&r.value, now).unwrap_or_else(|e| {
                    panic!("{e}: {}", String::from_utf8_lossy(&r.value));
                });
                assert_eq!(r.original, None);
                assert_eq!(ev.uuid.as_bytes(), r.key.as_slice());
                assert_eq!(ev.event_time_ms(), r.event_time_ms);
                assert!(ev.event_time_ms() >= cfg.start_time_ms);
                assert!(ev.event_time_ms() < cfg.end_time_ms());
            }
            RecordKind::Bad(reason) => {
                let err = parse_playback_event(&r.value, now).expect_err(reason.as_str());
                assert_eq!(
                    err.reason_code(),
                    reason.expected_reason_code(),
                    "{reason}: {err}: {}",
                    String::from_utf8_lossy(&r.value)
                );
                assert_eq!(r.key.len(), 36);
                // The event it was made from is kept, valid, for writers of other
                // formats (DynamoDB items).
                let original = r
                    .original
                    .as_deref()
                    .expect("bad record keeps its original");
                let ev = parse_playback_event(original, now).expect("original is valid");
                assert_eq!(ev.uuid.as_bytes(), r.key.as_slice());
                assert_eq!(ev.event_time_ms(), r.event_time_ms);
                reasons.insert(reason);
            }
        }
    }
    assert_eq!(
        reasons.len(),
        BadReason::ALL.len(),
        "every reason appears: {reasons:?}"
    );
}

#[test]
fn delivery_is_ordered_and_within_the_jitter_and_duplicates_are_identical() {
    let cfg = config(2);
    let jitter = cfg.out_of_order_jitter_ms as i64;
    let (records, summary) = all(&cfg);
    let mut last_delivery = i64::MIN;
    let mut max_event_time = i64::MIN;
    let mut out_of_order = 0u64;
    let mut originals: HashMap<&[u8], i64> = HashMap::new();
    for r in &records {
        assert!(r.delivery_order_ms >= last_delivery, "delivery order");
        last_delivery = r.delivery_order_ms;
        let delay = r.delivery_order_ms - r.event_time_ms;
        assert!((0..=jitter).contains(&delay), "delay {delay}");
        if r.event_time_ms < max_event_time {
            out_of_order += 1;
        }
        max_event_time = max_event_time.max(r.event_time_ms);
        match r.kind {
            RecordKind::Valid => {
                assert!(
                    originals.insert(&r.value, r.delivery_order_ms).is_none(),
                    "valid values are unique"
                );
            }
            RecordKind::Duplicate => {
                let first = originals
                    .get(r.value.as_slice())
                    .expect("duplicate after its original");
                assert!(r.delivery_order_ms >= *first);
            }
            RecordKind::Bad(_) => {}
        }
    }
    assert!(
        out_of_order > 1000,
        "arrival is out of order: {out_of_order}"
    );
    assert!(summary.duplicates > 100);
    assert!(summary.max_delivery_delay_ms <= cfg.out_of_order_jitter_ms);
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let cfg = GeneratorConfig {
        duration_ms: 5 * 60 * 1000,
        ..config(3)
    };
    let a: Vec<_> = Generator::new(cfg.clone()).unwrap().collect();
    let b: Vec<_> = Generator::new(cfg.clone()).unwrap().collect();
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let c: Vec<_> = Generator::new(GeneratorConfig { seed: 4, ..cfg })
        .unwrap()
        .collect();
    assert_ne!(a, c);
}

fn valid_events(records: &[GeneratedRecord], now: i64) -> Vec<PlaybackEvent> {
    records
        .iter()
        .filter(|r| r.kind == RecordKind::Valid)
        .map(|r| parse_playback_event(&r.value, now).unwrap())
        .collect()
}

#[test]
fn traffic_looks_like_a_day_slice() {
    let cfg = config(5);
    let (records, summary) = all(&cfg);
    let mut events = valid_events(&records, cfg.settled_now_ms());
    events.sort_by(|a, b| (&a.uuid, a.event_time).cmp(&(&b.uuid, b.event_time)));

    // Every event type, live and VOD streams, several formats.
    let types: BTreeSet<_> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(types.len(), EventType::ALL.len(), "{types:?}");
    let streams: BTreeSet<_> = events.iter().map(|e| e.stream_id.as_str()).collect();
    assert!(streams.iter().any(|s| s.starts_with("live-")));
    assert!(streams.iter().filter(|s| s.starts_with("vod-")).count() > 5);
    let values: Vec<_> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Valid)
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert!(
        values.iter().any(|v| v.contains("\"event_time\":17")),
        "epoch ms"
    );
    assert!(values.iter().any(|v| v.contains("Z\"")), "RFC 3339 UTC");
    assert!(
        values.iter().any(|v| v.contains("+09:00\"")),
        "RFC 3339 with an offset"
    );
    assert!(values.iter().any(|v| v.contains("\"event_id\"")));
    assert!(values.iter().any(|v| !v.contains("\"event_id\"")));
    assert!(values.iter().any(|v| v.contains("\"user_id\":null")));

    // Positions continue from one report to the next within a uuid; uuids come back.
    let mut starts_per_uuid: HashMap<&str, u32> = HashMap::new();
    let mut user_uuids: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    let mut stops = 0;
    for pair in events.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        if prev.uuid == next.uuid && !matches!(next.event_type, EventType::Start | EventType::Seek)
        {
            assert_eq!(
                next.position_start, prev.position_end,
                "{prev:?} -> {next:?}"
            );
            assert!(next.event_time > prev.event_time);
        }
    }
    for e in &events {
        if e.event_type == EventType::Start {
            *starts_per_uuid.entry(&e.uuid).or_default() += 1;
        }
        if e.event_type == EventType::Stop {
            stops += 1;
        }
        if let Some(user) = &e.user_id {
            user_uuids.entry(user).or_default().insert(&e.uuid);
        }
    }
    assert!(
        starts_per_uuid.values().any(|n| *n > 1),
        "a uuid comes back"
    );
    assert!(
        user_uuids.values().filter(|u| u.len() > 1).count() > 10,
        "multi-device users"
    );
    let sessions: u32 = starts_per_uuid.values().sum();
    assert!(
        stops > 0 && (stops as u32) < sessions,
        "some sessions stop, some go silent"
    );
    let anonymous = events.iter().filter(|e| e.user_id.is_none()).count();
    assert!(anonymous > 0 && anonymous < events.len() / 2);

    // Live streams draw many concurrent viewers.
    let window = 30_000;
    let mut per_window: HashMap<(&str, i64), HashSet<&str>> = HashMap::new();
    for e in &events {
        per_window
            .entry((&e.stream_id, e.event_time_ms() / window))
            .or_default()
            .insert(&e.uuid);
    }
    let peak = per_window.values().map(HashSet::len).max().unwrap_or(0);
    assert!(peak > 40, "peak concurrent viewers {peak}");

    // The summary agrees with a recount.
    let uuids: HashSet<_> = events.iter().map(|e| e.uuid.as_str()).collect();
    let users: HashSet<_> = events.iter().filter_map(|e| e.user_id.as_deref()).collect();
    assert_eq!(summary.valid_events, events.len() as u64);
    assert_eq!(summary.distinct_uuids, uuids.len() as u64);
    assert_eq!(summary.distinct_streams, streams.len() as u64);
    assert_eq!(summary.distinct_users, users.len() as u64);
    assert_eq!(summary.records, records.len() as u64);
    assert_eq!(summary.records_yielded, records.len() as u64);
    let dups = records
        .iter()
        .filter(|r| r.kind == RecordKind::Duplicate)
        .count();
    assert_eq!(summary.duplicates, dups as u64);
    assert_eq!(
        summary.bad_records,
        summary.bad_by_reason.values().sum::<u64>()
    );
    assert_eq!(
        summary.records,
        summary.valid_events + summary.duplicates + summary.bad_records
    );
    assert_eq!(
        summary.events_by_type.get("start").copied(),
        Some(u64::from(sessions))
    );
    let bytes: usize = records.iter().map(|r| r.key.len() + r.value.len()).sum();
    assert_eq!(summary.bytes, bytes as u64);
    let times = events.iter().map(|e| e.event_time_ms());
    assert_eq!(summary.first_event_time_ms, times.clone().min());
    assert_eq!(summary.last_event_time_ms, times.max());
}

#[test]
fn max_events_stops_early_and_the_buffer_stays_small() {
    let cfg = GeneratorConfig {
        viewers: 2_000,
        duration_ms: 24 * 3_600_000,
        max_events: Some(200_000),
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::new(cfg).unwrap();
    let mut max_buffered = 0;
    let mut valid = 0u64;
    while let Some(r) = generator.next() {
        max_buffered = max_buffered.max(generator.buffered());
        valid += u64::from(r.kind == RecordKind::Valid);
    }
    assert_eq!(valid, 200_000);
    // 2,000 viewers at one event per 5 s over a 3 s jitter: about 1,200 in flight.
    assert!(max_buffered < 5_000, "buffered {max_buffered}");
}

#[test]
fn estimate_is_in_the_right_range() {
    let cfg = config(6);
    let (_, summary) = all(&cfg);
    let estimate = cfg.estimated_events() as f64;
    let actual = summary.valid_events as f64;
    assert!(
        actual > estimate * 0.7 && actual < estimate * 1.3,
        "{actual} vs {estimate}"
    );
}

/// `cargo test --release -p playlake-generator -- --ignored --nocapture throughput`
#[test]
#[ignore = "benchmark: run in release"]
fn throughput() {
    let cfg = GeneratorConfig {
        viewers: 20_000,
        duration_ms: 24 * 3_600_000,
        max_events: Some(5_000_000),
        ..GeneratorConfig::default()
    };
    let started = std::time::Instant::now();
    let mut bytes = 0usize;
    let mut n = 0u64;
    for r in Generator::new(cfg).unwrap() {
        bytes += r.value.len();
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "generated {n} records ({:.1} MB) in {secs:.2} s: {:.2} M records/s",
        bytes as f64 / 1e6,
        n as f64 / secs / 1e6
    );
}

#[test]
#[ignore = "diagnostic"]
fn active_share() {
    for (viewers, minutes) in [(300u32, 40u64), (1000, 10), (200, 240)] {
        let cfg = GeneratorConfig {
            viewers,
            duration_ms: minutes * 60_000,
            ..config(9)
        };
        let (_, s) = all(&cfg);
        let beats = cfg.duration_ms / cfg.heartbeat_interval_ms;
        println!(
            "{viewers} x {minutes} min: share {:.3}",
            s.valid_events as f64 / (f64::from(viewers) * beats as f64)
        );
    }
}
