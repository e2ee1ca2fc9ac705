//! Turning librdkafka's partition EOF into [`ConsumerEvent::EndOfPartition`] with
//! the partition's true end: the high watermark of the last Fetch response (on Tansu,
//! ListOffsets(LATEST) under-reports it, so drain mode must not rely on it).

use std::collections::HashMap;
use std::ffi::CString;

use playlake_transport::{ConsumerEvent, TopicPartition};
use rdkafka::consumer::Consumer as _;
use rdkafka::topic_partition_list::Offset;
use rdkafka::types::RDKafkaRespErr;
use tracing::warn;

use super::{InnerConsumer, SharedState};

/// librdkafka reports a partition EOF with the partition number only. The topic is
/// the one assigned partition with that number whose position has reached the
/// high watermark of its last fetch; that watermark is the partition's end.
pub(super) fn end_of_partition(
    consumer: &InnerConsumer,
    state: &SharedState,
    partition: i32,
) -> Vec<ConsumerEvent> {
    // Each candidate with the position we set ourselves (a seek to an offset, or the
    // record after the last one delivered), for partitions librdkafka has no
    // position for yet because nothing was consumed since the seek.
    let candidates: Vec<(TopicPartition, Option<i64>)> = {
        let state = state.lock();
        state
            .assigned
            .iter()
            .filter(|tp| {
                tp.partition == partition
                    && !state.awaiting_seek.contains(*tp)
                    && !state.unapplied.contains(*tp)
            })
            .map(|tp| (tp.clone(), state.floor.get(tp).copied()))
            .collect()
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    let positions: HashMap<TopicPartition, i64> = match consumer.position() {
        Ok(tpl) => tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => {
                    Some((TopicPartition::new(e.topic(), e.partition()), offset))
                }
                _ => None,
            })
            .collect(),
        Err(e) => {
            warn!(error = %e, "could not read consumer positions");
            HashMap::new()
        }
    };
    let single = candidates.len() == 1;
    candidates
        .into_iter()
        .filter_map(|(tp, floor)| {
            let watermarks = cached_watermarks(consumer, &tp);
            let high = watermarks.map(|(_, high)| high);
            let position = positions.get(&tp).copied().or(floor);
            let next_offset = match (high, position) {
                (Some(high), Some(position)) if position >= high => high,
                (Some(high), None) if single => high,
                (None, Some(position)) if single => position,
                (Some(high), Some(_)) if single => high,
                // Nothing consumed since a seek to the beginning, and the partition
                // holds nothing to read (empty, or everything trimmed): it is at its
                // end. Several topics share the partition number, so this is what
                // tells an empty partition apart from one still being fetched.
                (Some(high), None) if watermarks.is_some_and(|(low, _)| low >= high) => high,
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
/// librdkafka cached them (no broker request; on Tansu the high one is the true end,
/// unlike ListOffsets).
fn cached_watermarks(consumer: &InnerConsumer, partition: &TopicPartition) -> Option<(i64, i64)> {
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
