//! Playback events: the input records of topic `playback.events`.
//!
//! Data flow: a player (or `playlake produce`, or the DynamoDB source's mapping) writes
//! a JSON object keyed by `uuid`; the processor calls [`parse_playback_event`] on each
//! record value with its wall clock. A valid record becomes a [`PlaybackEvent`] with
//! every default applied and an `event_id` (given or derived, see
//! [`crate::event_id`]); it feeds the session, viewer, daily and resume operators and
//! is archived in the lake's `events` table. An invalid one becomes an
//! [`InvalidEvent`] and goes to the DLQ with its reason. Nothing is dropped silently.
//!
//! Rules (SPEC section 2, also stated in `schemas/json/playback_event.schema.json`):
//!
//! * the value is UTF-8 JSON, an object; unknown fields are ignored; a known field may
//!   appear only once; `null` counts as absent for every field;
//! * `uuid` (1..=128 bytes), `stream_id` (1..=256 bytes) and `event_time` are required;
//!   `event_id`, when given, is 1..=256 bytes (lengths count UTF-8 bytes);
//! * `user_id` is a string or null;
//! * `event_type` is one of `start`, `heartbeat`, `pause`, `seek`, `stop`
//!   (lowercase), default `heartbeat`;
//! * `event_time` is an RFC 3339 string with any offset (sub-millisecond digits are
//!   truncated) or a JSON integer of epoch milliseconds (a number written with a
//!   fraction or exponent, such as `1.7e12`, is rejected); it must be no earlier than
//!   2000-01-01T00:00:00Z and no more than 24 h after `now_ms`;
//! * positions are JSON numbers, finite and >= 0 (`-0` becomes `0`);
//!   `position_end` is required except for `start`; `position_start` defaults to
//!   `position_end`; a `start` without `position_end` gets `position_end =
//!   position_start`, and 0 for both when both are absent;
//! * `position_end >= position_start` unless the event is a `seek` (where
//!   `position_start` is where the seek left from and `position_end` where it landed).
//!
//! Two parsers implement these rules. The reference path (serde_json over the object
//! with raw values, chrono for RFC 3339) decides every record and words every
//! rejection. In front of it, a single-pass scanner for the flat shape of nearly every
//! record (`event_scan.rs`: no serde, strings borrowed between their quotes, integer
//! arithmetic for timestamps and short decimals) returns the event when it is sure the
//! reference would return exactly that event, and otherwise hands the record to the
//! reference: any rejection, an escape in a key or a known field, a duplicate known
//! field, a leap second, an unusual timestamp or number form. Results are therefore
//! the reference's; `event_diff_tests.rs` compares the two on the unit-test inputs,
//! the sample files, the `tests/bad-input/` corpus and generated records.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::error::{truncate_for_message, InvalidEvent, EXPECTED_EVENT_TIME};
use crate::event_id::derive_event_id;
use crate::time::{TimestampMs, MAX_FUTURE_SKEW_MS, MIN_EVENT_TIME_MS};

/// Largest `uuid`, in UTF-8 bytes.
pub const MAX_UUID_BYTES: usize = 128;
/// Largest `stream_id`, in UTF-8 bytes.
pub const MAX_STREAM_ID_BYTES: usize = 256;
/// Largest `event_id`, in UTF-8 bytes (a derived id is 32 bytes).
pub const MAX_EVENT_ID_BYTES: usize = 256;

/// What happened on the player.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// Playback began (the first event of a session, usually).
    Start,
    /// Periodic progress report while playing (the default).
    #[default]
    Heartbeat,
    /// The viewer paused.
    Pause,
    /// The playhead jumped from `position_start` to `position_end`.
    Seek,
    /// Playback ended: closes the session.
    Stop,
}

impl EventType {
    /// Every event type, in declaration order.
    pub const ALL: [EventType; 5] = [
        EventType::Start,
        EventType::Heartbeat,
        EventType::Pause,
        EventType::Seek,
        EventType::Stop,
    ];

    /// The lowercase wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "start",
            EventType::Heartbeat => "heartbeat",
            EventType::Pause => "pause",
            EventType::Seek => "seek",
            EventType::Stop => "stop",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = InvalidEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| InvalidEvent::UnknownEventType {
                value: truncate_for_message(s),
            })
    }
}

