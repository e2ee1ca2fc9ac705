use playlake_schemas::{EventType, PlaybackEvent, Session, TimestampMs};

use super::*;

fn hb(id: &str, t: i64) -> PlaybackEvent {
    PlaybackEvent {
        event_id: id.to_owned(),
        uuid: "u".into(),
        stream_id: "s".into(),
        user_id: None,
        event_type: EventType::Heartbeat,
        event_time: TimestampMs(t),
        position_start: 0.0,
        position_end: 5.0,
    }
}

#[test]
fn a_long_session_keeps_bounded_state() {
    let settings = Settings::default();
    let mut op = SessionOperator::new(&settings);
    // Two hours of heartbeats every 5 s, watermark 10 s behind.
    for i in 0..1_440 {
        let t = i * 5_000;
        let e = hb(&format!("e{i:05}"), t);
        assert!(!op.is_late(&e, Watermark(t - 10_000)));
        op.apply(&e);
        op.advance(Watermark(t - 10_000));
        // Gap (30 s) + bound (10 s) + the freeze grid (60 s) of 5 s heartbeats.
        assert!(
            op.buffered_events() <= 21,
            "only gap + bound + a grid step of events"
        );
    }
    assert!(op.take_finished().is_empty());
    op.advance(Watermark::MAX);
    let sessions = op.take_finished();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].event_count, 1_440);
    assert_eq!(sessions[0].watched_seconds, 7_200.0);
    assert_eq!(
        op.open_keys(),
        0,
        "at an infinite watermark no guard is needed: nothing is held"
    );
}

#[test]
fn a_late_arriving_stop_splits_an_open_run() {
    let settings = Settings::default();
    let mut op = SessionOperator::new(&settings);
    op.apply(&hb("a", 0));
    op.apply(&hb("c", 10_000));
    let mut stop = hb("b", 5_000);
    stop.event_type = EventType::Stop;
    op.apply(&stop);
    op.advance(Watermark(5_001));
    let sessions = op.take_finished();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].event_count, 2);
    assert_eq!(sessions[0].ended_by, EndedBy::Stop);
    op.advance(Watermark::MAX);
    assert_eq!(op.take_finished()[0].session_start, TimestampMs(10_000));
}

/// Sessions entirely within one millisecond and ended by a `stop`, followed by more
/// events of that millisecond: SPEC's key `(uuid, stream_id, session_start)` is the
/// same for all of them, so they are numbered, whatever the watermark's steps (one
/// jump to the end, or small steps that emit the first sessions before the next
/// arrive and forget their guards while the last session is still open).
#[test]
fn sessions_sharing_a_start_are_numbered() {
    let settings = Settings::default();
    let gap = settings.session_gap_ms();
    let stop = |id: &str| {
        let mut e = hb(id, 1_000);
        e.event_type = EventType::Stop;
        e
    };
    let events = [stop("a"), stop("b"), hb("c", 1_000), hb("d", 6_000)];
    let refs: Vec<&PlaybackEvent> = events.iter().collect();
    let want = crate::reference::sessions(&refs, &settings);
    let numbered: Vec<(i64, u32, i64)> = want
        .iter()
        .map(|s| (s.session_start.0, s.start_ordinal, s.event_count))
        .collect();
    assert_eq!(numbered, [(1_000, 0, 1), (1_000, 1, 1), (1_000, 2, 2)]);
    let keys: std::collections::BTreeSet<_> = want.iter().map(Session::key).collect();
    assert_eq!(keys.len(), 3, "one key per session");

    let steps: [&[i64]; 3] = [
        &[],
        &[1_001, 1_001],
        &[
            1_001,
            1_001,
            1_000 + gap,
            1_001 + gap,
            6_000 + gap,
            7_000 + gap,
        ],
    ];
    for schedule in steps {
        let mut op = SessionOperator::new(&settings);
        let mut got = Vec::new();
        let mut w = Watermark::MIN;
        for (i, e) in events.iter().enumerate() {
            w = schedule.get(i).map_or(w, |&millis| Watermark(millis));
            assert!(!op.is_late(e, w), "{schedule:?}: {e:?}");
            op.apply(e);
            op.advance(w);
            got.extend(op.take_finished());
        }
        for &w in schedule.iter().skip(events.len()) {
            op.advance(Watermark(w));
            got.extend(op.take_finished());
        }
        op.advance(Watermark::MAX);
        got.extend(op.take_finished());
        got.sort_by_key(Session::key);
        assert_eq!(got, want, "watermark steps {schedule:?}");
    }
}

