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
//! point is part of it), kept as one `u128` in a slot of the day's table
//! ([`DaySet`]): 16 bytes instead of two heap strings, and one hash per event instead
//! of two allocations. Two different events collide with
//! probability about `n^2 / 2^129` (below 1e-20 for a billion events a day). xxh3 is a
//! fixed specification, so ids in a checkpoint mean the same after an upgrade.

use std::collections::BTreeMap;

use std::hash::BuildHasher;

use playlake_schemas::id_hash::IdBuild;

use playlake_schemas::PlaybackEvent;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::serde_util::map_as_vec;
use crate::time::{ceil_to_window, Calendar, DayCache, Watermark};

/// The 128-bit identity of `(uuid, event_id)`.
fn event_identity(uuid: &str, event_id: &str) -> u128 {
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
    twox_hash::XxHash3_128::oneshot(buf)
}

/// The ids of one day: open addressing with linear probing, an id held in its own
/// 16-byte slot, 0 for an empty slot (the id 0 itself, which nothing rules out, is
/// held beside the slots). Nothing is ever removed: a day goes as a whole.
///
/// Why not a hashbrown set: there the control bytes and the slots lie apart, and
/// most events are new ids, whose lookup reads the control bytes and then an insert
/// writes a slot: two dependent cache misses on a table of hundreds of MiB, which
/// nothing can request ahead without the table's internals. Here the slot an id's
/// probe starts at is where it is inserted (or found), so
/// [`DaySet::prefetch`] requests the very lines the insert will use, for a whole
/// group of events at once (the sink's dedup index works the same way).
/// Serialized as the sequence of `(high, low)` halves of the ids, like the hashbrown
/// set of `(u64, u64)` it replaced.
#[derive(Debug, Clone, Default)]
struct DaySet {
    slots: Vec<u128>,
    /// Ids held, the id 0 included.
    len: usize,
    /// Whether the id 0 is held.
    zero: bool,
    /// Where an id's probe starts: a keyed fold of both halves, so that nobody can
    /// aim ids at one probe chain (see `playlake_schemas::id_hash`).
    hasher: IdBuild,
}

/// Most ids in `slots` slots: three quarters, where linear probing's chains stay a
/// few slots long (and a prefetch of two lines covers most of them).
fn max_held(slots: usize) -> usize {
    slots - slots / 4
}

impl DaySet {
    /// Room for `capacity` ids without growing.
    fn with_capacity(capacity: usize) -> Self {
        let mut set = Self::default();
        set.grow(capacity);
        set
    }

    fn len(&self) -> usize {
        self.len
    }

    fn home(&self, id: u128) -> usize {
        (self.hasher.hash_one(id) as usize) & self.slots.len().saturating_sub(1)
    }

    /// Requests the lines where `id`'s probe starts (the home slot's and the next).
    fn prefetch(&self, id: u128) {
        let home = self.home(id);
        // Four slots a line: the home slot's line and the next.
        for at in [home, home + 4] {
            if let Some(slot) = self.slots.get(at) {
                crate::prefetch::lines(slot);
            }
        }
    }

