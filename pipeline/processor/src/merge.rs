//! The merge level of the per-stream results: combines the [`ViewerPartial`]s and
//! [`DailyPartial`]s of every source partition into final `viewers` and `daily` rows.
//!
//! The I/O layer reads the internal repartition topics (keyed by `stream_id`, so each
//! merge instance owns a disjoint set of streams) and feeds every record here:
//! partials, and [`SourceWatermark`] announcements that every source broadcasts to
//! every repartition partition. Each source writes a partial *before* any announcement
//! that makes its key final, on the same repartition partition, so once every source's
//! watermark has passed a key, all its partials are here.
//!
//! * **Identity**: a partial is identified by `(source partition, result key)`. A
//!   partial replayed after a source crash *replaces* the one held (it is identical:
//!   partials are deterministic functions of the partition's input), never adds to it.
//! * **Watermarks** advance only with [`SourceWatermark`] announcements, which a
//!   source sends after all the partials of a flush. The `source_watermark` inside a
//!   partial is informative only: one flush may finalize several keys, and advancing
//!   on the first partial would make the flush's later partials look late.
//! * **Finality**: the merge watermark is the minimum over the source partitions
//!   (idle ones excluded, as their sources announce). A window is final when it is
//!   `<= W`; a day when `W >=` its end *and* the end of the last window starting that day
//!   (`peak_viewers` needs them). Rows are emitted once, sorted by natural key.
//! * **Replays of final keys**: a partial for a key already final here is a replay of
//!   one already merged (or, after an idle source woke up, a late one); it is dropped
//!   and reported as [`PartialOutcome::AlreadyFinal`].

use std::collections::BTreeMap;

use chrono::NaiveDate;
use playlake_schemas::{DailyStat, TimestampMs, ViewerWindow};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::partials::{DailyPartial, ViewerPartial};
use crate::serde_util::map_as_vec;
use crate::time::{ceil_to_window, Calendar, DayCache, WatchedSum, Watermark};
use crate::watermark::{PartitionId, SourceWatermark, Watermarks};

/// A record of a repartition topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartialRecord {
    /// Viewers of a window from one source partition.
    Viewers(ViewerPartial),
    /// Daily aggregates from one source partition.
    Daily(DailyPartial),
    /// A source partition's watermark.
    Watermark(SourceWatermark),
}

/// What the merge did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartialOutcome {
    /// Held (new, or replacing the same source's copy).
    Applied,
    /// The key was already final: dropped (counted as a late partial).
    AlreadyFinal,
    /// A watermark announcement.
    Watermark,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DayParts {
    #[serde(with = "map_as_vec")]
    parts: BTreeMap<PartitionId, DailyPartial>,
}

/// The merge operator of one repartition-topic partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeOperator {
    settings: Settings,
    watermarks: Watermarks,
    /// `(window_start, stream_id) -> source -> uuids`.
    #[serde(with = "map_as_vec")]
    windows: BTreeMap<(i64, String), BTreeMap<PartitionId, Vec<String>>>,
    /// `(final_at, day, stream_id) -> partials`.
    #[serde(with = "map_as_vec")]
    days: BTreeMap<(i64, NaiveDate, String), DayParts>,
    /// `(final_at, day, stream_id) -> peak viewers` of the windows finalized so far.
    #[serde(with = "map_as_vec")]
    peaks: BTreeMap<(i64, NaiveDate, String), i64>,
    finished_viewers: Vec<ViewerWindow>,
    finished_daily: Vec<DailyStat>,
    #[serde(skip)]
    day_cache: DayCache,
}

impl MergeOperator {
    /// A merge waiting for the given source partitions (every partition of the input
    /// topic), registered at wall clock `now_ms`.
    pub fn new(
        settings: &Settings,
        source_partitions: impl IntoIterator<Item = PartitionId>,
        now_ms: i64,
    ) -> Self {
        let mut watermarks = Watermarks::for_announcements();
        for p in source_partitions {
            watermarks.add_partition(p, now_ms);
        }
        Self {
            settings: *settings,
            watermarks,
            windows: BTreeMap::new(),
            days: BTreeMap::new(),
            peaks: BTreeMap::new(),
            finished_viewers: Vec::new(),
            finished_daily: Vec::new(),
            day_cache: DayCache::default(),
        }
    }

    /// Registers a source partition added to the input topic.
    pub fn add_source_partition(&mut self, partition: PartitionId, now_ms: i64) {
        self.watermarks.add_partition(partition, now_ms);
    }

    /// The merge watermark.
    pub fn watermark(&self) -> Watermark {
        self.watermarks.current()
    }

    /// When the day `day` is final: the later of its end and the end of its last window.
    fn day_final_at(&self, day: NaiveDate) -> i64 {
        let end = Calendar::of(&self.settings).day_end(day);
        ceil_to_window(end, self.settings.viewer_window_ms())
    }

