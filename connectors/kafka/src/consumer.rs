//! Consumers whose read positions come from the pipeline, not from Kafka.
//!
//! A stage's checkpoint holds the input offsets its state reflects (SPEC section 4),
//! so the consumer must never start a newly assigned partition from a committed
//! group offset or from `auto.offset.reset`. The flow is:
//!
//! 1. the group assigns partitions; [`PipelineContext::rebalance`] assigns them
//!    paused (at a placeholder position) and queues [`ConsumerEvent::Assigned`];
//! 2. the stage restores its checkpoint and calls [`KafkaConsumer::seek`] for each
//!    partition, which positions the fetcher and resumes it;
//! 3. [`KafkaConsumer::poll`] returns records, rebalance events and
//!    [`ConsumerEvent::EndOfPartition`] (librdkafka's partition EOF, whose offset is
//!    the high watermark of the last fetch; on Tansu this is the only reliable end,
//!    since ListOffsets(LATEST) under-reports it).
//!
//! Any record of a partition that is still waiting for its seek is dropped, so the
//! seam's contract holds even if librdkafka fetched before the pause took effect.
//! Group offsets are committed only when the stage asks ([`KafkaConsumer::commit`]),
//! as advisory lag markers.
//!
//! librdkafka's consumer is blocking; every call that can wait on the network runs on
//! tokio's blocking pool, and [`KafkaConsumer::poll`] blocks in librdkafka (never
//! spins) until the first event or the timeout.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use playlake_transport::{
    Consumer, ConsumerEvent, Position, Record, TopicPartition, TransportError,
};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, RebalanceProtocol,
};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use tracing::{debug, error, warn};

use crate::config::KafkaConfig;
use crate::metrics::LagReporter;

mod end_of_partition;
use crate::error::KafkaError;
use end_of_partition::end_of_partition;

/// How long a seek may wait for librdkafka's fetcher to acknowledge it.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a seek retries while a just-assigned partition's fetcher is starting.
const SEEK_STARTUP_GRACE: Duration = Duration::from_secs(5);

/// What the consumer knows about its partitions; shared between the rebalance
/// callback (on librdkafka's polling thread) and the stage's calls.
#[derive(Default)]
struct State {
    assigned: BTreeSet<TopicPartition>,
    /// Assigned by the group, not yet positioned by the stage: records are dropped.
    awaiting_seek: HashSet<TopicPartition>,
    /// The lowest offset still deliverable per partition: the seek position, then one
    /// past the last delivered record. Records below it (fetched before a seek, or
    /// re-sent by the broker) are dropped.
    floor: HashMap<TopicPartition, i64>,
    /// Partitions just sought to an absolute offset: the first record delivered must
    /// be that offset (see [`State::verdict`]), with when the seek happened and when
    /// it was last repeated.
    seek_first: HashMap<TopicPartition, (i64, Instant, Instant)>,
    /// Rebalance events not yet returned by `poll`, in order.
    events: Vec<ConsumerEvent>,
}

/// How long after a seek records other than the sought offset are dropped; past it,
/// the sought offset is taken to be gone (retention, compaction) and the first
/// record above it is accepted.
const SEEK_FIRST_RECORD_GRACE: Duration = Duration::from_secs(30);
/// How often a seek that did not take effect is repeated.
const RESEEK_INTERVAL: Duration = Duration::from_millis(200);

/// What to do with a fetched record.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Deliver,
    Drop,
    /// Drop it and seek the partition to this offset again.
    Reseek(i64),
}

impl State {
    /// Whether to deliver the record at `offset`. A seek to `x` right after an
    /// assignment does not always take effect: librdkafka's fetcher can go on from
    /// the assignment's placeholder position, above `x` (seen with Tansu while the
    /// same process kept producing to the partition). Delivering such a record
    /// would move the floor past `x..`, and the stage would take the real records
    /// from `x` for redeliveries and lose them. So until `x` itself arrives, other
    /// records are dropped and the seek is repeated.
    fn verdict(&mut self, partition: &TopicPartition, offset: i64) -> Verdict {
        if !self.assigned.contains(partition) || self.awaiting_seek.contains(partition) {
            return Verdict::Drop;
        }
        if let Some((first, sought_at, repeated_at)) = self.seek_first.get(partition).copied() {
            if offset != first {
                if offset > first && sought_at.elapsed() >= SEEK_FIRST_RECORD_GRACE {
                    warn!(%partition, sought = first, offset,
                        "the sought offset never arrived (retention or compaction?); reading on from the first record above it");
                } else {
                    debug!(%partition, sought = first, offset, "record fetched from before the seek dropped");
                    if repeated_at.elapsed() >= RESEEK_INTERVAL {
                        self.seek_first
                            .insert(partition.clone(), (first, sought_at, Instant::now()));
                        return Verdict::Reseek(first);
                    }
                    return Verdict::Drop;
                }
            }
            self.seek_first.remove(partition);
        }
        if self
            .floor
            .get(partition)
            .is_none_or(|floor| offset >= *floor)
        {
            Verdict::Deliver
        } else {
            Verdict::Drop
        }
    }
}

