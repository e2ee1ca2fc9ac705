//! Session merge (SPEC section 3, "Sessions"): heartbeats of one `(uuid, stream_id)`
//! become session rows, in event time, with bounded state.
//!
//! The events of a key, ordered by `(event_time, event_id)`, are cut into maximal runs
//! whose consecutive gaps are `<= session_gap` and which end at (and include) a `stop`.
//! A gap-ended session is final when `W > session_end + session_gap`; a stop-ended one
//! when `W > session_end`. (SPEC says `W >= session_end`; at exactly `W ==
//! session_end`, an event with the same millisecond and a smaller `event_id` is still
//! within the out-of-orderness bound and belongs *inside* the session, so we wait one
//! more millisecond: the rows are the same as SPEC's, and in-bound arrival order can
//! never change them.)
//!
//! ## State per open key
//! * `recent`: the events not yet frozen, sorted by `(event_time, event_id)`. An event
//!   is frozen once `event_time + session_gap < W`: from then on every on-time event
//!   comes strictly after it (an earlier one would be late), so nothing can be
//!   inserted before it any more, not even a `stop` that would split its run.
//! * `open`: the frozen prefix of the current run, folded into a `RunSummary` (first
//!   and last time, positions, watched seconds, counts, first user_id). Frozen events
//!   are folded in order, so the summary equals a computation over the sorted events.
//! * `guard`: the end of the last emitted session, kept while an on-time event could
//!   still land inside or right after it (see [`SessionOperator::is_late`]).
//!
//! So a key holds at most the events of the last `session_gap + max_out_of_orderness`
//! of event time (plus a grid step, half a gap or a minute: freezing is batched, see
//! [`freeze_quantum`]) plus one fixed-size summary, however long the session lasts.
//!
//! ## Lateness
//! An event is late for sessions when `event_time + session_gap < W` (SPEC), or when
//! it would change a session already emitted (possible only for an event beyond the
//! out-of-orderness bound). Late events are not applied; the caller reports them.
//!
//! Keys are woken by a timer index (`wake`), so advancing the watermark only touches
//! the keys that have something to finalize, freeze or forget. The index is lazy
//! ([`WakeIndex`], slots listed per wake time): a key's slot number is pushed under
//! its new wake time when that time changes, and an entry whose time no longer
//! matches the key's `wake_at` is skipped when taken. Keys live in a slab, so a
//! wake-up costs neither a key copy nor a hash lookup (per event, this index used to
//! be most of the cost). The slab is indexed by the key's [`crate::keys::Id`], so a
//! lookup compares ids in the table rather than the key strings on the heap, and
//! [`crate::source::PartitionProcessor`] judges and applies an event with one lookup.

use std::collections::{btree_map, BTreeMap, VecDeque};

use playlake_schemas::{EndedBy, EventType, PlaybackEvent, Session, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::buffered::{Buffered, IdScratch};
use crate::config::Settings;
use crate::inline_str::InlineStr;
use crate::keys::{pair_id, Id, IdMap, Pair};
use crate::time::{WatchedSum, Watermark};

/// `(uuid, stream_id)`.
type Key = Pair;

/// What a not-yet-frozen event contributes to its session: the checkpointed form of a
/// [`Buffered`] event (without its order key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    event_type: EventType,
    user_id: Option<String>,
    position_start: f64,
    position_end: f64,
}

/// A run of consecutive events of one key, summarized: everything a [`Session`] row
/// needs, and enough to append the next event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunSummary {
    start: i64,
    end: i64,
    end_id: InlineStr,
    ends_with_stop: bool,
    user_id: Option<String>,
    position_start: f64,
    position_end: f64,
    watched: WatchedSum,
    event_count: i64,
    seek_count: i64,
    /// [`Session::start_ordinal`], fixed when the run begins (see [`Guard`]).
    #[serde(default)]
    start_ordinal: u32,
}

impl RunSummary {
    /// A run beginning with the event `e`, after the key's last emitted session
    /// (`guard`, if still held).
    fn first(e: &Buffered, guard: Option<&Guard>) -> Self {
        let mut run = RunSummary {
            start: e.t,
            end: e.t,
            end_id: InlineStr::EMPTY,
            ends_with_stop: false,
            user_id: None,
            position_start: e.position_start,
            position_end: e.position_end,
            watched: WatchedSum::ZERO,
            event_count: 0,
            seek_count: 0,
            start_ordinal: guard.map_or(0, |g| g.ordinal_of_start(e.t)),
        };
        run.push(e);
        run.set_end_id(e);
        run
    }

