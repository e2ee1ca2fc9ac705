//! The JSON Schema (draft 2020-12) files of `schemas/json/`, embedded so that the
//! binary can print or serve them to producers. The files are the source of truth for
//! producers in other languages; `schemas/tests/json_schema.rs` checks that they agree
//! with the Rust types and parser.

/// `playback_event.schema.json`: input records of `playback.events`.
pub const PLAYBACK_EVENT: &str = include_str!("../json/playback_event.schema.json");
/// `session.schema.json`: rows of `playback.sessions`.
pub const SESSION: &str = include_str!("../json/session.schema.json");
/// `viewer_window.schema.json`: rows of `playback.viewers`.
pub const VIEWER_WINDOW: &str = include_str!("../json/viewer_window.schema.json");
/// `daily_stat.schema.json`: rows of `playback.daily`.
pub const DAILY_STAT: &str = include_str!("../json/daily_stat.schema.json");
/// `resume_point.schema.json`: records of `playback.resume`.
pub const RESUME_POINT: &str = include_str!("../json/resume_point.schema.json");
/// `change_event.schema.json`: records of `playback.cdc.<table>`.
pub const CHANGE_EVENT: &str = include_str!("../json/change_event.schema.json");
/// `dlq_record.schema.json`: rows of the lake's `errors` table.
pub const DLQ_RECORD: &str = include_str!("../json/dlq_record.schema.json");

/// Every schema as `(file name, contents)`.
pub const ALL: [(&str, &str); 7] = [
    ("playback_event.schema.json", PLAYBACK_EVENT),
    ("session.schema.json", SESSION),
    ("viewer_window.schema.json", VIEWER_WINDOW),
    ("daily_stat.schema.json", DAILY_STAT),
    ("resume_point.schema.json", RESUME_POINT),
    ("change_event.schema.json", CHANGE_EVENT),
    ("dlq_record.schema.json", DLQ_RECORD),
];
