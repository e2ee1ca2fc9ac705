//! Test support: an event builder and a small in-memory driver that runs the streaming
//! operators the way the I/O layer will (source level per partition, partials routed
//! by stream to merge operators, watermarks broadcast), collecting every output.

#![allow(dead_code)]

use std::collections::BTreeSet;

use playlake_processor::reference::Results;
use playlake_processor::{
    EventOutcome, MergeOperator, PartialRecord, PartitionProcessor, ResumeMerge, Settings,
};
use playlake_schemas::{EventType, PlaybackEvent, TimestampMs};

/// `2025-06-01T00:00:00Z` in epoch ms.
pub const BASE: i64 = 1_748_736_000_000;

/// A playback event.
#[allow(clippy::too_many_arguments)]
pub fn ev(
    id: &str,
    uuid: &str,
    stream: &str,
    user: Option<&str>,
    event_type: EventType,
    t: i64,
    start: f64,
    end: f64,
) -> PlaybackEvent {
    PlaybackEvent {
        event_id: id.to_owned(),
        uuid: uuid.to_owned(),
        stream_id: stream.to_owned(),
        user_id: user.map(str::to_owned),
        event_type,
        event_time: TimestampMs(t),
        position_start: start,
        position_end: end,
    }
}

/// A heartbeat of `u`/`s` at `t` reporting 5 s watched ending at `end`.
pub fn hb(id: &str, u: &str, s: &str, t: i64, end: f64) -> PlaybackEvent {
    ev(id, u, s, None, EventType::Heartbeat, t, end - 5.0, end)
}

/// Everything the streaming operators emitted, plus their verdicts.
#[derive(Debug, Default)]
pub struct Run {
    /// Results, each sorted by natural key (resume: the final value per key).
    pub results: Results,
    /// Per event, in processing order (partitions interleaved round-robin).
    pub outcomes: Vec<EventOutcome>,
    /// The events, in the same order as `outcomes`.
    pub processed: Vec<PlaybackEvent>,
}

/// Drives `partitions` (each in arrival order) through sources and `merges` merge
/// operators; events are interleaved round-robin across partitions, outputs are
/// published after every event, and at the end everything is drained.
pub fn run(partitions: &[Vec<PlaybackEvent>], settings: &Settings, merges: usize) -> Run {
    run_with(partitions, settings, merges, true)
}

/// [`run`] with the final drain optional.
pub fn run_with(
    partitions: &[Vec<PlaybackEvent>],
    settings: &Settings,
    merges: usize,
    drain: bool,
) -> Run {
    let n = partitions.len() as i32;
    let mut sources: Vec<PartitionProcessor> = (0..n)
        .map(|p| PartitionProcessor::new(settings, p, 0))
        .collect();
    let mut mergers: Vec<MergeOperator> = (0..merges)
        .map(|_| MergeOperator::new(settings, 0..n, 0))
        .collect();
    let mut resume = ResumeMerge::default();
    let mut out = Run::default();
    let longest = partitions.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for (p, events) in partitions.iter().enumerate() {
            if let Some(e) = events.get(i) {
                out.outcomes.push(sources[p].process(e, 0));
                out.processed.push(e.clone());
                publish(&mut sources[p], &mut mergers, &mut resume, &mut out.results);
            }
        }
    }
    if drain {
        for source in &mut sources {
            source.drain();
            publish(source, &mut mergers, &mut resume, &mut out.results);
        }
        for m in &mut mergers {
            m.drain();
            collect(m, &mut out.results);
        }
    }
    out.results.resume = resume.take_changed();
    // The operators emit each batch sorted; the union is sorted for comparison.
    out.results.sessions.sort_by_key(|s| s.key());
    out.results.viewers.sort_by(|a, b| a.key().cmp(&b.key()));
    out.results.daily.sort_by(|a, b| a.key().cmp(&b.key()));
    assert_unique(&out.results);
    out
}

fn stream_hash(stream: &str) -> usize {
    stream.bytes().map(usize::from).sum()
}

fn publish(
    source: &mut PartitionProcessor,
    mergers: &mut [MergeOperator],
    resume: &mut ResumeMerge,
    results: &mut Results,
) {
    let output = source.take_output();
    results.sessions.extend(output.sessions);
    let m = mergers.len();
    for v in output.viewer_partials {
        let k = stream_hash(&v.stream_id) % m;
        mergers[k].apply(PartialRecord::Viewers(v), 0);
    }
    for d in output.daily_partials {
        let k = stream_hash(&d.stream_id) % m;
        mergers[k].apply(PartialRecord::Daily(d), 0);
    }
    for c in output.resume_candidates {
        resume.apply(c);
    }
    let announcement = source.announcement(0);
    for merger in mergers.iter_mut() {
        merger.apply(PartialRecord::Watermark(announcement), 0);
        collect(merger, results);
    }
}

fn collect(merger: &mut MergeOperator, results: &mut Results) {
    let (viewers, daily) = merger.take_finished();
    results.viewers.extend(viewers);
    results.daily.extend(daily);
}

/// Every window and day appears once. (Sessions are compared with the reference
/// instead: a lone `stop` followed by an event in the same millisecond makes two
/// sessions with the same `(uuid, stream_id, session_start)`.)
pub fn assert_unique(results: &Results) {
    let keys: BTreeSet<_> = results.viewers.iter().map(|v| v.key()).collect();
    assert_eq!(keys.len(), results.viewers.len(), "window emitted twice");
    let keys: BTreeSet<_> = results.daily.iter().map(|d| d.key()).collect();
    assert_eq!(keys.len(), results.daily.len(), "day emitted twice");
}
