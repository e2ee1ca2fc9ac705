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
//! An entry is the low 96 bits of the xxh3-128 hash of `(uuid, event_id)`
//! (length-prefixed, so the split point is part of it), kept in a 12-byte slot of the
//! day's table ([`DaySet`]) instead of two heap strings, with one hash per event
//! instead of two allocations. Two different events of a day collide with
//! probability about `n^2 / 2^97` (below 1e-11 for a billion events a day, 1e-15 for
//! 10M). 96 bits rather than all 128: the table is the largest piece of state, and a
//! quarter less of it is a quarter fewer pages to fault in and to walk on every
//! lookup. xxh3 is a fixed specification, so ids in a checkpoint mean the same after
//! an upgrade (a checkpoint written with 128-bit ids is read back truncated).

use std::collections::BTreeMap;

use std::hash::BuildHasher;

use playlake_schemas::id_hash::IdBuild;

use playlake_schemas::PlaybackEvent;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::serde_util::map_as_vec;
use crate::time::{ceil_to_window, Calendar, DayCache, Watermark};
use crate::zeroed::{Slot, ZeroedSlots};

/// The ids' bits: an id is a `u128` below 2^96 (see the module docs).
const ID_MASK: u128 = (1 << 96) - 1;

/// The slot holding `id` (its low 96 bits).
fn slot_of(id: u128) -> Slot {
    [id as u32, (id >> 32) as u32, (id >> 64) as u32]
}

/// The id a slot holds.
fn id_in(slot: Slot) -> u128 {
    u128::from(slot[0]) | (u128::from(slot[1]) << 32) | (u128::from(slot[2]) << 64)
}

const EMPTY: Slot = [0; 3];

/// The 96-bit identity of `(uuid, event_id)`.
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
    twox_hash::XxHash3_128::oneshot(buf) & ID_MASK
}

/// The ids of one day: open addressing with linear probing, an id held in its own
/// 12-byte slot, 0 for an empty slot (the id 0 itself, which nothing rules out, is
/// held beside the slots). Nothing is ever removed: a day goes as a whole.
///
/// Why not a hashbrown set: there the control bytes and the slots lie apart, and
/// most events are new ids, whose lookup reads the control bytes and then an insert
/// writes a slot: two dependent cache misses on a table of hundreds of MiB, which
/// nothing can request ahead without the table's internals. Here the slot an id's
/// probe starts at is where it is inserted (or found), so
/// [`DaySet::prefetch`] requests the very lines the insert will use, for a whole
/// group of events at once (the sink's dedup index works the same way).
///
/// ## Growing in place
/// An id's home is its hash modulo the capacity (a power of two), and probes run
/// forward without wrapping, into a tail of [`TAIL`] slots past the last home (an id
/// that would run past the tail, which at three quarters full does not happen, is
/// kept in `spill`). Doubling the capacity sends an id home `h` to `h` or `h + n`,
/// so the table grows where it lies ([`ZeroedSlots::grow`]: no copy, no fault on
/// the old pages) and is rehashed in place, a cluster (a maximal run of occupied
/// slots) at a time: its ids are taken out and put back from their new homes.
/// That is sound as long as no probe passes over a slot still waiting for its
/// cluster (emptying that slot later would cut the probe's chain): ids staying in
/// the lower half fit in their own cluster's slots, ids moving up land among ids
/// already moved, and the one cluster reaching into the old tail, which the upper
/// half now covers, goes first.
///
/// Ids given to it are taken modulo 2^96. Serialized as the sequence of `(high, low)`
/// halves of the ids, like the hashbrown set of `(u64, u64)` it replaced.
#[derive(Debug, Clone)]
struct DaySet {
    /// `capacity` homes, then `tail` slots.
    slots: ZeroedSlots,
    /// Number of homes: 0 or a power of two.
    capacity: usize,
    /// Slots past the last home that probes may run into.
    tail: usize,
    /// Ids whose probe ran past the tail.
    spill: Vec<u128>,
    /// Ids held, the id 0 included.
    len: usize,
    /// Whether the id 0 is held.
    zero: bool,
    /// Where an id's probe starts: a keyed fold of both halves, so that nobody can
    /// aim ids at one probe chain (see `playlake_schemas::id_hash`).
    hasher: IdBuild,
}

/// Slots past the last home (12 KiB): at three quarters full a probe run this long
/// is vanishingly rare, and `spill` holds its ids if it happens.
const TAIL: usize = 1024;