#[derive(Clone, Default)]
struct SharedState(Arc<Mutex<State>>);

impl SharedState {
    /// The state stays usable even if a thread panicked while holding the lock: it
    /// only holds sets and queued events, which are valid after any partial update.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// librdkafka callbacks: turns group rebalances into [`ConsumerEvent`]s and holds new
/// partitions paused until the stage seeks them.
pub struct PipelineContext {
    state: SharedState,
}

impl ClientContext for PipelineContext {
    /// librdkafka passes every consumer error event here before the consumer sees it,
    /// partition EOF included. EOF is how drain mode finds the end, not an error, so it
    /// must not show up in the log as one.
    fn error(&self, error: RdKafkaError, reason: &str) {
        match error {
            RdKafkaError::PartitionEOF(partition) => {
                tracing::trace!(partition, "partition EOF");
            }
            // librdkafka also reports the end of a partition as a global error event.
            RdKafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "partition EOF");
            }
            error => tracing::error!(%error, reason, "librdkafka reported an error"),
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions = to_partitions(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // A definite placeholder position starts the fetchers at once (so a
                // seek finds them started) without reading committed offsets; the
                // pause keeps them from fetching until the stage seeks.
                if let Err(e) = tpl.set_all_offsets(Offset::End) {
                    error!(error = %e, "could not set placeholder positions");
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    error!(error = %e, "assigning partitions after a rebalance failed");
                }
                if let Err(e) = consumer.pause(tpl) {
                    error!(error = %e, "pausing newly assigned partitions failed");
                }
                let mut state = self.state.lock();
                for partition in &partitions {
                    state.assigned.insert(partition.clone());
                    state.awaiting_seek.insert(partition.clone());
                    state.floor.remove(partition);
                    state.seek_first.remove(partition);
                }
                debug!(partitions = ?partitions, "assigned");
                state.events.push(ConsumerEvent::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    error!(error = %e, "unassigning revoked partitions failed");
                }
                let mut state = self.state.lock();
                for partition in &partitions {
                    state.assigned.remove(partition);
                    state.awaiting_seek.remove(partition);
                    state.floor.remove(partition);
                    state.seek_first.remove(partition);
                }
                debug!(partitions = ?partitions, "revoked");
                state.events.push(ConsumerEvent::Revoked(partitions));
            }
            other => {
                // librdkafka asks for an unassign on a rebalance error.
                error!(error = ?other, "consumer group rebalance failed; dropping the assignment");
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "unassigning after a failed rebalance failed");
                }
                let mut state = self.state.lock();
                let revoked: Vec<_> = std::mem::take(&mut state.assigned).into_iter().collect();
                state.awaiting_seek.clear();
                state.floor.clear();
                state.seek_first.clear();
                if !revoked.is_empty() {
                    state.events.push(ConsumerEvent::Revoked(revoked));
                }
            }
        }
    }
}

type InnerConsumer = BaseConsumer<PipelineContext>;

/// A consumer in a consumer group whose positions come from the stage.
pub struct KafkaConsumer {
    /// `None` once closed.
    inner: Option<Arc<InnerConsumer>>,
    state: SharedState,
    /// Sets `playlake_consumer_lag_records` after polls, when metrics are on.
    lag: Option<LagReporter>,
}

impl KafkaConsumer {
    pub fn new(config: &KafkaConfig, group: &str) -> Result<Self, KafkaError> {
        config.validate()?;
        let mut client = config.client_config("consumer");
        client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            // Irrelevant: every partition is positioned by an explicit seek.
            .set("auto.offset.reset", "earliest");
        let state = SharedState::default();
        let context = PipelineContext {
            state: state.clone(),
        };
        let inner: InnerConsumer =
            client
                .create_with_context(context)
                .map_err(|source| KafkaError::CreateClient {
                    client: "consumer",
                    source,
                })?;
        Ok(Self {
            inner: Some(Arc::new(inner)),
            state,
            lag: None,
        })
    }

