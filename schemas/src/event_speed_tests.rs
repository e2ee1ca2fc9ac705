//! Throughput of [`super::parse_playback_event`] on generator-shaped records (ignored:
//! run in release with `cargo nextest run --workspace --release -E
//! 'package(playlake-schemas)' --run-ignored only --no-capture -- parse_speed`).

use std::hint::black_box;
use std::time::Instant;

use super::corpus::{realistic_event, Rng, NOW_MS};
use super::*;

const EVENTS: usize = 1_000_000;

fn records() -> Vec<String> {
    let mut rng = Rng::new(7);
    (0..EVENTS).map(|_| realistic_event(&mut rng)).collect()
}

fn events_per_second(name: &str, records: &[String], parse: impl Fn(&[u8]) -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        let mut ok = 0usize;
        for r in records {
            ok += usize::from(parse(black_box(r.as_bytes())));
        }
        assert_eq!(ok, records.len(), "{name}: every generated record is valid");
        best = best.min(started.elapsed().as_secs_f64());
    }
    let rate = records.len() as f64 / best;
    println!(
        "{name}: {rate:.0} events/s ({:.0} ns/event)",
        best * 1e9 / records.len() as f64
    );
    rate
}

#[test]
#[ignore = "measurement; run in release"]
fn parse_speed() {
    let records = records();
    // The reference path shares the (also faster) event_id derivation: the speed-up
    // over the parser before the fast path is larger than the one printed here.
    let reference = events_per_second("reference path", &records, |b| {
        parse_reference(b, NOW_MS).is_ok()
    });
    let fast = events_per_second("parse_playback_event", &records, |b| {
        parse_playback_event(b, NOW_MS).is_ok()
    });
    println!("speed-up over the reference path: {:.2}x", fast / reference);
    // The pieces of the fast path: scanning with owned strings but no derived ids
    // (every record given an event_id), and deriving ids alone.
    let with_ids: Vec<String> = records
        .iter()
        .map(|r| match r.find("\"event_id\"") {
            Some(_) => r.clone(),
            None => format!("{},\"event_id\":\"e\"}}", &r[..r.len() - 1]),
        })
        .collect();
    events_per_second("parse_playback_event, ids given", &with_ids, |b| {
        parse_playback_event(b, NOW_MS).is_ok()
    });
    let events: Vec<PlaybackEvent> = records
        .iter()
        .filter_map(|r| parse_playback_event(r.as_bytes(), NOW_MS).ok())
        .collect();
    let started = Instant::now();
    let mut total = 0usize;
    for e in &events {
        total += black_box(e.derived_event_id()).len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(total, events.len() * 32);
    println!(
        "derive_event_id: {:.0} ns/event",
        elapsed * 1e9 / events.len() as f64
    );
}