/// The break count `Recent` keeps equals a fresh count after every insert (in order,
/// out of order, replacing), every freeze and every emission, and the wake-up time
/// computed with it equals the one found by walking the buffer.
#[test]
fn the_break_count_stays_equal_to_a_recount() {
    let settings = Settings::default();
    let gap = settings.session_gap_ms();
    let mut op = SessionOperator::new(&settings);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut t_max = 0i64;
    let mut breaks_seen = 0;
    for i in 0..5_000 {
        // Mostly in order, some out of order, some gaps beyond the session gap,
        // some stops, some copies of an earlier id (replacing its value).
        let step = match next(20) {
            0 => gap + 1 + next(1_000) as i64,
            1 => gap,
            _ => 1 + next(10_000) as i64,
        };
        t_max += step;
        let t = if next(8) == 0 {
            t_max - next(20_000) as i64
        } else {
            t_max
        };
        let id = if next(30) == 0 {
            format!("e{:05}", i / 2)
        } else {
            format!("e{i:05}")
        };
        let mut e = hb(&id, t);
        if next(15) == 0 {
            e.event_type = EventType::Stop;
        }
        let w = Watermark(t_max - 20_000);
        if !op.is_late(&e, w) {
            op.apply(&e);
        }
        op.advance(w);
        for s in op.slots.iter().filter(|s| s.live) {
            let mut fresh = s.state.recent.clone();
            fresh.recount(gap);
            assert_eq!(s.state.recent.breaks, fresh.breaks, "after event {i}");
            breaks_seen += s.state.recent.breaks;
            let mut walked = s.state.clone();
            walked.recent.breaks = usize::MAX; // forces the walk
            assert_eq!(
                first_run_final_after(&s.state, gap),
                first_run_final_after(&walked, gap),
                "after event {i}"
            );
        }
    }
    assert!(breaks_seen > 0, "the sequence had breaks inside the buffer");
}

#[test]
fn the_wake_index_hands_out_what_is_due_earliest_first_and_keeps_the_rest() {
    let mut wake = WakeIndex::default();
    for (at, slot) in [(30, 1), (10, 2), (20, 3), (10, 4), (40, 5), (20, 3)] {
        wake.push(at, slot);
    }
    let mut due = Vec::new();
    wake.take_due(20, &mut due);
    assert_eq!(due, [(10, 2), (10, 4), (20, 3), (20, 3)]);
    due.clear();
    wake.take_due(20, &mut due);
    assert!(due.is_empty(), "taken entries are gone");
    wake.push(5, 6); // earlier than anything left: due at once
    wake.take_due(35, &mut due);
    assert_eq!(due, [(5, 6), (30, 1)]);
    due.clear();
    wake.take_due(i64::MAX, &mut due);
    assert_eq!(due, [(40, 5)]);
}

#[test]
fn the_wake_index_knows_its_earliest_time() {
    let mut wake = WakeIndex::default();
    assert!(!wake.any_due(i64::MAX), "nothing is due in an empty index");
    wake.push(30, 1);
    wake.push(10, 2);
    assert!(!wake.any_due(9));
    assert!(wake.any_due(10));
    let mut due = Vec::new();
    wake.take_due(10, &mut due);
    assert!(!wake.any_due(29), "the earliest left is 30");
    assert!(wake.any_due(30));
    wake.take_due(30, &mut due);
    assert!(!wake.any_due(i64::MAX));
}

