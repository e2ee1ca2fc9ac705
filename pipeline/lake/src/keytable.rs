//! The dedup index's table: 128-bit key digests to (first offset, record time),
//! open addressing with linear probing, a key and its value in one 32-byte slot.
//!
//! Why not a `HashMap`: the sink admits every record through this table, and on a
//! backlog almost every key is new, so each admit writes a slot of a table of
//! hundreds of MiB that no cache holds. In a `HashMap` (hashbrown) the control bytes
//! and the slots are apart, and a lookup of an absent key reads only the control
//! bytes: looking a chunk's keys up first ([`KeyTable::warm`]) could not bring in
//! the slots the inserts then write, and each insert waited for its own miss (on
//! the sink benchmark, the admits took a quarter of the decoding thread). Here the
//! slot a key goes to is the one its lookup starts at, so warming a chunk's keys
//! loads the very cache lines the inserts write, with all their misses overlapped.
//!
//! Slots: `key == 0` marks a slot without a key, empty (value 0) or a tombstone
//! (value 1) that lookups step over and inserts reuse. The digest
//! 0 itself (it does not occur in practice, but nothing rules it out) lives beside
//! the slots. Tombstones come from [`KeyTable::retain`]; when they pass an eighth of
//! the slots the table is rebuilt without them.

use std::hash::BuildHasher;

use playlake_schemas::id_hash::IdBuild;

/// A slot: the key digest and its value packed into a `u128` (see [`pack`]).
/// Arrays of integers, so that a new table is one zeroed allocation (`calloc`):
/// the kernel zeroes its pages when they are first written, rather than a loop
/// writing every slot up front and the kernel zeroing them too.
type Slot = [u128; 2];

/// A value in a slot: the offset in the low half, the record time in the high one.
fn pack((offset, record_ms): (i64, i64)) -> u128 {
    u128::from(offset as u64) | (u128::from(record_ms as u64) << 64)
}

fn unpack(value: u128) -> (i64, i64) {
    (value as u64 as i64, (value >> 64) as u64 as i64)
}

const TOMBSTONE: u128 = 1;

/// The digest 0, for references to the entry kept beside the slots.
static ZERO_KEY: u128 = 0;

/// The fewest slots of a table that holds anything.
const MIN_SLOTS: usize = 16;

/// Digest-keyed table (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    slots: Vec<Slot>,
    /// Keys held (in slots, and the digest 0).
    len: usize,
    tombstones: usize,
    /// The packed value of the digest 0.
    zero: Option<u128>,
    /// Where a digest's probe starts: a keyed fold of both halves, so that nobody
    /// can aim digests at one probe chain (see `playlake_schemas::id_hash`).
    hasher: IdBuild,
}

/// The value held for a key, to read or change in place.
pub(crate) struct Held<'a>(&'a mut u128);

impl Held<'_> {
    pub(crate) fn get(&self) -> (i64, i64) {
        unpack(*self.0)
    }

    pub(crate) fn set(&mut self, value: (i64, i64)) {
        *self.0 = pack(value);
    }
}

/// Most slots in use (keys and tombstones) for `slots` slots: three quarters, where
/// linear probing's chains stay a few slots long.
fn max_used(slots: usize) -> usize {
    slots - slots / 4
}

impl KeyTable {
    fn home(&self, key: u128) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keys that fit before the table must grow.
    pub(crate) fn headroom(&self) -> usize {
        max_used(self.slots.len()).saturating_sub(self.used())
    }

    fn used(&self) -> usize {
        self.len - usize::from(self.zero.is_some()) + self.tombstones
    }

