//! The source level of the per-stream results: concurrent viewers and daily stats of
//! the events of *one* input partition, shipped as mergeable partials.
//!
//! A stream's viewers and a day's unique users gather events from every input
//! partition (the input is keyed by uuid), so no single partition can compute them.
//! Each [`crate::source::PartitionProcessor`] aggregates its own events here and, when
//! its watermark finalizes a window or a day, emits a [`ViewerPartial`] or
//! [`DailyPartial`]: deterministic content, identified by `(source partition, result
//! key)`. The I/O layer publishes them on internal repartition topics keyed by
//! `stream_id`, where [`crate::merge::MergeOperator`] combines them.
//!
//! Partials carry *sets* (uuids, user ids), not counts. Counts would suffice for
//! viewers and views if every uuid lived in exactly one partition, but that rests on
//! every producer keying by uuid and on the partition count never changing; user ids
//! span partitions anyway. Sets make the distinct counts exact whatever the keying.
//!
//! In memory the sets and the per-stream maps are keyed by [`crate::keys::Id`] (the
//! 128-bit hash of the string) with each string stored once for output: the per-event
//! membership test compares ids held in the table instead of following a pointer to
//! a string. The checkpointed form is unchanged (strings).
//!
//! Most events of a `(uuid, stream_id)` fall in the window and the day of the one
//! before, where their uuid (and usually their user) is already in the sets. The
//! session operator, which looks the key up anyway, keeps [`Marks`] per key: the
//! window and the day its uuid was last added to, and the user last added that day.
//! The apply functions skip the inserts a mark shows are done; the day's watched
//! seconds are added for every event. A missing mark only costs an insert. Windows and
//! days leave only when final (later events for them are late and never applied), or
//! in drain mode, which clears the marks
//! ([`crate::source::PartitionProcessor::drain`]).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use playlake_schemas::{EventType, PlaybackEvent};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::keys::{EventIds, IdKeyed, IdSet};
use crate::serde_util::map_as_vec;
use crate::session::Marks;
use crate::time::{window_start, Calendar, DayCache, WatchedSum, Watermark};
use crate::watermark::PartitionId;

/// Viewers of one stream in one window, as seen by one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewerPartial {
    /// The input partition whose events these are (part of the identity).
    pub source_partition: PartitionId,
    /// Stream (the repartition key).
    pub stream_id: String,
    /// Window start, epoch ms (part of the identity).
    pub window_start: i64,
    /// Distinct uuids with a non-`stop` event in the window, sorted.
    pub uuids: Vec<String>,
    /// The source partition's watermark when it emitted this partial (informative:
    /// the merge advances on [`crate::watermark::SourceWatermark`] announcements).
    pub source_watermark: Watermark,
}

/// Daily aggregates of one stream on one day, as seen by one source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyPartial {
    /// The input partition whose events these are (part of the identity).
    pub source_partition: PartitionId,
    /// Stream (the repartition key).
    pub stream_id: String,
    /// Local day in the configured time zone (part of the identity).
    pub day: NaiveDate,
    /// Distinct uuids with any event that day, sorted.
    pub uuids: Vec<String>,
    /// Distinct non-null user ids, sorted.
    pub user_ids: Vec<String>,
    /// Watched seconds of the day's non-seek events.
    pub watched: WatchedSum,
    /// The source partition's watermark when it emitted this partial (informative).
    pub source_watermark: Watermark,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DayAcc {
    uuids: IdSet,
    user_ids: IdSet,
    watched: WatchedSum,
}

/// Viewer and daily aggregation of one input partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialAggregator {
    settings: Settings,
    partition: PartitionId,
    /// `window_start -> stream_id -> uuids`, so finalizing pops from the front.
    /// (Id-keyed inside: an event costs hash lookups, not string comparisons;
    /// partials are sorted when emitted.)
    #[serde(with = "map_as_vec")]
    windows: BTreeMap<i64, IdKeyed<IdSet>>,
    /// `(day_end, day) -> stream_id -> aggregates`.
    #[serde(with = "map_as_vec")]
    days: BTreeMap<(i64, NaiveDate), IdKeyed<DayAcc>>,
    finished_viewers: Vec<ViewerPartial>,
    finished_daily: Vec<DailyPartial>,
    #[serde(skip)]
    day_cache: DayCache,
    /// Something changed since [`Self::provisional`] last handed out the open
    /// partials. Not checkpointed: a restored aggregator cannot know whether its
    /// previous owner shipped them, so it assumes not (shipping twice is harmless).
    #[serde(skip, default = "unshipped_after_restore")]
    unshipped: bool,
}