    /// Appends the next event in `(event_time, event_id)` order, all but its id: the
    /// caller gives the run the id of its last event ([`Self::set_end_id`]) once done
    /// appending, so that a fold of many events decodes and copies one id, not each.
    fn push(&mut self, e: &Buffered) {
        let event_type = e.event_type();
        self.end = e.t;
        self.ends_with_stop = event_type == EventType::Stop;
        if self.user_id.is_none() {
            self.user_id = e.user_id().map(str::to_owned);
        }
        self.position_end = e.position_end;
        if event_type == EventType::Seek {
            self.seek_count += 1;
        } else {
            self.watched += WatchedSum::of_seconds(e.position_end - e.position_start);
        }
        self.event_count += 1;
    }

    /// Records `e`, the last event appended, as the run's end.
    fn set_end_id(&mut self, e: &Buffered) {
        let mut scratch: IdScratch = [0; 36];
        self.end_id.set(e.event_id(&mut scratch));
    }

    /// Whether `next` (later in order) starts a new run instead of extending this one.
    fn cut_before(&self, next_t: i64, gap_ms: i64) -> bool {
        self.ends_with_stop || next_t.saturating_sub(self.end) > gap_ms
    }

    fn into_session(self, key: &Key) -> Session {
        Session {
            uuid: key.0.clone(),
            stream_id: key.1.clone(),
            user_id: self.user_id,
            session_start: TimestampMs(self.start),
            session_end: TimestampMs(self.end),
            position_start: self.position_start,
            position_end: self.position_end,
            watched_seconds: self.watched.seconds(),
            event_count: self.event_count,
            seek_count: self.seek_count,
            ended_by: if self.ends_with_stop {
                EndedBy::Stop
            } else {
                EndedBy::Gap
            },
            start_ordinal: self.start_ordinal,
        }
    }
}

/// The end of the last session emitted for a key.
///
/// It also numbers sessions that share a start ([`Session::start_ordinal`]): only a
/// session entirely within one millisecond and ended by a `stop` can be followed by
/// one starting in that same millisecond. Such a successor begins while this guard
/// is held: its first event is on time only while `t + session_gap >= W`, and the
/// guard of a `stop`-ended session is forgotten only once `end + session_gap < W`,
/// after the freeze step of the same wake-up has begun the successor's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Guard {
    end: i64,
    end_id: InlineStr,
    by_stop: bool,
    /// The session started at `end` too (all its events in one millisecond).
    #[serde(default)]
    starts_at_end: bool,
    /// Its [`Session::start_ordinal`].
    #[serde(default)]
    start_ordinal: u32,
}

impl Guard {
    /// The ordinal of the next session of the key if it starts at `t`.
    fn ordinal_of_start(&self, t: i64) -> u32 {
        if self.starts_at_end && t == self.end {
            self.start_ordinal.saturating_add(1)
        } else {
            0
        }
    }
}

/// A key's unfrozen events, sorted by `(event_time, event_id)` with unique keys.
///
/// A deque rather than an ordered map: events arrive nearly in order, so an insert is
/// almost always a push at the back, and freezing pops from the front (an ordered
/// map's node shifts its whole array on each pop). Serialized like the ordered map it
/// replaced: a sequence of `[key, value]` pairs in key order. Each event is a
/// [`Buffered`], one cache line with its ids inline: buffering an event allocates
/// nothing (past the deque's own growth), and freezing it frees nothing.
///
/// It also counts its *breaks*: the places between two consecutive events where a
/// run ends (the first is a `stop`, or the gap exceeds `session_gap`). Without a
/// break, the first run ends at the last event, so [`first_run_final_after`] need
/// not walk the buffer: that walk, over every event of the last half gap and more
/// at every wake-up of a key, was a third of the wake-up work.
#[derive(Debug, Clone, Default, PartialEq)]
struct Recent {
    events: VecDeque<Buffered>,
    /// Breaks between consecutive events, for the `session_gap` the counting
    /// methods are given (recounted by [`Recent::recount`] after a restore).
    breaks: usize,
}

/// Whether a run ends between an event at `t` (a `stop` when `stop`) and the next
/// event, at `next_t`.
fn breaks_between(t: i64, stop: bool, next_t: i64, gap: i64) -> bool {
    stop || next_t.saturating_sub(t) > gap
}

/// Whether a run ends between `e` and the next event, `next`.
fn breaks_after(e: &Buffered, next: &Buffered, gap: i64) -> bool {
    breaks_between(e.t, e.is_stop(), next.t, gap)
}

