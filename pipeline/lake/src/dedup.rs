//! Dropping results the processor emitted twice, by natural key, deterministically.
//!
//! Data flow: for each record of an input partition the sink asks
//! [`KeyIndex::admit`] with the digest of the row's natural key
//! ([`crate::rows::LakeRow::natural_key`], hashed by the manifest's [`KeyHasher`]), the record's offset
//! and its timestamp. The index remembers, per key, the offset of the first record
//! that carried it. A record is a duplicate only when its key was first seen at a
//! *smaller* offset; a record that finds its own offset is a replay of itself and is
//! kept. So the answer for every record is the same in the first run and in any
//! replay after a crash, whichever checkpoint the index was restored from. The index
//! forgets keys whose record is older than the retention (by record timestamp),
//! which bounds its size: the processor re-emits results only for the time between
//! its last checkpoint and its crash.
//!
//! Persistence is incremental: the index remembers which entries changed since it
//! was last persisted, and [`KeyIndex::take_fresh`] hands them out to be written as
//! one immutable *key segment* ([`SegmentBuilder`], under 20 bytes a key) next to the
//! checkpoint. A save therefore costs the keys learnt since the previous save, not
//! every key of the retention (the raw `events` table remembers millions); the
//! manifest compacts the segments now and then (`crate::manifest`).
//!
//! The changed entries are kept in the segment's encoding from the start, in chunks
//! that never move: a busy partition learns millions of keys between two saves, and
//! a growing `Vec` of them, then a second buffer to encode them into, cost a copy
//! and fresh pages per doubling (measured: about a tenth of the sink's decoding
//! thread on a 9M-record backlog).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{LakeError, Result};
use crate::keytable::KeyTable;

/// 128 bits of a keyed hash of a natural key (see [`KeyHasher`]): collisions are
/// negligible at any volume.
pub type KeyDigest = u128;

/// The SHA-256 digest of a natural key's bytes (what [`KeyHasher::Sha256`] gives).
pub fn digest(natural_key: &[u8]) -> KeyDigest {
    let hash = Sha256::digest(natural_key);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(bytes)
}

/// How an index turns natural keys into [`KeyDigest`]s. Saved with the index (its
/// persisted digests mean nothing with another function), so it never changes for
/// an index once chosen.
///
/// - `Sha256`: the first 128 bits of SHA-256; indexes saved before version 3 of the
///   manifest keep it.
/// - `SipHash13`: SipHash-1-3 with 128-bit output under a random key drawn when the
///   index is created. A keyed PRF: whoever writes the records cannot craft two
///   natural keys that collide (and so have one row dropped as the copy of another)
///   without the key, which lives only in the checkpoint. Cheaper than SHA-256:
///   that digest was a tenth of the sink's decoding thread, and the switch measured
///   12% more rows per second on the sink benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyHasher {
    Sha256,
    SipHash13 { k0: u64, k1: u64 },
}

impl KeyHasher {
    /// A SipHash key drawn from the standard library's randomly seeded hasher
    /// state (seeded from the operating system's randomness).
    pub fn random() -> Self {
        use std::hash::BuildHasher;
        let draw = |salt: u64| std::hash::RandomState::new().hash_one(salt);
        Self::SipHash13 {
            k0: draw(0x706c_616b_6531),
            k1: draw(0x706c_616b_6532),
        }
    }

    /// The digest of a natural key's bytes.
    pub fn digest(&self, natural_key: &[u8]) -> KeyDigest {
        match *self {
            Self::Sha256 => digest(natural_key),
            Self::SipHash13 { k0, k1 } => {
                use std::hash::Hasher;
                let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(k0, k1);
                hasher.write(natural_key);
                siphasher::sip128::Hasher128::finish128(&hasher).as_u128()
            }
        }
    }
}

/// Per input partition: the first offset (and its record time) of every recent key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Vec<(u64, u64, i64, i64)>")]
pub struct KeyIndex {
    first: KeyTable,
    /// Entries inserted or changed since the last [`KeyIndex::take_fresh`] (not
    /// compared, not serialized).
    #[serde(skip)]
    fresh: SegmentBuilder,
    /// The latest [`KeyIndex::prune`]'s `(cutoff_ms, replay_from)`: the entries it
    /// forgets count as absent from then on, swept out of `first` or not yet.
    #[serde(skip)]
    forget: Option<(i64, i64)>,
    /// The cutoff of the last sweep (see [`SWEEP_EVERY_MS`]).
    #[serde(skip)]
    swept_at_cutoff: Option<i64>,
}

