//! The playback mapping: change events of a playback table -> playback events on
//! `<prefix>.events`.
//!
//! Data flow: after a batch of change events is acknowledged on
//! `<prefix>.cdc.<table>`, the source maps each INSERT/MODIFY (and each snapshot
//! record) with [`map_change`]: the configured attributes of the new image become the
//! fields of a playback event (SPEC section 2), which is validated with the very
//! parser the processor uses and published keyed by uuid. An item that does not map
//! (missing attribute, wrong type, invalid event) goes to `<prefix>.dlq` with the
//! reason, written like the processor's (`<reason_code>: <message>`, the code one of
//! `InvalidEvent::REASON_CODES`, so the `errors` table's reason splits the same way
//! whatever stage wrote it); REMOVEs (a TTL expiry in seed 001's table) are not playback events and are
//! skipped.
//!
//! Identity: the playback event's `event_id` is the configured attribute when there
//! is one, else the change's own `event_id`, so a change redelivered after a crash
//! maps to an identical event that the processor deduplicates.
//!
//! Examples: seed 001's table (`PK` = stream id, `SK` = uuid, TTL `expDate`):
//! `stream_id = "PK"`, `uuid = "SK"`, `position_end = "position"`; seed 003's rows:
//! `user_id = "user"`, `stream_id = "video"`, `position_start = "start"`,
//! `position_end = "end"`.