impl Recent {
    /// Inserts, or replaces the event of an equal key (as a map would); returns
    /// whether the event came after every one held (a push at the back).
    fn insert(&mut self, event: Buffered, gap: i64) -> bool {
        let after_last = self
            .events
            .back()
            .is_none_or(|last| last.cmp_order(&event).is_lt());
        if after_last {
            if let Some(last) = self.events.back() {
                self.breaks += usize::from(breaks_after(last, &event, gap));
            }
            self.events.push_back(event);
            return true;
        }
        match self.events.binary_search_by(|e| e.cmp_order(&event)) {
            Ok(i) => {
                if let Some(slot) = self.events.get_mut(i) {
                    *slot = event;
                }
            }
            Err(i) => self.events.insert(i, event),
        }
        // Out of order within the key: rare, so counted afresh.
        self.recount(gap);
        false
    }

    /// Counts the breaks afresh.
    fn recount(&mut self, gap: i64) {
        self.breaks = self
            .events
            .iter()
            .zip(self.events.iter().skip(1))
            .filter(|(e, next)| breaks_after(e, next, gap))
            .count();
    }

    fn first(&self) -> Option<&Buffered> {
        self.events.front()
    }

    fn last(&self) -> Option<&Buffered> {
        self.events.back()
    }

    /// Drops the first `n` events (they were folded into a summary).
    fn drop_first(&mut self, n: usize, gap: i64) {
        let n = n.min(self.events.len());
        // The breaks after each dropped event (the last one's too: its next stays).
        let gone = self
            .events
            .iter()
            .zip(self.events.iter().skip(1))
            .take(n)
            .filter(|(e, next)| breaks_after(e, next, gap))
            .count();
        self.breaks = self.breaks.saturating_sub(gone);
        self.events.drain(..n);
    }

    fn iter(&self) -> impl Iterator<Item = &Buffered> {
        self.events.iter()
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Serialize for Recent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.events.iter().map(|e| {
            let mut scratch: IdScratch = [0; 36];
            let key = (e.t, e.event_id(&mut scratch).to_owned());
            let value = Pending {
                event_type: e.event_type(),
                user_id: e.user_id().map(str::to_owned),
                position_start: e.position_start,
                position_end: e.position_end,
            };
            (key, value)
        }))
    }
}

impl<'de> Deserialize<'de> for Recent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pairs = Vec::<((i64, String), Pending)>::deserialize(deserializer)?;
        let mut recent = Recent::default();
        for ((t, id), v) in pairs {
            let event = Buffered::new(
                t,
                &id,
                v.event_type,
                v.user_id.as_deref(),
                v.position_start,
                v.position_end,
            );
            // Breaks are counted by the operator, which knows the gap, once restored.
            recent.insert(event, 0);
        }
        Ok(recent)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct KeyState {
    /// Boxed: touched only when the key wakes, while the rest of the slot is read
    /// for every event of the key, so it stays out of the slot's cache lines.
    open: Option<Box<RunSummary>>,
    recent: Recent,
    guard: Option<Guard>,
    /// The entry of this key in the wake index, if any.
    wake_at: Option<i64>,
}

impl KeyState {
    /// No open run, no buffered event, no guard: the key can be forgotten.
    fn holds_nothing(&self) -> bool {
        self.open.is_none() && self.recent.is_empty() && self.guard.is_none()
    }
}

/// What the viewer and daily partials last recorded for a key's uuid
/// ([`crate::partials`]), so that the next event of the key can skip set inserts that
/// would change nothing: most events of a key fall in the window and the day of the
/// one before. A mark only says "the set already holds it", so a blank mark (a new,
/// reused or restored slot: marks are not checkpointed) costs an insert, never a
/// result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    /// Start of the viewer window the key's uuid was last added to.
    pub(crate) window: Option<i64>,
    /// End of the day the key's uuid was last added to.
    pub(crate) day: Option<i64>,
    /// The user id (by id) last added to that day's users for this key.
    pub(crate) day_user: Option<Id>,
}

/// The timer index: the slots to wake per wake time, stale entries included (see
/// [`SessionOperator`]).
///
/// Wake times cluster: freeze wake-ups fall on a grid of half a gap or a minute
/// ([`freeze_quantum`]), so most keys share a handful of times. Kept as a list of
/// slots per time, a wake-up costs an append and a read in sequence, where a heap of
/// `(time, slot)` paid a sift through a table of every key for each push and pop.
#[derive(Debug, Clone, Default)]
struct WakeIndex {
    at: BTreeMap<i64, Vec<u32>>,
    /// The earliest time in `at`: most watermark advances wake nobody, and this
    /// tells so with one comparison.
    first: Option<i64>,
    /// Emptied lists kept for their capacity.
    spare: Vec<Vec<u32>>,
}

/// Emptied lists a [`WakeIndex`] keeps for reuse.
const SPARE_LISTS: usize = 64;

