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
    let candidates: Vec<TopicPartition> = {
        let state = state.lock();
        state
            .assigned
            .iter()
            .filter(|tp| tp.partition == partition && !state.awaiting_seek.contains(tp))
            .cloned()
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
        .filter_map(|tp| {
            let high = cached_high_watermark(consumer, &tp);
            let position = positions.get(&tp).copied();
            let next_offset = match (high, position) {
                (Some(high), Some(position)) if position >= high => high,
                (Some(high), None) if single => high,
                (None, Some(position)) if single => position,
                (Some(high), Some(_)) if single => high,
                _ => return None,
            };
            Some(ConsumerEvent::EndOfPartition {
                partition: tp,
                next_offset,
            })
        })
        .collect()
}

/// The high watermark carried by the partition's last fetch response, as librdkafka
/// cached it (no broker request; on Tansu this is the true end, unlike ListOffsets).
fn cached_high_watermark(consumer: &InnerConsumer, partition: &TopicPartition) -> Option<i64> {
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
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}
