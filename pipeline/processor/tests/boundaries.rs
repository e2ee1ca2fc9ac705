//! Hand-built cases for every SPEC boundary, checked against explicit values and
//! against the batch reference.

mod common;

use chrono::NaiveDate;
use common::{ev, hb, run, run_with, BASE};
use playlake_processor::reference::{self, Results};
use playlake_processor::{
    EventOutcome, Operator, PartitionProcessor, ProcessorConfig, Settings, Watermark,
};
use playlake_schemas::{EndedBy, EventType, PlaybackEvent};

fn settings() -> Settings {
    Settings::default()
}

/// Streaming (one partition, and the same events split over 3 partitions by uuid)
/// equals the reference; returns the reference.
fn check(events: Vec<PlaybackEvent>, settings: &Settings) -> Results {
    let expected = reference::compute(&events, settings);
    let single = run(std::slice::from_ref(&events), settings, 1);
    assert_eq!(single.results, expected);
    let mut parts = vec![Vec::new(), Vec::new(), Vec::new()];
    for e in &events {
        let p = e.uuid.bytes().map(usize::from).sum::<usize>() % 3;
        parts[p].push(e.clone());
    }
    assert_eq!(run(&parts, settings, 2).results, expected);
    expected
}

#[test]
fn gap_of_exactly_session_gap_stays_in_the_session() {
    let r = check(
        vec![
            hb("a", "u", "s", BASE, 5.0),
            hb("b", "u", "s", BASE + 30_000, 10.0),
            hb("c", "u", "s", BASE + 60_001, 15.0),
        ],
        &settings(),
    );
    assert_eq!(r.sessions.len(), 2);
    assert_eq!(r.sessions[0].session_end.as_millis(), BASE + 30_000);
    assert_eq!(r.sessions[0].event_count, 2);
    assert_eq!(r.sessions[0].ended_by, EndedBy::Gap);
    assert_eq!(r.sessions[1].session_start.as_millis(), BASE + 60_001);
}

#[test]
fn stop_ends_the_session_and_the_next_event_starts_another() {
    let r = check(
        vec![
            ev(
                "a",
                "u",
                "s",
                Some("alice"),
                EventType::Start,
                BASE,
                0.0,
                0.0,
            ),
            hb("b", "u", "s", BASE + 5_000, 5.0),
            ev("c", "u", "s", None, EventType::Stop, BASE + 7_000, 5.0, 7.0),
            hb("d", "u", "s", BASE + 8_000, 12.0),
        ],
        &settings(),
    );
    assert_eq!(r.sessions.len(), 2);
    let first = &r.sessions[0];
    assert_eq!(first.ended_by, EndedBy::Stop);
    assert_eq!(first.event_count, 3);
    assert_eq!(first.user_id.as_deref(), Some("alice"));
    assert_eq!(first.watched_seconds, 7.0);
    assert_eq!((first.position_start, first.position_end), (0.0, 7.0));
    assert_eq!(r.sessions[1].session_start.as_millis(), BASE + 8_000);
    assert_eq!(r.sessions[1].user_id, None);
}

#[test]
fn seek_and_pause_accounting() {
    let r = check(
        vec![
            hb("a", "u", "s", BASE, 5.0),
            ev(
                "b",
                "u",
                "s",
                None,
                EventType::Seek,
                BASE + 1_000,
                5.0,
                100.0,
            ),
            ev(
                "c",
                "u",
                "s",
                None,
                EventType::Pause,
                BASE + 2_000,
                100.0,
                100.0,
            ),
            ev(
                "d",
                "u",
                "s",
                None,
                EventType::Seek,
                BASE + 3_000,
                100.0,
                20.0,
            ),
            hb("e", "u", "s", BASE + 8_000, 25.0),
        ],
        &settings(),
    );
    let s = &r.sessions[0];
    assert_eq!(s.seek_count, 2);
    assert_eq!(s.event_count, 5);
    assert_eq!(s.watched_seconds, 10.0);
    assert_eq!(r.daily[0].watched_seconds, 10.0);
}

