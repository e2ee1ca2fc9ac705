//! Resume points (SPEC section 3): per `(user_id, stream_id)`, the latest event by
//! event time (ties: the larger `event_id`), with its position_end, event_time and
//! uuid, published to the compacted `<prefix>.resume` topic whenever it changes.
//!
//! A user's uuids live on many input partitions, so this is two-level too:
//! * [`ResumeCandidates`] (source level) keeps, per key, the latest event seen since the
//!   last take, and hands those out as [`ResumeCandidate`]s, which the I/O layer sends
//!   on a repartition topic keyed by `user_id/stream_id`. State lasts one flush.
//! * [`ResumeMerge`] (merge level) keeps the latest candidate per key and emits a
//!   [`ResumePoint`] when it changes.
//!
//! "Latest" is a maximum, which is idempotent and commutative: replayed or duplicate
//! candidates change nothing, so no dedup and no watermark are needed, and events are
//! never late here. The merge state holds one small entry per `(user_id, stream_id)`
//! ever seen, like the compacted topic itself. Both tables find a key by its
//! [`crate::keys::Id`], held in the index, never by comparing the key's strings.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use playlake_schemas::{PlaybackEvent, ResumePoint, ResumePointRef, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::inline_str::InlineStr;
use crate::keys::{pair_id, EventIds, Id, IdBuild, Pair};

/// The latest event of a `(user_id, stream_id)` as seen by one source partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeCandidate {
    /// The viewer.
    pub user_id: InlineStr,
    /// Stream watched.
    pub stream_id: InlineStr,
    /// event_time of the event, epoch ms.
    pub event_time: i64,
    /// event_id of the event (breaks ties of event_time).
    pub event_id: InlineStr,
    /// position_end of the event.
    pub position_end: f64,
    /// uuid of the event.
    pub uuid: InlineStr,
}

impl ResumeCandidate {
    /// A candidate with every string empty (a placeholder).
    const EMPTY: Self = Self {
        user_id: InlineStr::EMPTY,
        stream_id: InlineStr::EMPTY,
        event_time: 0,
        event_id: InlineStr::EMPTY,
        position_end: 0.0,
        uuid: InlineStr::EMPTY,
    };

    /// The key's strings, for ordering.
    fn key(&self) -> (&[u8], &[u8]) {
        (self.user_id.as_bytes(), self.stream_id.as_bytes())
    }

    /// The first 16 bytes of the user id as a number (zero-padded): a candidate
    /// with a smaller prefix has a smaller key, so a sort compares most pairs with
    /// one integer comparison (see [`ResumeMerge::drain_changed`]).
    fn sort_prefix(&self) -> u128 {
        let mut bytes = [0u8; 16];
        let user = self.user_id.as_bytes();
        let n = user.len().min(bytes.len());
        if let (Some(to), Some(from)) = (bytes.get_mut(..n), user.get(..n)) {
            to.copy_from_slice(from);
        }
        u128::from_be_bytes(bytes)
    }

    /// Makes `event` (of this candidate's key) the candidate's event.
    fn set_event(&mut self, event: &PlaybackEvent) {
        self.event_time = event.event_time_ms();
        self.event_id.set(&event.event_id);
        self.position_end = event.position_end;
        self.uuid.set(&event.uuid);
    }

    fn order(&self) -> (i64, &[u8]) {
        (self.event_time, self.event_id.as_bytes())
    }

    /// The row published for this candidate.
    pub fn to_point(&self) -> ResumePoint {
        self.as_point().to_point()
    }

    /// The row published for this candidate, borrowing its strings.
    pub fn as_point(&self) -> ResumePointRef<'_> {
        ResumePointRef {
            user_id: self.user_id.as_str(),
            stream_id: self.stream_id.as_str(),
            position_end: self.position_end,
            event_time: TimestampMs(self.event_time),
            uuid: self.uuid.as_str(),
        }
    }
}

/// Candidates indexed by `(user_id, stream_id)` without a second copy of the key:
/// the hash table holds the key's [`Id`] and the position in `entries`, so a lookup
/// compares ids in the table and never reads an entry's strings. Not serialized
/// itself (see the `Serialize` impls below); the table is rebuilt on restore.
#[derive(Debug, Clone, Default)]
struct CandidateTable {
    entries: Vec<ResumeCandidate>,
    index: HashTable<(Id, u32)>,
    /// The table's keyed hash of an id (see [`crate::keys::IdBuild`]).
    hash: IdBuild,
}

impl CandidateTable {
    fn position(&self, user_id: &str, stream_id: &str) -> Option<usize> {
        self.position_of(pair_id(user_id, stream_id))
    }

    fn position_of(&self, id: Id) -> Option<usize> {
        self.index
            .find(self.hash.hash_one(id), |&(other, _)| other == id)
            .map(|&(_, i)| i as usize)
    }

