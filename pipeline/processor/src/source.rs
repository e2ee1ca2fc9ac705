//! The source level: everything one input partition computes on its own.
//!
//! A [`PartitionProcessor`] owns the state of one partition of `<prefix>.events`
//! (it moves with the partition on a rebalance, and is checkpointed with that
//! partition's position). Per valid event, in partition order:
//!
//! 1. **dedup** by `(uuid, event_id)` ([`crate::dedup`]); a copy is applied nowhere;
//! 2. **late verdicts** against the partition's current watermark, per operator
//!    ([`crate::late`]); the event is applied to every operator it is not late for:
//!    sessions ([`crate::session`]: the input is keyed by uuid, so a `(uuid,
//!    stream_id)` lives on this partition), the viewer and daily partials
//!    ([`crate::partials`]) and resume candidates ([`crate::resume`]);
//! 3. the **watermark** advances with the event time, and whatever it makes final is
//!    finalized at once, so verdicts and outputs depend only on the input sequence,
//!    never on batch boundaries.
//!
//! [`PartitionProcessor::take_output`] hands the finished sessions (to
//! `<prefix>.sessions`), partials and resume candidates (to the repartition topics,
//! for [`crate::merge`] and [`crate::resume::ResumeMerge`]) to the I/O layer, sorted
//! by key but for the resume candidates (see [`crate::resume`]). With one partition
//! the watermark needs no wall clock; idleness is reported in
//! [`PartitionProcessor::announcement`] for the merge level.

use playlake_schemas::{PlaybackEvent, Session};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::dedup::{Dedup, DedupEntry};
use crate::keys::EventIds;
use crate::late::{EventOutcome, Late, Operator};
use crate::partials::{DailyPartial, PartialAggregator, ViewerPartial};
use crate::resume::{ResumeCandidate, ResumeCandidates};
use crate::session::SessionOperator;
use crate::time::Watermark;
use crate::watermark::{PartitionId, SourceWatermark, Watermarks};

/// Events whose state [`PartitionProcessor::process_group`] warms together: enough
/// misses in flight to fill the core's queue of outstanding loads, few enough that
/// the group's state stays in the first-level caches until it is applied.
pub const GROUP: usize = 32;

/// How many events ahead [`PartitionProcessor::process_group`] requests a session
/// slot again while applying a group (and half as many ahead, the back of its
/// buffer, which reads the slot).
///
/// The group's warming requests every slot up front, but applying 32 events (their
/// wake-ups, partials and resume candidates included) touches enough other memory
/// that the later slots were evicted again before their turn: the first read of the
/// slot was 95% of `offer`'s time. Requested again a few events ahead, the slot is
/// in the cache when its event comes (paired runs of the processor bench: +9% at 4
/// events ahead; 2 and 8 were slower than 4). The back of the buffer was requested
/// for the whole group too, each request waiting for its slot to arrive: 2 events
/// ahead instead, +3%.
const REFETCH_AHEAD: usize = 4;

/// What the source level produced since the last take.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceOutput {
    /// Final sessions, sorted by `(uuid, stream_id, session_start)`.
    pub sessions: Vec<Session>,
    /// Viewer partials, sorted by `(stream_id, window_start)`.
    pub viewer_partials: Vec<ViewerPartial>,
    /// Daily partials, sorted by `(day, stream_id)`.
    pub daily_partials: Vec<DailyPartial>,
    /// Resume candidates, in the order their keys came in since the last take
    /// (unsorted: the merge keeps a maximum per key, which no order changes).
    pub resume_candidates: Vec<ResumeCandidate>,
}

impl SourceOutput {
    /// Whether there is nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.viewer_partials.is_empty()
            && self.daily_partials.is_empty()
            && self.resume_candidates.is_empty()
    }
}

/// How much state a [`PartitionProcessor`] holds, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateSizes {
    /// `(uuid, stream_id)` keys with an open session or a guard.
    pub session_keys: usize,
    /// Session events not yet folded into a summary.
    pub session_events: usize,
    /// `(uuid, event_id)` pairs remembered for dedup.
    pub dedup_ids: usize,
    /// Open viewer windows and days of the partials.
    pub open_results: usize,
}

/// All operator state of one input partition (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionProcessor {
    partition: PartitionId,
    watermarks: Watermarks,
    dedup: Dedup,
    sessions: SessionOperator,
    partials: PartialAggregator,
    resume: ResumeCandidates,
}

