//! DynamoDB items of a playback table with unexpected types or values, through the
//! real unmarshalling (`attribute::item_to_json`) and the playback mapping
//! (`mapping::map_change`): each must become `Mapped::Invalid` with a DLQ reason
//! `<reason_code>: <message>` whose code is the expected one of SPEC section 2's
//! reasons (`InvalidEvent::REASON_CODES`) and whose message names the attribute.
//! Pure: no network, no broker.

use playlake_dynamodb::attribute::{item_to_json, Attribute};
use playlake_dynamodb::mapping::{map_change, EpochUnit, Mapped, MappingConfig};
use playlake_schemas::{ChangeEvent, ChangeEventName, InvalidEvent, TimestampMs};

/// An item: attribute name -> value.
type Item = Vec<(String, Attribute)>;

/// 2025-06-01T00:00:00Z: the change's approximate creation time ("now" of the check).
const NOW: i64 = 1_748_736_000_000;

fn config() -> MappingConfig {
    MappingConfig {
        uuid: "SK".into(),
        stream_id: "PK".into(),
        user_id: Some("user".into()),
        event_type: Some("kind".into()),
        default_event_type: None,
        event_time: Some("at".into()),
        event_time_unit: EpochUnit::Milliseconds,
        position_start: Some("start".into()),
        position_end: Some("position".into()),
        event_id: Some("id".into()),
    }
}

fn s(v: &str) -> Attribute {
    Attribute::S(v.into())
}

fn n(v: &str) -> Attribute {
    Attribute::N(v.into())
}

/// A valid item; each case replaces or removes one attribute.
fn good() -> Item {
    vec![
        ("PK".into(), s("live-news")),
        ("SK".into(), s("player-1")),
        ("user".into(), s("alice")),
        ("kind".into(), s("heartbeat")),
        ("at".into(), n(&(NOW - 5_000).to_string())),
        ("start".into(), n("10")),
        ("position".into(), n("15.5")),
        ("id".into(), s("e-1")),
    ]
}

fn with(attr: &str, value: Option<Attribute>) -> Item {
    let mut item: Vec<(String, Attribute)> =
        good().into_iter().filter(|(k, _)| k != attr).collect();
    if let Some(v) = value {
        item.push((attr.into(), v));
    }
    item
}

fn map(item: &[(String, Attribute)], unit: EpochUnit) -> Mapped {
    let image = item_to_json(item.iter().map(|(k, v)| (k, v)));
    let change = ChangeEvent {
        table: "playback".into(),
        event_id: "change-1".into(),
        event_name: ChangeEventName::Insert,
        sequence_number: Some("100".into()),
        shard_id: Some("shard-1".into()),
        approximate_creation_time: TimestampMs(NOW),
        keys: serde_json::json!({}),
        new_image: Some(image),
        old_image: None,
        ttl_expired: false,
        snapshot: false,
    };
    map_change(
        &change,
        &MappingConfig {
            event_time_unit: unit,
            ..config()
        },
    )
}

