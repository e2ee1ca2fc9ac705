//! Unit tests of [`super::parse_playback_event`]; the sample-based drift test against
//! the JSON Schema lives in `schemas/tests/json_schema.rs`. Every input goes through
//! [`super::diff_tests::check`], which also runs the reference path and requires the
//! very same result.

use super::diff_tests::check;
use super::*;

/// 2025-06-01T00:00:00Z.
const NOW: i64 = 1_748_736_000_000;

fn parse(json: &str) -> Result<PlaybackEvent, InvalidEvent> {
    check(json.as_bytes(), NOW)
}

fn reason(json: &str) -> &'static str {
    match parse(json) {
        Ok(event) => panic!("expected rejection of {json}, got {event:?}"),
        Err(err) => err.reason_code(),
    }
}

#[test]
fn full_event() {
    let e = parse(
        r#"{"event_id":"e1","uuid":"u1","stream_id":"s1","user_id":"alice","event_type":"pause",
            "event_time":"2025-06-01T00:00:00.123+01:00","position_start":1.5,"position_end":2,"extra":{"x":[1e400]}}"#,
    )
    .unwrap();
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.user_id.as_deref(), Some("alice"));
    assert_eq!(e.event_type, EventType::Pause);
    assert_eq!(e.event_time_ms(), NOW - 3_600_000 + 123);
    assert_eq!((e.position_start, e.position_end), (1.5, 2.0));
    assert_eq!(e.watched_seconds(), 0.5);
    assert_eq!(e.dedup_key(), ("u1", "e1"));
}

#[test]
fn defaults() {
    let e = parse(r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"position_end":7}"#)
        .unwrap();
    assert_eq!(e.event_type, EventType::Heartbeat);
    assert_eq!(e.position_start, 7.0);
    assert_eq!(e.user_id, None);
    assert_eq!(e.event_id, e.derived_event_id());
    assert_eq!(e.event_id.len(), 32);

    let e =
        parse(r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"event_type":"start"}"#)
            .unwrap();
    assert_eq!((e.position_start, e.position_end), (0.0, 0.0));
    let e = parse(
        r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"event_type":"start","position_start":30}"#,
    )
    .unwrap();
    assert_eq!((e.position_start, e.position_end), (30.0, 30.0));

    // null counts as absent.
    let e = parse(
        r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"event_id":null,"event_type":null,"user_id":null,"position_start":null,"position_end":3}"#,
    )
    .unwrap();
    assert_eq!(e.event_type, EventType::Heartbeat);
    assert_eq!(e.position_start, 3.0);
}

