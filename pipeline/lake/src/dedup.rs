//! Dropping results the processor emitted twice, by natural key, deterministically.
//!
//! Data flow: for each record of an input partition the sink asks
//! [`KeyIndex::admit`] with the digest of the row's natural key
//! ([`crate::rows::LakeRow::natural_key`], hashed by [`digest`]), the record's offset
//! and its timestamp. The index remembers, per key, the offset of the first record
//! that carried it. A record is a duplicate only when its key was first seen at a
//! *smaller* offset; a record that finds its own offset is a replay of itself and is
//! kept. So the answer for every record is the same in the first run and in any
//! replay after a crash, whichever checkpoint the index was restored from. The index
//! is saved with the sink's manifest and forgets keys whose record is older than
//! the retention (by record timestamp), which bounds its size: the processor re-emits
//! results only for the time between its last checkpoint and its crash.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// 128 bits of SHA-256 of a natural key: collisions are negligible at any volume.
pub type KeyDigest = u128;

/// The digest of a natural key's bytes.
pub fn digest(natural_key: &[u8]) -> KeyDigest {
    let hash = Sha256::digest(natural_key);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(bytes)
}

/// Per input partition: the first offset (and its record time) of every recent key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Vec<(u64, u64, i64, i64)>")]
pub struct KeyIndex {
    first: HashMap<KeyDigest, (i64, i64)>,
}

impl KeyIndex {
    /// True when the record at `offset` is the first with this key (or a replay of
    /// that first record): write it. False for a later copy: drop it.
    pub fn admit(&mut self, key: KeyDigest, offset: i64, record_ms: i64) -> bool {
        let entry = self.first.entry(key).or_insert((offset, record_ms));
        if offset < entry.0 {
            // Replaying from before the first sighting: this one is the first.
            *entry = (offset, record_ms);
        }
        entry.0 == offset
    }

    /// Forgets keys whose first record is older than `cutoff_ms` and lies before
    /// `replay_from` (records from `replay_from` on are replayed and re-learnt).
    pub fn prune(&mut self, cutoff_ms: i64, replay_from: i64) {
        self.first
            .retain(|_, (offset, ts)| *ts >= cutoff_ms || *offset >= replay_from);
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }
}

impl From<Vec<(u64, u64, i64, i64)>> for KeyIndex {
    fn from(entries: Vec<(u64, u64, i64, i64)>) -> Self {
        let first = entries
            .into_iter()
            .map(|(hi, lo, offset, ts)| ((u128::from(hi) << 64) | u128::from(lo), (offset, ts)))
            .collect();
        Self { first }
    }
}

impl From<KeyIndex> for Vec<(u64, u64, i64, i64)> {
    fn from(index: KeyIndex) -> Self {
        index.sorted_entries()
    }
}

impl KeyIndex {
    /// Every key as (high 64 bits, low 64 bits, first offset, its record time), sorted,
    /// so the same keys always encode to the same bytes.
    fn sorted_entries(&self) -> Vec<(u64, u64, i64, i64)> {
        let mut out: Vec<_> = self
            .first
            .iter()
            .map(|(k, &(offset, ts))| ((k >> 64) as u64, *k as u64, offset, ts))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Serialized as the sorted entries, built from a borrow: a checkpoint save of a
/// partition with millions of keys does not clone the whole map first (what
/// `#[serde(into)]` does). Same bytes as before.
impl Serialize for KeyIndex {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sorted_entries().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_copies_are_dropped_and_replays_kept() {
        let mut index = KeyIndex::default();
        let k = digest(b"session-1");
        assert!(index.admit(k, 10, 1_000));
        assert!(!index.admit(k, 25, 2_000), "re-emit");
        // A replay after a crash reads offset 10 again: still the first.
        assert!(index.admit(k, 10, 1_000));
        assert!(!index.admit(k, 25, 2_000));
        assert!(index.admit(digest(b"session-2"), 26, 2_000));
    }

    #[test]
    fn same_answers_whatever_checkpoint_it_was_restored_from() {
        let keys = [b"a", b"b", b"a", b"c", b"b", b"a"];
        let run = |index: &mut KeyIndex, from: usize| -> Vec<bool> {
            (from..keys.len())
                .map(|i| index.admit(digest(keys[i]), i as i64, 0))
                .collect()
        };
        let mut full = KeyIndex::default();
        let answers = run(&mut full, 0);
        assert_eq!(answers, [true, true, false, true, false, false]);
        for crash_after in 0..keys.len() {
            // The checkpoint may hold keys learnt from records after the replay start.
            let mut saved = KeyIndex::default();
            for (i, key) in keys.iter().enumerate().take(crash_after) {
                saved.admit(digest(*key), i as i64, 0);
            }
            for replay_from in 0..=crash_after {
                let mut restored = saved.clone();
                let replayed = run(&mut restored, replay_from);
                assert_eq!(
                    replayed,
                    answers[replay_from..],
                    "{crash_after} {replay_from}"
                );
            }
        }
    }

    #[test]
    fn prune_keeps_recent_and_replayable_keys() {
        let mut index = KeyIndex::default();
        index.admit(digest(b"old"), 1, 100);
        index.admit(digest(b"old-but-replayed"), 50, 100);
        index.admit(digest(b"new"), 2, 5_000);
        index.prune(1_000, 40);
        assert_eq!(index.len(), 2);
        assert!(index.admit(digest(b"new"), 2, 5_000));
        assert!(!index.admit(digest(b"new"), 3, 5_000));
    }

    #[test]
    fn serde_round_trip() {
        let mut index = KeyIndex::default();
        index.admit(u128::MAX - 7, 3, 9);
        index.admit(5, 4, 10);
        let json = serde_json::to_string(&index).unwrap();
        let back: KeyIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(back, index);
        // The checkpoint format: the sorted (hi, lo, offset, time) entries.
        let entries: Vec<(u64, u64, i64, i64)> = index.into();
        assert_eq!(json, serde_json::to_string(&entries).unwrap());
        assert_eq!(
            json,
            "[[0,5,4,10],[18446744073709551615,18446744073709551608,3,9]]"
        );
    }
}
