//! Event-time watermarks (SPEC section 3).
//!
//! Per input partition, `W = largest event_time seen - max_out_of_orderness`. An
//! operator's watermark is the minimum over the partitions it reads, except that a
//! partition idle for `idle_timeout` of wall clock stops holding the minimum back. When
//! every partition is idle, none holds anything back and the watermark is the largest
//! of theirs: the data has gone that far and nothing else is coming. The operator
//! watermark never goes back, and [`Watermarks`] is serializable: it is part of the
//! checkpointed state, so a restart resumes from where it was, never from minus
//! infinity.
//!
//! Two ways to feed it:
//! * **events** ([`Watermarks::observe_event`]): an operator reading input partitions
//!   directly (the source level of [`crate::source`]); idleness is judged locally from
//!   the wall clock passed in.
//! * **announcements** ([`Watermarks::observe_announcement`]): the merge level of
//!   [`crate::merge`] learns each source partition's watermark from the
//!   [`SourceWatermark`]s carried along the repartition topics, and idleness from the
//!   source itself (which sees its partition's traffic). A silent source is *not*
//!   declared idle by the merge: it may be a crashed instance whose partitions are
//!   about to be restored, and advancing past it would turn its replayed partials late.
//!
//! No clock is read here: every method that needs wall-clock time takes `now_ms`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::time::Watermark;

/// Kafka partition number of an input (or source) partition.
pub type PartitionId = i32;

/// A source partition's watermark, carried to the merge level along with partials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWatermark {
    /// The input partition it describes.
    pub partition: PartitionId,
    /// That partition's watermark.
    pub watermark: Watermark,
    /// Whether the partition delivered nothing for `idle_timeout`: it then stops
    /// holding the merge level's minimum back.
    pub idle: bool,
}

/// What the tracker knows about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PartitionState {
    /// This partition's own watermark (monotonic).
    watermark: Watermark,
    /// Wall clock (ms) of the last record, or of registration; used in event mode.
    last_active_ms: i64,
    /// Idleness as announced by the source (announcement mode only).
    announced_idle: bool,
}

/// How idleness is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Mode {
    /// From the wall clock: idle after `idle_timeout_ms` without a record.
    Events { idle_timeout_ms: i64 },
    /// From the sources' announcements only.
    Announcements,
}

/// Per-partition watermarks and the operator watermark derived from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    max_out_of_orderness_ms: i64,
    mode: Mode,
    partitions: BTreeMap<PartitionId, PartitionState>,
    /// The operator watermark: only ever moves forward.
    current: Watermark,
}

impl Watermarks {
    /// A tracker fed with events, judging idleness by the wall clock.
    pub fn for_events(settings: &Settings) -> Self {
        Self {
            max_out_of_orderness_ms: settings.max_out_of_orderness_ms(),
            mode: Mode::Events {
                idle_timeout_ms: settings.idle_timeout_ms(),
            },
            partitions: BTreeMap::new(),
            current: Watermark::MIN,
        }
    }

    /// A tracker fed with [`SourceWatermark`] announcements.
    pub fn for_announcements() -> Self {
        Self {
            max_out_of_orderness_ms: 0,
            mode: Mode::Announcements,
            partitions: BTreeMap::new(),
            current: Watermark::MIN,
        }
    }

    /// Registers a partition (an assigned one that may not have delivered anything
    /// yet): it holds the minimum at minus infinity until it delivers, or goes idle.
    pub fn add_partition(&mut self, partition: PartitionId, now_ms: i64) {
        self.partitions.entry(partition).or_insert(PartitionState {
            watermark: Watermark::MIN,
            last_active_ms: now_ms,
            announced_idle: false,
        });
    }

    /// Forgets a partition (revoked); the operator watermark stays where it is.
    pub fn remove_partition(&mut self, partition: PartitionId) {
        self.partitions.remove(&partition);
    }

    /// Restarts the idle clock of every partition, after a restore: the wall clock
    /// stored in a checkpoint belongs to another process and moment.
    pub fn reset_activity(&mut self, now_ms: i64) {
        for state in self.partitions.values_mut() {
            state.last_active_ms = now_ms;
        }
    }