impl PartitionProcessor {
    /// Fresh state for input partition `partition`, assigned at wall clock `now_ms`.
    pub fn new(settings: &Settings, partition: PartitionId, now_ms: i64) -> Self {
        let mut watermarks = Watermarks::for_events(settings);
        watermarks.add_partition(partition, now_ms);
        Self {
            partition,
            watermarks,
            dedup: Dedup::new(settings),
            sessions: SessionOperator::new(settings),
            partials: PartialAggregator::new(settings, partition),
            resume: ResumeCandidates::default(),
        }
    }

    /// Call after restoring from a checkpoint: restarts the idle clock.
    pub fn restored(&mut self, now_ms: i64) {
        self.watermarks.reset_activity(now_ms);
    }

    /// The input partition.
    pub fn partition(&self) -> PartitionId {
        self.partition
    }

    /// The partition's (real) watermark.
    pub fn watermark(&self) -> Watermark {
        self.watermarks.current()
    }

    /// Processes one valid event read from this partition at wall clock `now_ms`.
    pub fn process(&mut self, event: &PlaybackEvent, now_ms: i64) -> EventOutcome {
        let entry = self.dedup.entry_of(event);
        self.process_prepared(event, &EventIds::of(event), entry, None, now_ms)
    }

    /// Processes valid events read from this partition one after another, as
    /// [`Self::process`] would, calling `outcome` with each event's index and outcome.
    ///
    /// Same results, sooner: the events are taken [`GROUP`] at a time, and the state
    /// each one will touch (its dedup slot, its session's slot and the back of that
    /// session's buffer) is requested from memory for the whole group
    /// before the first is applied. Every one of these is a cache miss on a large
    /// state, and the misses of a group overlap instead of following one another
    /// (DESIGN.md section 8). While the group is applied, each session slot is
    /// requested once more [`REFETCH_AHEAD`] events before its turn, and the back of
    /// its buffer half as many.
    /// The warming only reads: an event applied earlier in the group may change what
    /// a later one finds, so the later one takes the slot found then only if it still
    /// holds its key, and looks it up again otherwise.
    pub fn process_group(
        &mut self,
        events: &[PlaybackEvent],
        now_ms: i64,
        mut outcome: impl FnMut(usize, EventOutcome),
    ) {
        let mut prepared = [(EventIds::default(), DedupEntry::default(), None); GROUP];
        for (g, group) in events.chunks(GROUP).enumerate() {
            // Hashing first, so that the loop of lookups is short enough for the core
            // to run several of them at once.
            for (event, p) in group.iter().zip(prepared.iter_mut()) {
                *p = (EventIds::of(event), self.dedup.entry_of(event), None);
            }
            // The dedup requests in a loop of their own: the day's table is hundreds of
            // MiB, so each request first walks the page tables (a TLB miss, slow
            // under a hypervisor), and the core holds the request until the walk
            // ends. Back to back, the walks overlap one another; interleaved with the
            // session lookups (or spread over the group's application, -10%), each
            // held up the work around it (paired runs: +5% against interleaved).
            for (_, entry, _) in &prepared[..group.len()] {
                self.dedup.prefetch(entry);
            }
            for (ids, _, slot) in &mut prepared[..group.len()] {
                *slot = self.sessions.find(ids.session);
            }
            for (_, _, slot) in &prepared[..group.len()] {
                if let Some(slot) = slot {
                    self.sessions.prefetch_slot(*slot);
                }
            }
            for (_, _, slot) in prepared[..group.len()].iter().take(REFETCH_AHEAD / 2) {
                if let Some(slot) = slot {
                    self.sessions.prefetch_back(*slot);
                }
            }
            for (i, (event, (ids, entry, slot))) in group.iter().zip(&prepared).enumerate() {
                if let Some((_, _, Some(ahead))) = prepared[..group.len()].get(i + REFETCH_AHEAD) {
                    self.sessions.prefetch_slot(*ahead);
                }
                if let Some((_, _, Some(ahead))) =
                    prepared[..group.len()].get(i + REFETCH_AHEAD / 2)
                {
                    self.sessions.prefetch_back(*ahead);
                }
                let result = self.process_prepared(event, ids, *entry, *slot, now_ms);
                outcome(g * GROUP + i, result);
            }
        }
    }