    /// Moves every id into a zeroed table with room for `ids` ids: a fresh
    /// allocation whose pages the kernel zeroes as they are first written.
    fn grow(&mut self, ids: usize) {
        if ids == 0 {
            return;
        }
        let mut slots = 16;
        while max_held(slots) < ids {
            slots *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        for id in old.into_iter().filter(|&id| id != 0) {
            self.place(id);
        }
    }

    /// Puts `id` (not 0, not held) in the first free slot of its probe.
    fn place(&mut self, id: u128) {
        let mask = self.slots.len().saturating_sub(1);
        let mut at = self.home(id);
        while let Some(slot) = self.slots.get_mut(at) {
            if *slot == 0 {
                *slot = id;
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `id`; false when it was held already.
    fn insert(&mut self, id: u128) -> bool {
        if id == 0 {
            let added = !self.zero;
            self.zero = true;
            self.len += usize::from(added);
            return added;
        }
        if self.len - usize::from(self.zero) >= max_held(self.slots.len()) {
            self.grow(self.len.saturating_add(1).saturating_mul(2));
        }
        let mask = self.slots.len().saturating_sub(1);
        let mut at = self.home(id);
        while let Some(slot) = self.slots.get_mut(at) {
            if *slot == id {
                return false;
            }
            if *slot == 0 {
                *slot = id;
                self.len += 1;
                return true;
            }
            at = (at + 1) & mask;
        }
        false // no slots: cannot happen after `grow`
    }

    fn contains(&self, id: u128) -> bool {
        if id == 0 {
            return self.zero;
        }
        let mask = self.slots.len().saturating_sub(1);
        let mut at = self.home(id);
        while let Some(&slot) = self.slots.get(at) {
            if slot == id {
                return true;
            }
            if slot == 0 {
                return false;
            }
            at = (at + 1) & mask;
        }
        false
    }

    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.zero
            .then_some(0)
            .into_iter()
            .chain(self.slots.iter().copied().filter(|&id| id != 0))
    }
}

/// The same ids (tables of equal sets differ in layout and hash keys).
impl PartialEq for DaySet {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|id| other.contains(id))
    }
}

impl Serialize for DaySet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(|id| ((id >> 64) as u64, id as u64)))
    }
}

impl<'de> Deserialize<'de> for DaySet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let halves = Vec::<(u64, u64)>::deserialize(deserializer)?;
        let mut set = DaySet::with_capacity(halves.len());
        for (high, low) in halves {
            set.insert((u128::from(high) << 64) | u128::from(low));
        }
        Ok(set)
    }
}

/// An event's place in the dedup set: the bucket of its day and its id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DedupEntry {
    expire_at: i64,
    id: u128,
}

/// The dedup set of one input partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    settings: Settings,
    /// `expire_at -> ids of the (uuid, event_id) seen on that day`.
    #[serde(with = "map_as_vec")]
    buckets: BTreeMap<i64, DaySet>,
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

    /// Prefetches the table slot where `entry` is (or would be) recorded, so that
    /// the [`Self::record`] that follows finds it in the cache (see
    /// [`crate::source::PartitionProcessor::process_group`]).
    pub(crate) fn prefetch(&self, entry: &DedupEntry) {
        if let Some(bucket) = self.buckets.get(&entry.expire_at) {
            bucket.prefetch(entry.id);
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
        let capacity = self.buckets.values().map(DaySet::len).max().unwrap_or(0);
        let mut bucket = DaySet::with_capacity(capacity);
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
        self.buckets.values().map(DaySet::len).sum()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::{event_identity, DaySet};

    /// Held ids are found, new ones added, whatever the table's growth (from none,
    /// through doublings, and from a capacity), the id 0 included; the serialized
    /// form is the `(high, low)` pairs the hashbrown set of `(u64, u64)` wrote, read
    /// back in either direction.
    #[test]
    fn a_day_set_holds_each_id_once_through_growth_and_checkpoints() {
        let ids: Vec<u128> = (0..20_000u128)
            .map(|i| {
                if i == 7 {
                    0
                } else {
                    (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                }
            })
            .collect();
        for mut set in [DaySet::default(), DaySet::with_capacity(5_000)] {
            for (n, id) in ids.iter().enumerate() {
                assert!(set.insert(*id), "new id {n}");
                assert!(!set.insert(*id), "held id {n}");
                assert_eq!(set.len(), n + 1);
            }
            assert!(ids.iter().all(|id| set.contains(*id)));
            assert!(!set.contains(12345), "never inserted");
            assert_eq!(set.iter().count(), ids.len());
            let json = serde_json::to_string(&set).unwrap_or_default();
            let back: DaySet = serde_json::from_str(&json).unwrap_or_default();
            assert_eq!(back, set);
            let pairs: hashbrown::HashSet<(u64, u64)> =
                serde_json::from_str(&json).unwrap_or_default();
            assert_eq!(pairs.len(), ids.len());
            assert!(pairs.contains(&(0, 0)));
            let from_pairs: DaySet =
                serde_json::from_str(&serde_json::to_string(&pairs).unwrap_or_default())
                    .unwrap_or_default();
            assert_eq!(from_pairs, set);
        }
    }

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
