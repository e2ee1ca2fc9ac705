//! A rough throughput smoke test of the source level (not a benchmark: the real one,
//! with DuckDB for comparison, belongs in a bench). Run with
//! `cargo test -p playlake-processor --release --test throughput -- --ignored --nocapture`.

use std::time::Instant;

use playlake_processor::{PartitionProcessor, Settings};
use playlake_schemas::{EventType, PlaybackEvent, TimestampMs};

#[test]
#[ignore = "timing; run by hand in release"]
fn one_partition_heartbeats() {
    let settings = Settings::default();
    let viewers = 10_000;
    let beats = 100;
    let mut events = Vec::with_capacity(viewers * beats);
    for b in 0..beats {
        for v in 0..viewers {
            let t = 1_748_736_000_000 + (b as i64) * 5_000 + (v as i64 % 5_000);
            events.push(PlaybackEvent {
                event_id: format!("{v}-{b}"),
                uuid: format!("uuid-{v}"),
                stream_id: format!("stream-{}", v % 50),
                user_id: Some(format!("user-{}", v % 3_000)),
                event_type: EventType::Heartbeat,
                event_time: TimestampMs(t),
                position_start: b as f64 * 5.0,
                position_end: b as f64 * 5.0 + 5.0,
            });
        }
    }
    let mut p = PartitionProcessor::new(&settings, 0, 0);
    let started = Instant::now();
    let mut out = 0;
    for (i, e) in events.iter().enumerate() {
        p.process(e, 0);
        if i % 1_000 == 0 {
            out += p.take_output().viewer_partials.len();
        }
    }
    p.drain();
    let output = p.take_output();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} events in {secs:.2} s: {:.0} events/s; {} sessions, {} partials",
        events.len(),
        events.len() as f64 / secs,
        output.sessions.len(),
        out + output.viewer_partials.len()
    );
    assert_eq!(output.sessions.len(), viewers);
}