    /// An event read from `partition`.
    pub fn observe_event(&mut self, partition: PartitionId, event_time_ms: i64, now_ms: i64) {
        self.add_partition(partition, now_ms);
        let candidate = Watermark(event_time_ms.saturating_sub(self.max_out_of_orderness_ms));
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.watermark = state.watermark.max(candidate);
            state.last_active_ms = now_ms;
            state.announced_idle = false;
        }
    }

    /// A record read from `partition` that carried no usable event time (invalid, or a
    /// duplicate): the partition is active, its watermark unchanged.
    pub fn observe_activity(&mut self, partition: PartitionId, now_ms: i64) {
        self.add_partition(partition, now_ms);
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.last_active_ms = now_ms;
        }
    }

    /// A source's announcement (carried along the repartition topics).
    pub fn observe_announcement(&mut self, announcement: &SourceWatermark, now_ms: i64) {
        self.add_partition(announcement.partition, now_ms);
        if let Some(state) = self.partitions.get_mut(&announcement.partition) {
            // A replayed (older) announcement never moves a partition back.
            state.watermark = state.watermark.max(announcement.watermark);
            state.last_active_ms = now_ms;
            state.announced_idle = announcement.idle;
        }
    }

    /// The watermark of one partition (minus infinity if unknown).
    pub fn partition_watermark(&self, partition: PartitionId) -> Watermark {
        self.partitions
            .get(&partition)
            .map_or(Watermark::MIN, |s| s.watermark)
    }

    /// Whether `partition` has stopped holding the minimum back.
    pub fn is_idle(&self, partition: PartitionId, now_ms: i64) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|s| self.state_is_idle(s, now_ms))
    }

    fn state_is_idle(&self, state: &PartitionState, now_ms: i64) -> bool {
        match self.mode {
            Mode::Events { idle_timeout_ms } => {
                now_ms.saturating_sub(state.last_active_ms) >= idle_timeout_ms
            }
            Mode::Announcements => state.announced_idle,
        }
    }

    /// Recomputes the operator watermark at wall-clock `now_ms` and returns it.
    pub fn advance(&mut self, now_ms: i64) -> Watermark {
        let active_min = self
            .partitions
            .values()
            .filter(|s| !self.state_is_idle(s, now_ms))
            .map(|s| s.watermark)
            .min();
        let candidate = match active_min {
            Some(w) => w,
            None => self
                .partitions
                .values()
                .map(|s| s.watermark)
                .max()
                .unwrap_or(Watermark::MIN),
        };
        self.current = self.current.max(candidate);
        self.current
    }

    /// The operator watermark as of the last [`Watermarks::advance`].
    pub fn current(&self) -> Watermark {
        self.current
    }

    /// The announcement describing `partition` for the merge level.
    pub fn announcement(&self, partition: PartitionId, now_ms: i64) -> SourceWatermark {
        SourceWatermark {
            partition,
            watermark: self.partition_watermark(partition),
            idle: self.is_idle(partition, now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Watermarks {
        Watermarks::for_events(&Settings::default())
    }

    #[test]
    fn per_partition_max_minus_bound_and_min_over_partitions() {
        let mut w = tracker();
        w.add_partition(0, 0);
        w.add_partition(1, 0);
        w.observe_event(0, 100_000, 0);
        assert_eq!(w.advance(0), Watermark::MIN, "partition 1 holds it back");
        w.observe_event(1, 50_000, 0);
        assert_eq!(w.advance(0), Watermark(40_000));
        w.observe_event(1, 45_000, 0);
        assert_eq!(w.partition_watermark(1), Watermark(40_000), "max, not last");
        w.observe_event(1, 200_000, 0);
        assert_eq!(w.advance(0), Watermark(90_000));
    }

    #[test]
    fn idle_partition_stops_holding_back_and_watermark_is_monotonic() {
        let mut w = tracker();
        w.observe_event(0, 100_000, 0);
        w.observe_event(1, 50_000, 0);
        assert_eq!(w.advance(10_000), Watermark(40_000));
        w.observe_event(0, 120_000, 25_000);
        assert_eq!(w.advance(29_999), Watermark(40_000));
        assert_eq!(w.advance(30_000), Watermark(110_000), "1 idle since 0");
        // Partition 1 wakes up with old data: the watermark does not go back.
        w.observe_event(1, 60_000, 31_000);
        assert_eq!(w.advance(31_000), Watermark(110_000));
        // Everything idle: the largest partition watermark.
        assert_eq!(w.advance(1_000_000), Watermark(110_000));
    }

    #[test]
    fn announcements_decide_idleness_and_never_go_back() {
        let mut w = Watermarks::for_announcements();
        for p in 0..3 {
            w.add_partition(p, 0);
        }
        let ann = |partition, watermark, idle| SourceWatermark {
            partition,
            watermark: Watermark(watermark),
            idle,
        };
        w.observe_announcement(&ann(0, 10, false), 0);
        w.observe_announcement(&ann(1, 20, false), 0);
        assert_eq!(w.advance(1_000_000), Watermark::MIN, "silent is not idle");
        w.observe_announcement(&ann(2, 5, true), 0);
        assert_eq!(w.advance(0), Watermark(10));
        w.observe_announcement(&ann(0, 3, false), 0);
        assert_eq!(w.partition_watermark(0), Watermark(10));
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Watermarks>(&json).unwrap(), w);
    }
}
