//! Why a playback event was rejected.
//!
//! [`InvalidEvent`] has one variant per dead-letter reason of SPEC section 2. The
//! processor puts [`InvalidEvent::dlq_reason`] in the `playlake.error` header of the
//! DLQ record (see [`crate::dlq`]) and uses [`InvalidEvent::reason_code`], a short,
//! stable, bounded set of labels, for the `playlake_..._dlq_total` metric.

use thiserror::Error;

/// What the `event_time` field may hold, for messages.
pub(crate) const EXPECTED_EVENT_TIME: &str = "an RFC 3339 string or integer epoch milliseconds";

/// A playback event that must go to the dead-letter queue, and why.
///
/// Field names are the JSON field names of the input (`uuid`, `position_end`, ...).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// The record value is not UTF-8 (JSON text must be).
    #[error("record is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },

    /// The record value is not one well-formed JSON document.
    #[error("record is not valid JSON: {source}")]
    NotJson {
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// The record is JSON but not an object.
    #[error("record must be a JSON object, found {found}")]
    NotObject {
        /// JSON type found (`array`, `string`, ...).
        found: &'static str,
    },

    /// A known field appears twice in the object: its value would be ambiguous.
    #[error("field `{field}` appears more than once")]
    DuplicateField {
        /// The repeated field.
        field: &'static str,
    },

    /// A required field is absent or null.
    #[error("field `{field}` is required")]
    MissingField {
        /// The missing field.
        field: &'static str,
    },

    /// A field holds the wrong JSON type.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        /// The offending field.
        field: &'static str,
        /// What the field must hold.
        expected: &'static str,
        /// What it held (JSON type, or `float` for a non-integer number).
        found: &'static str,
    },

    /// An id is empty or longer than its limit, counted in UTF-8 bytes.
    #[error("field `{field}` must be 1..={max} bytes of UTF-8, found {len} bytes")]
    IdLength {
        /// The offending id field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The largest allowed length in bytes.
        max: usize,
    },

    /// `event_type` is not one of the known types.
    #[error(
        "field `event_type` must be one of start, heartbeat, pause, seek, stop, found {value:?}"
    )]
    UnknownEventType {
        /// The value found, cut to 64 characters.
        value: String,
    },

    /// A timestamp string is not RFC 3339.
    #[error("field `{field}` must be {EXPECTED_EVENT_TIME}, found the string {value:?} which is not RFC 3339: {source}")]
    InvalidTimestamp {
        /// The offending field.
        field: &'static str,
        /// The value found, cut to 64 characters.
        value: String,
        /// chrono's reason.
        #[source]
        source: chrono::ParseError,
    },

    /// An integer does not fit the type it must be stored in (i64 milliseconds).
    #[error("field `{field}` holds {value}, which does not fit a 64-bit integer")]
    NumberOutOfRange {
        /// The offending field.
        field: &'static str,
        /// The number as written, cut to 64 characters.
        value: String,
    },

    /// A position is below zero.
    #[error("field `{field}` must be a number >= 0, found {value}")]
    NegativePosition {
        /// The offending position field.
        field: &'static str,
        /// The value found.
        value: f64,
    },

    /// A position is too large to be a finite double (for example `1e400`).
    #[error("field `{field}` must be a finite number >= 0")]
    NonFinitePosition {
        /// The offending position field.
        field: &'static str,
    },

    /// `position_end < position_start` on an event that is not a `seek`.
    #[error("position_end ({end}) must be >= position_start ({start}) unless event_type is seek")]
    PositionOrder {
        /// `position_start` of the event.
        start: f64,
        /// `position_end` of the event.
        end: f64,
    },

    /// `event_time` is before 2000-01-01T00:00:00Z.
    #[error("field `event_time` ({event_time_ms} ms) must not be before 2000-01-01T00:00:00Z")]
    EventTimeTooOld {
        /// The event time in epoch milliseconds.
        event_time_ms: i64,
    },

    /// `event_time` is more than 24 h after the processor's wall clock.
    #[error("field `event_time` ({event_time_ms} ms) must not be more than 24 h after the processor's clock ({now_ms} ms)")]
    EventTimeInFuture {
        /// The event time in epoch milliseconds.
        event_time_ms: i64,
        /// The processor's wall clock in epoch milliseconds.
        now_ms: i64,
    },
}

