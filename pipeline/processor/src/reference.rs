//! A batch reference implementation, written straight from the SPEC definitions with
//! none of the streaming machinery: the whole input at once, no watermark, no
//! lateness. Tests compare the streaming operators against it; it is also a readable
//! statement of what each result means.
//!
//! Watched seconds are summed with [`WatchedSum`] (exact, order-independent), the same
//! sum the operators use, so results compare bit for bit.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::NaiveDate;
use playlake_schemas::{
    DailyStat, EndedBy, EventType, PlaybackEvent, ResumePoint, Session, TimestampMs, ViewerWindow,
};

use crate::config::Settings;
use crate::time::{window_start, Calendar, WatchedSum};

/// Every result of a batch computation, each sorted by natural key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Results {
    /// Sessions by `(uuid, stream_id, session_start)`.
    pub sessions: Vec<Session>,
    /// Viewer windows by `(stream_id, window_start)`.
    pub viewers: Vec<ViewerWindow>,
    /// Daily stats by `(dt, stream_id)`.
    pub daily: Vec<DailyStat>,
    /// Resume points by `(user_id, stream_id)`.
    pub resume: Vec<ResumePoint>,
}

/// Computes every result of SPEC section 3 over `events` (any order, duplicates
/// allowed: the first copy of each `(uuid, event_id)` counts).
pub fn compute(events: &[PlaybackEvent], settings: &Settings) -> Results {
    let mut seen = HashSet::new();
    let events: Vec<&PlaybackEvent> = events
        .iter()
        .filter(|e| seen.insert((e.uuid.as_str(), e.event_id.as_str())))
        .collect();
    let viewers = viewers(&events, settings);
    Results {
        sessions: sessions(&events, settings),
        daily: daily(&events, &viewers, settings),
        viewers,
        resume: resume(&events),
    }
}

/// Sessions: per `(uuid, stream_id)`, events ordered by `(event_time, event_id)`, cut
/// where a gap exceeds `session_gap` and after every `stop`.
pub fn sessions(events: &[&PlaybackEvent], settings: &Settings) -> Vec<Session> {
    let mut by_key: BTreeMap<(&str, &str), Vec<&PlaybackEvent>> = BTreeMap::new();
    for &e in events {
        by_key
            .entry((e.uuid.as_str(), e.stream_id.as_str()))
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for list in by_key.values_mut() {
        list.sort_by(|a, b| {
            (a.event_time_ms(), &a.event_id).cmp(&(b.event_time_ms(), &b.event_id))
        });
        let mut run: Vec<&PlaybackEvent> = Vec::new();
        for e in list.iter() {
            if let Some(last) = run.last() {
                let gap = e.event_time_ms() - last.event_time_ms();
                if last.event_type == EventType::Stop || gap > settings.session_gap_ms() {
                    out.push(session_row(&run));
                    run.clear();
                }
            }
            run.push(e);
        }
        if !run.is_empty() {
            out.push(session_row(&run));
        }
    }
    // Sessions of one key are in order here: number those sharing a start.
    for i in 1..out.len() {
        let (before, rest) = out.split_at_mut(i);
        let (prev, this) = (&before[i - 1], &mut rest[0]);
        if (&prev.uuid, &prev.stream_id, prev.session_start)
            == (&this.uuid, &this.stream_id, this.session_start)
        {
            this.start_ordinal = prev.start_ordinal + 1;
        }
    }
    out.sort_by_key(Session::key);
    out
}

fn session_row(run: &[&PlaybackEvent]) -> Session {
    let (first, last) = (run[0], run[run.len() - 1]);
    Session {
        uuid: first.uuid.clone(),
        stream_id: first.stream_id.clone(),
        user_id: run.iter().find_map(|e| e.user_id.clone()),
        session_start: first.event_time,
        session_end: last.event_time,
        position_start: first.position_start,
        position_end: last.position_end,
        watched_seconds: watched(run.iter().copied()).seconds(),
        event_count: run.len() as i64,
        seek_count: run
            .iter()
            .filter(|e| e.event_type == EventType::Seek)
            .count() as i64,
        ended_by: if last.event_type == EventType::Stop {
            EndedBy::Stop
        } else {
            EndedBy::Gap
        },
        start_ordinal: 0,
    }
}

fn watched<'a>(events: impl Iterator<Item = &'a PlaybackEvent>) -> WatchedSum {
    events.fold(WatchedSum::ZERO, |sum, e| {
        sum + WatchedSum::of_seconds(e.watched_seconds())
    })
}

