//! [`Summary`]: what a generator produced, for `playlake demo`'s final report and for
//! `playlake produce`'s log line.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of what was generated.
///
/// Taken with [`crate::Generator::summary`]: it covers every record generated so far,
/// including those still waiting in the delivery buffer (at most the jitter's worth);
/// once the iterator has returned `None` it describes exactly the records yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// All records (valid + duplicate + bad).
    pub records: u64,
    /// Records already returned by the iterator.
    pub records_yielded: u64,
    /// Valid, distinct events.
    pub valid_events: u64,
    /// Byte-identical redeliveries of valid events.
    pub duplicates: u64,
    /// Malformed records (must land in the DLQ).
    pub bad_records: u64,
    /// Bad records per [`crate::BadReason::as_str`].
    pub bad_by_reason: BTreeMap<&'static str, u64>,
    /// Valid events per `event_type` (`start`, `heartbeat`, `pause`, `seek`, `stop`).
    pub events_by_type: BTreeMap<&'static str, u64>,
    /// Distinct uuids (player instances) among valid events.
    pub distinct_uuids: u64,
    /// Distinct stream_ids among valid events.
    pub distinct_streams: u64,
    /// Distinct non-null user_ids among valid events.
    pub distinct_users: u64,
    /// Smallest and largest event_time of a valid event (epoch ms).
    pub first_event_time_ms: Option<i64>,
    /// See `first_event_time_ms`.
    pub last_event_time_ms: Option<i64>,
    /// Largest `delivery_order_ms - event_time_ms` of any record.
    pub max_delivery_delay_ms: u64,
    /// Bytes of keys plus values of all records.
    pub bytes: u64,
}