impl InvalidEvent {
    /// Every value [`InvalidEvent::reason_code`] can return, for pre-registering metric
    /// label values.
    pub const REASON_CODES: &'static [&'static str] = &[
        "invalid_utf8",
        "not_json",
        "not_object",
        "duplicate_field",
        "missing_field",
        "wrong_type",
        "id_length",
        "unknown_event_type",
        "invalid_timestamp",
        "number_out_of_range",
        "negative_position",
        "non_finite_position",
        "position_order",
        "event_time_too_old",
        "event_time_in_future",
    ];

    /// A short stable machine code (snake_case) naming the reason, for metric labels.
    pub fn reason_code(&self) -> &'static str {
        match self {
            InvalidEvent::InvalidUtf8 { .. } => "invalid_utf8",
            InvalidEvent::NotJson { .. } => "not_json",
            InvalidEvent::NotObject { .. } => "not_object",
            InvalidEvent::DuplicateField { .. } => "duplicate_field",
            InvalidEvent::MissingField { .. } => "missing_field",
            InvalidEvent::WrongType { .. } => "wrong_type",
            InvalidEvent::IdLength { .. } => "id_length",
            InvalidEvent::UnknownEventType { .. } => "unknown_event_type",
            InvalidEvent::InvalidTimestamp { .. } => "invalid_timestamp",
            InvalidEvent::NumberOutOfRange { .. } => "number_out_of_range",
            InvalidEvent::NegativePosition { .. } => "negative_position",
            InvalidEvent::NonFinitePosition { .. } => "non_finite_position",
            InvalidEvent::PositionOrder { .. } => "position_order",
            InvalidEvent::EventTimeTooOld { .. } => "event_time_too_old",
            InvalidEvent::EventTimeInFuture { .. } => "event_time_in_future",
        }
    }

    /// The field the reason is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            InvalidEvent::DuplicateField { field }
            | InvalidEvent::MissingField { field }
            | InvalidEvent::WrongType { field, .. }
            | InvalidEvent::IdLength { field, .. }
            | InvalidEvent::InvalidTimestamp { field, .. }
            | InvalidEvent::NumberOutOfRange { field, .. }
            | InvalidEvent::NegativePosition { field, .. }
            | InvalidEvent::NonFinitePosition { field } => Some(field),
            InvalidEvent::UnknownEventType { .. } => Some("event_type"),
            InvalidEvent::PositionOrder { .. } => Some("position_end"),
            InvalidEvent::EventTimeTooOld { .. } | InvalidEvent::EventTimeInFuture { .. } => {
                Some("event_time")
            }
            InvalidEvent::InvalidUtf8 { .. }
            | InvalidEvent::NotJson { .. }
            | InvalidEvent::NotObject { .. } => None,
        }
    }

    /// The text for the DLQ `playlake.error` header and the `errors.reason` column:
    /// `<reason_code>: <message>`, so the code can be recovered by splitting at the
    /// first `:`.
    pub fn dlq_reason(&self) -> String {
        format!("{}: {}", self.reason_code(), self)
    }
}

/// Cuts a value quoted in an error message to 64 characters.
pub(crate) fn truncate_for_message(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_listed_and_messages_name_the_field() {
        let err = InvalidEvent::WrongType {
            field: "event_time",
            expected: EXPECTED_EVENT_TIME,
            found: "float",
        };
        assert!(InvalidEvent::REASON_CODES.contains(&err.reason_code()));
        assert_eq!(
            err.dlq_reason(),
            "wrong_type: field `event_time` must be an RFC 3339 string or integer epoch milliseconds, found float"
        );
        assert_eq!(err.field(), Some("event_time"));
        let err = InvalidEvent::IdLength {
            field: "uuid",
            len: 129,
            max: 128,
        };
        assert_eq!(
            err.to_string(),
            "field `uuid` must be 1..=128 bytes of UTF-8, found 129 bytes"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_for_message(&long);
        assert_eq!(cut.chars().count(), 67);
        assert_eq!(truncate_for_message("short"), "short");
    }
}