    /// [`Self::process`] with the event's ids and dedup entry computed, and the
    /// session slot its key had when the group was warmed (`slot`, a hint).
    fn process_prepared(
        &mut self,
        event: &PlaybackEvent,
        ids: &EventIds,
        entry: DedupEntry,
        slot: Option<u32>,
        now_ms: i64,
    ) -> EventOutcome {
        let w = self.watermarks.current();
        let outcome = if self.dedup.record(entry, w) {
            EventOutcome::Duplicate
        } else {
            let mut late = Vec::new();
            let mut verdict = |operator, is_late: bool| {
                if is_late {
                    late.push(Late {
                        operator,
                        watermark: w,
                    });
                }
                !is_late
            };
            // Judged and applied with one lookup of the key, whose marks then spare
            // the partials the set inserts that would change nothing.
            let mut marks = self.sessions.offer(event, ids.session, slot, w);
            verdict(Operator::Sessions, marks.is_none());
            if verdict(
                Operator::Viewers,
                self.partials.is_late_for_viewers(event, w),
            ) {
                self.partials
                    .apply_viewers_with(event, ids, marks.as_deref_mut());
            }
            if verdict(Operator::Daily, self.partials.is_late_for_daily(event, w)) {
                self.partials.apply_daily_with(event, ids, marks);
            }
            self.resume.apply_with(event, ids);
            EventOutcome::Processed { late }
        };
        self.watermarks
            .observe_event(self.partition, event.event_time_ms(), now_ms);
        // Finalize even when W did not move: an on-time `stop` older than W ends a
        // session that is final at once.
        let next = self.watermarks.advance(now_ms);
        self.finalize(next);
        outcome
    }

    /// A record of this partition that is not a valid event (it went to the DLQ):
    /// the partition is active, nothing else changes.
    pub fn observe_invalid(&mut self, now_ms: i64) {
        self.watermarks.observe_activity(self.partition, now_ms);
    }

    fn finalize(&mut self, w: Watermark) {
        self.sessions.advance(w);
        self.partials.advance(w, self.watermarks.current());
        self.dedup.expire(w);
    }

    /// Drain mode: finalizes everything as if the watermark were +infinity. The real
    /// watermark (the one checkpointed and announced) is unchanged.
    pub fn drain(&mut self) {
        self.sessions.advance(Watermark::MAX);
        self.partials
            .advance(Watermark::MAX, self.watermarks.current());
        // The partials just dropped windows and days that on-time events can still
        // reach: a mark saying "already in the window" would now be wrong.
        self.sessions.clear_marks();
    }

    /// Takes everything produced since the last take.
    pub fn take_output(&mut self) -> SourceOutput {
        let (viewer_partials, daily_partials) = self.partials.take_finished();
        SourceOutput {
            sessions: self.sessions.take_finished(),
            viewer_partials,
            daily_partials,
            resume_candidates: self.resume.take(),
        }
    }

    /// For a partition idle at wall clock `now_ms`: the partials of its open windows
    /// and days as they stand (see [`PartialAggregator::provisional`]), to send
    /// before the idle announcement; nothing when the partition is active or
    /// nothing changed since the last call.
    pub fn idle_partials(&mut self, now_ms: i64) -> (Vec<ViewerPartial>, Vec<DailyPartial>) {
        if !self.watermarks.is_idle(self.partition, now_ms) {
            return (Vec::new(), Vec::new());
        }
        self.partials.provisional(self.watermarks.current())
    }

    /// The watermark announcement to broadcast to every repartition partition (after
    /// the partials of [`Self::take_output`]), with idleness at wall clock `now_ms`.
    pub fn announcement(&self, now_ms: i64) -> SourceWatermark {
        self.watermarks.announcement(self.partition, now_ms)
    }

    /// `(uuid, stream_id)` keys with an open session or a guard: the one figure of
    /// [`Self::state_sizes`] that needs no walk over the state.
    pub fn open_session_keys(&self) -> usize {
        self.sessions.open_keys()
    }

    /// Sizes for the state-size metrics.
    pub fn state_sizes(&self) -> StateSizes {
        StateSizes {
            session_keys: self.sessions.open_keys(),
            session_events: self.sessions.buffered_events(),
            dedup_ids: self.dedup.len(),
            open_results: self.partials.open_results(),
        }
    }
}