#[test]
fn windows_are_half_open_and_stop_counts_no_viewer() {
    let r = check(
        vec![
            hb("a", "u1", "s", BASE + 29_999, 5.0),
            hb("b", "u2", "s", BASE + 30_000, 5.0),
            ev(
                "c",
                "u3",
                "s",
                None,
                EventType::Stop,
                BASE + 10_000,
                0.0,
                0.0,
            ),
            ev(
                "d",
                "u4",
                "s",
                None,
                EventType::Stop,
                BASE + 70_000,
                0.0,
                0.0,
            ),
        ],
        &settings(),
    );
    let rows: Vec<_> = r
        .viewers
        .iter()
        .map(|v| (v.window_start.as_millis() - BASE, v.viewers))
        .collect();
    assert_eq!(
        rows,
        vec![(0, 1), (30_000, 1)],
        "no 0-viewer row for the stop"
    );
    assert_eq!(r.daily[0].views, 4);
    assert_eq!(r.daily[0].peak_viewers, 1);
}

#[test]
fn duplicates_count_once() {
    let a = ev(
        "a",
        "u",
        "s",
        Some("alice"),
        EventType::Heartbeat,
        BASE,
        0.0,
        5.0,
    );
    let r = check(
        vec![a.clone(), hb("b", "u", "s", BASE + 5_000, 10.0), a],
        &settings(),
    );
    assert_eq!(r.sessions[0].event_count, 2);
    assert_eq!(r.daily[0].watched_seconds, 10.0);
    assert_eq!(r.daily[0].unique_users, 1);
}

#[test]
fn midnight_crossing_and_non_utc_days() {
    let paris = ProcessorConfig {
        time_zone: "Europe/Paris".into(),
        ..ProcessorConfig::default()
    }
    .validate()
    .unwrap();
    // 2025-03-29T23:00:00Z is local midnight of the 30th, a 23-hour day.
    let midnight = 1_743_289_200_000;
    let events = vec![
        ev(
            "a",
            "u",
            "s",
            Some("alice"),
            EventType::Heartbeat,
            midnight - 5_000,
            0.0,
            5.0,
        ),
        ev(
            "b",
            "u",
            "s",
            Some("bob"),
            EventType::Heartbeat,
            midnight,
            5.0,
            10.0,
        ),
        hb("c", "v", "s", midnight - 1, 7.0),
    ];
    let r = check(events.clone(), &paris);
    assert_eq!(r.sessions.len(), 2, "one session each for u and v");
    let u = &r.sessions[0];
    assert_eq!((u.event_count, u.watched_seconds), (2, 10.0));
    let days: Vec<_> = r
        .daily
        .iter()
        .map(|d| {
            (
                d.dt,
                d.views,
                d.unique_users,
                d.watched_seconds,
                d.peak_viewers,
            )
        })
        .collect();
    let d29 = NaiveDate::from_ymd_opt(2025, 3, 29).unwrap();
    let d30 = NaiveDate::from_ymd_opt(2025, 3, 30).unwrap();
    assert_eq!(days, vec![(d29, 2, 1, 10.0, 2), (d30, 1, 1, 5.0, 1)]);
    // The same instants are one UTC day.
    let utc = check(events, &settings());
    assert_eq!(utc.daily.len(), 1);
    assert_eq!(utc.daily[0].dt, d29);
}

#[test]
fn sessions_are_final_when_the_watermark_passes() {
    let s = settings();
    let mut p = PartitionProcessor::new(&s, 0, 0);
    p.process(&hb("a", "u", "s", BASE, 5.0), 0);
    p.process(
        &ev("b", "u", "s", None, EventType::Stop, BASE + 1_000, 5.0, 6.0),
        0,
    );
    // W = BASE + 1_000: equal to the stop's time, not yet past it.
    p.process(&hb("c", "x", "s", BASE + 11_000, 5.0), 0);
    assert_eq!(p.watermark(), Watermark(BASE + 1_000));
    assert!(p.take_output().sessions.is_empty());
    p.process(&hb("d", "x", "s", BASE + 11_001, 5.0), 0);
    let out = p.take_output();
    assert_eq!(out.sessions.len(), 1);
    assert_eq!(out.sessions[0].ended_by, EndedBy::Stop);
    // Gap-ended: final when W > end + gap.
    p.process(&hb("e", "x", "s", BASE + 11_001 + 30_000 + 10_000, 5.0), 0);
    assert!(p.take_output().sessions.is_empty());
    p.process(&hb("f", "x", "s", BASE + 11_002 + 30_000 + 10_000, 5.0), 0);
    let out = p.take_output();
    assert_eq!(out.sessions.len(), 1);
    assert_eq!(out.sessions[0].session_end.as_millis(), BASE + 11_001);
}

