//! Playback event parsing: the processor's `parse_playback_event` on raw Kafka record
//! bytes.
//!
//! Invariants: never panics; a valid event obeys every rule of SPEC section 2, its
//! JSON form (the lake's `events` row, also a valid input record) parses back to the
//! same event; an invalid record has a DLQ reason whose code is one of
//! `InvalidEvent::REASON_CODES`. `parse_playback_event_into`, parsing into an event
//! that still holds the previous input's, gives the same event or the same error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use playlake_schemas::event::{MAX_EVENT_ID_BYTES, MAX_STREAM_ID_BYTES, MAX_UUID_BYTES};
use playlake_schemas::time::{MAX_FUTURE_SKEW_MS, MIN_EVENT_TIME_MS};
use std::cell::RefCell;

use playlake_schemas::{
    parse_playback_event, parse_playback_event_into, EventType, InvalidEvent, PlaybackEvent,
};

thread_local! {
    /// The event every input is also parsed into, reused across inputs.
    static SCRATCH: RefCell<PlaybackEvent> = RefCell::default();
}

/// The processor's clock: 2026-12-01T00:00:00Z (after the example events).
const NOW_MS: i64 = 1_796_083_200_000;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_playback_event(data, NOW_MS);
    SCRATCH.with_borrow_mut(|scratch| {
        match (parse_playback_event_into(data, NOW_MS, scratch), &parsed) {
            (Ok(()), Ok(event)) => assert_eq!(&*scratch, event),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (into, new) => panic!("into {into:?}, new {new:?}"),
        }
    });
    match parsed {
        Ok(event) => {
            assert!((1..=MAX_UUID_BYTES).contains(&event.uuid.len()));
            assert!((1..=MAX_STREAM_ID_BYTES).contains(&event.stream_id.len()));
            assert!((1..=MAX_EVENT_ID_BYTES).contains(&event.event_id.len()));
            let t = event.event_time_ms();
            assert!((MIN_EVENT_TIME_MS..=NOW_MS + MAX_FUTURE_SKEW_MS).contains(&t));
            assert!(event.event_time_utc().is_some());
            for p in [event.position_start, event.position_end] {
                assert!(p.is_finite() && p >= 0.0 && p.is_sign_positive(), "{p}");
            }
            if event.event_type != EventType::Seek {
                assert!(event.position_end >= event.position_start);
            }
            let watched = event.watched_seconds();
            assert!(watched.is_finite() && watched >= 0.0);

            let json = serde_json::to_vec(&event).expect("a valid event serializes");
            let again = parse_playback_event(&json, NOW_MS).unwrap_or_else(|err| {
                panic!(
                    "re-serialized event does not parse ({err}): {}",
                    String::from_utf8_lossy(&json)
                )
            });
            assert_eq!(again, event, "{}", String::from_utf8_lossy(&json));
            // The lake reads the row back without re-validating.
            let row: playlake_schemas::PlaybackEvent =
                serde_json::from_slice(&json).expect("the events row deserializes");
            assert_eq!(row.event_id, event.event_id);
            assert_eq!(row.event_time, event.event_time);
        }
        Err(err) => check_reason(&err),
    }
});

fn check_reason(err: &InvalidEvent) {
    let code = err.reason_code();
    assert!(InvalidEvent::REASON_CODES.contains(&code), "{code}");
    let reason = err.dlq_reason();
    assert!(reason.starts_with(&format!("{code}: ")), "{reason}");
    // Messages quote values cut short: a 10 MB record must not make a 10 MB header.
    assert!(reason.len() < 4096, "reason of {} bytes", reason.len());
}