impl WakeIndex {
    fn push(&mut self, at: i64, slot: u32) {
        self.first = Some(self.first.map_or(at, |first| first.min(at)));
        match self.at.entry(at) {
            btree_map::Entry::Occupied(e) => e.into_mut().push(slot),
            btree_map::Entry::Vacant(e) => {
                let mut slots = self.spare.pop().unwrap_or_default();
                slots.push(slot);
                e.insert(slots);
            }
        }
    }

    /// Moves every entry due at `w` (time `<= w`) to `due`, earliest first.
    fn take_due(&mut self, w: i64, due: &mut Vec<(i64, u32)>) {
        while let Some(entry) = self.at.first_entry() {
            if *entry.key() > w {
                break;
            }
            let (at, mut slots) = entry.remove_entry();
            due.extend(slots.iter().map(|&slot| (at, slot)));
            slots.clear();
            if self.spare.len() < SPARE_LISTS {
                self.spare.push(slots);
            }
        }
        self.first = self.at.first_key_value().map(|(&at, _)| at);
    }

    /// Whether some entry is due at `w`.
    fn any_due(&self, w: i64) -> bool {
        self.first.is_some_and(|first| first <= w)
    }
}

/// A key's state in the slab, with the key itself (the wake index and the advance
/// loop refer to keys by slot number: no key copy, no hash lookup per wake-up).
#[derive(Debug, Clone, Default)]
struct Slot {
    key: Key,
    /// `pair_id(key)`: the slot's entry in the index.
    id: Id,
    state: KeyState,
    /// Whether the slot holds a key (freed slots wait in `free` for reuse).
    live: bool,
    marks: Marks,
}

/// The session-merge operator of one input partition (see the module docs).
///
/// State is a slab of [`Slot`]s indexed by `(uuid, stream_id)`; the wake index
/// lists slots per wake time. An entry is live only while it equals its slot's
/// `wake_at` (a freed and reused slot cannot be woken early: its own live entry has
/// the same time). The serialized form is the keyed one (`keys` as sorted `[key,
/// state]` pairs, `wake` grouped by time), so checkpoints do not depend on slot
/// numbers; the wake index is rebuilt from the keys' `wake_at` on restore.
#[derive(Debug, Clone)]
pub struct SessionOperator {
    gap_ms: i64,
    index: IdMap<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots by the watermark at which their key needs work, stale entries
    /// included.
    wake: WakeIndex,
    /// Sessions finalized and not yet taken.
    finished: Vec<Session>,
    /// Scratch of [`Self::advance`]: the wake entries due (kept for its capacity;
    /// empty between calls).
    due: Vec<(i64, u32)>,
}

/// The checkpointed form of [`SessionOperator`] (the same as before the slab).
#[derive(Serialize)]
struct SessionRepr<'a> {
    gap_ms: i64,
    keys: Vec<(&'a Key, &'a KeyState)>,
    wake: Vec<(i64, Vec<&'a Key>)>,
    finished: &'a [Session],
}

#[derive(Deserialize)]
struct SessionReprOwned {
    gap_ms: i64,
    keys: Vec<(Key, KeyState)>,
    /// Read for compatibility; the index is rebuilt from each key's `wake_at`.
    #[allow(dead_code)]
    wake: serde::de::IgnoredAny,
    finished: Vec<Session>,
}

impl Serialize for SessionOperator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut keys: Vec<(&Key, &KeyState)> = self
            .slots
            .iter()
            .filter(|s| s.live)
            .map(|s| (&s.key, &s.state))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut wake: BTreeMap<i64, Vec<&Key>> = BTreeMap::new();
        for (key, state) in &keys {
            if let Some(at) = state.wake_at {
                wake.entry(at).or_default().push(key);
            }
        }
        SessionRepr {
            gap_ms: self.gap_ms,
            keys,
            wake: wake.into_iter().collect(),
            finished: &self.finished,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionOperator {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = SessionReprOwned::deserialize(deserializer)?;
        let mut op = SessionOperator {
            gap_ms: repr.gap_ms,
            index: IdMap::with_capacity_and_hasher(repr.keys.len(), Default::default()),
            slots: Vec::with_capacity(repr.keys.len()),
            free: Vec::new(),
            wake: WakeIndex::default(),
            finished: repr.finished,
            due: Vec::new(),
        };
        for (key, mut state) in repr.keys {
            // Checkpoints written before keys were freed by the wake-up that emptied
            // them hold such keys: nothing to restore.
            if state.holds_nothing() {
                continue;
            }
            state.recent.recount(op.gap_ms);
            let slot = u32::try_from(op.slots.len())
                .map_err(|_| serde::de::Error::custom("more than 2^32 session keys"))?;
            if let Some(at) = state.wake_at {
                op.wake.push(at, slot);
            }
            let id = pair_id(&key.0, &key.1);
            op.index.insert(id, slot);
            op.slots.push(Slot {
                key,
                id,
                state,
                live: true,
                marks: Marks::default(),
            });
        }
        Ok(op)
    }
}

