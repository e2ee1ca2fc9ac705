//! Property tests: any arrival order whose disorder stays within
//! `max_out_of_orderness`, with any duplicates, gives exactly the reference results;
//! and partials merged over N partitions give the single-partition results.

mod common;

use common::{ev, run};
use playlake_processor::reference;
use playlake_processor::{EventOutcome, Operator, ProcessorConfig, Settings};
use playlake_schemas::{EventType, PlaybackEvent};
use proptest::prelude::*;

/// 2025-03-29T22:50:00Z: ten minutes before Paris's midnight of a 23-hour day.
const BASE: i64 = 1_743_288_600_000;

#[derive(Debug, Clone)]
struct Case {
    settings: Settings,
    /// Events with their arrival jitter in `[0, max_out_of_orderness]`.
    events: Vec<(PlaybackEvent, i64)>,
    /// Indexes of events delivered twice, with the copy's jitter.
    duplicates: Vec<(usize, i64)>,
    partitions: usize,
}

fn settings_strategy() -> impl Strategy<Value = Settings> {
    (
        prop_oneof![Just(0i64), Just(3_000), Just(10_000)],
        prop_oneof![Just(5_000i64), Just(30_000)],
        prop_oneof![Just(7_000i64), Just(30_000)],
        prop_oneof![Just("UTC"), Just("Europe/Paris"), Just("Asia/Kathmandu")],
    )
        .prop_map(|(ooo, gap, window, tz)| {
            ProcessorConfig {
                max_out_of_orderness_ms: ooo,
                session_gap_ms: gap,
                viewer_window_ms: window,
                time_zone: tz.into(),
                ..ProcessorConfig::default()
            }
            .validate()
            .unwrap()
        })
}

/// One player's events: increments of 0..45 s (ties, exact gaps and long gaps all
/// happen with the small settings), mostly heartbeats.
fn player_strategy(uuid: usize) -> impl Strategy<Value = Vec<PlaybackEvent>> {
    let step = (
        prop_oneof![Just(0i64), Just(1), 0i64..45_000, Just(5_000), Just(30_000)],
        prop_oneof![
            6 => Just(EventType::Heartbeat),
            1 => Just(EventType::Start),
            1 => Just(EventType::Pause),
            1 => Just(EventType::Seek),
            1 => Just(EventType::Stop),
        ],
        prop_oneof![Just(None), Just(Some("alice")), Just(Some("bob"))],
        0u8..3,
        0.0f64..10.0,
    );
    (0i64..120_000, prop::collection::vec(step, 1..25)).prop_map(move |(offset, steps)| {
        let mut t = BASE + offset;
        let mut pos = 0.0;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (dt, ty, user, stream, len))| {
                t += dt;
                let (start, end) = match ty {
                    EventType::Seek => (pos, len * 3.0),
                    _ => (pos, pos + len),
                };
                pos = end;
                // Ids not in time order, so ties of event_time exercise the id order.
                let id = format!("e{}", (i * 7) % 25);
                ev(
                    &format!("{id}-{i}"),
                    &format!("u{uuid}"),
                    &format!("s{stream}"),
                    user,
                    ty,
                    t,
                    start,
                    end,
                )
            })
            .collect()
    })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (settings_strategy(), 1usize..6, 1usize..5).prop_flat_map(|(settings, players, partitions)| {
        let ooo = settings.max_out_of_orderness_ms();
        let players: Vec<_> = (0..players).map(player_strategy).collect();
        players.prop_flat_map(move |lists| {
            let events: Vec<PlaybackEvent> = lists.into_iter().flatten().collect();
            let n = events.len();
            (
                Just(events),
                prop::collection::vec(0..=ooo, n),
                prop::collection::vec((0..n, 0..=ooo), 0..6),
            )
                .prop_map(move |(events, jitter, duplicates)| Case {
                    settings,
                    events: events.into_iter().zip(jitter).collect(),
                    duplicates,
                    partitions,
                })
        })
    })
}

/// The arrival order: by `event_time + jitter`, so every event arrives at most
/// `max_out_of_orderness` behind the largest event time before it.
fn arrival(case: &Case) -> Vec<PlaybackEvent> {
    let mut all: Vec<(i64, usize, &PlaybackEvent)> = case
        .events
        .iter()
        .enumerate()
        .map(|(i, (e, j))| (e.event_time_ms() + j, i, e))
        .collect();
    for (k, (i, j)) in case.duplicates.iter().enumerate() {
        let e = &case.events[*i].0;
        all.push((e.event_time_ms() + j, case.events.len() + k, e));
    }
    all.sort_by_key(|(at, seq, _)| (*at, *seq));
    all.into_iter().map(|(_, _, e)| e.clone()).collect()
}