#[test]
fn the_base_item_is_valid() {
    match map(&good(), EpochUnit::Milliseconds) {
        Mapped::Event(e) => {
            assert_eq!(
                (e.uuid.as_str(), e.stream_id.as_str()),
                ("player-1", "live-news")
            );
            assert_eq!(e.event_id, "e-1");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unexpected_types_and_values_go_to_the_dlq_with_their_reason() {
    let map_of = |v: Attribute| Attribute::M(vec![("x".into(), v)]);
    let cases: Vec<(&str, Item, EpochUnit, &str, &str)> = vec![
        // (case, item, unit, expected code, text the reason must name)
        (
            "uuid missing",
            with("SK", None),
            EpochUnit::Milliseconds,
            "missing_field",
            "`SK`",
        ),
        (
            "uuid is a map",
            with("SK", Some(map_of(s("a")))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`SK`",
        ),
        (
            "uuid is a list",
            with("SK", Some(Attribute::L(vec![s("a")]))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`SK`",
        ),
        (
            "uuid is a boolean",
            with("SK", Some(Attribute::Bool(true))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`SK`",
        ),
        (
            "uuid is NULL",
            with("SK", Some(Attribute::Null)),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`SK`",
        ),
        (
            "uuid is a string set",
            with("SK", Some(Attribute::Ss(vec!["a".into()]))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`SK`",
        ),
        (
            "uuid is empty",
            with("SK", Some(s(""))),
            EpochUnit::Milliseconds,
            "id_length",
            "uuid",
        ),
        (
            "uuid is 129 bytes",
            with("SK", Some(s(&"u".repeat(129)))),
            EpochUnit::Milliseconds,
            "id_length",
            "uuid",
        ),
        (
            "stream id missing",
            with("PK", None),
            EpochUnit::Milliseconds,
            "missing_field",
            "`PK`",
        ),
        (
            "stream id is a number set",
            with("PK", Some(Attribute::Ns(vec!["1".into()]))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`PK`",
        ),
        (
            "stream id is 257 bytes",
            with("PK", Some(s(&format!("{}x", "é".repeat(128))))),
            EpochUnit::Milliseconds,
            "id_length",
            "stream_id",
        ),
        (
            "user id is a map",
            with("user", Some(map_of(n("1")))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`user`",
        ),
        (
            "event type unknown",
            with("kind", Some(s("PLAY"))),
            EpochUnit::Milliseconds,
            "unknown_event_type",
            "event_type",
        ),
        (
            "event type is a number",
            with("kind", Some(n("3"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "event_type",
        ),
        (
            "event type is binary",
            with("kind", Some(Attribute::B(vec![0xff, 0]))),
            EpochUnit::Milliseconds,
            "unknown_event_type",
            "event_type",
        ),
        (
            "event time missing",
            with("at", None),
            EpochUnit::Milliseconds,
            "missing_field",
            "`at`",
        ),
        (
            "event time is a boolean",
            with("at", Some(Attribute::Bool(false))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`at`",
        ),
        (
            "event time is a list",
            with("at", Some(Attribute::L(vec![]))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`at`",
        ),
        (
            "event time text is not RFC 3339",
            with("at", Some(s("yesterday"))),
            EpochUnit::Milliseconds,
            "invalid_timestamp",
            "event_time",
        ),
        (
            "event time with a fraction of a ms",
            with("at", Some(n("1748735000000.5"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`at`",
        ),
        (
            "event time seconds beyond any date",
            with("at", Some(n("9.9E+125"))),
            EpochUnit::Seconds,
            "wrong_type",
            "`at`",
        ),
        (
            "event time 38 digits",
            with("at", Some(n("12345678901234567890123456789012345678"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`at`",
        ),
        (
            "event time before 2000",
            with("at", Some(n("946684799999"))),
            EpochUnit::Milliseconds,
            "event_time_too_old",
            "event_time",
        ),
        (
            "event time year 0",
            with("at", Some(s("0000-01-01T00:00:00Z"))),
            EpochUnit::Milliseconds,
            "event_time_too_old",
            "event_time",
        ),
        (
            "event time negative",
            with("at", Some(n("-1"))),
            EpochUnit::Milliseconds,
            "event_time_too_old",
            "event_time",
        ),
        (
            "event time year 9999",
            with("at", Some(s("9999-12-31T23:59:59Z"))),
            EpochUnit::Milliseconds,
            "event_time_in_future",
            "event_time",
        ),
        (
            "event time 25 h ahead",
            with("at", Some(n(&(NOW + 25 * 3_600_000).to_string()))),
            EpochUnit::Milliseconds,
            "event_time_in_future",
            "event_time",
        ),
        (
            "position is text",
            with("position", Some(s("ten"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position is a boolean",
            with("position", Some(Attribute::Bool(true))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position is a map",
            with("position", Some(map_of(n("1")))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position is binary",
            with("position", Some(Attribute::B(b"15".to_vec()))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position text says NaN",
            with("position", Some(s("NaN"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position text says inf",
            with("position", Some(s("inf"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position negative",
            with("position", Some(n("-3"))),
            EpochUnit::Milliseconds,
            "negative_position",
            "position_end",
        ),
        (
            "position beyond a double",
            with("position", Some(n("9.9E+400"))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`position`",
        ),
        (
            "position missing",
            with("position", None),
            EpochUnit::Milliseconds,
            "missing_field",
            "position_end",
        ),
        (
            "position before start",
            with("position", Some(n("5"))),
            EpochUnit::Milliseconds,
            "position_order",
            "position_end",
        ),
        (
            "event id is a map",
            with("id", Some(map_of(s("e")))),
            EpochUnit::Milliseconds,
            "wrong_type",
            "`id`",
        ),
        (
            "event id is empty",
            with("id", Some(s(""))),
            EpochUnit::Milliseconds,
            "id_length",
            "event_id",
        ),
    ];
    let mut failures = Vec::new();
    for (case, item, unit, code, names) in &cases {
        match map(item, *unit) {
            Mapped::Invalid(reason) => {
                let got = reason.split(':').next().unwrap_or_default();
                assert!(
                    InvalidEvent::REASON_CODES.contains(&got),
                    "{case}: the reason does not start with a known code: {reason}"
                );
                if got != *code || !reason.contains(names) {
                    failures.push(format!("{case}: want {code} naming {names}, got {reason}"));
                }
            }
            other => failures.push(format!("{case}: want {code}, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn an_item_without_a_new_image_has_a_reason_and_removes_are_skipped() {
    let mut change = ChangeEvent {
        table: "playback".into(),
        event_id: "change-2".into(),
        event_name: ChangeEventName::Modify,
        sequence_number: Some("101".into()),
        shard_id: Some("shard-1".into()),
        approximate_creation_time: TimestampMs(NOW),
        keys: serde_json::json!({"PK": "live-news", "SK": "player-1"}),
        new_image: None,
        old_image: None,
        ttl_expired: false,
        snapshot: false,
    };
    match map_change(&change, &config()) {
        Mapped::Invalid(reason) => assert!(reason.starts_with("missing_field: "), "{reason}"),
        other => panic!("{other:?}"),
    }
    // An image that is not an object (impossible from DynamoDB, possible on a topic).
    change.new_image = Some(serde_json::json!(["PK"]));
    assert!(matches!(map_change(&change, &config()), Mapped::Invalid(_)));
    change.event_name = ChangeEventName::Remove;
    change.ttl_expired = true;
    assert_eq!(map_change(&change, &config()), Mapped::Skip);
}

#[test]
fn hostile_ids_are_valid_events_kept_verbatim() {
    // Path traversal and partition syntax are not the mapping's business: the lake
    // escapes them (pipeline/lake/src/hive.rs, tests/bad-input).
    for id in [
        "../x",
        "a/b",
        "a=b",
        "%",
        "..",
        "tab\there",
        "__HIVE_DEFAULT_PARTITION__",
    ] {
        match map(&with("PK", Some(s(id))), EpochUnit::Milliseconds) {
            Mapped::Event(e) => assert_eq!(e.stream_id, id),
            other => panic!("{id:?}: {other:?}"),
        }
    }
    // Numbers as ids keep every digit.
    match map(
        &with("SK", Some(n("12345678901234567890123456789012345678"))),
        EpochUnit::Milliseconds,
    ) {
        Mapped::Event(e) => assert_eq!(e.uuid, "12345678901234567890123456789012345678"),
        other => panic!("{other:?}"),
    }
}