/// Equal when they hold the same keys with the same states (slot numbers and stale
/// wake entries are not part of the meaning).
impl PartialEq for SessionOperator {
    fn eq(&self, other: &Self) -> bool {
        self.gap_ms == other.gap_ms
            && self.finished == other.finished
            && self.index.len() == other.index.len()
            && self.slots.iter().filter(|s| s.live).all(|s| {
                other
                    .index
                    .get(&s.id)
                    .and_then(|&o| other.slots.get(o as usize))
                    .is_some_and(|o| o.state == s.state)
            })
    }
}

impl SessionOperator {
    /// An empty operator.
    pub fn new(settings: &Settings) -> Self {
        Self {
            gap_ms: settings.session_gap_ms(),
            index: IdMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            wake: WakeIndex::default(),
            finished: Vec::new(),
            due: Vec::new(),
        }
    }

    /// The slot of the key whose id is `id`, allocated (for `event`'s key) if it has
    /// none.
    fn slot_of(&mut self, found: Option<u32>, id: Id, event: &PlaybackEvent) -> u32 {
        if let Some(slot) = found {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                // More than 2^32 live keys cannot fit in memory anyway; saturating
                // keeps this total (the slot would then be shared, never out of
                // bounds).
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot::default());
                slot
            }
        };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            // Reuses the freed slot's buffers.
            event.uuid.clone_into(&mut s.key.0);
            event.stream_id.clone_into(&mut s.key.1);
            s.id = id;
            s.state = KeyState::default();
            s.live = true;
            s.marks = Marks::default();
        }
        self.index.insert(id, slot);
        slot
    }

    /// The slot of the key whose id is `id`, if it has one: the first of the three
    /// steps that bring a key's state into the cache before [`Self::offer`] (see
    /// [`crate::source::PartitionProcessor::process_group`]).
    pub(crate) fn find(&self, id: Id) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Prefetches the slot `slot` (from [`Self::find`]).
    pub(crate) fn prefetch_slot(&self, slot: u32) {
        if let Some(s) = self.slots.get(slot as usize) {
            crate::prefetch::lines(s);
        }
    }

    /// Prefetches the back of slot `slot`'s buffer and the line after it, where the
    /// next event goes (after [`Self::prefetch_slot`]: this reads the slot).
    pub(crate) fn prefetch_back(&self, slot: u32) {
        if let Some(back) = self
            .slots
            .get(slot as usize)
            .and_then(|s| s.state.recent.last())
        {
            crate::prefetch::lines(back);
            crate::prefetch::after(back);
        }
    }

    /// Whether `event` is late for sessions at watermark `w` (see the module docs).
    pub fn is_late(&self, event: &PlaybackEvent, w: Watermark) -> bool {
        let found = self
            .index
            .get(&pair_id(&event.uuid, &event.stream_id))
            .copied();
        self.is_late_in(found, event, w)
    }

    /// Judges `event` (whose `(uuid, stream_id)` id is `id`) at watermark `w` and
    /// applies it unless late, with one index lookup; returns the key's marks, or
    /// `None` when the event was late.
    ///
    /// `hint` is the slot [`Self::find`] gave for `id` a little earlier (see
    /// [`crate::source::PartitionProcessor::process_group`]): taken without a lookup
    /// while that slot still holds the key, since the events in between may have
    /// freed it (and another key reused it) or given the key a slot.
    pub(crate) fn offer(
        &mut self,
        event: &PlaybackEvent,
        id: Id,
        hint: Option<u32>,
        w: Watermark,
    ) -> Option<&mut Marks> {
        let held = hint.filter(|&slot| {
            self.slots
                .get(slot as usize)
                .is_some_and(|s| s.live && s.id == id)
        });
        let found = held.or_else(|| self.index.get(&id).copied());
        if self.is_late_in(found, event, w) {
            return None;
        }
        let slot = self.apply_in(found, id, event);
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.live)
            .map(|s| &mut s.marks)
    }

    /// Forgets every key's marks: for when the partials drop open windows and days
    /// that on-time events can still reach (drain mode).
    pub(crate) fn clear_marks(&mut self) {
        for s in &mut self.slots {
            s.marks = Marks::default();
        }
    }

    /// [`Self::is_late`] for the key's slot `found` (if it has one).
    fn is_late_in(&self, found: Option<u32>, event: &PlaybackEvent, w: Watermark) -> bool {
        let t = event.event_time_ms();
        if t.saturating_add(self.gap_ms) < w.millis() {
            return true;
        }
        let Some(guard) = found
            .and_then(|slot| self.slots.get(slot as usize))
            .and_then(|s| s.state.guard.as_ref())
        else {
            return false;
        };
        // Inside (or before) the emitted session: it would change it. (Before it, an
        // on-time event is within `session_gap` of its start, so it would join it.)
        if (t, event.event_id.as_bytes()) <= (guard.end, guard.end_id.as_bytes()) {
            return true;
        }
        // Right after a gap-ended session: it would extend it.
        !guard.by_stop && t.saturating_sub(guard.end) <= self.gap_ms
    }

    /// Applies an on-time, deduplicated event. The caller checked [`Self::is_late`].
    pub fn apply(&mut self, event: &PlaybackEvent) {
        let id = pair_id(&event.uuid, &event.stream_id);
        let found = self.index.get(&id).copied();
        self.apply_in(found, id, event);
    }

    /// [`Self::apply`] for the key whose id is `id` and slot `found` (if any);
    /// returns the key's slot.
    fn apply_in(&mut self, found: Option<u32>, id: Id, event: &PlaybackEvent) -> u32 {
        let slot = self.slot_of(found, id, event);
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return slot;
        };
        let had_events = !s.state.recent.is_empty();
        let at_back = s.state.recent.insert(Buffered::of(event), self.gap_ms);
        // The common case, a non-`stop` event after the key's others, can only delay
        // the key's next wake-up: the first event (its freeze time) and the guard are
        // unchanged, and the first run either ends later or not at all. An early
        // wake-up is harmless (it settles nothing and reschedules), so the wake time
        // is left as it is rather than recomputed by a scan of `recent`.
        if at_back && had_events && event.event_type != EventType::Stop && s.state.wake_at.is_some()
        {
            return slot;
        }
        self.reschedule_after(slot, i64::MIN);
        slot
    }

    /// Finalizes, freezes and forgets what watermark `w` allows. Drain mode passes
    /// [`Watermark::MAX`], which emits every open session.
    #[inline]
    pub fn advance(&mut self, w: Watermark) {
        // Called for every event; most calls find nothing due.
        if self.wake.any_due(w.millis()) {
            self.wake_due(w);
        }
    }

    /// [`Self::advance`] when some key is due.
    fn wake_due(&mut self, w: Watermark) {
        // The keys due are taken out first (settling one never makes another due at
        // `w`: it reschedules after `w`), so that their slots and the fronts of their
        // buffers, each a cache miss, are requested together: freeze wake-ups come in
        // bursts (see [`freeze_quantum`]).
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.wake.take_due(w.millis(), &mut due);
        // Pipelined: a key's slot is requested `2 * WAKE_AHEAD` keys before its turn
        // and the lines it points to (the buffer's first and last events, the open
        // summary) `WAKE_AHEAD` keys before, when the slot has arrived. A burst can
        // hold most keys: lines requested for all of them at once would be evicted
        // before their turn.
        let prefetch_slot = |slots: &[Slot], slot: u32| {
            if let Some(s) = slots.get(slot as usize) {
                crate::prefetch::lines(s);
            }
        };
        let prefetch_state = |slots: &[Slot], slot: u32| {
            if let Some(s) = slots.get(slot as usize) {
                // A freeze wake-up folds the events of a grid step into the open
                // summary: the first few events and the summary; the next wake time
                // reads the last event.
                for event in s.state.recent.iter().take(FREEZE_PREFETCH) {
                    crate::prefetch::lines(event);
                }
                if let Some(last) = s.state.recent.last() {
                    crate::prefetch::lines(last);
                }
                if let Some(open) = s.state.open.as_deref() {
                    crate::prefetch::lines(open);
                }
            }
        };
        for &(_, slot) in due.iter().take(2 * WAKE_AHEAD) {
            prefetch_slot(&self.slots, slot);
        }
        for &(_, slot) in due.iter().take(WAKE_AHEAD) {
            prefetch_state(&self.slots, slot);
        }
        for (j, &(at, slot)) in due.iter().enumerate() {
            if let Some(&(_, ahead)) = due.get(j + 2 * WAKE_AHEAD) {
                prefetch_slot(&self.slots, ahead);
            }
            if let Some(&(_, ahead)) = due.get(j + WAKE_AHEAD) {
                prefetch_state(&self.slots, ahead);
            }
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if !s.live || s.state.wake_at != Some(at) {
                continue; // stale: the key was rescheduled (or freed) since
            }
            s.state.wake_at = None;
            settle(&mut s.state, &s.key, self.gap_ms, w, &mut self.finished);
            // `settle` leaves nothing due at `w`; the floor only guarantees
            // progress (and that the key lands in a later entry).
            self.reschedule_after(slot, w.millis());
        }
        due.clear();
        self.due = due;
    }

    /// Takes the sessions finalized so far, sorted by natural key.
    pub fn take_finished(&mut self) -> Vec<Session> {
        let mut out = std::mem::take(&mut self.finished);
        // Borrowed: `Session::key` clones the strings, twice per comparison. The
        // start ordinal tells apart sessions that share a start (see [`Guard`]).
        out.sort_by(|a, b| {
            (&a.uuid, &a.stream_id, a.session_start, a.start_ordinal).cmp(&(
                &b.uuid,
                &b.stream_id,
                b.session_start,
                b.start_ordinal,
            ))
        });
        out
    }

    /// Number of keys with state (open sessions or guards), for the state-size metric.
    pub fn open_keys(&self) -> usize {
        self.index.len()
    }

    /// Number of unfrozen events held, for the state-size metric.
    pub fn buffered_events(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.live)
            .map(|s| s.state.recent.len())
            .sum()
    }

    /// Recomputes a key's wake time (never before `floor + 1`), or frees the key's
    /// slot if it holds nothing.
    fn reschedule_after(&mut self, slot: u32, floor: i64) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let state = &mut s.state;
        let next = next_wake(state, self.gap_ms).map(|at| at.max(floor.saturating_add(1)));
        if next != state.wake_at {
            // The old entry, if any, goes stale: it no longer equals `wake_at`.
            state.wake_at = next;
            if let Some(at) = next {
                self.wake.push(at, slot);
            }
        }
        // A key with nothing to wake for may hold nothing at all: a wake-up that
        // emitted its last session and forgot its guard (and cleared `wake_at`
        // before settling) ends here too, so its slot is freed, not kept forever.
        if s.live && next.is_none() && state.holds_nothing() {
            self.index.remove(&s.id);
            s.live = false;
            self.free.push(slot);
        }
    }
}