#[cfg(test)]
mod tests {
    use playlake_schemas::{EventType, TimestampMs};

    use super::*;

    fn event(id: &str, event_type: EventType, t: i64) -> PlaybackEvent {
        event_of("u", id, event_type, t)
    }

    fn event_of(uuid: &str, id: &str, event_type: EventType, t: i64) -> PlaybackEvent {
        PlaybackEvent {
            event_id: id.to_owned(),
            uuid: uuid.into(),
            stream_id: "s".into(),
            user_id: Some("user".into()),
            event_type,
            event_time: TimestampMs(t),
            position_start: 0.0,
            position_end: 5.0,
        }
    }

    /// The partials skip set inserts a key's marks say are done; a drain drops the
    /// open windows and days, so an on-time event after it must be inserted again.
    #[test]
    fn an_event_after_a_drain_is_counted_in_the_window_and_day_it_dropped() {
        let settings = Settings::default();
        let t0 = 1_748_736_000_000; // a window and day start
        let now = t0 + 60_000;
        let mut p = PartitionProcessor::new(&settings, 0, now);
        assert_eq!(
            p.process(&event("1", EventType::Heartbeat, t0), now),
            EventOutcome::Processed { late: Vec::new() }
        );
        // A stop-ended session: the next event of the key starts a new one (on time).
        p.process(&event("2", EventType::Stop, t0 + 1_000), now);
        p.drain();
        let first = p.take_output();
        assert_eq!(
            p.process(&event("3", EventType::Heartbeat, t0 + 2_000), now),
            EventOutcome::Processed { late: Vec::new() },
            "same window and day as before the drain, on time for every operator"
        );
        p.drain();
        let second = p.take_output();
        for (what, out) in [("before", &first), ("after", &second)] {
            assert_eq!(out.sessions.len(), 1, "{what} the drain");
            let viewers: Vec<_> = out
                .viewer_partials
                .iter()
                .map(|v| (v.window_start, v.uuids.clone()))
                .collect();
            assert_eq!(
                viewers,
                vec![(t0, vec!["u".to_owned()])],
                "{what} the drain"
            );
            let daily: Vec<_> = out
                .daily_partials
                .iter()
                .map(|d| (d.uuids.clone(), d.user_ids.clone()))
                .collect();
            assert_eq!(
                daily,
                vec![(vec!["u".to_owned()], vec!["user".to_owned()])],
                "{what} the drain"
            );
        }
    }

    /// A group is warmed before any of its events is applied, so the slot found for
    /// a key may be freed and reused by another key before the key's own event is
    /// applied: that event must not land in the other key's state.
    #[test]
    fn a_slot_freed_and_reused_within_a_group_is_not_taken_for_its_old_key() {
        let settings = Settings::default();
        let t0 = 1_748_736_000_000;
        let now = t0 + 3_600_000;
        let first = event_of("k1", "a", EventType::Heartbeat, t0);
        let group = [
            // Moves the watermark far enough to emit k1's session and forget its
            // guard: k1's slot is freed.
            event_of("k2", "b", EventType::Heartbeat, t0 + 200_000),
            // A new key takes the freed slot.
            event_of("k3", "c", EventType::Heartbeat, t0 + 201_000),
            // k1 again: the slot found for it while warming now holds k3.
            event_of("k1", "d", EventType::Heartbeat, t0 + 202_000),
        ];
        let sessions = |grouped: bool| {
            let mut p = PartitionProcessor::new(&settings, 0, now);
            p.process(&first, now);
            if grouped {
                p.process_group(&group, now, |_, outcome| {
                    assert_eq!(outcome, EventOutcome::Processed { late: Vec::new() });
                });
            } else {
                for e in &group {
                    p.process(e, now);
                }
            }
            p.drain();
            let mut out: Vec<_> = p
                .take_output()
                .sessions
                .into_iter()
                .map(|s| (s.uuid, s.session_start.0, s.event_count))
                .collect();
            out.sort();
            out
        };
        let expected = vec![
            ("k1".to_owned(), t0, 1),
            ("k1".to_owned(), t0 + 202_000, 1),
            ("k2".to_owned(), t0 + 200_000, 1),
            ("k3".to_owned(), t0 + 201_000, 1),
        ];
        assert_eq!(sessions(false), expected, "one event at a time");
        assert_eq!(sessions(true), expected, "in a group");
    }
}