/// Most ids in `capacity` homes: three quarters, where linear probing's chains stay
/// a few slots long (and a prefetch of two lines covers most of them).
fn max_held(capacity: usize) -> usize {
    capacity - capacity / 4
}

impl Default for DaySet {
    fn default() -> Self {
        Self::with_tail(TAIL)
    }
}

impl DaySet {
    fn with_tail(tail: usize) -> Self {
        Self {
            slots: ZeroedSlots::zeroed(0),
            capacity: 0,
            tail,
            spill: Vec::new(),
            len: 0,
            zero: false,
            hasher: IdBuild::default(),
        }
    }

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
        (self.hasher.hash_one(id & ID_MASK) as usize) & self.capacity.saturating_sub(1)
    }

    /// Requests the lines where `id`'s probe starts (the home slot's and the next).
    fn prefetch(&self, id: u128) {
        let home = self.home(id);
        let slots = self.slots.as_slice();
        // Five or six slots a line: the home slot's line (two when the slot straddles
        // a boundary) and the next.
        for at in [home, home + 5] {
            if let Some(slot) = slots.get(at) {
                crate::prefetch::lines(slot);
            }
        }
    }

    /// Doubles the capacity until it has room for `ids` ids, rehashing in place
    /// (see the type's docs).
    fn grow(&mut self, ids: usize) {
        if ids == 0 {
            return;
        }
        let mut capacity = self.capacity.max(16);
        while max_held(capacity) < ids {
            capacity *= 2;
        }
        if self.capacity == 0 {
            self.slots = ZeroedSlots::zeroed(capacity + self.tail);
            self.capacity = capacity;
            return;
        }
        while self.capacity < capacity {
            self.double();
        }
    }

    /// Doubles the capacity in place.
    fn double(&mut self) {
        let old = self.capacity;
        let old_end = old + self.tail;
        self.capacity = old * 2;
        self.slots.grow(self.capacity + self.tail);
        let mut cluster = Vec::new();
        // The cluster through the last old home reaches into the old tail (the new
        // upper half) if anything does: it goes first.
        let boundary = if self.slots.as_slice().get(old) != Some(&EMPTY) {
            let start = self
                .slots
                .as_slice()
                .get(..old)
                .unwrap_or_default()
                .iter()
                .rposition(|&s| s == EMPTY)
                .map_or(0, |i| i + 1);
            self.rehash(start, old_end, &mut cluster);
            start
        } else {
            old
        };
        let mut at = 0;
        while at < boundary {
            let slots = self.slots.as_slice();
            if slots.get(at) == Some(&EMPTY) {
                at += 1;
                continue;
            }
            let end = slots
                .get(at..boundary)
                .unwrap_or_default()
                .iter()
                .position(|&s| s == EMPTY)
                .map_or(boundary, |n| at + n);
            self.rehash(at, end, &mut cluster);
            at = end;
        }
        for id in std::mem::take(&mut self.spill) {
            self.place(id);
        }
    }

    /// Takes the ids out of `start..end` and puts them back from their homes.
    fn rehash(&mut self, start: usize, end: usize, scratch: &mut Vec<u128>) {
        scratch.clear();
        if let Some(run) = self.slots.as_mut_slice().get_mut(start..end) {
            for slot in run {
                if *slot != EMPTY {
                    scratch.push(id_in(std::mem::take(slot)));
                }
            }
        }
        for &id in scratch.iter() {
            self.place(id);
        }
    }

    /// Puts `id` (not 0, not held) in the first free slot of its probe.
    fn place(&mut self, id: u128) {
        let home = self.home(id);
        let slots = self.slots.as_mut_slice();
        match slots
            .get_mut(home..)
            .and_then(|run| run.iter_mut().find(|s| **s == EMPTY))
        {
            Some(slot) => *slot = slot_of(id),
            None => self.spill.push(id),
        }
    }

    /// Adds `id` (modulo 2^96); false when it was held already.
    fn insert(&mut self, id: u128) -> bool {
        let id = id & ID_MASK;
        if id == 0 {
            let added = !self.zero;
            self.zero = true;
            self.len += usize::from(added);
            return added;
        }
        if self.len - usize::from(self.zero) >= max_held(self.capacity) {
            self.grow(self.len.saturating_add(1).saturating_mul(2));
        }
        let home = self.home(id);
        let held = slot_of(id);
        if let Some(run) = self.slots.as_mut_slice().get_mut(home..) {
            for slot in run {
                if *slot == held {
                    return false;
                }
                if *slot == EMPTY {
                    *slot = held;
                    self.len += 1;
                    return true;
                }
            }
        }
        // The probe ran past the tail.
        if self.spill.contains(&id) {
            return false;
        }
        self.spill.push(id);
        self.len += 1;
        true
    }

    fn contains(&self, id: u128) -> bool {
        let id = id & ID_MASK;
        if id == 0 {
            return self.zero;
        }
        let home = self.home(id);
        let held = slot_of(id);
        for &slot in self.slots.as_slice().get(home..).unwrap_or_default() {
            if slot == held {
                return true;
            }
            if slot == EMPTY {
                return false;
            }
        }
        self.spill.contains(&id)
    }

    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.zero
            .then_some(0)
            .into_iter()
            .chain(
                self.slots
                    .as_slice()
                    .iter()
                    .filter(|&&slot| slot != EMPTY)
                    .map(|&slot| id_in(slot)),
            )
            .chain(self.spill.iter().copied())
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
        // No tail and a tiny one: probes run off the end into the spill, and growth
        // meets clusters reaching into the old tail.
        for mut set in [
            DaySet::default(),
            DaySet::with_capacity(5_000),
            DaySet::with_tail(0),
            DaySet::with_tail(3),
        ] {
            for (n, id) in ids.iter().enumerate() {
                assert!(set.insert(*id), "new id {n}");
                assert!(!set.insert(*id), "held id {n}");
                assert_eq!(set.len(), n + 1);
                if (n + 1).is_power_of_two() {
                    // Right after a growth (at 12, 24, 48, ... ids) and between.
                    assert!(ids[..=n].iter().all(|id| set.contains(*id)), "at {n}");
                }
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

    /// A cluster running from the last homes into the tail is rehashed first when the
    /// table doubles (its place becomes the new upper half), and the probes that run
    /// past the tail land in the spill: every id is still found after each growth.
    #[test]
    fn growth_moves_a_cluster_reaching_into_the_tail() {
        for _ in 0..50 {
            let mut set = DaySet::with_tail(3);
            set.grow(1);
            let capacity = set.capacity;
            // Ids whose home is one of the last two, enough to fill them, the tail and
            // the spill.
            let mut last: Vec<u128> = (1..100_000u128)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
                .filter(|&id| set.home(id) >= capacity - 2)
                .take(7)
                .collect();
            assert_eq!(last.len(), 7);
            let mut held = Vec::new();
            for id in last.drain(..) {
                assert!(set.insert(id));
                held.push(id);
            }
            assert!(!set.spill.is_empty(), "2 homes + 3 tail slots for 7 ids");
            let mut next = 1u128;
            while set.capacity == capacity {
                next += 1;
                let id = next.wrapping_mul(0xD6E8_FEB8_6659_FD93_3C6E_F372_FE94_F82B);
                if set.insert(id) {
                    held.push(id);
                }
            }
            assert!(held.iter().all(|&id| set.contains(id)));
            assert_eq!(set.iter().count(), held.len());
        }
    }

    /// A checkpoint written when ids were 128 bits restores into the 96-bit table:
    /// each id is held as its low 96 bits, so the events it stands for are still
    /// found, by their 96-bit identity.
    #[test]
    fn ids_of_128_bits_are_read_back_as_their_low_96_bits() {
        let old_ids: Vec<u128> = (1..1_000u128)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
            .chain([event_identity("u", "e") | (0xABCD << 100)])
            .collect();
        assert!(old_ids.iter().all(|&id| id >> 96 != 0));
        let pairs: hashbrown::HashSet<(u64, u64)> = old_ids
            .iter()
            .map(|&id| ((id >> 64) as u64, id as u64))
            .collect();
        let restored: DaySet =
            serde_json::from_str(&serde_json::to_string(&pairs).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(restored.len(), old_ids.len());
        assert!(restored.iter().all(|id| id >> 96 == 0));
        assert!(old_ids
            .iter()
            .all(|&id| restored.contains(id & super::ID_MASK)));
        assert!(restored.contains(event_identity("u", "e")));
        assert!(!restored.contains(event_identity("u", "f")));
        for id in [1u128, super::ID_MASK, 0xFFFF_0000_1234_5678_9ABC] {
            assert_eq!(super::id_in(super::slot_of(id)), id);
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