/// Buffered events [`SessionOperator::advance`] prefetches per due key: a freeze
/// wake-up folds a grid step of events (12 at the default 30 s gap and 5 s
/// heartbeats, see [`freeze_quantum`]); the buffer is contiguous, so the first few
/// lines set the hardware prefetcher going for the rest.
const FREEZE_PREFETCH: usize = 4;

/// How many due keys ahead [`SessionOperator::advance`] requests a key's buffered
/// events (and twice that, its slot).
const WAKE_AHEAD: usize = 4;

/// The watermark at which [`settle`] must next run for this key: the smallest at which
/// it emits the first run or forgets the guard, or (on a coarser grid, see
/// [`freeze_quantum`]) freezes the first event.
fn next_wake(state: &KeyState, gap: i64) -> Option<i64> {
    // Each is the largest watermark at which nothing happens yet, plus one.
    let freeze = state.recent.first().map(|e| {
        round_up(
            e.t.saturating_add(gap).saturating_add(1),
            freeze_quantum(gap),
        )
    });
    let emit = first_run_final_after(state, gap).map(|at| at.saturating_add(1));
    let forget = state
        .guard
        .as_ref()
        .map(|g| guard_reach(g, gap).saturating_add(gap).saturating_add(1));
    [freeze, emit, forget].into_iter().flatten().min()
}