    /// Makes room for `additional` more keys at once.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if additional > self.headroom() {
            self.rebuild(self.len.saturating_add(additional));
        }
    }

    /// Moves every key into a fresh table with room for `keys` keys (no tombstones).
    fn rebuild(&mut self, keys: usize) {
        let mut slots = MIN_SLOTS;
        while max_used(slots) < keys {
            slots *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![[0; 2]; slots]);
        self.tombstones = 0;
        for slot in old.into_iter().filter(|s| s[0] != 0) {
            let mut at = self.home(slot[0]);
            while self.slots[at][0] != 0 {
                at = (at + 1) & (slots - 1);
            }
            self.slots[at] = slot;
        }
    }

    /// The slot holding `key`, or `Err` with the slot an insert of it should take.
    /// The table must have slots.
    fn find(&self, key: u128) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        let mut reuse = None;
        loop {
            let [held, value] = self.slots[at];
            if held == key {
                return Ok(at);
            }
            if held == 0 {
                if value != TOMBSTONE {
                    return Err(reuse.unwrap_or(at));
                }
                reuse = reuse.or(Some(at));
            }
            at = (at + 1) & mask;
        }
    }

    /// Inserts `value` for `key` and returns `None` when the key is new; returns
    /// the value held otherwise (unchanged).
    pub(crate) fn insert_or_get(&mut self, key: u128, value: (i64, i64)) -> Option<Held<'_>> {
        if key == 0 {
            return match self.zero {
                Some(ref mut held) => Some(Held(held)),
                None => {
                    self.zero = Some(pack(value));
                    self.len += 1;
                    None
                }
            };
        }
        if self.headroom() == 0 {
            // Also the first insert into a table without slots.
            self.rebuild(self.len + 1);
        }
        match self.find(key) {
            Ok(at) => Some(Held(&mut self.slots[at][1])),
            Err(at) => {
                if self.slots[at][1] == TOMBSTONE {
                    self.tombstones -= 1;
                }
                self.slots[at] = [key, pack(value)];
                self.len += 1;
                None
            }
        }
    }

    /// The value held for `key`.
    pub(crate) fn get(&self, key: u128) -> Option<(i64, i64)> {
        if key == 0 {
            return self.zero.map(unpack);
        }
        if self.slots.is_empty() {
            return None;
        }
        self.find(key).ok().map(|at| unpack(self.slots[at][1]))
    }

    /// Reads the slot each key's lookup starts at, so that the lookups and inserts
    /// that follow find them in the cache: the reads are independent, so the CPU
    /// overlaps their misses. Returns how many of those slots hold a key.
    pub(crate) fn warm<'a>(&self, keys: impl Iterator<Item = &'a u128>) -> usize {
        if self.slots.is_empty() {
            return 0;
        }
        let held = keys
            .filter(|key| self.slots[self.home(**key)][0] != 0)
            .count();
        std::hint::black_box(held)
    }

    /// Every key and its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u128, (i64, i64))> {
        self.zero
            .iter()
            .map(|value| (&ZERO_KEY, unpack(*value)))
            .chain(
                self.slots
                    .iter()
                    .filter(|[key, _]| *key != 0)
                    .map(|[key, value]| (key, unpack(*value))),
            )
    }

    /// Keeps the keys for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut((i64, i64)) -> bool) {
        if self.zero.is_some_and(|value| !keep(unpack(value))) {
            self.zero = None;
            self.len -= 1;
        }
        for slot in self.slots.iter_mut().filter(|[key, _]| *key != 0) {
            if !keep(unpack(slot[1])) {
                *slot = [0, TOMBSTONE];
                self.len -= 1;
                self.tombstones += 1;
            }
        }
        if self.tombstones > self.slots.len() / 8 {
            self.rebuild(self.len);
        }
    }
}

