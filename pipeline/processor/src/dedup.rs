//! Dedup by `(uuid, event_id)` with bounded state (SPEC section 3: "events with the same
//! (uuid, event_id) count once, everywhere").
//!
//! ## When an entry may be forgotten
//! A copy of an event is identical to it (same event_time; SPEC section 4), so it
//! would be judged late or on time exactly like the original. Once the watermark makes
//! a copy late for *every* operator, no operator would apply it, and the entry can go.
//! For an event at `t` on local day `[day_start, day_end)` that happens when all of:
//! * sessions: `t + session_gap < W`, true for every `t` of the day once
//!   `W >= day_end + session_gap` (`t <= day_end - 1`);
//! * viewers: the window end `<= W`, true for every window of the day once
//!   `W >= ceil_to_window(day_end)`;
//! * daily: `day_end <= W`.
//!
//! Entries are therefore bucketed by local day and a whole bucket is dropped when
//! `W >= max(day_end + session_gap, ceil_to_window(day_end))`. Resume points need no
//! dedup (the maximum by event time is idempotent). An event whose bucket has already
//! expired is late everywhere; it is not recorded and the operators report it late.
//!
//! The cost is a day of ids per input partition; a copy carrying the same id with a
//! different event_time on another day counts as another event.
//!
//! ## Ids, not strings
//! An entry is the xxh3-128 hash of `(uuid, event_id)` (length-prefixed, so the split
//! point is part of it), kept as two `u64`: 16 bytes instead of two heap strings, and
//! one hash per event instead of two allocations. Two different events collide with
//! probability about `n^2 / 2^129` (below 1e-20 for a billion events a day). xxh3 is a
//! fixed specification, so ids in a checkpoint mean the same after an upgrade.

use std::collections::BTreeMap;

use crate::keys::HashSet;

use playlake_schemas::PlaybackEvent;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::serde_util::map_as_vec;
use crate::time::{ceil_to_window, Calendar, DayCache, Watermark};

/// The 128-bit identity of `(uuid, event_id)` as `(high, low)`.
fn event_identity(uuid: &str, event_id: &str) -> (u64, u64) {
    let mut stack = [0u8; 256];
    let len = 8 + uuid.len() + event_id.len();
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    buf[..8].copy_from_slice(&(uuid.len() as u64).to_le_bytes());
    buf[8..8 + uuid.len()].copy_from_slice(uuid.as_bytes());
    buf[8 + uuid.len()..].copy_from_slice(event_id.as_bytes());
    let h = twox_hash::XxHash3_128::oneshot(buf);
    ((h >> 64) as u64, h as u64)
}

/// An event's place in the dedup set: the bucket of its day and its id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DedupEntry {
    expire_at: i64,
    id: (u64, u64),
}

/// The dedup set of one input partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    settings: Settings,
    /// `expire_at -> ids of the (uuid, event_id) seen on that day`.
    #[serde(with = "map_as_vec")]
    buckets: BTreeMap<i64, HashSet<(u64, u64)>>,
    #[serde(skip)]
    days: DayCache,
}

impl Dedup {
    /// An empty set.
    pub fn new(settings: &Settings) -> Self {
        Self {
            settings: *settings,
            buckets: BTreeMap::new(),
            days: DayCache::default(),
        }
    }

    /// The watermark at which the bucket of an event at `t` is dropped.
    fn expire_at(&self, t: i64) -> i64 {
        let day = Calendar::of(&self.settings).locate(t, &self.days);
        day.end
            .saturating_add(self.settings.session_gap_ms())
            .max(ceil_to_window(day.end, self.settings.viewer_window_ms()))
    }

    /// Where `event` is recorded: its bucket and its id.
    pub(crate) fn entry_of(&self, event: &PlaybackEvent) -> DedupEntry {
        DedupEntry {
            expire_at: self.expire_at(event.event_time_ms()),
            id: event_identity(&event.uuid, &event.event_id),
        }
    }

    /// Reads the table slot where `entry` is (or would be) recorded, so that the
    /// [`Self::record`] that follows finds it in the cache (see
    /// [`crate::source::PartitionProcessor::process_group`]).
    pub(crate) fn touch(&self, entry: &DedupEntry) {
        if let Some(bucket) = self.buckets.get(&entry.expire_at) {
            std::hint::black_box(bucket.contains(&entry.id));
        }
    }

    /// Records `event` and tells whether it is a copy of one already recorded.
    pub fn is_duplicate(&mut self, event: &PlaybackEvent, w: Watermark) -> bool {
        let entry = self.entry_of(event);
        self.record(entry, w)
    }

    /// [`Self::is_duplicate`] for the event whose entry is `entry`.
    pub(crate) fn record(&mut self, entry: DedupEntry, w: Watermark) -> bool {
        let DedupEntry { expire_at, id } = entry;
        if expire_at <= w.millis() {
            // Late for every operator: nothing will apply it, nothing to remember.
            return false;
        }
        if let Some(bucket) = self.buckets.get_mut(&expire_at) {
            return !bucket.insert(id);
        }
        // A new day: sized like the largest day held, so a busy partition's table is
        // not rehashed through every doubling (each a copy of the table and a fault of
        // fresh pages) as the day fills up.
        let capacity = self.buckets.values().map(HashSet::len).max().unwrap_or(0);
        let mut bucket = HashSet::with_capacity(capacity);
        bucket.insert(id);
        self.buckets.insert(expire_at, bucket);
        false
    }

    /// Drops the buckets watermark `w` has made useless.
    pub fn expire(&mut self, w: Watermark) {
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > w.millis() {
                break;
            }
            entry.remove();
        }
    }

    /// Number of ids held, for the state-size metric.
    pub fn len(&self) -> usize {
        self.buckets.values().map(HashSet::len).sum()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::event_identity;

    #[test]
    fn identity_depends_on_the_split_between_uuid_and_event_id() {
        assert_eq!(event_identity("ab", "c"), event_identity("ab", "c"));
        assert_ne!(event_identity("ab", "c"), event_identity("a", "bc"));
        assert_ne!(event_identity("", "abc"), event_identity("abc", ""));
        // Long ids take the heap path and still agree with themselves.
        let long = "x".repeat(300);
        assert_eq!(event_identity(&long, "1"), event_identity(&long, "1"));
        assert_ne!(event_identity(&long, "1"), event_identity(&long, "2"));
    }
}