/// A prune removes the forgotten entries from the table (a walk over every key) only
/// when its cutoff has moved this far since the last such sweep; in between, they
/// stay in the table and count as absent. A commit comes with every save, and with a
/// day of keys on a busy partition a walk at each would cross tens of millions of
/// keys (a 512 MiB table at 9M keys) every few seconds. The price: up to ten
/// minutes of keys beyond the retention stay in memory.
const SWEEP_EVERY_MS: i64 = 10 * 60 * 1000;

/// Whether a prune with `forget = (cutoff_ms, replay_from)` forgets the entry
/// `(offset, record_ms)`: older than the cutoff and before the replay position.
fn is_forgotten(forget: Option<(i64, i64)>, (offset, record_ms): (i64, i64)) -> bool {
    forget.is_some_and(|(cutoff_ms, replay_from)| record_ms < cutoff_ms && offset < replay_from)
}

/// One remembered key: (digest, first offset, record time of that offset).
pub type KeyEntry = (KeyDigest, i64, i64);

impl PartialEq for KeyIndex {
    /// Same remembered keys (forgotten entries not yet swept do not count).
    fn eq(&self, other: &Self) -> bool {
        self.live().count() == other.live().count()
            && self.live().all(|(key, entry)| {
                other
                    .first
                    .get(*key)
                    .is_some_and(|e| e == entry && !other.forgotten(e))
            })
    }
}

impl Eq for KeyIndex {}

impl KeyIndex {
    /// True when the record at `offset` is the first with this key (or a replay of
    /// that first record): write it. False for a later copy: drop it.
    pub fn admit(&mut self, key: KeyDigest, offset: i64, record_ms: i64) -> bool {
        let forget = self.forget;
        match self.first.insert_or_get(key, (offset, record_ms)) {
            None => {
                self.fresh.push(key, offset, record_ms);
                true
            }
            Some(mut held) => {
                let entry = held.get();
                // Pruned and not yet swept (as if absent), or replaying from before
                // the first sighting: either way this record is the first.
                if is_forgotten(forget, entry) || offset < entry.0 {
                    held.set((offset, record_ms));
                    self.fresh.push(key, offset, record_ms);
                    return true;
                }
                entry.0 == offset
            }
        }
    }