    /// Reports this consumer's lag per topic through `lag` (see [`crate::metrics`]).
    pub fn with_lag_metrics(mut self, lag: LagReporter) -> Self {
        self.lag = Some(lag);
        self
    }

    /// Sets the lag gauges when due: the high watermark librdkafka cached from the
    /// last fetch (a local read, no request) minus the next offset to deliver, over
    /// the partitions the stage has positioned.
    fn report_lag(&mut self) {
        let (Some(lag), Some(consumer)) = (self.lag.as_mut(), self.inner.as_ref()) else {
            return;
        };
        if !lag.due() {
            return;
        }
        let positions: Vec<(TopicPartition, i64)> = {
            let state = self.state.lock();
            state
                .assigned
                .iter()
                .filter(|p| !state.awaiting_seek.contains(*p))
                .filter_map(|p| state.floor.get(p).map(|next| (p.clone(), *next)))
                .collect()
        };
        let lags: Vec<(String, i64)> = positions
            .into_iter()
            .filter_map(|(p, next)| {
                let high = cached_high_watermark(consumer, &p)?;
                Some((p.topic, high - next))
            })
            .collect();
        lag.report(lags);
    }

    fn inner(&self) -> Result<&Arc<InnerConsumer>, KafkaError> {
        self.inner.as_ref().ok_or(KafkaError::Closed)
    }

    pub fn subscribe(&mut self, topics: &[String]) -> Result<(), KafkaError> {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.inner()?
            .subscribe(&names)
            .map_err(|source| KafkaError::Subscribe {
                topics: topics.to_vec(),
                source,
            })
    }

    pub fn assign(&mut self, positions: &[(TopicPartition, Position)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(positions.len());
        for (partition, position) in positions {
            check_position(partition, *position)?;
            tpl.add_partition_offset(&partition.topic, partition.partition, to_offset(*position))
                .map_err(|source| KafkaError::Assign { source })?;
        }
        self.inner()?
            .assign(&tpl)
            .map_err(|source| KafkaError::Assign { source })?;
        let mut state = self.state.lock();
        state.assigned = positions.iter().map(|(p, _)| p.clone()).collect();
        state.awaiting_seek.clear();
        state.seek_first.clear();
        state.floor = positions
            .iter()
            .filter_map(|(p, pos)| match pos {
                Position::Offset(offset) => Some((p.clone(), *offset)),
                _ => None,
            })
            .collect();
        Ok(())
    }

    pub fn seek(
        &mut self,
        partition: &TopicPartition,
        position: Position,
    ) -> Result<(), KafkaError> {
        let consumer = Arc::clone(self.inner()?);
        check_position(partition, position)?;
        if !self.state.lock().assigned.contains(partition) {
            return Err(KafkaError::NotAssigned {
                partition: partition.clone(),
            });
        }
        let seek_error = |source| KafkaError::Seek {
            partition: partition.clone(),
            source,
        };
        let started = Instant::now();
        loop {
            let mut tpl = TopicPartitionList::with_capacity(1);
            tpl.add_partition_offset(&partition.topic, partition.partition, to_offset(position))
                .map_err(seek_error)?;
            let result = consumer
                .seek_partitions(tpl, SEEK_TIMEOUT)
                .map_err(seek_error)?;
            let code = result
                .elements()
                .first()
                .map(|e| e.error())
                .unwrap_or(Ok(()));
            match code {
                Ok(()) => break,
                // The fetcher of a partition assigned a moment ago may not have
                // started yet ("Erroneous state"): give it a little time.
                Err(source)
                    if is_state_error(&source) && started.elapsed() < SEEK_STARTUP_GRACE =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => return Err(seek_error(source)),
            }
        }
        let resume = {
            let mut state = self.state.lock();
            match position {
                Position::Offset(offset) => {
                    state.floor.insert(partition.clone(), offset);
                    let now = Instant::now();
                    state
                        .seek_first
                        .insert(partition.clone(), (offset, now, now));
                }
                _ => {
                    state.floor.remove(partition);
                    state.seek_first.remove(partition);
                }
            }
            state.awaiting_seek.remove(partition)
        };
        if resume {
            let mut tpl = TopicPartitionList::with_capacity(1);
            tpl.add_partition(&partition.topic, partition.partition);
            consumer.resume(&tpl).map_err(seek_error)?;
        }
        Ok(())
    }

    pub async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumerEvent>, KafkaError> {
        let consumer = Arc::clone(self.inner()?);
        let state = self.state.clone();
        let events = tokio::task::spawn_blocking(move || {
            poll_blocking(&consumer, &state, max_records, timeout)
        })
        .await
        .map_err(|source| KafkaError::Blocking { source })??;
        self.report_lag();
        Ok(events)
    }

    pub async fn commit(&mut self, positions: &[(TopicPartition, i64)]) -> Result<(), KafkaError> {
        if positions.is_empty() {
            return Ok(());
        }
        let consumer = Arc::clone(self.inner()?);
        let mut tpl = TopicPartitionList::with_capacity(positions.len());
        for (partition, offset) in positions {
            tpl.add_partition_offset(
                &partition.topic,
                partition.partition,
                Offset::Offset(*offset),
            )
            .map_err(|source| KafkaError::Commit { source })?;
        }
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|source| KafkaError::Blocking { source })?
            .map_err(|source| KafkaError::Commit { source })
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.state.lock().assigned.iter().cloned().collect()
    }