impl FromIterator<(u128, (i64, i64))> for KeyTable {
    fn from_iter<I: IntoIterator<Item = (u128, (i64, i64))>>(entries: I) -> Self {
        let entries = entries.into_iter();
        let mut table = Self::default();
        table.reserve(entries.size_hint().0);
        for (key, value) in entries {
            if let Some(mut held) = table.insert_or_get(key, value) {
                held.set(value);
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_zero_digest_is_a_key_like_any_other() {
        let mut table = KeyTable::default();
        assert!(table.insert_or_get(0, (5, 6)).is_none());
        assert_eq!(
            table.insert_or_get(0, (7, 8)).map(|h| h.get()),
            Some((5, 6))
        );
        assert_eq!(table.get(0), Some((5, 6)));
        assert_eq!(table.len(), 1);
        assert_eq!(table.iter().collect::<Vec<_>>(), [(&0, (5, 6))]);
        table.retain(|_| false);
        assert_eq!((table.len(), table.get(0)), (0, None));
    }

    #[test]
    fn reserve_sizes_once_and_keys_survive_growth() {
        let mut table = KeyTable::default();
        table.reserve(1_000);
        let slots = table.slots.len();
        assert!(table.headroom() >= 1_000);
        for key in 1..=1_000_u128 {
            assert!(table
                .insert_or_get(key * 0x9e37_79b9_7f4a_7c15, (key as i64, 0))
                .is_none());
        }
        assert_eq!(table.slots.len(), slots, "grew despite the reserve");
        for key in 1_001..=5_000_u128 {
            table.insert_or_get(key * 0x9e37_79b9_7f4a_7c15, (key as i64, 0));
        }
        assert!(table.slots.len() > slots);
        assert_eq!(table.len(), 5_000);
        assert!(
            (1..=5_000_u128).all(|k| table.get(k * 0x9e37_79b9_7f4a_7c15) == Some((k as i64, 0)))
        );
    }

    #[test]
    fn tombstones_are_stepped_over_reused_and_swept_by_a_rebuild() {
        let mut table = KeyTable::default();
        for key in 1..=1_000_u128 {
            table.insert_or_get(key, (key as i64, 0));
        }
        // Remove one key in ten: tombstones, no rebuild yet (under an eighth).
        table.retain(|(offset, _)| offset % 10 != 0);
        assert_eq!(table.len(), 900);
        assert!(table.tombstones > 0);
        assert!((1..=1_000_u128).all(|k| table.get(k).is_some() == (k % 10 != 0)));
        let before = table.tombstones;
        for key in (10..=1_000_u128).step_by(10) {
            assert!(table.insert_or_get(key, (-1, 0)).is_none());
        }
        assert!(table.tombstones < before, "no tombstone was reused");
        // Remove most: the rebuild leaves no tombstone and a smaller table.
        let slots = table.slots.len();
        table.retain(|(offset, _)| offset > 900);
        assert_eq!((table.tombstones, table.len()), (0, 90));
        assert!(table.slots.len() < slots);
        assert!((901..=1_000_u128)
            .filter(|k| k % 10 != 0)
            .all(|k| table.get(k) == Some((k as i64, 0))));
    }

    proptest! {
        /// Any mix of inserts, overwrites and removals leaves the same entries as a
        /// `HashMap` given the same operations (small keys: long probe chains).
        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec((0..3_u8, 0..200_u128, 0..1_000_i64), 1..2_000)) {
            let mut table = KeyTable::default();
            let mut model: HashMap<u128, (i64, i64)> = HashMap::new();
            for (op, key, value) in ops {
                match op {
                    0 => {
                        let held = table.insert_or_get(key, (value, value)).map(|h| h.get());
                        prop_assert_eq!(held, model.get(&key).copied());
                        model.entry(key).or_insert((value, value));
                    }
                    1 => {
                        if let Some(mut held) = table.insert_or_get(key, (value, 0)) {
                            held.set((value, 1));
                        }
                        model.entry(key).and_modify(|v| *v = (value, 1)).or_insert((value, 0));
                    }
                    _ => {
                        table.retain(|(v, _)| v % 7 != value % 7);
                        model.retain(|_, &mut (v, _)| v % 7 != value % 7);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            let mut got: Vec<_> = table.iter().map(|(k, v)| (*k, v)).collect();
            let mut want: Vec<_> = model.into_iter().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
        }
    }
}