fn unshipped_after_restore() -> bool {
    true
}

impl PartialAggregator {
    /// An empty aggregator for input partition `partition`.
    pub fn new(settings: &Settings, partition: PartitionId) -> Self {
        Self {
            settings: *settings,
            partition,
            windows: BTreeMap::new(),
            days: BTreeMap::new(),
            finished_viewers: Vec::new(),
            finished_daily: Vec::new(),
            day_cache: DayCache::default(),
            unshipped: false,
        }
    }

    fn window_end(&self, t: i64) -> i64 {
        let len = self.settings.viewer_window_ms();
        window_start(t, len).saturating_add(len)
    }

    /// Late for viewers: the event's window end `<= W`.
    pub fn is_late_for_viewers(&self, event: &PlaybackEvent, w: Watermark) -> bool {
        self.window_end(event.event_time_ms()) <= w.millis()
    }

    /// Late for daily stats: the event's day end `<= W`.
    pub fn is_late_for_daily(&self, event: &PlaybackEvent, w: Watermark) -> bool {
        let cal = Calendar::of(&self.settings);
        cal.locate(event.event_time_ms(), &self.day_cache).end <= w.millis()
    }

    /// Adds an on-time event to its viewer window (`stop` events count no viewer).
    pub fn apply_viewers(&mut self, event: &PlaybackEvent) {
        self.apply_viewers_with(event, &EventIds::of(event), None);
    }

    /// [`Self::apply_viewers`] with the event's ids already computed and the marks of
    /// its session key, if it has one ([`Marks`]: nothing to do when the uuid is
    /// already in the window).
    pub(crate) fn apply_viewers_with(
        &mut self,
        event: &PlaybackEvent,
        ids: &EventIds,
        marks: Option<&mut Marks>,
    ) {
        if event.event_type == EventType::Stop {
            return;
        }
        let start = window_start(event.event_time_ms(), self.settings.viewer_window_ms());
        if let Some(marks) = marks {
            if marks.window == Some(start) {
                return;
            }
            marks.window = Some(start);
        }
        self.unshipped = true;
        self.windows
            .entry(start)
            .or_default()
            .get_or_default(ids.stream, &event.stream_id)
            .insert_with(ids.uuid, &event.uuid);
    }

    /// Adds an on-time event to its day.
    pub fn apply_daily(&mut self, event: &PlaybackEvent) {
        self.apply_daily_with(event, &EventIds::of(event), None);
    }

    /// [`Self::apply_daily`] with the event's ids already computed and the marks of its
    /// session key, if it has one ([`Marks`]: the uuid and user already in the day's
    /// sets are not inserted again).
    pub(crate) fn apply_daily_with(
        &mut self,
        event: &PlaybackEvent,
        ids: &EventIds,
        marks: Option<&mut Marks>,
    ) {
        self.unshipped = true;
        let cal = Calendar::of(&self.settings);
        let span = cal.locate(event.event_time_ms(), &self.day_cache);
        let acc = self
            .days
            .entry((span.end, span.day))
            .or_default()
            .get_or_default(ids.stream, &event.stream_id);
        acc.watched += WatchedSum::of_seconds(event.watched_seconds());
        let mut blank = Marks::default();
        let marks = marks.unwrap_or(&mut blank);
        if marks.day != Some(span.end) {
            acc.uuids.insert_with(ids.uuid, &event.uuid);
            marks.day = Some(span.end);
            marks.day_user = None;
        }
        if let (Some(user), Some(user_id)) = (&event.user_id, ids.user) {
            if marks.day_user != Some(user_id) {
                acc.user_ids.insert_with(user_id, user);
                marks.day_user = Some(user_id);
            }
        }
    }

    /// Emits the partials of every window and day final at watermark `w`;
    /// `source_watermark` is the partition's real watermark, carried along (in drain
    /// mode `w` is +infinity but the carried watermark stays the real one).
    #[inline]
    pub fn advance(&mut self, w: Watermark, source_watermark: Watermark) {
        // Called for every event; most calls finalize nothing, which the first
        // window and day (small maps) tell without the emitting code's frame.
        if self.first_window_final(w) || self.first_day_final(w) {
            self.finalize(w, source_watermark);
        }
    }

