//! Late-event verdicts (SPEC section 3, "Late events").
//!
//! Each operator judges lateness against its own watermark; an event late for one
//! operator is still applied to the others. [`crate::source::PartitionProcessor::process`]
//! returns one [`Late`] per operator the event was late for, and the I/O layer writes
//! the event to `<prefix>.late` with [`Operator::as_str`] in the
//! `playlake.late.operator` header and the watermark in `playlake.late.watermark`, and
//! counts it.

use serde::{Deserialize, Serialize};

use crate::time::Watermark;

/// An operator that can find an event late. Resume points are never late: the latest
/// event by event time wins whenever it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// Session merge: late when `event_time + session_gap < W`, or when the event
    /// would change a session already emitted.
    Sessions,
    /// Concurrent viewers: late when the event's window end `<= W`.
    Viewers,
    /// Daily stats: late when the event's day end `<= W`.
    Daily,
}

impl Operator {
    /// Every operator that can judge an event late.
    pub const ALL: [Operator; 3] = [Operator::Sessions, Operator::Viewers, Operator::Daily];

    /// The header value and metric label: `sessions`, `viewers` or `daily`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operator::Sessions => "sessions",
            Operator::Viewers => "viewers",
            Operator::Daily => "daily",
        }
    }
}

/// An event was late for `operator`, whose watermark was `watermark`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Late {
    /// The operator that did not apply the event.
    pub operator: Operator,
    /// Its watermark at that moment (for the `playlake.late.watermark` header).
    pub watermark: Watermark,
}

/// What happened to one valid event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventOutcome {
    /// A copy of an event already applied (same `(uuid, event_id)`): applied nowhere,
    /// counted as a duplicate.
    Duplicate,
    /// Applied to every operator except those listed (empty: on time everywhere).
    Processed {
        /// The operators the event was late for, in [`Operator::ALL`] order.
        late: Vec<Late>,
    },
}

impl EventOutcome {
    /// The operators the event was late for (none for a duplicate).
    pub fn late(&self) -> &[Late] {
        match self {
            EventOutcome::Duplicate => &[],
            EventOutcome::Processed { late } => late,
        }
    }
}