    /// Reads the table slots of these keys without changing anything, so that the
    /// [`KeyIndex::admit`] calls that follow find them loaded: the reads of a batch
    /// are independent, so the CPU overlaps their memory latency, where an admit
    /// per record waits for each miss in turn (see `crate::keytable`).
    pub fn warm<'a>(&self, keys: impl Iterator<Item = &'a KeyDigest>) -> usize {
        self.first.warm(keys)
    }

    /// Merges an entry read back from a persisted segment: the smaller first offset
    /// wins, whatever order the segments are read in. Not fresh: it is persisted.
    pub fn restore(&mut self, key: KeyDigest, offset: i64, record_ms: i64) {
        let forget = self.forget;
        if let Some(mut held) = self.first.insert_or_get(key, (offset, record_ms)) {
            let entry = held.get();
            if offset < entry.0 || is_forgotten(forget, entry) {
                held.set((offset, record_ms));
            }
        }
    }

    /// The entries inserted or changed since the last call, to persist them.
    pub fn take_fresh(&mut self) -> SegmentBuilder {
        std::mem::take(&mut self.fresh)
    }

    /// Marks every entry fresh (the next [`KeyIndex::take_fresh`] returns them all).
    pub fn mark_all_fresh(&mut self) {
        self.fresh = self.all_entries();
    }

    /// Every entry, in no particular order (for a compacted segment).
    pub fn all_entries(&self) -> SegmentBuilder {
        let mut all = SegmentBuilder::default();
        for (key, (offset, ts)) in self.live() {
            all.push(*key, offset, ts);
        }
        all
    }

    /// Whether the latest prune forgot an entry.
    fn forgotten(&self, entry: (i64, i64)) -> bool {
        is_forgotten(self.forget, entry)
    }

    /// The entries not forgotten.
    fn live(&self) -> impl Iterator<Item = (&KeyDigest, (i64, i64))> {
        self.first.iter().filter(|(_, e)| !self.forgotten(*e))
    }

    /// Makes room for `keys` more keys at once, so an index that will hold them
    /// does not double (rehash into fresh memory) its way there.
    pub fn reserve(&mut self, keys: usize) {
        self.first.reserve(keys);
    }

    /// Keys the index can take before it must grow.
    pub fn headroom(&self) -> usize {
        self.first.headroom()
    }

    /// Forgets keys whose first record is older than `cutoff_ms` and lies before
    /// `replay_from` (records from `replay_from` on are replayed and re-learnt).
    /// Forgotten entries count as absent at once and leave the table at the next
    /// sweep (see [`SWEEP_EVERY_MS`]).
    pub fn prune(&mut self, cutoff_ms: i64, replay_from: i64) {
        self.forget = Some((cutoff_ms, replay_from));
        if self
            .swept_at_cutoff
            .is_none_or(|swept| cutoff_ms.saturating_sub(swept) >= SWEEP_EVERY_MS)
        {
            self.first
                .retain(|(offset, ts)| ts >= cutoff_ms || offset >= replay_from);
            self.swept_at_cutoff = Some(cutoff_ms);
        }
    }

    /// Number of keys held: the remembered ones, and forgotten ones not yet swept.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.first.len() == 0
    }
}

