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
//! ever seen, like the compacted topic itself.

use playlake_schemas::{PlaybackEvent, ResumePoint, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::keys::{HashMap, HashSet, Pair, PairRef};
use crate::serde_util::hash_map_as_vec;

/// The latest event of a `(user_id, stream_id)` as seen by one source partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeCandidate {
    /// The viewer.
    pub user_id: String,
    /// Stream watched.
    pub stream_id: String,
    /// event_time of the event, epoch ms.
    pub event_time: i64,
    /// event_id of the event (breaks ties of event_time).
    pub event_id: String,
    /// position_end of the event.
    pub position_end: f64,
    /// uuid of the event.
    pub uuid: String,
}

impl ResumeCandidate {
    fn order(&self) -> (i64, &str) {
        (self.event_time, &self.event_id)
    }

    /// The candidate `event` makes, if it has a user.
    pub fn of(event: &PlaybackEvent) -> Option<Self> {
        Some(Self {
            user_id: event.user_id.clone()?,
            stream_id: event.stream_id.clone(),
            event_time: event.event_time_ms(),
            event_id: event.event_id.clone(),
            position_end: event.position_end,
            uuid: event.uuid.clone(),
        })
    }

    /// The row published for this candidate.
    pub fn to_point(&self) -> ResumePoint {
        ResumePoint {
            user_id: self.user_id.clone(),
            stream_id: self.stream_id.clone(),
            position_end: self.position_end,
            event_time: TimestampMs(self.event_time),
            uuid: self.uuid.clone(),
        }
    }
}

/// Keeps `candidate` in `map` if it is later than what is there; tells if it was.
fn keep_latest(map: &mut HashMap<Pair, ResumeCandidate>, candidate: ResumeCandidate) -> bool {
    match map.get_mut(&PairRef(&candidate.user_id, &candidate.stream_id)) {
        Some(current) if current.order() >= candidate.order() => false,
        Some(current) => {
            *current = candidate;
            true
        }
        None => {
            map.insert(
                (candidate.user_id.clone(), candidate.stream_id.clone()),
                candidate,
            );
            true
        }
    }
}

/// Source level: the latest event per key since the last take.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeCandidates {
    #[serde(with = "hash_map_as_vec")]
    pending: HashMap<Pair, ResumeCandidate>,
}

impl ResumeCandidates {
    /// Considers a deduplicated event (events without user_id are ignored).
    pub fn apply(&mut self, event: &PlaybackEvent) {
        let Some(user_id) = &event.user_id else {
            return;
        };
        let order = (event.event_time_ms(), event.event_id.as_str());
        match self.pending.get_mut(&PairRef(user_id, &event.stream_id)) {
            Some(current) if current.order() >= order => {}
            // Updated in place: the strings reuse their buffers.
            Some(current) => {
                current.event_time = event.event_time_ms();
                current.event_id.clone_from(&event.event_id);
                current.position_end = event.position_end;
                current.uuid.clone_from(&event.uuid);
            }
            None => {
                if let Some(candidate) = ResumeCandidate::of(event) {
                    let key = (candidate.user_id.clone(), candidate.stream_id.clone());
                    self.pending.insert(key, candidate);
                }
            }
        }
    }

    /// Takes the candidates gathered since the last take, sorted by key.
    pub fn take(&mut self) -> Vec<ResumeCandidate> {
        let mut out: Vec<ResumeCandidate> =
            std::mem::take(&mut self.pending).into_values().collect();
        out.sort_unstable_by(|a, b| (&a.user_id, &a.stream_id).cmp(&(&b.user_id, &b.stream_id)));
        out
    }
}

/// Merge level: the latest candidate per key over every source partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeMerge {
    #[serde(with = "hash_map_as_vec")]
    latest: HashMap<Pair, ResumeCandidate>,
    /// Keys changed since the last take.
    changed: HashSet<Pair>,
}

impl ResumeMerge {
    /// Applies a candidate; returns whether it changed the key's resume point.
    pub fn apply(&mut self, candidate: ResumeCandidate) -> bool {
        let key = PairRef(&candidate.user_id, &candidate.stream_id);
        let stale = self
            .latest
            .get(&key)
            .is_some_and(|current| current.order() >= candidate.order());
        if stale {
            return false;
        }
        if !self.changed.contains(&key) {
            self.changed.insert(key.to_owned_pair());
        }
        keep_latest(&mut self.latest, candidate)
    }

    /// Takes the resume points changed since the last take, sorted by key.
    pub fn take_changed(&mut self) -> Vec<ResumePoint> {
        let mut keys: Vec<Pair> = std::mem::take(&mut self.changed).into_iter().collect();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|key| self.latest.get(&key).map(ResumeCandidate::to_point))
            .collect()
    }

    /// The current resume point of a key.
    pub fn get(&self, user_id: &str, stream_id: &str) -> Option<ResumePoint> {
        self.latest
            .get(&PairRef(user_id, stream_id))
            .map(ResumeCandidate::to_point)
    }

    /// Number of keys held, for the state-size metric.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}