/// Concurrent viewers: distinct uuids with a non-stop event per `(stream_id, window)`.
pub fn viewers(events: &[&PlaybackEvent], settings: &Settings) -> Vec<ViewerWindow> {
    let len = settings.viewer_window_ms();
    let mut windows: BTreeMap<(&str, i64), BTreeSet<&str>> = BTreeMap::new();
    for &e in events.iter().filter(|e| e.event_type != EventType::Stop) {
        windows
            .entry((e.stream_id.as_str(), window_start(e.event_time_ms(), len)))
            .or_default()
            .insert(e.uuid.as_str());
    }
    windows
        .into_iter()
        .map(|((stream, start), uuids)| ViewerWindow {
            stream_id: stream.to_owned(),
            window_start: TimestampMs(start),
            window_end: TimestampMs(start + len),
            viewers: uuids.len() as i64,
        })
        .collect()
}

/// Daily stats per `(local day, stream_id)`; `peak_viewers` from the viewer rows whose
/// window starts that day.
pub fn daily(
    events: &[&PlaybackEvent],
    viewers: &[ViewerWindow],
    settings: &Settings,
) -> Vec<DailyStat> {
    let cal = Calendar::of(settings);
    type Acc<'a> = (BTreeSet<&'a str>, BTreeSet<&'a str>, WatchedSum);
    let mut days: BTreeMap<(NaiveDate, &str), Acc> = BTreeMap::new();
    for &e in events {
        let acc = days
            .entry((cal.day_of(e.event_time_ms()), e.stream_id.as_str()))
            .or_default();
        acc.0.insert(e.uuid.as_str());
        if let Some(user) = &e.user_id {
            acc.1.insert(user.as_str());
        }
        acc.2 += WatchedSum::of_seconds(e.watched_seconds());
    }
    let mut peaks: BTreeMap<(NaiveDate, &str), i64> = BTreeMap::new();
    for v in viewers {
        let peak = peaks
            .entry((cal.day_of(v.window_start.as_millis()), v.stream_id.as_str()))
            .or_default();
        *peak = (*peak).max(v.viewers);
    }
    days.into_iter()
        .map(|(key, (uuids, users, watched))| DailyStat {
            dt: key.0,
            stream_id: key.1.to_owned(),
            views: uuids.len() as i64,
            unique_users: users.len() as i64,
            watched_seconds: watched.seconds(),
            peak_viewers: peaks.get(&key).copied().unwrap_or(0),
        })
        .collect()
}

/// Resume points: per `(user_id, stream_id)`, the latest event by
/// `(event_time, event_id)`.
pub fn resume(events: &[&PlaybackEvent]) -> Vec<ResumePoint> {
    let mut latest: BTreeMap<(&str, &str), &PlaybackEvent> = BTreeMap::new();
    for &e in events {
        let Some(user) = &e.user_id else { continue };
        let slot = latest
            .entry((user.as_str(), e.stream_id.as_str()))
            .or_insert(e);
        if (e.event_time_ms(), &e.event_id) > (slot.event_time_ms(), &slot.event_id) {
            *slot = e;
        }
    }
    latest
        .into_iter()
        .map(|((user, stream), e)| ResumePoint {
            user_id: user.to_owned(),
            stream_id: stream.to_owned(),
            position_end: e.position_end,
            event_time: e.event_time,
            uuid: e.uuid.clone(),
        })
        .collect()
}
