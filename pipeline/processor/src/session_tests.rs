use playlake_schemas::{EventType, PlaybackEvent, TimestampMs};

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
        // Gap (30 s) + bound (10 s) + the freeze grid (15 s) of 5 s heartbeats.
        assert!(
            op.buffered_events() <= 12,
            "only gap + bound + half a gap of events"
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
        1,
        "the guard remains until the watermark passes"
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