fn split_by_uuid(events: &[PlaybackEvent], n: usize) -> Vec<Vec<PlaybackEvent>> {
    let mut parts = vec![Vec::new(); n];
    for e in events {
        let p = e.uuid.bytes().map(usize::from).sum::<usize>() % n;
        parts[p].push(e.clone());
    }
    parts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_bounded_arrival_order_gives_the_reference(case in case_strategy()) {
        let arrived = arrival(&case);
        let sorted: Vec<PlaybackEvent> = case.events.iter().map(|(e, _)| e.clone()).collect();
        let expected = reference::compute(&sorted, &case.settings);

        let single = run(std::slice::from_ref(&arrived), &case.settings, 1);
        prop_assert!(single.outcomes.iter().all(|o| o.late().is_empty()), "nothing is late within the bound");
        prop_assert_eq!(&single.results, &expected);

        let parts = split_by_uuid(&arrived, case.partitions);
        let merged = run(&parts, &case.settings, 2);
        prop_assert!(merged.outcomes.iter().all(|o| o.late().is_empty()));
        prop_assert_eq!(&merged.results, &expected);
    }

    #[test]
    fn late_events_are_left_out_of_exactly_the_operators_they_are_late_for(
        case in case_strategy(),
        extra in prop::collection::vec(0i64..90_000, 200),
    ) {
        // Arrival far beyond the bound: some events are late for some operators. The
        // results must equal the reference over, per operator, the events applied to it.
        let mut case = case;
        for (i, (_, jitter)) in case.events.iter_mut().enumerate() {
            *jitter += extra[i % extra.len()];
        }
        let arrived = arrival(&case);
        for parts in [vec![arrived.clone()], split_by_uuid(&arrived, case.partitions)] {
            let r = run(&parts, &case.settings, 2);
            let applied = |op: Option<Operator>| -> Vec<&PlaybackEvent> {
                r.processed
                    .iter()
                    .zip(&r.outcomes)
                    .filter(|(_, o)| match o {
                        EventOutcome::Duplicate => false,
                        EventOutcome::Processed { late } => {
                            op.is_none_or(|op| late.iter().all(|l| l.operator != op))
                        }
                    })
                    .map(|(e, _)| e)
                    .collect()
            };
            let s = &case.settings;
            let viewers = reference::viewers(&applied(Some(Operator::Viewers)), s);
            prop_assert_eq!(&r.results.sessions, &reference::sessions(&applied(Some(Operator::Sessions)), s));
            prop_assert_eq!(&r.results.daily, &reference::daily(&applied(Some(Operator::Daily)), &viewers, s));
            prop_assert_eq!(&r.results.viewers, &viewers);
            prop_assert_eq!(&r.results.resume, &reference::resume(&applied(None)));
        }
    }

    #[test]
    fn processing_in_groups_equals_processing_one_by_one(
        case in case_strategy(),
        extra in prop::collection::vec(0i64..90_000, 200),
        cuts in prop::collection::vec(1usize..100, 1..20),
    ) {
        // `process_group` fetches a group's state ahead and must change nothing else:
        // same outcome per event and same outputs after every group, whatever the
        // group sizes (below, at and above `GROUP`), with duplicates and late events
        // inside a group.
        let mut case = case;
        for (i, (_, jitter)) in case.events.iter_mut().enumerate() {
            *jitter += extra[i % extra.len()];
        }
        let arrived = arrival(&case);
        let s = &case.settings;
        let mut one = playlake_processor::PartitionProcessor::new(s, 0, 0);
        let mut grouped = playlake_processor::PartitionProcessor::new(s, 0, 0);
        let mut rest = arrived.as_slice();
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (group, after) = rest.split_at((*cut).min(rest.len()));
            let one_outcomes: Vec<Option<EventOutcome>> =
                group.iter().map(|e| Some(one.process(e, 0))).collect();
            let mut outcomes = vec![None; group.len()];
            grouped.process_group(group, 0, |i, outcome| outcomes[i] = Some(outcome));
            prop_assert_eq!(outcomes, one_outcomes);
            prop_assert_eq!(grouped.take_output(), one.take_output());
            prop_assert_eq!(grouped.state_sizes(), one.state_sizes());
            rest = after;
        }
        one.drain();
        grouped.drain();
        prop_assert_eq!(grouped.take_output(), one.take_output());
    }

    #[test]
    fn state_round_trips_through_a_checkpoint(case in case_strategy()) {
        // Processing half, checkpointing (JSON), restoring and processing the rest
        // gives the same results as an uninterrupted run.
        let arrived = arrival(&case);
        let s = &case.settings;
        let expected = run(std::slice::from_ref(&arrived), s, 1).results;
        let mut p = playlake_processor::PartitionProcessor::new(s, 0, 0);
        let half = arrived.len() / 2;
        let mut sessions = Vec::new();
        for e in &arrived[..half] {
            p.process(e, 0);
        }
        sessions.extend(p.take_output().sessions);
        let json = serde_json::to_string(&p).unwrap();
        let mut p: playlake_processor::PartitionProcessor = serde_json::from_str(&json).unwrap();
        p.restored(0);
        for e in &arrived[half..] {
            p.process(e, 0);
        }
        p.drain();
        sessions.extend(p.take_output().sessions);
        sessions.sort_by_key(|s| s.key());
        prop_assert_eq!(sessions, expected.sessions);
    }
}