    fn get(&self, user_id: &str, stream_id: &str) -> Option<&ResumeCandidate> {
        self.position(user_id, stream_id)
            .and_then(|i| self.entries.get(i))
    }

    /// Adds the candidate `event` makes (if it has a user), whose key (with id `id`)
    /// is not in the table, written in place: a candidate built and then pushed
    /// is copied whole, twice, per event.
    fn push_new_of(&mut self, id: Id, event: &PlaybackEvent) {
        let Some(user_id) = event.user_id.as_deref() else {
            return;
        };
        self.entries.push(ResumeCandidate::EMPTY);
        if let Some(c) = self.entries.last_mut() {
            c.user_id.set(user_id);
            c.stream_id.set(&event.stream_id);
            c.set_event(event);
        }
        self.index_last(id);
    }

    /// Indexes the last entry under `id`; returns its position.
    fn index_last(&mut self, id: Id) -> usize {
        let position = self.entries.len().saturating_sub(1);
        // Positions beyond u32 would need 4 billion keys in memory; saturating keeps
        // this total.
        let slot = u32::try_from(position).unwrap_or(u32::MAX);
        self.index
            .insert_unique(self.hash.hash_one(id), (id, slot), |&(other, _)| {
                self.hash.hash_one(other)
            });
        position
    }

    /// Adds a candidate whose key (with id `id`) is not in the table; returns its
    /// position.
    fn push_new(&mut self, id: Id, candidate: ResumeCandidate) -> usize {
        self.entries.push(candidate);
        self.index_last(id)
    }

    /// Takes every entry, in the order their keys came in since the last take (the
    /// partition's event order), leaving an empty table with room for as many.
    ///
    /// Not sorted by key, unlike the other outputs: a candidate goes to the
    /// repartition topic partition of its key, where candidates from every source
    /// partition interleave anyway, and the merge keeps a maximum per key, which no
    /// order changes; the merge publishes its changed points sorted
    /// ([`ResumeMerge::drain_changed`]). The sort was 3-5% of the processor bench
    /// (paired runs), for an order nobody relied on.
    fn take(&mut self) -> Vec<ResumeCandidate> {
        self.index.clear();
        let taken = std::mem::take(&mut self.entries);
        self.entries = Vec::with_capacity(taken.len());
        taken
    }

    fn from_candidates(candidates: impl IntoIterator<Item = ResumeCandidate>) -> Self {
        let mut table = Self::default();
        for c in candidates {
            let id = pair_id(&c.user_id, &c.stream_id);
            match table.position_of(id) {
                Some(i) => {
                    if let Some(e) = table.entries.get_mut(i) {
                        *e = c;
                    }
                }
                None => {
                    table.push_new(id, c);
                }
            }
        }
        table
    }

    /// `[[user_id, stream_id], candidate]` pairs sorted by key: the checkpoint form
    /// of the hash map this table replaced.
    fn sorted_pairs(&self) -> Vec<((&str, &str), &ResumeCandidate)> {
        let mut pairs: Vec<_> = self
            .entries
            .iter()
            .map(|c| ((c.user_id.as_str(), c.stream_id.as_str()), c))
            .collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        pairs
    }

    /// Same keys with equal candidates.
    fn same_as(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|c| other.get(&c.user_id, &c.stream_id) == Some(c))
    }
}

/// Source level: the latest event per key since the last take.
#[derive(Debug, Clone, Default)]
pub struct ResumeCandidates {
    pending: CandidateTable,
}

#[derive(Serialize)]
struct CandidatesRepr<'a> {
    pending: Vec<((&'a str, &'a str), &'a ResumeCandidate)>,
}

#[derive(Deserialize)]
struct CandidatesReprOwned {
    pending: Vec<(Pair, ResumeCandidate)>,
}

impl Serialize for ResumeCandidates {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CandidatesRepr {
            pending: self.pending.sorted_pairs(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ResumeCandidates {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = CandidatesReprOwned::deserialize(deserializer)?;
        Ok(Self {
            pending: CandidateTable::from_candidates(repr.pending.into_iter().map(|(_, c)| c)),
        })
    }
}

impl PartialEq for ResumeCandidates {
    fn eq(&self, other: &Self) -> bool {
        self.pending.same_as(&other.pending)
    }
}

impl ResumeCandidates {
    /// Considers a deduplicated event (events without user_id are ignored).
    pub fn apply(&mut self, event: &PlaybackEvent) {
        self.apply_with(event, &EventIds::of(event));
    }

