//! State stays bounded on an endless input: three days of viewers who come, watch a
//! few minutes and leave. Every operator must forget what the watermark has made
//! final; state that grows with every key ever seen is a slow leak a test of a few
//! sessions never shows (the session operator once kept every ended key's slot).

mod common;

use common::{ev, BASE};
use playlake_processor::{
    EventOutcome, MergeOperator, PartialRecord, PartitionProcessor, ResumeMerge, Settings,
};
use playlake_schemas::EventType;

/// New viewers every `ARRIVAL_MS`.
const ARRIVALS: usize = 10;
const ARRIVAL_MS: i64 = 600_000;
/// Each watches this many 10 s heartbeats, then stops.
const HEARTBEATS: i64 = 12;
const STREAMS: usize = 5;
const USERS: usize = 500;
const DAYS: i64 = 3;

#[test]
fn three_days_of_viewers_coming_and_going_keep_state_bounded() {
    let settings = Settings::default();
    let now = BASE + DAYS * 86_400_000 + 3_600_000;
    let mut source = PartitionProcessor::new(&settings, 0, now);
    let mut merge = MergeOperator::new(&settings, [0], now);
    let mut resume = ResumeMerge::default();
    let events_per_day = (86_400_000 / ARRIVAL_MS) as usize * ARRIVALS * (HEARTBEATS as usize + 1);
    let mut viewer = 0usize;
    let mut sessions = 0usize;
    let mut checked = 0;
    let arrivals = DAYS * 86_400_000 / ARRIVAL_MS;
    for arrival in 0..arrivals {
        let start = BASE + arrival * ARRIVAL_MS;
        // The viewers arriving now, their events in time order.
        let mut events = Vec::new();
        for _ in 0..ARRIVALS {
            viewer += 1;
            let uuid = format!("uuid-{viewer}");
            let stream = format!("s{}", viewer % STREAMS);
            let user = format!("user-{}", viewer % USERS);
            for i in 0..=HEARTBEATS {
                let kind = if i == HEARTBEATS {
                    EventType::Stop
                } else {
                    EventType::Heartbeat
                };
                let t = start + i * 10_000 + (viewer % 7) as i64;
                let end = (i * 10) as f64;
                events.push(ev(
                    &format!("e{i}"),
                    &uuid,
                    &stream,
                    Some(&user),
                    kind,
                    t,
                    (end - 10.0).max(0.0),
                    end,
                ));
            }
        }
        events.sort_by_key(|e| e.event_time_ms());
        for e in &events {
            let outcome = source.process(e, now);
            assert_eq!(outcome, EventOutcome::Processed { late: Vec::new() });
        }
        let mut out = source.take_output();
        sessions += out.sessions.len();
        for v in out.viewer_partials {
            merge.apply(PartialRecord::Viewers(v), now);
        }
        for d in out.daily_partials {
            merge.apply(PartialRecord::Daily(d), now);
        }
        resume.apply_all(&mut out.resume_candidates);
        resume.take_changed();
        merge.apply(PartialRecord::Watermark(source.announcement(now)), now);
        merge.take_finished();

        // Past the first two days (dedup keeps a day and the gap after it), every
        // hour: nothing may have grown with the viewers seen so far.
        if start >= BASE + 2 * 86_400_000 && arrival % 6 == 0 {
            checked += 1;
            let sizes = source.state_sizes();
            assert!(
                sizes.session_keys <= 2 * ARRIVALS,
                "session keys: {} of {viewer} viewers ever seen ({sizes:?})",
                sizes.session_keys
            );
            assert!(
                sizes.session_events <= 2 * ARRIVALS * (HEARTBEATS as usize + 1),
                "buffered session events: {sizes:?}"
            );
            assert!(
                sizes.dedup_ids <= 2 * events_per_day,
                "dedup ids: {} ({events_per_day} events a day, {sizes:?})",
                sizes.dedup_ids
            );
            // Windows of the last minutes per stream, today's days per stream.
            assert!(
                sizes.open_results <= 4 * STREAMS,
                "open windows and days at the source: {sizes:?}"
            );
            assert!(
                merge.open_results() <= 4 * STREAMS,
                "open windows and days at the merge: {}",
                merge.open_results()
            );
            assert!(
                resume.len() <= USERS,
                "resume points: one per (user, stream) ever seen, {} of {USERS}",
                resume.len()
            );
        }
    }
    assert_eq!(checked, 24, "checked once an hour on the last day");
    assert_eq!(
        sessions,
        viewer - ARRIVALS,
        "every viewer but the last arrivals' sessions emitted"
    );
}