    /// Leaves the group (handing the partitions back) and releases the client.
    pub async fn close(&mut self) -> Result<(), KafkaError> {
        if let Some(lag) = self.lag.as_mut() {
            lag.closed();
        }
        let Some(consumer) = self.inner.take() else {
            return Ok(());
        };
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            // Dropping the last handle runs librdkafka's consumer close: LeaveGroup,
            // serving the final revoke through our context.
            drop(consumer);
            let mut state = state.lock();
            state.assigned.clear();
            state.awaiting_seek.clear();
            state.events.clear();
        })
        .await
        .map_err(|source| KafkaError::Blocking { source })
    }

    /// The librdkafka consumer, for tests and tools.
    pub fn inner_consumer(&self) -> Option<&BaseConsumer<PipelineContext>> {
        self.inner.as_deref()
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        if let Some(lag) = self.lag.as_mut() {
            lag.closed();
        }
        if let Some(consumer) = self.inner.take() {
            // librdkafka's close blocks on the network (LeaveGroup); keep it off the
            // async runtime's threads.
            let spawned = std::thread::Builder::new()
                .name("playlake-kafka-close".into())
                .spawn(move || drop(consumer));
            if let Err(e) = spawned {
                warn!(error = %e, "could not close the Kafka consumer in the background");
            }
        }
    }
}