/// A validated playback event with every default applied.
///
/// Serializes to the lake's `events` row (`event_time` as an RFC 3339 string, ms, UTC),
/// which is itself a valid input record. `Deserialize` reads that form back without
/// re-validating: use [`parse_playback_event`] for untrusted input.
///
/// `Default` is a blank event to parse into ([`parse_playback_event_into`]), not a
/// valid one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlaybackEvent {
    /// Dedup key within `uuid`: given by the producer or derived from the content.
    pub event_id: String,
    /// Playback session id (one player instance playing one stream); the Kafka key.
    pub uuid: String,
    /// The live stream or video watched.
    pub stream_id: String,
    /// The viewer, when known; drives unique users and resume points.
    pub user_id: Option<String>,
    /// What happened.
    pub event_type: EventType,
    /// When it happened on the player.
    pub event_time: TimestampMs,
    /// Playhead (media seconds) at the start of the reported interval.
    pub position_start: f64,
    /// Playhead (media seconds) at the end of the reported interval.
    pub position_end: f64,
}

impl PlaybackEvent {
    /// `event_time` in epoch milliseconds.
    pub fn event_time_ms(&self) -> i64 {
        self.event_time.as_millis()
    }

    /// `event_time` as a chrono UTC date-time (`None` only for a hand-built event whose
    /// time is outside chrono's range; parsed events are always in range).
    pub fn event_time_utc(&self) -> Option<DateTime<Utc>> {
        self.event_time.to_datetime().ok()
    }

    /// The dedup identity `(uuid, event_id)` of SPEC section 3.
    pub fn dedup_key(&self) -> (&str, &str) {
        (&self.uuid, &self.event_id)
    }

    /// Seconds watched that this event reports: `max(0, position_end -
    /// position_start)` for non-seek events, 0 for a seek.
    pub fn watched_seconds(&self) -> f64 {
        if self.event_type == EventType::Seek {
            0.0
        } else {
            (self.position_end - self.position_start).max(0.0)
        }
    }

    /// The `event_id` this event would get if it had none (see [`crate::event_id`]).
    pub fn derived_event_id(&self) -> String {
        derive_event_id(
            &self.uuid,
            self.event_time.as_millis(),
            self.event_type,
            self.position_start,
            self.position_end,
        )
    }
}

/// Parses and validates one record value of `playback.events` (SPEC section 2).
///
/// `now_ms` is the processor's wall clock in epoch milliseconds: events more than 24 h
/// after it are rejected. Never panics, whatever the bytes.
///
/// The fast scanner (`event_scan.rs`) decides the records it is sure are valid; every
/// other record (all invalid ones among them) goes through the reference path, so
/// results and error messages are the reference's (see the module docs).
pub fn parse_playback_event(bytes: &[u8], now_ms: i64) -> Result<PlaybackEvent, InvalidEvent> {
    let text = utf8(bytes)?;
    match scan::parse_fast(text, now_ms) {
        Some(event) => Ok(event),
        None => parse_reference_str(text, now_ms),
    }
}