    /// [`Self::apply`] with the event's ids already computed.
    pub(crate) fn apply_with(&mut self, event: &PlaybackEvent, ids: &EventIds) {
        let Some(id) = ids.resume() else {
            return;
        };
        let order = (event.event_time_ms(), event.event_id.as_bytes());
        match self.pending.position_of(id) {
            Some(i) => {
                let Some(current) = self.pending.entries.get_mut(i) else {
                    return;
                };
                if current.order() >= order {
                    return;
                }
                current.set_event(event);
            }
            None => {
                self.pending.push_new_of(id, event);
            }
        }
    }

    /// Takes the candidates gathered since the last take, in the order their keys
    /// came in.
    pub fn take(&mut self) -> Vec<ResumeCandidate> {
        self.pending.take()
    }
}

/// How many candidates ahead [`ResumeMerge::apply_all`] requests a key's entry.
const APPLY_AHEAD: usize = 8;

/// Merge level: the latest candidate per key over every source partition.
#[derive(Debug, Clone, Default)]
pub struct ResumeMerge {
    latest: CandidateTable,
    /// Scratches of [`Self::apply_all`] (kept for their capacity).
    ids: Vec<Id>,
    positions: Vec<Option<usize>>,
    /// Positions in `latest` changed since the last take, each once.
    changed: Vec<u32>,
    /// Per position of `latest`: whether it is in `changed`.
    is_changed: Vec<bool>,
}

#[derive(Serialize)]
struct MergeRepr<'a> {
    latest: Vec<((&'a str, &'a str), &'a ResumeCandidate)>,
    changed: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct MergeReprOwned {
    latest: Vec<(Pair, ResumeCandidate)>,
    changed: Vec<Pair>,
}

impl Serialize for ResumeMerge {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MergeRepr {
            latest: self.latest.sorted_pairs(),
            changed: self.changed_keys(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ResumeMerge {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MergeReprOwned::deserialize(deserializer)?;
        let latest = CandidateTable::from_candidates(repr.latest.into_iter().map(|(_, c)| c));
        let mut merge = Self {
            is_changed: vec![false; latest.entries.len()],
            latest,
            ids: Vec::new(),
            positions: Vec::new(),
            changed: Vec::new(),
        };
        for (user_id, stream_id) in &repr.changed {
            if let Some(i) = merge.latest.position(user_id, stream_id) {
                merge.mark_changed(i);
            }
        }
        Ok(merge)
    }
}

impl PartialEq for ResumeMerge {
    fn eq(&self, other: &Self) -> bool {
        self.latest.same_as(&other.latest) && self.changed_keys() == other.changed_keys()
    }
}

impl ResumeMerge {
    fn mark_changed(&mut self, position: usize) {
        if self.is_changed.len() <= position {
            self.is_changed.resize(position + 1, false);
        }
        if let Some(flag) = self.is_changed.get_mut(position) {
            if !*flag {
                *flag = true;
                self.changed
                    .push(u32::try_from(position).unwrap_or(u32::MAX));
            }
        }
    }

    /// The keys changed since the last take, sorted.
    fn changed_keys(&self) -> Vec<(&str, &str)> {
        let mut keys: Vec<(&str, &str)> = self
            .changed
            .iter()
            .filter_map(|&i| self.latest.entries.get(i as usize))
            .map(|c| (c.user_id.as_str(), c.stream_id.as_str()))
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Applies a candidate; returns whether it changed the key's resume point.
    pub fn apply(&mut self, candidate: ResumeCandidate) -> bool {
        let id = pair_id(&candidate.user_id, &candidate.stream_id);
        let found = self.latest.position_of(id);
        self.apply_at(id, found, candidate)
    }

    /// Applies candidates in order, as [`Self::apply`] would one by one; returns how
    /// many changed a resume point.
    ///
    /// Same results, sooner: the keys are hashed and looked up first, and each entry
    /// (a cache miss on a large table) is requested from memory [`APPLY_AHEAD`]
    /// candidates before its turn, so that the misses overlap.
    pub fn apply_all(&mut self, candidates: &mut Vec<ResumeCandidate>) -> usize {
        // The keys' ids and positions first, in scratches of their own: the 200-byte
        // candidates then move once, into the table (or not at all).
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(candidates.iter().map(|c| pair_id(&c.user_id, &c.stream_id)));
        let mut positions = std::mem::take(&mut self.positions);
        positions.clear();
        positions.extend(ids.iter().map(|&id| self.latest.position_of(id)));
        let prefetch = |entries: &[ResumeCandidate], position: Option<usize>| {
            if let Some(entry) = position.and_then(|i| entries.get(i)) {
                crate::prefetch::lines(entry);
            }
        };
        for &position in positions.iter().take(APPLY_AHEAD) {
            prefetch(&self.latest.entries, position);
        }
        let mut changed = 0;
        for (j, ((&id, &found), candidate)) in ids
            .iter()
            .zip(&positions)
            .zip(candidates.drain(..))
            .enumerate()
        {
            if let Some(&ahead) = positions.get(j + APPLY_AHEAD) {
                prefetch(&self.latest.entries, ahead);
            }
            // A key absent from the table may have been added by a candidate before
            // it; a position found stays valid (the merge never removes an entry).
            let found = found.or_else(|| self.latest.position_of(id));
            changed += usize::from(self.apply_at(id, found, candidate));
        }
        self.ids = ids;
        self.positions = positions;
        changed
    }

    /// [`Self::apply`] for the candidate whose key's id is `id`, held at position
    /// `found` (`None`: not held).
    fn apply_at(&mut self, id: Id, found: Option<usize>, candidate: ResumeCandidate) -> bool {
        let position = match found {
            Some(i) => {
                let Some(current) = self.latest.entries.get_mut(i) else {
                    return false;
                };
                if current.order() >= candidate.order() {
                    return false;
                }
                // Same key: only the event's fields move in.
                current.event_time = candidate.event_time;
                current.event_id = candidate.event_id;
                current.position_end = candidate.position_end;
                current.uuid = candidate.uuid;
                i
            }
            None => self.latest.push_new(id, candidate),
        };
        self.mark_changed(position);
        true
    }

    /// Takes the resume points changed since the last take, sorted by key.
    pub fn take_changed(&mut self) -> Vec<ResumePoint> {
        let mut points = Vec::with_capacity(self.changed.len());
        self.drain_changed(|point| points.push(point.to_point()));
        points
    }

    /// [`Self::take_changed`] without copying the points' strings: calls `each`
    /// with every changed point, sorted by key, then forgets the changes.
    pub fn drain_changed(&mut self, mut each: impl FnMut(ResumePointRef<'_>)) {
        let mut changed: Vec<(u128, &ResumeCandidate)> = self
            .changed
            .iter()
            .filter_map(|&i| self.latest.entries.get(i as usize))
            .map(|c| (c.sort_prefix(), c))
            .collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key().cmp(&b.1.key())));
        for (_, c) in changed {
            each(c.as_point());
        }
        for &i in &self.changed {
            if let Some(flag) = self.is_changed.get_mut(i as usize) {
                *flag = false;
            }
        }
        self.changed.clear();
    }

    /// The current resume point of a key.
    pub fn get(&self, user_id: &str, stream_id: &str) -> Option<ResumePoint> {
        self.latest
            .get(user_id, stream_id)
            .map(ResumeCandidate::to_point)
    }

    /// Number of keys held, for the state-size metric.
    pub fn len(&self) -> usize {
        self.latest.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.latest.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A take hands out the candidates in the order their keys came in (a later
    /// event of a key replaces its candidate in place); the merge publishes its
    /// changed points in the order of the key strings, also where the 16-byte
    /// prefixes its sort looks at first are equal or run out.
    #[test]
    fn candidates_are_taken_as_they_came_and_published_in_key_order() {
        let long = "x".repeat(50); // a heap-held id
        let users = [
            "user-0000000000000001",
            "user-0000000000000002",
            "user-000000000000000",
            "user-000000000000000\u{0}",
            "user-0000000000000001\u{0}",
            "a",
            "",
            "b\u{0}",
            "b",
            long.as_str(),
            "é",
        ];
        let mut candidates = ResumeCandidates::default();
        let mut arrival = Vec::new();
        for round in 0..2 {
            for (i, user) in users.iter().enumerate() {
                for stream in ["s2", "s1", "s10"] {
                    let event = PlaybackEvent {
                        uuid: format!("u{i}"),
                        stream_id: stream.into(),
                        user_id: Some((*user).to_owned()),
                        event_id: format!("e{round}"),
                        ..PlaybackEvent::default()
                    };
                    candidates.apply(&event);
                    if round == 0 {
                        arrival.push((user.to_string(), stream.to_string()));
                    }
                }
            }
        }
        let mut taken = candidates.take();
        let keys: Vec<(String, String)> = taken
            .iter()
            .map(|c| {
                (
                    c.user_id.as_str().to_owned(),
                    c.stream_id.as_str().to_owned(),
                )
            })
            .collect();
        assert_eq!(keys, arrival);
        assert!(
            taken.iter().all(|c| c.event_id.as_str() == "e1"),
            "the later event of each key"
        );
        assert!(candidates.take().is_empty());
        let mut expected = arrival;
        expected.sort();
        let mut merge = ResumeMerge::default();
        assert_eq!(merge.apply_all(&mut taken), expected.len());
        assert!(taken.is_empty(), "applied candidates are drained");
        let points: Vec<(String, String)> = merge
            .take_changed()
            .into_iter()
            .map(|p| (p.user_id, p.stream_id))
            .collect();
        assert_eq!(points, expected);
    }
}