/// The high watermark librdkafka cached from the last fetch response of
/// `partition` (`rd_kafka_get_watermark_offsets`: a local read, no request; rdkafka
/// 0.39 only wraps the querying variant). `None` before the first fetch.
fn cached_high_watermark(consumer: &InnerConsumer, partition: &TopicPartition) -> Option<i64> {
    let topic = std::ffi::CString::new(partition.topic.as_str()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` is borrowed, `topic` is a
    // NUL-terminated string that outlives the call, and librdkafka only writes the
    // two i64 out-parameters.
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

fn is_state_error(error: &RdKafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::State)
}

/// One poll: blocks until the first event or `timeout`, then takes whatever else is
/// already queued, up to `max_records` records.
fn poll_blocking(
    consumer: &InnerConsumer,
    state: &SharedState,
    max_records: usize,
    timeout: Duration,
) -> Result<Vec<ConsumerEvent>, KafkaError> {
    let max_records = max_records.max(1);
    let deadline = Instant::now() + timeout;
    let mut out: Vec<ConsumerEvent> = Vec::new();
    let mut batch: Vec<Record> = Vec::new();
    let mut delivered = 0usize;
    loop {
        let waiting = out.is_empty() && batch.is_empty();
        // Once something is in hand, take only what is already queued.
        let wait = if waiting {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        let polled = consumer.poll(wait);
        let rebalances = std::mem::take(&mut state.lock().events);
        if !rebalances.is_empty() {
            flush(&mut batch, &mut out);
            out.extend(rebalances);
        }
        match polled {
            None => {
                let idle = out.is_empty() && batch.is_empty();
                if !idle || Instant::now() >= deadline {
                    break;
                }
            }
            Some(Ok(message)) => {
                let partition = TopicPartition::new(message.topic(), message.partition());
                let offset = message.offset();
                let verdict = {
                    let mut state = state.lock();
                    let verdict = state.verdict(&partition, offset);
                    if verdict == Verdict::Deliver {
                        // Offsets only move forward until the next seek: a broker that
                        // re-sends a batch (Tansu's memory storage does) cannot make
                        // the stage see a record twice.
                        state.floor.insert(partition.clone(), offset + 1);
                    }
                    verdict
                };
                if let Verdict::Reseek(to) = verdict {
                    reseek(consumer, &partition, to);
                }
                let accepted = verdict == Verdict::Deliver;
                if accepted {
                    batch.push(to_record(&message));
                    delivered += 1;
                    if delivered >= max_records {
                        break;
                    }
                }
            }
            Some(Err(RdKafkaError::PartitionEOF(partition))) => {
                let ends = end_of_partition(consumer, state, partition);
                if !ends.is_empty() {
                    flush(&mut batch, &mut out);
                    out.extend(ends);
                }
            }
            Some(Err(source @ RdKafkaError::MessageConsumptionFatal(_))) => {
                return Err(KafkaError::Consume { source });
            }
            Some(Err(e)) => {
                // Broker down, leader moved, topic not there yet: librdkafka retries
                // on its own; the stage keeps polling.
                warn!(error = %e, "transient Kafka consumer error");
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    flush(&mut batch, &mut out);
    Ok(out)
}

/// Repeats a seek that did not take effect (see [`State::verdict`]); a failure is
/// logged and the next dropped record tries again.
fn reseek(consumer: &InnerConsumer, partition: &TopicPartition, offset: i64) {
    let mut tpl = TopicPartitionList::with_capacity(1);
    let added = tpl.add_partition_offset(
        &partition.topic,
        partition.partition,
        Offset::Offset(offset),
    );
    let result = added.and_then(|()| consumer.seek_partitions(tpl, Duration::from_millis(500)));
    match result {
        Ok(result) => {
            if let Some(Err(e)) = result.elements().first().map(|e| e.error()) {
                warn!(%partition, offset, error = %e, "repeating a seek failed; trying again");
            }
        }
        Err(e) => warn!(%partition, offset, error = %e, "repeating a seek failed; trying again"),
    }
}

fn flush(batch: &mut Vec<Record>, out: &mut Vec<ConsumerEvent>) {
    if !batch.is_empty() {
        out.push(ConsumerEvent::Records(std::mem::take(batch)));
    }
}

fn to_partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// Refuses negative offsets, which librdkafka would read as logical positions
/// (-1 is "end", -2 "beginning").
fn check_position(partition: &TopicPartition, position: Position) -> Result<(), KafkaError> {
    match position {
        Position::Offset(offset) if offset < 0 => Err(KafkaError::NegativeOffset {
            partition: partition.clone(),
            offset,
        }),
        _ => Ok(()),
    }
}

fn to_offset(position: Position) -> Offset {
    match position {
        Position::Offset(offset) => Offset::Offset(offset),
        Position::Beginning => Offset::Beginning,
        Position::End => Offset::End,
    }
}

fn to_record(message: &BorrowedMessage<'_>) -> Record {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    fn subscribe(&mut self, topics: &[String]) -> Result<(), TransportError> {
        KafkaConsumer::subscribe(self, topics).map_err(|e| e.into_transport("subscribe"))
    }

    fn assign(&mut self, positions: &[(TopicPartition, Position)]) -> Result<(), TransportError> {
        KafkaConsumer::assign(self, positions).map_err(|e| e.into_transport("assign"))
    }

    fn seek(
        &mut self,
        partition: &TopicPartition,
        position: Position,
    ) -> Result<(), TransportError> {
        KafkaConsumer::seek(self, partition, position).map_err(|e| e.into_transport("seek"))
    }

    async fn poll(
        &mut self,
        max_records: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumerEvent>, TransportError> {
        KafkaConsumer::poll(self, max_records, timeout)
            .await
            .map_err(|e| e.into_transport("poll"))
    }

    async fn commit(&mut self, positions: &[(TopicPartition, i64)]) -> Result<(), TransportError> {
        KafkaConsumer::commit(self, positions)
            .await
            .map_err(|e| e.into_transport("commit"))
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        KafkaConsumer::assignment(self)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        KafkaConsumer::close(self)
            .await
            .map_err(|e| e.into_transport("close"))
    }
}