/// The grid of freeze wake-ups: half the session gap, or a minute
/// ([`FREEZE_GRID_FLOOR_MS`]) where that is longer and within twice the gap (at
/// least 1 ms).
///
/// Freezing an event later than it could be changes no result (a frozen event and an
/// unfrozen one make the same session; emission and the guard keep exact wake-ups),
/// it only keeps it in `recent` a little longer. Waking on a grid freezes several
/// events per wake-up instead of one, which divides the timer work (an index push and
/// take, and the misses on the key's slot, buffer and summary) by the number of
/// events per grid step, and puts most keys' wake-ups on a few shared times
/// ([`WakeIndex`]). The minute matters for short gaps: at the default 30 s gap and
/// 5 s heartbeats a wake-up folds 12 events instead of 3 (paired runs of the
/// processor bench: +3%), for at most a minute more of buffered events per key.
fn freeze_quantum(gap: i64) -> i64 {
    let half = gap / 2;
    half.max(FREEZE_GRID_FLOOR_MS.min(gap.saturating_mul(2)))
        .max(1)
}

/// The shortest freeze grid for gaps of 30 s and more (see [`freeze_quantum`]).
const FREEZE_GRID_FLOOR_MS: i64 = 60_000;

/// `x` rounded up to a multiple of `q > 0` (saturating).
fn round_up(x: i64, q: i64) -> i64 {
    match x.rem_euclid(q) {
        0 => x,
        r => x.saturating_add(q - r),
    }
}