/// [`parse_playback_event`] into `out`, reusing the buffers of its strings: a loop
/// parsing one record after another with the same `out` allocates nothing for the
/// common record shape. On `Err`, `out` is left as it was.
pub fn parse_playback_event_into(
    bytes: &[u8],
    now_ms: i64,
    out: &mut PlaybackEvent,
) -> Result<(), InvalidEvent> {
    let text = utf8(bytes)?;
    if !scan::parse_fast_into(text, now_ms, out) {
        *out = parse_reference_str(text, now_ms)?;
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, InvalidEvent> {
    // simdutf8 checks a record's bytes several times faster than std (the std check
    // was 3-4% of the sink benchmark's CPU); only invalid text, to say where it
    // goes wrong, is checked again by std.
    simdutf8::basic::from_utf8(bytes).or_else(|_| {
        std::str::from_utf8(bytes).map_err(|e| InvalidEvent::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        })
    })
}

/// The reference parser: [`parse_playback_event`] without the fast path (serde_json
/// with raw values, chrono for RFC 3339). The differential tests compare the two.
#[cfg(test)]
fn parse_reference(bytes: &[u8], now_ms: i64) -> Result<PlaybackEvent, InvalidEvent> {
    parse_reference_str(utf8(bytes)?, now_ms)
}

/// The reference path after the UTF-8 check: decides every record the fast path does
/// not, and words every rejection.
fn parse_reference_str(text: &str, now_ms: i64) -> Result<PlaybackEvent, InvalidEvent> {
    // An object is parsed (and fully validated) in one pass; anything else is parsed
    // as a raw value only to name what it is.
    if !text.trim_start().starts_with('{') {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|source| InvalidEvent::NotJson { source })?;
        return Err(InvalidEvent::NotObject {
            found: json_kind(raw.get()),
        });
    }
    let fields: RawFields<'_> =
        serde_json::from_str(text).map_err(|source| InvalidEvent::NotJson { source })?;
    if let Some(field) = fields.duplicate {
        return Err(InvalidEvent::DuplicateField { field });
    }

    let uuid = id_field("uuid", fields.uuid, MAX_UUID_BYTES)?
        .ok_or(InvalidEvent::MissingField { field: "uuid" })?;
    let stream_id = id_field("stream_id", fields.stream_id, MAX_STREAM_ID_BYTES)?
        .ok_or(InvalidEvent::MissingField { field: "stream_id" })?;
    let event_id = id_field("event_id", fields.event_id, MAX_EVENT_ID_BYTES)?;
    let user_id = string_field("user_id", fields.user_id)?;
    let event_type = match string_field("event_type", fields.event_type)? {
        Some(name) => name.parse()?,
        None => EventType::Heartbeat,
    };
    let event_time = event_time_field(fields.event_time)?;
    check_event_time_window(event_time, now_ms)?;

    let start = position_field("position_start", fields.position_start)?;
    let end = position_field("position_end", fields.position_end)?;
    let (position_start, position_end) = match (start, end, event_type) {
        (start, Some(end), _) => (start.unwrap_or(end), end),
        (Some(start), None, EventType::Start) => (start, start),
        (None, None, EventType::Start) => (0.0, 0.0),
        (_, None, _) => {
            return Err(InvalidEvent::MissingField {
                field: "position_end",
            })
        }
    };
    if event_type != EventType::Seek && position_end < position_start {
        return Err(InvalidEvent::PositionOrder {
            start: position_start,
            end: position_end,
        });
    }

    let event_id = match event_id {
        Some(id) => id,
        None => derive_event_id(
            &uuid,
            event_time.as_millis(),
            event_type,
            position_start,
            position_end,
        ),
    };
    Ok(PlaybackEvent {
        event_id,
        uuid,
        stream_id,
        user_id,
        event_type,
        event_time,
        position_start,
        position_end,
    })
}

/// Checks 2000-01-01 <= event_time <= now + 24 h.
fn check_event_time_window(event_time: TimestampMs, now_ms: i64) -> Result<(), InvalidEvent> {
    let ms = event_time.as_millis();
    if ms < MIN_EVENT_TIME_MS {
        return Err(InvalidEvent::EventTimeTooOld { event_time_ms: ms });
    }
    if ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(InvalidEvent::EventTimeInFuture {
            event_time_ms: ms,
            now_ms,
        });
    }
    Ok(())
}

/// The JSON type of a raw JSON value, from its first character.
fn json_kind(raw: &str) -> &'static str {
    match raw.trim_start().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// A raw field value, `None` when absent or `null`.
fn present(raw: Option<&RawValue>) -> Option<&str> {
    raw.map(|r| r.get().trim()).filter(|text| *text != "null")
}

/// An optional string field.
fn string_field(
    field: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<String>, InvalidEvent> {
    let Some(text) = present(raw) else {
        return Ok(None);
    };
    let found = json_kind(text);
    if found != "string" {
        return Err(InvalidEvent::WrongType {
            field,
            expected: "a string",
            found,
        });
    }
    json_string(text).map(|value| Some(value.into_owned()))
}

/// The value of a JSON string token (quotes included) that the parser has already
/// validated: borrowed as is when it has no escape (a valid JSON string holds no raw
/// quote or control character, so the text between the quotes is the value), decoded
/// otherwise. Saves a second parse and a copy per field on the common path.
fn json_string(text: &str) -> Result<Cow<'_, str>, InvalidEvent> {
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.contains('\\') {
            return Ok(Cow::Borrowed(inner));
        }
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|source| InvalidEvent::NotJson { source })
}

/// An optional id field: a string of 1..=max UTF-8 bytes.
fn id_field(
    field: &'static str,
    raw: Option<&RawValue>,
    max: usize,
) -> Result<Option<String>, InvalidEvent> {
    let value = string_field(field, raw)?;
    if let Some(id) = &value {
        if id.is_empty() || id.len() > max {
            return Err(InvalidEvent::IdLength {
                field,
                len: id.len(),
                max,
            });
        }
    }
    Ok(value)
}

