//! # playlake-schemas
//!
//! The records that flow through playlake and the rules they obey, with no I/O:
//!
//! ```text
//! playback.events --parse_playback_event--> PlaybackEvent --(processor)--> Session,
//!        |                                                               ViewerWindow,
//!        +--InvalidEvent--> DlqRecord (playback.dlq)                     DailyStat,
//!                                                                        ResumePoint
//! DynamoDB Streams --(source)--> ChangeEvent (playback.cdc.<table>)
//! every row --(sink)--> Table::arrow_schema() --> Parquet in the lake
//! ```
//!
//! * [`event`]: input playback events, their parsing and validation (SPEC section 2);
//!   [`event_id`]: the derived event id recipe; [`error`]: why an event is rejected.
//! * [`results`]: the processor's output rows and their natural keys.
//! * [`change`]: DynamoDB change events; [`dlq`]: dead-letter records and headers.
//! * [`arrow`]: the lake tables' Arrow schemas and partition columns.
//! * [`time`]: epoch-millisecond timestamps that serialize as RFC 3339.
//! * [`json_schema`]: the JSON Schema files of `schemas/json/`, embedded.
//! * [`id_hash`]: the hasher of tables keyed by 128-bit digests.
//!
//! Every row type serializes to JSON with the lake's column names and timestamps as
//! RFC 3339 strings (`2025-06-01T00:00:00.000Z`) and deserializes back.

pub mod arrow;
pub mod change;
pub mod dlq;
pub mod error;
pub mod event;
pub mod event_id;
pub mod id_hash;
pub mod json_schema;
pub mod results;
pub mod time;

pub use arrow::{Table, UnknownTable};
pub use change::{ChangeEvent, ChangeEventName};
pub use dlq::{
    DlqHeaderError, DlqRecord, ERROR_HEADER, LATE_OPERATOR_HEADER, LATE_WATERMARK_HEADER,
    SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER, SOURCE_TOPIC_HEADER,
};
pub use error::InvalidEvent;
pub use event::{parse_playback_event, parse_playback_event_into, EventType, PlaybackEvent};
pub use event_id::{derive_event_id, derive_event_id_into};
pub use results::{
    resume_key, DailyStat, EndedBy, ResumePoint, ResumePointRef, Session, SessionKey, ViewerWindow,
};
pub use time::{TimestampMs, TimestampOutOfRange};