#[test]
fn derived_id_is_stable_and_content_based() {
    let a = parse(r#"{"uuid":"u-1","stream_id":"s","event_time":1748736000000,"position_start":10,"position_end":15}"#).unwrap();
    let b = parse(r#"{"uuid":"u-1","stream_id":"other","event_time":"2025-06-01T02:00:00+02:00","position_start":10.0,"position_end":1.5e1,"event_type":"heartbeat"}"#).unwrap();
    assert_eq!(a.event_id, "66b0108bf4509d0e1c5e8eb0cfc4cd02");
    assert_eq!(a.event_id, b.event_id);
}

#[test]
fn rejections() {
    let ok = r#""uuid":"u","stream_id":"s","event_time":1748735000000"#;
    let cases: &[(&str, &str)] = &[
        ("[1,2]", "not_object"),
        ("\"x\"", "not_object"),
        ("{", "not_json"),
        ("", "not_json"),
        ("{} {}", "not_json"),
        (
            r#"{"uuid":"u","uuid":"v","stream_id":"s","event_time":1748735000000,"position_end":1}"#,
            "duplicate_field",
        ),
        (
            r#"{"stream_id":"s","event_time":1748735000000,"position_end":1}"#,
            "missing_field",
        ),
        (
            r#"{"uuid":null,"stream_id":"s","event_time":1748735000000,"position_end":1}"#,
            "missing_field",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","position_end":1}"#,
            "missing_field",
        ),
        (&format!("{{{ok}}}"), "missing_field"),
        (
            &format!("{{{ok},\"event_type\":\"stop\"}}"),
            "missing_field",
        ),
        (
            r#"{"uuid":7,"stream_id":"s","event_time":1748735000000,"position_end":1}"#,
            "wrong_type",
        ),
        (
            &format!("{{{ok},\"user_id\":5,\"position_end\":1}}"),
            "wrong_type",
        ),
        (&format!("{{{ok},\"position_end\":\"1\"}}"), "wrong_type"),
        (&format!("{{{ok},\"position_end\":true}}"), "wrong_type"),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":1748735000000.0,"position_end":1}"#,
            "wrong_type",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":1.7e12,"position_end":1}"#,
            "wrong_type",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":[1],"position_end":1}"#,
            "wrong_type",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":"yesterday","position_end":1}"#,
            "invalid_timestamp",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":"2025-06-01","position_end":1}"#,
            "invalid_timestamp",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":99999999999999999999,"position_end":1}"#,
            "number_out_of_range",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":-99999999999999999999,"position_end":1}"#,
            "number_out_of_range",
        ),
        (
            r#"{"uuid":"","stream_id":"s","event_time":1748735000000,"position_end":1}"#,
            "id_length",
        ),
        (
            &format!("{{{ok},\"event_type\":\"Stop\",\"position_end\":1}}"),
            "unknown_event_type",
        ),
        (
            &format!("{{{ok},\"position_end\":-1}}"),
            "negative_position",
        ),
        (
            &format!("{{{ok},\"position_end\":1e400}}"),
            "non_finite_position",
        ),
        (
            &format!("{{{ok},\"position_start\":-1e400,\"position_end\":1}}"),
            "non_finite_position",
        ),
        (
            &format!("{{{ok},\"position_start\":5,\"position_end\":4}}"),
            "position_order",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":946684799999,"position_end":1}"#,
            "event_time_too_old",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":"1999-12-31T23:59:59.999Z","position_end":1}"#,
            "event_time_too_old",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":-5,"position_end":1}"#,
            "event_time_too_old",
        ),
        (
            r#"{"uuid":"u","stream_id":"s","event_time":1748822400001,"position_end":1}"#,
            "event_time_in_future",
        ),
    ];
    for (json, want) in cases {
        assert_eq!(reason(json), *want, "for {json}");
    }
    let err = check(b"{\"uuid\":\"\xff\"}", NOW).unwrap_err();
    assert_eq!(err.reason_code(), "invalid_utf8");
}

#[test]
fn boundaries() {
    let base = |uuid: &str, time: i64| {
        format!(r#"{{"uuid":"{uuid}","stream_id":"s","event_time":{time},"position_end":1}}"#)
    };
    assert!(parse(&base(&"a".repeat(128), NOW)).is_ok());
    assert_eq!(reason(&base(&"a".repeat(129), NOW)), "id_length");
    // 64 two-byte characters = 128 bytes is fine, 65 are 130 bytes.
    assert!(parse(&base(&"é".repeat(64), NOW)).is_ok());
    let err = parse(&base(&"é".repeat(65), NOW)).unwrap_err();
    assert!(matches!(
        err,
        InvalidEvent::IdLength {
            field: "uuid",
            len: 130,
            max: 128
        }
    ));
    assert!(parse(&base("u", 946_684_800_000)).is_ok());
    assert!(parse(&base("u", NOW + 86_400_000)).is_ok());
    assert_eq!(reason(&base("u", NOW + 86_400_001)), "event_time_in_future");
    // A clock near i64::MAX must not overflow.
    assert!(check(base("u", NOW).as_bytes(), i64::MAX).is_ok());
}

#[test]
fn seek_may_go_backwards_and_counts_nothing() {
    let e = parse(r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"event_type":"seek","position_start":100,"position_end":20}"#).unwrap();
    assert_eq!((e.position_start, e.position_end), (100.0, 20.0));
    assert_eq!(e.watched_seconds(), 0.0);
}

#[test]
fn negative_zero_is_zero() {
    let e = parse(r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"position_end":-0}"#)
        .unwrap();
    assert!(e.position_end.is_sign_positive());
    assert_eq!(
        serde_json::to_value(&e).unwrap()["position_end"],
        serde_json::json!(0.0)
    );
}

#[test]
fn serialized_event_round_trips_and_reparses() {
    let e = parse(r#"{"uuid":"u","stream_id":"s","user_id":null,"event_time":"2025-05-31T12:00:00.5-03:00","position_start":1,"position_end":2.25}"#).unwrap();
    let json = serde_json::to_string(&e).unwrap();
    assert!(
        json.contains(r#""event_time":"2025-05-31T15:00:00.500Z""#),
        "{json}"
    );
    assert!(json.contains(r#""user_id":null"#), "{json}");
    let back: PlaybackEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
    assert_eq!(parse(&json).unwrap(), e);
}

#[test]
fn messages_name_the_field() {
    let err = parse(r#"{"uuid":"u","stream_id":"s","event_time":1748735000000,"position_end":-2}"#)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `position_end` must be a number >= 0, found -2"
    );
    assert_eq!(err.field(), Some("position_end"));
    let err =
        parse(r#"{"uuid":"u","stream_id":"s","event_time":true,"position_end":1}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `event_time` must be an RFC 3339 string or integer epoch milliseconds, found boolean"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: every prefix of a valid record, and byte flips.
    let valid = br#"{"uuid":"u","stream_id":"s","event_time":"2025-05-31T12:00:00Z","position_start":1,"position_end":2.5,"user_id":"x"}"#;
    for cut in 0..valid.len() {
        let _ = check(&valid[..cut], NOW);
    }
    for i in 0..valid.len() {
        for b in [0u8, b'"', b'-', b'9', b'{', 0xff] {
            let mut v = valid.to_vec();
            v[i] = b;
            let _ = check(&v, NOW);
        }
    }
    let deep = "[".repeat(10_000);
    assert_eq!(
        check(deep.as_bytes(), NOW).unwrap_err().reason_code(),
        "not_json"
    );
}

#[test]
fn escaped_and_plain_strings_decode_alike() {
    // Plain strings are borrowed between the quotes; escaped ones are decoded: both
    // must give the value a JSON decoder gives.
    let e = parse(
        r#"{"uuid":"u\u00e9\"1","stream_id":"s\\1","user_id":"\u0061lice","event_type":"st\u006fp",
            "event_time":"2025-06-01T00:00:00\u002e5Z","position_end":1}"#,
    )
    .unwrap();
    assert_eq!(e.uuid, "u\u{e9}\"1");
    assert_eq!(e.stream_id, "s\\1");
    assert_eq!(e.user_id.as_deref(), Some("alice"));
    assert_eq!(e.event_type, EventType::Stop);
    assert_eq!(e.event_time_ms(), NOW + 500);
    let plain = parse(
        r#"{"uuid":"ué","stream_id":"s","event_time":"2025-06-01T00:00:00.5Z","position_end":1}"#,
    )
    .unwrap();
    assert_eq!(plain.uuid, "ué");
    assert_eq!(plain.event_time_ms(), NOW + 500);
}