    /// Whether the earliest open window is final at `w` (its end is at or before).
    fn first_window_final(&self, w: Watermark) -> bool {
        let len = self.settings.viewer_window_ms();
        self.windows
            .first_key_value()
            .is_some_and(|(start, _)| start.saturating_add(len) <= w.millis())
    }

    /// Whether the earliest open day is final at `w`.
    fn first_day_final(&self, w: Watermark) -> bool {
        self.days
            .first_key_value()
            .is_some_and(|((end, _), _)| *end <= w.millis())
    }

    /// [`Self::advance`] when a window or a day is final.
    fn finalize(&mut self, w: Watermark, source_watermark: Watermark) {
        while self.first_window_final(w) {
            let Some((window_start, streams)) = self.windows.pop_first() else {
                break;
            };
            for (stream_id, uuids) in streams {
                self.finished_viewers.push(ViewerPartial {
                    source_partition: self.partition,
                    stream_id,
                    window_start,
                    uuids: uuids.into_sorted(),
                    source_watermark,
                });
            }
        }
        while self.first_day_final(w) {
            let Some(((_, day), streams)) = self.days.pop_first() else {
                break;
            };
            for (stream_id, acc) in streams {
                self.finished_daily.push(DailyPartial {
                    source_partition: self.partition,
                    stream_id,
                    day,
                    uuids: acc.uuids.into_sorted(),
                    user_ids: acc.user_ids.into_sorted(),
                    watched: acc.watched,
                    source_watermark,
                });
            }
        }
    }

    /// Takes the finished partials, sorted by result key.
    pub fn take_finished(&mut self) -> (Vec<ViewerPartial>, Vec<DailyPartial>) {
        let viewers = std::mem::take(&mut self.finished_viewers);
        let daily = std::mem::take(&mut self.finished_daily);
        sort_partials(viewers, daily)
    }

    /// The partials of every open window and day as they stand, without finalizing
    /// them; nothing when nothing changed since the last call. For a partition that
    /// went idle: the merge stops waiting for its watermark, so it must already
    /// hold what the partition has seen. Partials are identified by (source
    /// partition, key) and replaced at the merge, so the final partial of a window
    /// the partition later extends replaces this one (if the merge has not yet
    /// finalized the window; else the merge counts it as already final).
    pub fn provisional(
        &mut self,
        source_watermark: Watermark,
    ) -> (Vec<ViewerPartial>, Vec<DailyPartial>) {
        if !self.unshipped {
            return (Vec::new(), Vec::new());
        }
        self.unshipped = false;
        let mut viewers = Vec::new();
        for (window_start, streams) in &self.windows {
            for (stream_id, uuids) in streams.iter() {
                viewers.push(ViewerPartial {
                    source_partition: self.partition,
                    stream_id: stream_id.clone(),
                    window_start: *window_start,
                    uuids: uuids.sorted(),
                    source_watermark,
                });
            }
        }
        let mut daily = Vec::new();
        for ((_, day), streams) in &self.days {
            for (stream_id, acc) in streams.iter() {
                daily.push(DailyPartial {
                    source_partition: self.partition,
                    stream_id: stream_id.clone(),
                    day: *day,
                    uuids: acc.uuids.sorted(),
                    user_ids: acc.user_ids.sorted(),
                    watched: acc.watched,
                    source_watermark,
                });
            }
        }
        sort_partials(viewers, daily)
    }

    /// Open windows and days, for the state-size metric.
    pub fn open_results(&self) -> usize {
        self.windows.values().map(IdKeyed::len).sum::<usize>()
            + self.days.values().map(IdKeyed::len).sum::<usize>()
    }
}

fn sort_partials(
    mut viewers: Vec<ViewerPartial>,
    mut daily: Vec<DailyPartial>,
) -> (Vec<ViewerPartial>, Vec<DailyPartial>) {
    viewers.sort_by(|a, b| (&a.stream_id, a.window_start).cmp(&(&b.stream_id, b.window_start)));
    daily.sort_by(|a, b| (a.day, &a.stream_id).cmp(&(b.day, &b.stream_id)));
    (viewers, daily)
}