impl From<Vec<(u64, u64, i64, i64)>> for KeyIndex {
    fn from(entries: Vec<(u64, u64, i64, i64)>) -> Self {
        let first = entries
            .into_iter()
            .map(|(hi, lo, offset, ts)| ((u128::from(hi) << 64) | u128::from(lo), (offset, ts)))
            .collect();
        Self {
            first,
            ..Self::default()
        }
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
            .live()
            .map(|(k, (offset, ts))| ((k >> 64) as u64, *k as u64, offset, ts))
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

/// Key segments as written since 2026-12-03: each entry is the digest (u128, big
/// endian) and the zigzag LEB128 varints of its offset and record time minus the
/// previous entry's (from 0, 0), and the segment ends with the xxh3-128 of everything
/// before it (big endian). Entries are pushed in offset order with record times
/// that move little, so the two deltas take a byte or two each: 17-19 bytes an
/// entry instead of 32, and the checksum is xxh3 instead of SHA-256. Both were the
/// sink's busiest costs beside the Parquet files: a 9M-key backlog wrote 288 MB of
/// segments (more than its 190 MB of Parquet) and SHA-256 took 3% of the sink's CPU.
/// The checksum is against truncation and damage; whoever can rewrite a segment can
/// rewrite the manifest too, so a cryptographic hash bought nothing more.
const SEGMENT_MAGIC: &[u8; 8] = b"PLKKEYS2";
const SEGMENT_HASH_BYTES: usize = 16;
/// Fixed entries (digest, offset, record time; 32 bytes) and a SHA-256 trailer: the
/// first format, still read.
const SEGMENT_V1_MAGIC: &[u8; 8] = b"PLKKEYS1";
const SEGMENT_V1_ENTRY_BYTES: usize = 32;
const SEGMENT_V1_HASH_BYTES: usize = 32;
/// The longest entry: a digest and two 64-bit varints.
const SEGMENT_MAX_ENTRY_BYTES: usize = 16 + 10 + 10;

/// Bytes of the first chunk of a [`SegmentBuilder`]; each next chunk doubles, up to
/// [`MAX_CHUNK_BYTES`]. Small first: every open input partition has a builder.
const FIRST_CHUNK_BYTES: usize = 64 * SEGMENT_MAX_ENTRY_BYTES;
const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Appends `value` as a zigzag LEB128 varint.
fn push_varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a zigzag LEB128 varint at the front of `bytes`, advancing it.
fn take_varint(bytes: &mut &[u8]) -> Option<i64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// The entries of a key segment being collected, already encoded (see
/// [`SEGMENT_MAGIC`]), in chunks that are never moved or copied once written;
/// [`SegmentBuilder::finish`] frames them.
#[derive(Debug, Clone, Default)]
pub struct SegmentBuilder {
    chunks: Vec<Vec<u8>>,
    keys: u64,
    max_offset: Option<i64>,
    max_record_ms: Option<i64>,
    /// The previous entry's offset and record time, which the next is encoded
    /// against.
    previous: (i64, i64),
}

impl SegmentBuilder {
    /// Appends one entry.
    pub fn push(&mut self, key: KeyDigest, offset: i64, record_ms: i64) {
        let full = self
            .chunks
            .last()
            .is_none_or(|c| c.len() + SEGMENT_MAX_ENTRY_BYTES > c.capacity());
        if full {
            let size = self.chunks.last().map_or(FIRST_CHUNK_BYTES, |c| {
                (c.capacity() * 2).min(MAX_CHUNK_BYTES)
            });
            self.chunks.push(Vec::with_capacity(size));
        }
        let Some(chunk) = self.chunks.last_mut() else {
            return;
        };
        let (previous_offset, previous_ms) = self.previous;
        chunk.extend_from_slice(&key.to_be_bytes());
        push_varint(chunk, offset.wrapping_sub(previous_offset));
        push_varint(chunk, record_ms.wrapping_sub(previous_ms));
        self.previous = (offset, record_ms);
        self.keys += 1;
        self.max_offset = Some(self.max_offset.map_or(offset, |m| m.max(offset)));
        self.max_record_ms = Some(self.max_record_ms.map_or(record_ms, |m| m.max(record_ms)));
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.keys
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Largest offset among the entries (`i64::MIN` when empty).
    pub fn max_offset(&self) -> i64 {
        self.max_offset.unwrap_or(i64::MIN)
    }

    /// Latest record time among the entries (`i64::MIN` when empty).
    pub fn max_record_ms(&self) -> i64 {
        self.max_record_ms.unwrap_or(i64::MIN)
    }

    /// The segment's bytes, as chunks to write one after the other: the magic, the
    /// entries, then the checksum of everything before it, so a truncated or
    /// altered segment is detected instead of silently forgetting keys.
    pub fn finish(self) -> Vec<Vec<u8>> {
        let mut hasher = twox_hash::XxHash3_128::new();
        hasher.write(SEGMENT_MAGIC);
        for chunk in &self.chunks {
            hasher.write(chunk);
        }
        let mut out = Vec::with_capacity(self.chunks.len() + 2);
        out.push(SEGMENT_MAGIC.to_vec());
        out.extend(self.chunks);
        out.push(hasher.finish_128().to_be_bytes().to_vec());
        out
    }
}

/// A key segment's bytes in one buffer (see [`SegmentBuilder::finish`]).
pub fn encode_segment(entries: &[KeyEntry]) -> Vec<u8> {
    let mut builder = SegmentBuilder::default();
    for &(key, offset, ts) in entries {
        builder.push(key, offset, ts);
    }
    builder.finish().concat()
}

/// Reads a key segment back (either format), calling `each` per entry; `name` is
/// for the error.
pub fn decode_segment(name: &str, bytes: &[u8], mut each: impl FnMut(KeyEntry)) -> Result<()> {
    let corrupt = |reason: &str| LakeError::Manifest {
        reason: format!("key segment {name} is damaged: {reason}"),
    };
    let magic = bytes
        .get(..SEGMENT_MAGIC.len())
        .ok_or_else(|| corrupt("too short"))?;
    let v1 = magic == SEGMENT_V1_MAGIC;
    if !v1 && magic != SEGMENT_MAGIC {
        return Err(corrupt("not a key segment"));
    }
    let hash_len = if v1 {
        SEGMENT_V1_HASH_BYTES
    } else {
        SEGMENT_HASH_BYTES
    };
    let body_len = bytes
        .len()
        .checked_sub(hash_len)
        .filter(|len| *len >= SEGMENT_MAGIC.len())
        .ok_or_else(|| corrupt("too short"))?;
    let (body, hash) = bytes.split_at(body_len);
    let intact = if v1 {
        Sha256::digest(body).as_slice() == hash
    } else {
        twox_hash::XxHash3_128::oneshot(body).to_be_bytes() == hash
    };
    if !intact {
        return Err(corrupt("checksum mismatch"));
    }
    let mut entries = &body[SEGMENT_MAGIC.len()..];
    if v1 {
        if entries.len() % SEGMENT_V1_ENTRY_BYTES != 0 {
            return Err(corrupt("length is not a whole number of entries"));
        }
        for chunk in entries.chunks_exact(SEGMENT_V1_ENTRY_BYTES) {
            let (key, rest) = chunk.split_at(16);
            let (offset, ts) = rest.split_at(8);
            let int = |b: &[u8]| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                i64::from_be_bytes(a)
            };
            let mut k = [0u8; 16];
            k.copy_from_slice(key);
            each((u128::from_be_bytes(k), int(offset), int(ts)));
        }
        return Ok(());
    }
    let (mut offset, mut ts) = (0i64, 0i64);
    while !entries.is_empty() {
        let (key, rest) = entries
            .split_first_chunk::<16>()
            .ok_or_else(|| corrupt("an entry is cut short"))?;
        entries = rest;
        let mut delta =
            || take_varint(&mut entries).ok_or_else(|| corrupt("an entry is cut short"));
        offset = offset.wrapping_add(delta()?);
        ts = ts.wrapping_add(delta()?);
        each((u128::from_be_bytes(*key), offset, ts));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(builder: SegmentBuilder) -> Vec<KeyEntry> {
        let mut out = Vec::new();
        decode_segment("t", &builder.finish().concat(), |e| out.push(e)).unwrap();
        out
    }

    #[test]
    fn a_builder_spans_chunks_and_frames_them_like_one_buffer() {
        let entries_in: Vec<KeyEntry> = (0..5_000i64)
            .map(|i| ((i as u128) << 70 | i as u128, i * 3 - 7, 1_000 - i))
            .collect();
        let mut builder = SegmentBuilder::default();
        for &(k, o, t) in &entries_in {
            builder.push(k, o, t);
        }
        assert_eq!(builder.len(), 5_000);
        assert_eq!(builder.max_offset(), 4_999 * 3 - 7);
        assert_eq!(builder.max_record_ms(), 1_000);
        let chunks = builder.clone().finish();
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        let bytes = chunks.concat();
        // Digests, then deltas: -7 and 1,000 (1 + 2 bytes), then 3 and -1 (1 + 1).
        assert_eq!(bytes.len(), 8 + 5_000 * 16 + 3 + 4_999 * 2 + 16);
        assert_eq!(entries(builder), entries_in);
        let empty = SegmentBuilder::default();
        assert_eq!(
            (empty.max_offset(), empty.max_record_ms()),
            (i64::MIN, i64::MIN)
        );
    }

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
    fn forgotten_keys_count_as_absent_before_the_sweep_removes_them() {
        let mut index = KeyIndex::default();
        index.admit(digest(b"a"), 1, 100);
        index.prune(50, 0); // sweeps: the first prune
        index.admit(digest(b"b"), 2, 200);
        index.admit(digest(b"c"), 3, 10_000);
        // Forgets "a" and "b", but within SWEEP_EVERY_MS of the last sweep: held.
        index.prune(1_000, 3);
        assert_eq!(index.len(), 3);
        let mut restored = KeyIndex::default();
        restored.restore(digest(b"c"), 3, 10_000);
        assert_eq!(index, restored, "forgotten entries are not compared");
        assert_eq!(
            entries(index.all_entries()),
            vec![(digest(b"c"), 3, 10_000)]
        );
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(json, serde_json::to_string(&restored).unwrap());
        // A copy of a forgotten key is new again, as for a restored index.
        assert!(index.admit(digest(b"b"), 7, 20_000));
        assert!(restored.admit(digest(b"b"), 7, 20_000));
        assert!(!index.admit(digest(b"b"), 8, 20_000));
        // A cutoff SWEEP_EVERY_MS past the last sweep removes them.
        index.prune(50 + SWEEP_EVERY_MS, 3);
        assert_eq!(index.len(), 2);
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

    #[test]
    fn fresh_holds_inserts_and_moves_to_earlier_offsets_only() {
        let mut index = KeyIndex::default();
        index.admit(7, 10, 100);
        index.admit(7, 12, 120); // a copy: nothing new to persist
        index.admit(8, 11, 110);
        assert_eq!(entries(index.take_fresh()), [(7, 10, 100), (8, 11, 110)]);
        assert!(index.take_fresh().is_empty());
        index.admit(7, 10, 100); // a replay of itself
        assert!(index.take_fresh().is_empty());
        index.admit(7, 4, 40); // replayed from before the first sighting
        assert_eq!(entries(index.take_fresh()), [(7, 4, 40)]);
        let mut restored = KeyIndex::default();
        for (k, o, t) in [(7, 10, 100), (8, 11, 110), (7, 4, 40)] {
            restored.restore(k, o, t);
        }
        assert_eq!(restored, index, "the smaller offset wins in any order");
        assert!(
            restored.take_fresh().is_empty(),
            "restored keys are persisted"
        );
    }

    #[test]
    fn segments_of_the_first_format_still_read() {
        let entries = vec![(7u128 << 90, 5i64, 1_700_000_000_000i64), (3, -2, 0)];
        let mut v1 = b"PLKKEYS1".to_vec();
        for &(key, offset, ts) in &entries {
            v1.extend_from_slice(&key.to_be_bytes());
            v1.extend_from_slice(&offset.to_be_bytes());
            v1.extend_from_slice(&ts.to_be_bytes());
        }
        let hash = Sha256::digest(&v1);
        v1.extend_from_slice(&hash);
        let mut back = Vec::new();
        decode_segment("old", &v1, |e| back.push(e)).unwrap();
        assert_eq!(back, entries);
        let last = v1.len() - 1;
        v1[last] ^= 1;
        assert!(decode_segment("old", &v1, |_| {}).is_err());
    }

    #[test]
    fn typical_entries_take_about_twenty_bytes() {
        // Offsets one apart, record times a few ms apart: one byte per delta.
        let entries: Vec<KeyEntry> = (0..1_000)
            .map(|i| {
                (
                    u128::from(i as u64) * 0x9e37_79b9_7f4a_7c15,
                    10_000 + i,
                    1_700_000_000_000 + 3 * i,
                )
            })
            .collect();
        let bytes = encode_segment(&entries);
        assert!(
            bytes.len() < 8 + 1_000 * 19 + 16 + 16,
            "{} bytes",
            bytes.len()
        );
        let mut back = Vec::new();
        decode_segment("s", &bytes, |e| back.push(e)).unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn segment_round_trip_and_damage_is_detected() {
        let entries = vec![
            (u128::MAX, i64::MIN, -1),
            (0, 0, 0),
            (1 << 100, 42, 1_700_000_000_000),
        ];
        let bytes = encode_segment(&entries);
        // Digests of 16 bytes and the varint deltas from (0, 0): i64::MIN and -1
        // take 10 + 1 bytes, back to 0 and 0 (deltas i64::MIN and 1) 10 + 1, then
        // 42 and 1.7e12 take 1 + 6.
        assert_eq!(bytes.len(), 8 + 3 * 16 + 11 + 11 + 7 + 16);
        let mut back = Vec::new();
        decode_segment("s", &bytes, |e| back.push(e)).unwrap();
        assert_eq!(back, entries);
        let mut none = Vec::new();
        decode_segment("empty", &encode_segment(&[]), |e| none.push(e)).unwrap();
        assert!(none.is_empty());
        for damaged in [
            bytes[..bytes.len() - 1].to_vec(),
            bytes[..10].to_vec(),
            {
                let mut b = bytes.clone();
                b[20] ^= 1;
                b
            },
            b"PLKKEYS1".iter().chain(&bytes[8..]).copied().collect(),
            b"PLKKEYS3".iter().chain(&bytes[8..]).copied().collect(),
        ] {
            let err = decode_segment("seg-1", &damaged, |_| {}).unwrap_err();
            assert!(err.to_string().contains("seg-1"), "{err}");
        }
    }
}
