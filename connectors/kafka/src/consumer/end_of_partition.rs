//! Turning librdkafka's partition EOF into [`ConsumerEvent::EndOfPartition`] with
//! the partition's true end: the high watermark of the last Fetch response (on Tansu,
//! ListOffsets(LATEST) under-reports it, so drain mode must not rely on it).

use std::ffi::CString;

use playlake_transport::{ConsumerEvent, Position, TopicPartition};
use rdkafka::consumer::Consumer as _;
use rdkafka::types::RDKafkaRespErr;

use super::{InnerConsumer, SharedState};

/// librdkafka reports a partition EOF with the partition number only, and when the
/// stage sees it, later fetches may already have queued records behind it (and
/// moved the cached high watermark). So the end is decided from what was
/// delivered: a partition with that number is at its end when the next offset to
/// deliver (the floor) has reached the high watermark of its last fetch, and
/// `next_offset` is that floor. Never from librdkafka's position, which also
/// counts records fetched but not yet delivered: an end above the delivered
/// records made the processor skip them as already applied.
pub(super) fn end_of_partition(
    consumer: &InnerConsumer,
    state: &SharedState,
    partition: i32,
) -> Vec<ConsumerEvent> {
    let candidates: Vec<(TopicPartition, Option<i64>, bool)> = {
        let state = state.lock();
        state
            .assigned
            .iter()
            .filter(|tp| {
                tp.partition == partition
                    && !state.awaiting_seek.contains(*tp)
                    && !state.unapplied.contains(*tp)
            })
            .map(|tp| {
                let from_end = matches!(state.start.get(tp), Some(Position::End));
                (tp.clone(), state.floor.get(tp).copied(), from_end)
            })
            .collect()
    };
    candidates
        .into_iter()
        .filter_map(|(tp, floor, from_end)| {
            let (low, high) = cached_watermarks(consumer, &tp)?;
            let next_offset = match floor {
                Some(floor) if floor >= high => floor,
                // Positioned at the end and nothing arrived since: that end.
                None if from_end => high,
                // Positioned at the beginning and nothing delivered: at the end only
                // if there is nothing to read (empty, or everything trimmed).
                None if low >= high => high,
                _ => return None,
            };
            Some(ConsumerEvent::EndOfPartition {
                partition: tp,
                next_offset,
            })
        })
        .collect()
}

/// The (low, high) watermarks carried by the partition's last fetch response, as
/// librdkafka cached them (`rd_kafka_get_watermark_offsets`: a local read, no
/// request; rdkafka 0.39 only wraps the querying variant; on Tansu the high one is
/// the true end, unlike ListOffsets). `None` before the first fetch.
pub(super) fn cached_watermarks(
    consumer: &InnerConsumer,
    partition: &TopicPartition,
) -> Option<(i64, i64)> {
    let topic = CString::new(partition.topic.as_str()).ok()?;
    let mut low = -1i64;
    let mut high = -1i64;
    // SAFETY: the client pointer is valid for the life of `consumer`; the topic is a
    // NUL-terminated string that outlives the call; the out-pointers are valid locals.
    // rd_kafka_get_watermark_offsets only reads librdkafka's cache and is thread-safe.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition.partition,
            &mut low,
            &mut high,
        )
    };
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low.max(0), high))
}