/// A checkpoint taken between a one-millisecond `stop` session and the next event
/// of that millisecond restores the numbering (the guard carries it); one written
/// before the guard carried it still restores, numbering from 0.
#[test]
fn the_numbering_survives_a_checkpoint() {
    let settings = Settings::default();
    let mut op = SessionOperator::new(&settings);
    let mut stop = hb("a", 1_000);
    stop.event_type = EventType::Stop;
    op.apply(&stop);
    op.advance(Watermark(1_001));
    assert_eq!(op.take_finished()[0].start_ordinal, 0);
    let saved = serde_json::to_value(&op).unwrap();

    let next = |mut op: SessionOperator| {
        let e = hb("b", 1_000);
        assert!(!op.is_late(&e, Watermark(1_001)));
        op.apply(&e);
        op.advance(Watermark::MAX);
        op.take_finished()
    };
    let restored: SessionOperator = serde_json::from_value(saved.clone()).unwrap();
    let sessions = next(restored);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].start_ordinal, 1);

    fn strip(v: &mut serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(map) => {
                let n = usize::from(map.remove("starts_at_end").is_some())
                    + usize::from(map.remove("start_ordinal").is_some());
                n + map.values_mut().map(strip).sum::<usize>()
            }
            serde_json::Value::Array(items) => items.iter_mut().map(strip).sum(),
            _ => 0,
        }
    }
    let mut old = saved;
    assert!(strip(&mut old) >= 2, "the guard's new fields are saved");
    let restored: SessionOperator = serde_json::from_value(old).unwrap();
    assert_eq!(next(restored)[0].start_ordinal, 0);
}

/// The freeze grid: half the gap, or a minute when that is longer and within twice
/// the gap; never zero.
#[test]
fn the_freeze_grid_is_half_a_gap_or_a_minute() {
    assert_eq!(freeze_quantum(30_000), 60_000, "the default gap: a minute");
    assert_eq!(freeze_quantum(10_000), 20_000, "at most twice the gap");
    assert_eq!(freeze_quantum(300_000), 150_000, "half a long gap");
    assert_eq!(freeze_quantum(3_600_000), 1_800_000);
    assert_eq!(freeze_quantum(0), 1);
    assert_eq!(freeze_quantum(1), 2);
}

/// A key whose last session is emitted and whose guard is forgotten holds nothing:
/// its slot is freed by that wake-up (it used to stay, empty, for good, so state grew
/// with every key ever seen), and a checkpoint that still lists such a key restores
/// without it.
#[test]
fn a_key_with_nothing_left_is_forgotten() {
    let settings = Settings::default();
    let mut op = SessionOperator::new(&settings);
    for (uuid, t) in [("u1", 0), ("u2", 1_000)] {
        let mut e = hb("a", t);
        e.uuid = uuid.into();
        op.apply(&e);
    }
    op.advance(Watermark(30_001));
    assert_eq!(op.take_finished().len(), 1, "u1's session is final");
    assert_eq!(op.open_keys(), 2, "u1's guard is still held");
    op.advance(Watermark(60_001));
    assert_eq!(op.take_finished().len(), 1, "u2's session is final");
    assert_eq!(op.open_keys(), 1, "u1 holds nothing any more, u2 its guard");
    op.advance(Watermark(61_001));
    assert_eq!(op.open_keys(), 0);

    // A key reusing a freed slot starts afresh.
    op.apply(&hb("b", 100_000));
    op.advance(Watermark::MAX);
    let sessions = op.take_finished();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].uuid.as_str(), sessions[0].event_count),
        ("u", 1)
    );

    let json = serde_json::json!({
        "gap_ms": 30_000,
        "keys": [
            [["u1", "s"], {"open": null, "recent": [], "guard": null, "wake_at": null}],
            [["u2", "s"], {"open": null, "recent": [[[5_000, "x"], {
                "event_type": "heartbeat", "user_id": null,
                "position_start": 0.0, "position_end": 5.0}]],
                "guard": null, "wake_at": 35_001}]
        ],
        "wake": [],
        "finished": []
    });
    let restored: SessionOperator = serde_json::from_value(json).unwrap_or_else(|e| {
        panic!("restore: {e}");
    });
    assert_eq!(restored.open_keys(), 1, "only u2 holds anything");
}