use playlake_schemas::{parse_playback_event, ChangeEvent, ChangeEventName, PlaybackEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[source.dynamodb.mapping]`: which attribute holds which playback field.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Attribute holding the playback session id (seed 001: `SK`).
    pub uuid: String,
    /// Attribute holding the stream or video id (seed 001: `PK`; seed 003: `video`).
    pub stream_id: String,
    /// Attribute holding the viewer id (seed 003: `user`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Attribute holding `start`/`heartbeat`/`pause`/`seek`/`stop`; items without it
    /// are `default_event_type`.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Event type of items without an `event_type` attribute [default: heartbeat].
    #[serde(default)]
    pub default_event_type: Option<String>,
    /// Attribute holding the event time (epoch number in `event_time_unit`, or an
    /// RFC 3339 string). Absent: the change's approximate creation time.
    #[serde(default)]
    pub event_time: Option<String>,
    /// Unit of a numeric `event_time` attribute [default: milliseconds].
    #[serde(default)]
    pub event_time_unit: EpochUnit,
    /// Attribute holding the playhead at the start of the interval (seed 003: `start`).
    #[serde(default)]
    pub position_start: Option<String>,
    /// Attribute holding the playhead at the end of the interval (seed 003: `end`).
    #[serde(default)]
    pub position_end: Option<String>,
    /// Attribute holding a producer-given event id. Absent: the change's event id.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// Unit of an epoch-number time attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochUnit {
    #[default]
    Milliseconds,
    Seconds,
}

/// What one change becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapped {
    /// A valid playback event (publish keyed by its uuid).
    Event(PlaybackEvent),
    /// Not a playback event at all (a REMOVE): nothing to publish.
    Skip,
    /// The item should map but does not: DLQ with this reason
    /// (`<reason_code>: <message>`).
    Invalid(String),
}

/// Maps one change event (see the module docs). Validation uses the change's own
/// time as "now", so the verdict is the same for every redelivered copy.
pub fn map_change(change: &ChangeEvent, config: &MappingConfig) -> Mapped {
    if change.event_name == ChangeEventName::Remove {
        return Mapped::Skip;
    }
    let Some(Value::Object(image)) = change.new_image.as_ref() else {
        return Mapped::Invalid(
            "missing_field: change has no new image (the stream view type must include NEW_IMAGE)"
                .into(),
        );
    };
    match build_event(change, image, config) {
        Err(reason) => Mapped::Invalid(reason),
        Ok(value) => {
            let bytes = value.to_string();
            match parse_playback_event(
                bytes.as_bytes(),
                change.approximate_creation_time.as_millis(),
            ) {
                Ok(event) => Mapped::Event(event),
                Err(err) => Mapped::Invalid(format!(
                    "{}: mapped item is not a valid playback event: {err}",
                    err.reason_code()
                )),
            }
        }
    }
}

fn build_event(
    change: &ChangeEvent,
    image: &Map<String, Value>,
    config: &MappingConfig,
) -> Result<Value, String> {
    let mut out = Map::new();
    out.insert("uuid".into(), id_text(image, &config.uuid, "uuid")?);
    out.insert(
        "stream_id".into(),
        id_text(image, &config.stream_id, "stream_id")?,
    );
    if let Some(attr) = &config.user_id {
        match image.get(attr) {
            None | Some(Value::Null) => {}
            Some(_) => {
                out.insert("user_id".into(), id_text(image, attr, "user_id")?);
            }
        }
    }
    let event_type = match config.event_type.as_ref().and_then(|a| image.get(a)) {
        Some(v) => v.clone(),
        None => Value::String(
            config
                .default_event_type
                .clone()
                .unwrap_or_else(|| "heartbeat".into()),
        ),
    };
    out.insert("event_type".into(), event_type);
    let event_time = match &config.event_time {
        None => Value::from(change.approximate_creation_time.as_millis()),
        Some(attr) => match image.get(attr) {
            None => {
                return Err(format!(
                    "missing_field: attribute `{attr}` (event_time) is missing"
                ))
            }
            Some(Value::String(s)) if s.parse::<f64>().is_err() => Value::String(s.clone()),
            Some(v) => {
                let n = number(v).ok_or_else(|| {
                    format!("wrong_type: attribute `{attr}` (event_time) is not a number or RFC 3339 text")
                })?;
                let ms = match config.event_time_unit {
                    EpochUnit::Milliseconds => n,
                    EpochUnit::Seconds => n * 1000.0,
                };
                if !ms.is_finite() || ms.fract() != 0.0 || ms.abs() > 9.0e15 {
                    return Err(format!(
                        "wrong_type: attribute `{attr}` (event_time) is not a whole epoch time in {}",
                        match config.event_time_unit {
                            EpochUnit::Milliseconds => "milliseconds",
                            EpochUnit::Seconds => "seconds",
                        }
                    ));
                }
                Value::from(ms as i64)
            }
        },
    };
    out.insert("event_time".into(), event_time);
    for (field, attr) in [
        ("position_start", &config.position_start),
        ("position_end", &config.position_end),
    ] {
        if let Some(attr) = attr {
            match image.get(attr) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let n = number(v).ok_or_else(|| {
                        format!("wrong_type: attribute `{attr}` ({field}) is not a number")
                    })?;
                    out.insert(field.into(), Value::from(n));
                }
            }
        }
    }
    let event_id = match config.event_id.as_ref().and_then(|a| image.get(a)) {
        Some(_) => id_text(
            image,
            config.event_id.as_deref().unwrap_or_default(),
            "event_id",
        )?,
        None => Value::String(change.event_id.clone()),
    };
    out.insert("event_id".into(), event_id);
    Ok(Value::Object(out))
}

/// A string attribute, or a number attribute as its text (ids are often numbers).
fn id_text(image: &Map<String, Value>, attr: &str, field: &str) -> Result<Value, String> {
    match image.get(attr) {
        None => Err(format!(
            "missing_field: attribute `{attr}` ({field}) is missing"
        )),
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(Value::Number(n)) => Ok(Value::String(n.to_string())),
        Some(other) => Err(format!(
            "wrong_type: attribute `{attr}` ({field}) must be a string or number, found {}",
            kind(other)
        )),
    }
}

/// A JSON number, or a number kept as text because it has more digits than a double.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use playlake_schemas::{EventType, TimestampMs};
    use serde_json::json;

    fn seed_001() -> MappingConfig {
        MappingConfig {
            uuid: "SK".into(),
            stream_id: "PK".into(),
            user_id: None,
            event_type: None,
            default_event_type: None,
            event_time: None,
            event_time_unit: EpochUnit::Milliseconds,
            position_start: None,
            position_end: Some("position".into()),
            event_id: None,
        }
    }

    fn change(name: ChangeEventName, image: Option<Value>) -> ChangeEvent {
        ChangeEvent {
            table: "live".into(),
            event_id: "ev-1".into(),
            event_name: name,
            sequence_number: Some("100".into()),
            shard_id: Some("shard-1".into()),
            approximate_creation_time: TimestampMs(1_748_736_000_000),
            keys: json!({"PK": "stream-a", "SK": "u-1"}),
            new_image: image,
            old_image: None,
            ttl_expired: false,
            snapshot: false,
        }
    }

    #[test]
    fn seed_001_item_maps_to_a_heartbeat() {
        let c = change(
            ChangeEventName::Insert,
            Some(json!({"PK": "stream-a", "SK": "u-1", "expDate": 1748736030, "position": 12.5})),
        );
        let Mapped::Event(e) = map_change(&c, &seed_001()) else {
            panic!("not mapped: {:?}", map_change(&c, &seed_001()));
        };
        assert_eq!(e.uuid, "u-1");
        assert_eq!(e.stream_id, "stream-a");
        assert_eq!(e.event_id, "ev-1");
        assert_eq!(e.event_type, EventType::Heartbeat);
        assert_eq!(e.event_time, TimestampMs(1_748_736_000_000));
        assert_eq!(e.position_end, 12.5);
        assert_eq!(e.position_start, 12.5);
    }

    #[test]
    fn seed_003_row_maps_with_seconds() {
        let config = MappingConfig {
            uuid: "session".into(),
            stream_id: "video".into(),
            user_id: Some("user".into()),
            event_type: Some("kind".into()),
            default_event_type: None,
            event_time: Some("at".into()),
            event_time_unit: EpochUnit::Seconds,
            position_start: Some("start".into()),
            position_end: Some("end".into()),
            event_id: Some("id".into()),
        };
        let c = change(
            ChangeEventName::Modify,
            Some(
                json!({"session": "s", "video": 77, "user": "kim", "kind": "pause",
                         "at": 1748736001, "start": 10, "end": 15, "watched": 5, "id": "x"}),
            ),
        );
        let Mapped::Event(e) = map_change(&c, &config) else {
            panic!("not mapped");
        };
        assert_eq!(e.stream_id, "77");
        assert_eq!(e.user_id.as_deref(), Some("kim"));
        assert_eq!(e.event_type, EventType::Pause);
        assert_eq!(e.event_time, TimestampMs(1_748_736_001_000));
        assert_eq!((e.position_start, e.position_end), (10.0, 15.0));
        assert_eq!(e.event_id, "x");
    }

    #[test]
    fn unmappable_items_say_why_and_removes_are_skipped() {
        let cfg = seed_001();
        let missing = change(ChangeEventName::Insert, Some(json!({"PK": "a"})));
        let Mapped::Invalid(reason) = map_change(&missing, &cfg) else {
            panic!()
        };
        assert!(reason.contains("`SK`"), "{reason}");
        let no_position = change(ChangeEventName::Insert, Some(json!({"PK": "a", "SK": "u"})));
        let Mapped::Invalid(reason) = map_change(&no_position, &cfg) else {
            panic!()
        };
        assert!(reason.contains("position_end"), "{reason}");
        let bad = change(
            ChangeEventName::Insert,
            Some(json!({"PK": "a", "SK": {"nested": 1}, "position": 1})),
        );
        assert!(matches!(map_change(&bad, &cfg), Mapped::Invalid(_)));
        let negative = change(
            ChangeEventName::Insert,
            Some(json!({"PK": "a", "SK": "u", "position": -3})),
        );
        assert!(matches!(map_change(&negative, &cfg), Mapped::Invalid(_)));
        let removed = change(ChangeEventName::Remove, None);
        assert_eq!(map_change(&removed, &cfg), Mapped::Skip);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = toml_like(r#"{"uuid": "SK", "stream_id": "PK", "positon_end": "p"}"#);
        assert!(err.is_err());
    }

    fn toml_like(text: &str) -> Result<MappingConfig, serde_json::Error> {
        serde_json::from_str(text)
    }
}
