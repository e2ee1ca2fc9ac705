//! [`BadReason`]: the ways the generator breaks a record on purpose.
//!
//! Each bad record is a real event of the stream with exactly one defect, chosen so
//! that `playlake_schemas::parse_playback_event` rejects it with the reason code
//! [`BadReason::expected_reason_code`]; together they cover the DLQ reasons of SPEC
//! section 2 that do not depend on the processor's clock.

use serde::Serialize;

/// Why a generated record must go to the DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BadReason {
    /// Cut in the middle: not a JSON document.
    NotJson,
    /// The event wrapped in a JSON array.
    NotObject,
    /// No `uuid` field.
    MissingUuid,
    /// No `event_time` field.
    MissingEventTime,
    /// `event_type` is not one of the five known types (`play`, `Heartbeat`, ...).
    UnknownEventType,
    /// `position_end` below zero.
    NegativePosition,
    /// A heartbeat whose `position_end` is before its `position_start`.
    PositionOrder,
    /// `event_time` written as a float (`1748736000.250e3`).
    FloatEventTime,
    /// `event_time` in 1999 (before 2000-01-01).
    EventTimeTooOld,
    /// `event_time` as `DD/MM/YYYY HH:MM:SS`, not RFC 3339.
    InvalidTimestamp,
    /// `uuid` longer than 128 bytes.
    UuidTooLong,
    /// Bytes that are not UTF-8 inside `user_id`.
    InvalidUtf8,
}

impl BadReason {
    /// Every reason, in the order the generator cycles through them.
    pub const ALL: [BadReason; 12] = [
        BadReason::NotJson,
        BadReason::NotObject,
        BadReason::MissingUuid,
        BadReason::MissingEventTime,
        BadReason::UnknownEventType,
        BadReason::NegativePosition,
        BadReason::PositionOrder,
        BadReason::FloatEventTime,
        BadReason::EventTimeTooOld,
        BadReason::InvalidTimestamp,
        BadReason::UuidTooLong,
        BadReason::InvalidUtf8,
    ];

    /// A stable snake_case name (used in [`crate::Summary::bad_by_reason`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            BadReason::NotJson => "not_json",
            BadReason::NotObject => "not_object",
            BadReason::MissingUuid => "missing_uuid",
            BadReason::MissingEventTime => "missing_event_time",
            BadReason::UnknownEventType => "unknown_event_type",
            BadReason::NegativePosition => "negative_position",
            BadReason::PositionOrder => "position_order",
            BadReason::FloatEventTime => "float_event_time",
            BadReason::EventTimeTooOld => "event_time_too_old",
            BadReason::InvalidTimestamp => "invalid_timestamp",
            BadReason::UuidTooLong => "uuid_too_long",
            BadReason::InvalidUtf8 => "invalid_utf8",
        }
    }

    /// The `InvalidEvent::reason_code()` the processor reports for this record (the
    /// prefix of its DLQ `playlake.error` header).
    pub const fn expected_reason_code(self) -> &'static str {
        match self {
            BadReason::NotJson => "not_json",
            BadReason::NotObject => "not_object",
            BadReason::MissingUuid | BadReason::MissingEventTime => "missing_field",
            BadReason::UnknownEventType => "unknown_event_type",
            BadReason::NegativePosition => "negative_position",
            BadReason::PositionOrder => "position_order",
            BadReason::FloatEventTime => "wrong_type",
            BadReason::EventTimeTooOld => "event_time_too_old",
            BadReason::InvalidTimestamp => "invalid_timestamp",
            BadReason::UuidTooLong => "id_length",
            BadReason::InvalidUtf8 => "invalid_utf8",
        }
    }
}

impl std::fmt::Display for BadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