    /// Applies one repartition record and finalizes what the watermark now allows.
    pub fn apply(&mut self, record: PartialRecord, now_ms: i64) -> PartialOutcome {
        let w = self.watermarks.current().millis();
        let outcome = match record {
            PartialRecord::Watermark(announcement) => {
                self.watermarks.observe_announcement(&announcement, now_ms);
                PartialOutcome::Watermark
            }
            PartialRecord::Viewers(partial) => {
                let end = partial
                    .window_start
                    .saturating_add(self.settings.viewer_window_ms());
                if end <= w {
                    PartialOutcome::AlreadyFinal
                } else {
                    self.windows
                        .entry((partial.window_start, partial.stream_id))
                        .or_default()
                        .insert(partial.source_partition, partial.uuids);
                    PartialOutcome::Applied
                }
            }
            PartialRecord::Daily(partial) => {
                let final_at = self.day_final_at(partial.day);
                if final_at <= w {
                    PartialOutcome::AlreadyFinal
                } else {
                    self.days
                        .entry((final_at, partial.day, partial.stream_id.clone()))
                        .or_default()
                        .parts
                        .insert(partial.source_partition, partial);
                    PartialOutcome::Applied
                }
            }
        };
        let w = self.watermarks.advance(now_ms);
        self.finalize(w);
        outcome
    }

    /// Re-evaluates idleness at wall clock `now_ms` and finalizes accordingly.
    pub fn tick(&mut self, now_ms: i64) {
        let w = self.watermarks.advance(now_ms);
        self.finalize(w);
    }

    /// Drain mode: finalizes everything held, as if the watermark were +infinity; the
    /// merge watermark itself is unchanged.
    pub fn drain(&mut self) {
        self.finalize(Watermark::MAX);
    }

    fn finalize(&mut self, w: Watermark) {
        let len = self.settings.viewer_window_ms();
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0.saturating_add(len) > w.millis() {
                break;
            }
            let ((window_start, stream_id), parts) = entry.remove_entry();
            let mut uuids: Vec<&String> = parts.values().flatten().collect();
            uuids.sort_unstable();
            uuids.dedup();
            let viewers = i64::try_from(uuids.len()).unwrap_or(i64::MAX);
            if viewers == 0 {
                continue;
            }
            let cal = Calendar::of(&self.settings);
            let span = cal.locate(window_start, &self.day_cache);
            let final_at = ceil_to_window(span.end, len);
            let peak = self
                .peaks
                .entry((final_at, span.day, stream_id.clone()))
                .or_insert(0);
            *peak = (*peak).max(viewers);
            self.finished_viewers.push(ViewerWindow {
                stream_id,
                window_start: TimestampMs(window_start),
                window_end: TimestampMs(window_start.saturating_add(len)),
                viewers,
            });
        }
        while let Some(entry) = self.days.first_entry() {
            if entry.key().0 > w.millis() {
                break;
            }
            let (key, day) = entry.remove_entry();
            let peak = self.peaks.remove(&key).unwrap_or(0);
            let (_, dt, stream_id) = key;
            let mut uuids: Vec<&String> = day.parts.values().flat_map(|p| &p.uuids).collect();
            uuids.sort_unstable();
            uuids.dedup();
            let mut users: Vec<&String> = day.parts.values().flat_map(|p| &p.user_ids).collect();
            users.sort_unstable();
            users.dedup();
            let watched = day
                .parts
                .values()
                .fold(WatchedSum::ZERO, |sum, p| sum + p.watched);
            self.finished_daily.push(DailyStat {
                dt,
                stream_id,
                views: i64::try_from(uuids.len()).unwrap_or(i64::MAX),
                unique_users: i64::try_from(users.len()).unwrap_or(i64::MAX),
                watched_seconds: watched.seconds(),
                peak_viewers: peak,
            });
        }
        // Peaks of days without any event of their own (a window that starts before
        // midnight but whose events all fall after it, with unaligned windows): no
        // daily row; forget them once their day is final.
        while let Some(entry) = self.peaks.first_entry() {
            if entry.key().0 > w.millis() {
                break;
            }
            entry.remove();
        }
    }

    /// Takes the final rows, each sorted by natural key.
    pub fn take_finished(&mut self) -> (Vec<ViewerWindow>, Vec<DailyStat>) {
        let mut viewers = std::mem::take(&mut self.finished_viewers);
        viewers.sort_by(|a, b| a.key().cmp(&b.key()));
        let mut daily = std::mem::take(&mut self.finished_daily);
        daily.sort_by(|a, b| a.key().cmp(&b.key()));
        (viewers, daily)
    }

    /// Open windows and days, for the state-size metric.
    pub fn open_results(&self) -> usize {
        self.windows.len() + self.days.len()
    }
}