fn late_ops(outcome: &EventOutcome) -> Vec<Operator> {
    outcome.late().iter().map(|l| l.operator).collect()
}

#[test]
fn late_events_per_operator() {
    let s = settings();
    let mut p = PartitionProcessor::new(&s, 0, 0);
    p.process(&hb("a", "u", "s", BASE, 5.0), 0);
    p.process(&hb("b", "u", "s", BASE + 100_000, 10.0), 0);
    let w = p.watermark();
    assert_eq!(w, Watermark(BASE + 90_000));
    // t + gap = BASE + 89_999 < W: late for sessions; its window [30, 60) s is final:
    // late for viewers; its day is open: applied to daily.
    let outcome = p.process(&hb("c", "v", "s", BASE + 59_999, 5.0), 0);
    assert_eq!(
        late_ops(&outcome),
        vec![Operator::Sessions, Operator::Viewers]
    );
    assert_eq!(outcome.late()[0].watermark, w);
    // Just on time for sessions (t + gap == W), but its window [60, 90) s is final.
    let outcome = p.process(&hb("d", "v", "s", BASE + 60_000, 5.0), 0);
    assert_eq!(late_ops(&outcome), vec![Operator::Viewers]);
    // The open window [90, 120) s.
    let outcome = p.process(&hb("e", "v", "s", BASE + 90_000, 5.0), 0);
    assert_eq!(late_ops(&outcome), Vec::<Operator>::new());
    // A duplicate is neither applied nor late.
    assert_eq!(
        p.process(&hb("e", "v", "s", BASE + 90_000, 5.0), 0),
        EventOutcome::Duplicate
    );
    // Next day: the previous day is final, so an event of it is late everywhere.
    p.process(&hb("f", "u", "s", BASE + 86_400_000 + 60_000, 5.0), 0);
    let outcome = p.process(&hb("g", "w", "s", BASE + 1_000, 5.0), 0);
    assert_eq!(late_ops(&outcome), Operator::ALL.to_vec());
}

#[test]
fn an_event_that_would_change_an_emitted_session_is_late() {
    let s = settings();
    let mut p = PartitionProcessor::new(&s, 0, 0);
    p.process(&hb("a", "u", "s", BASE, 5.0), 0);
    p.process(&hb("z", "x", "s", BASE + 41_000, 5.0), 0);
    assert_eq!(p.take_output().sessions.len(), 1, "W = end + gap + 1");
    // Beyond the out-of-orderness bound but t + gap >= W: it would bridge the emitted
    // session, so it is late for sessions (and on time for the others).
    // Exactly session_gap after its end, in a window that is still open.
    let outcome = p.process(&hb("b", "u", "s", BASE + 30_000, 10.0), 0);
    assert_eq!(late_ops(&outcome), vec![Operator::Sessions]);
}

#[test]
fn without_drain_only_final_results_are_emitted() {
    let s = settings();
    let events = vec![
        hb("a", "u", "s", BASE, 5.0),
        hb("b", "u", "s", BASE + 5_000, 10.0),
        hb("c", "v", "s", BASE + 200_000, 5.0),
    ];
    let r = run_with(std::slice::from_ref(&events), &s, 1, false).results;
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.viewers.len(), 1);
    assert!(r.daily.is_empty());
    assert_eq!(r.resume.len(), 0);
}

#[test]
fn resume_point_is_the_latest_by_event_time_not_arrival() {
    let s = settings();
    let at = |id: &str, uuid: &str, t: i64, end: f64| {
        ev(
            id,
            uuid,
            "s",
            Some("alice"),
            EventType::Heartbeat,
            t,
            end - 1.0,
            end,
        )
    };
    let events = vec![
        at("b", "u1", BASE + 10_000, 50.0),
        at("a", "u2", BASE + 5_000, 20.0),
        at("c", "u2", BASE + 10_000, 60.0),
        ev(
            "x",
            "u3",
            "s",
            None,
            EventType::Heartbeat,
            BASE + 20_000,
            0.0,
            1.0,
        ),
    ];
    let r = check(events, &s);
    assert_eq!(r.resume.len(), 1);
    let point = &r.resume[0];
    assert_eq!(
        (point.uuid.as_str(), point.position_end),
        ("u2", 60.0),
        "tie: larger event_id"
    );
    assert_eq!(point.key(), "alice/s");
}