/// The last instant an event could extend or fall inside an emitted session.
fn guard_reach(guard: &Guard, gap: i64) -> i64 {
    if guard.by_stop {
        guard.end
    } else {
        guard.end.saturating_add(gap)
    }
}

/// [`final_after`] of the key's first run, without building its summary (this runs on
/// every applied event).
fn first_run_final_after(state: &KeyState, gap: i64) -> Option<i64> {
    let mut last: Option<(i64, bool)> = state.open.as_ref().map(|o| (o.end, o.ends_with_stop));
    let continues = |last: Option<(i64, bool)>| match (last, state.recent.first()) {
        (Some((end, stop)), Some(first)) => !breaks_between(end, stop, first.t, gap),
        _ => true,
    };
    if state.recent.breaks == 0 && continues(last) {
        // One run from the open summary (if any) to the last event.
        if let Some(e) = state.recent.last() {
            last = Some((e.t, e.is_stop()));
        }
        return last.map(|(end, stop)| if stop { end } else { end.saturating_add(gap) });
    }
    for e in state.recent.iter() {
        if let Some((end, stop)) = last {
            if stop || e.t.saturating_sub(end) > gap {
                break;
            }
        }
        last = Some((e.t, e.is_stop()));
    }
    last.map(|(end, stop)| if stop { end } else { end.saturating_add(gap) })
}

/// The key's first run (the open summary plus the recent events that continue it) and
/// how many recent events it takes.
fn first_run(state: &KeyState, gap: i64) -> Option<(RunSummary, usize)> {
    let mut run = state.open.as_deref().cloned();
    let mut consumed = 0;
    let mut last = None;
    for e in state.recent.iter() {
        if let Some(r) = run.as_mut() {
            if r.cut_before(e.t, gap) {
                break;
            }
            r.push(e);
        } else {
            run = Some(RunSummary::first(e, state.guard.as_ref()));
        }
        consumed += 1;
        last = Some(e);
    }
    if let (Some(r), Some(e)) = (run.as_mut(), last) {
        r.set_end_id(e);
    }
    run.map(|r| (r, consumed))
}

/// Brings one key up to watermark `w`: freezes old events, emits final sessions,
/// forgets a guard no on-time event can reach.
fn settle(state: &mut KeyState, key: &Key, gap: i64, w: Watermark, out: &mut Vec<Session>) {
    let w = w.millis();
    // 1. Freeze: fold events with `t + gap < W` into the open summary, in order. A run
    //    completed among frozen events is final (its end is frozen too). The events
    //    are read in place and dropped together; a run takes the id of its last
    //    event once, when it is emitted or the fold ends.
    let frozen = state
        .recent
        .iter()
        .take_while(|e| e.t.saturating_add(gap) < w)
        .count();
    if frozen > 0 {
        let mut open = state.open.take();
        let mut guard = state.guard.take();
        let mut previous: Option<&Buffered> = None;
        for e in state.recent.iter().take(frozen) {
            match open.as_mut() {
                Some(run) if !run.cut_before(e.t, gap) => run.push(e),
                _ => {
                    if let Some(mut done) = open.take() {
                        // Its last event is the previous one folded, if any (else
                        // it came in whole, its end id set).
                        if let Some(p) = previous {
                            done.set_end_id(p);
                        }
                        guard = Some(emit(*done, key, out));
                    }
                    open = Some(Box::new(RunSummary::first(e, guard.as_ref())));
                }
            }
            previous = Some(e);
        }
        if let (Some(run), Some(p)) = (open.as_mut(), previous) {
            run.set_end_id(p);
        }
        state.open = open;
        state.guard = guard;
        state.recent.drop_first(frozen, gap);
    }
    // 2. Emit the first run while it is final.
    // Decide from the summary-free scan first: building the run clones the open
    // summary, which most wake-ups (a run that is not final yet) do not need.
    while first_run_final_after(state, gap).is_some_and(|at| w > at) {
        let Some((run, consumed)) = first_run(state, gap) else {
            break;
        };
        state.recent.drop_first(consumed, gap);
        state.open = None;
        state.guard = Some(emit(run, key, out));
    }
    // 3. Forget the guard once every event that could reach it is late anyway.
    if let Some(guard) = &state.guard {
        if guard_reach(guard, gap).saturating_add(gap) < w {
            state.guard = None;
        }
    }
}

/// Emits `run` as a session row; returns the key's new guard.
fn emit(run: RunSummary, key: &Key, out: &mut Vec<Session>) -> Guard {
    let guard = Guard {
        end: run.end,
        end_id: run.end_id.clone(),
        by_stop: run.ends_with_stop,
        starts_at_end: run.start == run.end,
        start_ordinal: run.start_ordinal,
    };
    out.push(run.into_session(key));
    guard
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