/// The required `event_time`: RFC 3339 string or integer epoch milliseconds.
fn event_time_field(raw: Option<&RawValue>) -> Result<TimestampMs, InvalidEvent> {
    const FIELD: &str = "event_time";
    let text = present(raw).ok_or(InvalidEvent::MissingField { field: FIELD })?;
    match json_kind(text) {
        "string" => {
            let value = json_string(text)?;
            TimestampMs::parse_rfc3339(&value).map_err(|source| InvalidEvent::InvalidTimestamp {
                field: FIELD,
                value: truncate_for_message(&value),
                source,
            })
        }
        "number" if text.contains(['.', 'e', 'E']) => Err(InvalidEvent::WrongType {
            field: FIELD,
            expected: EXPECTED_EVENT_TIME,
            found: "float",
        }),
        "number" => {
            text.parse::<i64>()
                .map(TimestampMs)
                .map_err(|_| InvalidEvent::NumberOutOfRange {
                    field: FIELD,
                    value: truncate_for_message(text),
                })
        }
        found => Err(InvalidEvent::WrongType {
            field: FIELD,
            expected: EXPECTED_EVENT_TIME,
            found,
        }),
    }
}

/// An optional position: a finite JSON number >= 0.
fn position_field(
    field: &'static str,
    raw: Option<&RawValue>,
) -> Result<Option<f64>, InvalidEvent> {
    let Some(text) = present(raw) else {
        return Ok(None);
    };
    let found = json_kind(text);
    if found != "number" {
        return Err(InvalidEvent::WrongType {
            field,
            expected: "a number >= 0",
            found,
        });
    }
    // JSON number grammar is a subset of Rust's float grammar; a literal too large for
    // a double parses as infinity.
    let value: f64 = text
        .parse()
        .map_err(|_| InvalidEvent::NonFinitePosition { field })?;
    if !value.is_finite() {
        return Err(InvalidEvent::NonFinitePosition { field });
    }
    if value < 0.0 {
        return Err(InvalidEvent::NegativePosition { field, value });
    }
    // Normalises -0.0 to 0.0 so output and derived ids never show "-0".
    Ok(Some(value + 0.0))
}

/// The known fields of an input record, kept as raw JSON text so that this module,
/// not serde, decides what each value means (for example `1e400` or `1.5e12`).
#[derive(Default)]
struct RawFields<'a> {
    event_id: Option<&'a RawValue>,
    uuid: Option<&'a RawValue>,
    stream_id: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    event_type: Option<&'a RawValue>,
    event_time: Option<&'a RawValue>,
    position_start: Option<&'a RawValue>,
    position_end: Option<&'a RawValue>,
    /// The first known field seen twice.
    duplicate: Option<&'static str>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = RawFields<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a playback event object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = RawFields::default();
                // Field names are matched without being copied (a `Cow` key would
                // allocate one `String` per field of every record).
                while let Some(FieldName(known)) = map.next_key::<FieldName>()? {
                    let (name, slot) = match known {
                        Some("event_id") => ("event_id", &mut fields.event_id),
                        Some("uuid") => ("uuid", &mut fields.uuid),
                        Some("stream_id") => ("stream_id", &mut fields.stream_id),
                        Some("user_id") => ("user_id", &mut fields.user_id),
                        Some("event_type") => ("event_type", &mut fields.event_type),
                        Some("event_time") => ("event_time", &mut fields.event_time),
                        Some("position_start") => ("position_start", &mut fields.position_start),
                        Some("position_end") => ("position_end", &mut fields.position_end),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value: &'de RawValue = map.next_value()?;
                    if slot.is_some() {
                        fields.duplicate.get_or_insert(name);
                    } else {
                        *slot = Some(value);
                    }
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// An object key of an input record: the known field it names (as a `'static` name),
/// or `None` for any other key. Read from the parser's (borrowed or unescaped) text
/// without allocating.
struct FieldName(Option<&'static str>);

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl Visitor<'_> for NameVisitor {
            type Value = FieldName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<FieldName, E> {
                const KNOWN: [&str; 8] = [
                    "event_id",
                    "uuid",
                    "stream_id",
                    "user_id",
                    "event_type",
                    "event_time",
                    "position_start",
                    "position_end",
                ];
                Ok(FieldName(KNOWN.into_iter().find(|k| *k == name)))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

#[path = "event_scan.rs"]
mod scan;

#[cfg(test)]
#[path = "event_corpus.rs"]
mod corpus;

#[cfg(test)]
#[path = "event_diff_tests.rs"]
mod diff_tests;

#[cfg(test)]
#[path = "event_speed_tests.rs"]
mod speed_tests;

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
