//! Consumers whose read positions come from the pipeline, not from Kafka.
//!
//! A stage's checkpoint holds the input offsets its state reflects (SPEC section 4),
//! so the consumer must never start a newly assigned partition from a committed
//! group offset or from `auto.offset.reset`. The flow is:
//!
//! 1. the group assigns partitions; [`PipelineContext::rebalance`] only records them
//!    and queues [`ConsumerEvent::Assigned`]: librdkafka gets no assignment yet, so
//!    nothing is fetched;
//! 2. the stage restores its checkpoint and calls [`KafkaConsumer::seek`] for each
//!    partition, which hands librdkafka the assignment with the sought offset as
//!    the start position of that partition's fetcher;
//! 3. [`KafkaConsumer::poll`] returns records, rebalance events and
//!    [`ConsumerEvent::EndOfPartition`] (librdkafka's partition EOF, whose offset is
//!    the high watermark of the last fetch; on Tansu this is the only reliable end,
//!    since ListOffsets(LATEST) under-reports it).
//!
//! Why an assignment at the offset and not "assign, pause, seek, resume": librdkafka's
//! fetcher sometimes went on from the assignment's placeholder position after the
//! seek had been acknowledged, and the stage then skipped the records from its
//! checkpoint (merge partitions missed drain markers; crash tests lost rows). An
//! assignment's start offset is the fetcher's first position, with no race.
//! This needs the eager rebalance protocol, which the consumer therefore sets.
//!
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
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use tracing::{debug, error, warn};

use crate::config::KafkaConfig;
use crate::metrics::LagReporter;

mod end_of_partition;
mod stall;
use crate::error::KafkaError;
use end_of_partition::{cached_watermarks, end_of_partition};
use stall::{idle_timeout, join_stall_timeout, stall, Stall};

/// What the consumer knows about its partitions; shared between the rebalance
/// callback (on librdkafka's polling thread) and the stage's calls.
#[derive(Default)]
struct State {
    /// What the group assigned to this member.
    assigned: BTreeSet<TopicPartition>,
    /// Assigned by the group, not yet positioned by the stage: not handed to
    /// librdkafka, so never fetched.
    awaiting_seek: HashSet<TopicPartition>,
    /// Where the stage positioned each partition (for partitions it positioned at
    /// the beginning or end, until a record arrives and the floor takes over).
    start: HashMap<TopicPartition, Position>,
    /// The lowest offset still deliverable per partition: the seek position, then one
    /// past the last delivered record. Records below it (re-sent by the broker, or
    /// fetched again after a re-assignment) are dropped.
    floor: HashMap<TopicPartition, i64>,
    /// Partitions sought to an absolute offset whose first record has not arrived:
    /// a first record above it means the records between are gone from the log
    /// (retention, compaction), which is worth a warning.
    expect_first: HashMap<TopicPartition, i64>,
    /// Positioned by the stage since librdkafka last got the assignment: records
    /// are dropped until the next poll hands it over (see [`apply_assignment`]).
    unapplied: HashSet<TopicPartition>,
    /// When librdkafka last got an assignment from us.
    last_assign: Option<Instant>,
    /// Since when the member has been waiting for the group to assign it
    /// partitions (subscribed, or revoked in a rebalance, and no assignment since).
    joining_since: Option<Instant>,
    /// Since when the member has held an empty assignment (see the `stall` module:
    /// on Tansu a group can settle with nobody holding anything).
    idle_since: Option<Instant>,
    /// Rebalance events not yet returned by `poll`, in order.
    events: Vec<ConsumerEvent>,
}

impl State {
    /// Whether to deliver the record at `offset`.
    fn deliverable(&mut self, partition: &TopicPartition, offset: i64) -> bool {
        if !self.assigned.contains(partition)
            || self.awaiting_seek.contains(partition)
            || self.unapplied.contains(partition)
        {
            return false;
        }
        if self
            .floor
            .get(partition)
            .is_some_and(|floor| offset < *floor)
        {
            return false;
        }
        if let Some(expected) = self.expect_first.remove(partition) {
            if offset > expected {
                warn!(%partition, expected, offset,
                    "records from the sought offset are no longer in the log (retention or compaction?); reading on from the first record there is");
            }
        }
        true
    }

    /// The assignment to hand librdkafka: every positioned partition, each at its
    /// next offset to deliver.
    fn positioned(&self) -> Vec<(TopicPartition, Offset)> {
        self.assigned
            .iter()
            .filter(|tp| !self.awaiting_seek.contains(*tp))
            .map(|tp| {
                let offset = match self.floor.get(tp) {
                    Some(floor) => Offset::Offset(*floor),
                    None => to_offset(self.start.get(tp).copied().unwrap_or(Position::Beginning)),
                };
                (tp.clone(), offset)
            })
            .collect()
    }

    /// Records where the stage positioned `partition`.
    fn position(&mut self, partition: &TopicPartition, position: Position) {
        self.start.insert(partition.clone(), position);
        match position {
            Position::Offset(offset) => {
                self.floor.insert(partition.clone(), offset);
                self.expect_first.insert(partition.clone(), offset);
            }
            Position::Beginning | Position::End => {
                self.floor.remove(partition);
                self.expect_first.remove(partition);
            }
        }
    }

    fn forget(&mut self, partition: &TopicPartition) {
        self.assigned.remove(partition);
        self.awaiting_seek.remove(partition);
        self.unapplied.remove(partition);
        self.start.remove(partition);
        self.floor.remove(partition);
        self.expect_first.remove(partition);
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

/// librdkafka callbacks: turns group rebalances into [`ConsumerEvent`]s; the
/// assignment itself waits for the stage's seeks.
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
        let partitions = to_partitions(tpl);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // The partitions are handed to librdkafka after the stage's seeks
                // (see the module docs). An empty assignment now completes the
                // group's join: without one librdkafka waits for the call and the
                // group cannot rebalance again until the stage has sought.
                if let Err(e) = consumer.assign(&TopicPartitionList::new()) {
                    error!(error = %e, "acknowledging an assignment failed");
                }
                let mut state = self.state.lock();
                state.joining_since = None;
                // A completed join is not progress when it brought nothing: keep
                // watching, so that a group left with nobody holding the
                // partitions is joined again (see `rejoin_if_stalled`).
                state.idle_since = partitions.is_empty().then(Instant::now);
                for partition in &partitions {
                    state.forget(partition);
                    state.assigned.insert(partition.clone());
                    state.awaiting_seek.insert(partition.clone());
                }
                debug!(partitions = ?partitions, "assigned");
                state.events.push(ConsumerEvent::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "unassigning revoked partitions failed");
                }
                let mut state = self.state.lock();
                state.joining_since = Some(Instant::now());
                state.idle_since = None;
                for partition in &partitions {
                    state.forget(partition);
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
                // librdkafka joins again from here: watched like any join, so a join
                // that never completes is restarted (see `rejoin_if_stalled`).
                state.joining_since = Some(Instant::now());
                state.idle_since = None;
                let revoked: Vec<_> = state.assigned.iter().cloned().collect();
                for partition in &revoked {
                    state.forget(partition);
                }
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
    /// The subscription, to rejoin the group with when a join stalls.
    topics: Vec<String>,
    /// How long a join may wait for an assignment before the member rejoins (and
    /// the first wait with an empty assignment; see the `stall` module).
    join_stall_timeout: Duration,
    /// Rejoins after an empty assignment so far: each doubles the next wait.
    idle_rejoins: u32,
    /// Rejoins so far, for any reason.
    rejoins: u32,
    /// The librdkafka configuration, to create a new member with.
    client: ClientConfig,
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
            .set("auto.offset.reset", "earliest")
            // Eager: the stage's seeks hand librdkafka the whole assignment with
            // explicit offsets, which the cooperative protocol does not allow.
            .set("partition.assignment.strategy", "range,roundrobin");
        let state = SharedState::default();
        let inner = create_client(&client, &state)?;
        Ok(Self {
            inner: Some(Arc::new(inner)),
            state,
            lag: None,
            topics: Vec::new(),
            join_stall_timeout: join_stall_timeout(config),
            idle_rejoins: 0,
            rejoins: 0,
            client,
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
                let (_, high) = cached_watermarks(consumer, &p)?;
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
            })?;
        self.topics = topics.to_vec();
        let mut state = self.state.lock();
        state.joining_since = Some(Instant::now());
        state.idle_since = None;
        Ok(())
    }

    /// How many times this consumer left its group and joined again as a new
    /// member because it was stuck (see `rejoin_if_stalled`).
    pub fn rejoins(&self) -> u32 {
        self.rejoins
    }

    /// Rejoins the group as a new member (a new client, so a new member id) when
    /// the member is stuck (see the `stall` module): a join has waited too long for
    /// an assignment, or the join brought an empty assignment that was held too
    /// long. Tansu 0.6.0's coordinator can stay forming forever when the leader it
    /// picked dies (SIGKILL) mid-rebalance, and can settle a group with no
    /// assignment at all when its leader expires during a join; in both cases a new
    /// member joining restarts the rebalance (seen in the chaos runs: every stage
    /// stuck for minutes; `process --drain` idle for 4.5 minutes; a re-subscription
    /// of the same client did not help). The stuck member holds no partitions (it
    /// waits for an assignment, or its assignment is empty), so nothing is handed
    /// over; its queued events move to the new member's state, and its callbacks
    /// while closing go to its own state.
    fn rejoin_if_stalled(&mut self) -> Result<(), KafkaError> {
        if self.topics.is_empty() {
            return Ok(());
        }
        let stalled = {
            let state = self.state.lock();
            stall(
                state.joining_since,
                state.idle_since,
                Instant::now(),
                self.join_stall_timeout,
                self.idle_rejoins,
            )
        };
        match stalled {
            None => return Ok(()),
            Some(Stall::Joining { waited }) => warn!(
                topics = ?self.topics,
                waited_seconds = waited.as_secs(),
                "no partition assignment from the consumer group: leaving and joining again as a new member"
            ),
            Some(Stall::Idle { waited }) => {
                self.idle_rejoins += 1;
                warn!(
                    topics = ?self.topics,
                    waited_seconds = waited.as_secs(),
                    next_wait_seconds = idle_timeout(self.join_stall_timeout, self.idle_rejoins).as_secs(),
                    "the consumer group assigned this member no partition: leaving and joining again as a new member, \
                     in case the group settled with nobody holding them (Tansu does when a leader expires during a join); \
                     expected now and then when the group has more members than partitions (the wait doubles with each such rejoin)"
                );
            }
        }
        self.rejoins += 1;
        let state = SharedState::default();
        let fresh = create_client(&self.client, &state)?;
        state.lock().events = std::mem::take(&mut self.state.lock().events);
        if let Some(stalled) = self.inner.replace(Arc::new(fresh)) {
            close_in_background(stalled);
        }
        self.state = state;
        let topics = self.topics.clone();
        self.subscribe(&topics)
    }

    /// Assigns partitions directly, outside any group (tools and tests).
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
        let previous: Vec<_> = state.assigned.iter().cloned().collect();
        for partition in &previous {
            state.forget(partition);
        }
        for (partition, position) in positions {
            state.assigned.insert(partition.clone());
            state.position(partition, *position);
        }
        state.last_assign = Some(Instant::now());
        Ok(())
    }

    /// Positions an assigned partition: the next record delivered from it is the one
    /// at `position`. The next poll hands librdkafka the assignment of every
    /// positioned partition, each at its next offset to deliver (see the module
    /// docs), so the seeks after a rebalance become one assignment.
    pub fn seek(
        &mut self,
        partition: &TopicPartition,
        position: Position,
    ) -> Result<(), KafkaError> {
        self.inner()?;
        check_position(partition, position)?;
        let mut state = self.state.lock();
        if !state.assigned.contains(partition) {
            return Err(KafkaError::NotAssigned {
                partition: partition.clone(),
            });
        }
        state.awaiting_seek.remove(partition);
        state.unapplied.insert(partition.clone());
        state.position(partition, position);
        debug!(%partition, ?position, "positioned");
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
        self.rejoin_if_stalled()?;
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
            let assigned: Vec<_> = state.assigned.iter().cloned().collect();
            for partition in &assigned {
                state.forget(partition);
            }
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
            close_in_background(consumer);
        }
    }
}

/// One poll: blocks until the first event or `timeout`, then takes whatever else is
/// already queued, up to `max_records` records.
fn poll_blocking(
    consumer: &InnerConsumer,
    state: &SharedState,
    max_records: usize,
    timeout: Duration,
) -> Result<Vec<ConsumerEvent>, KafkaError> {
    apply_assignment(consumer, state)?;
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
                let accepted = {
                    let mut state = state.lock();
                    let accepted = state.deliverable(&partition, offset);
                    if accepted {
                        // Offsets only move forward until the next seek: a broker that
                        // re-sends a batch (Tansu's memory storage does) cannot make
                        // the stage see a record twice.
                        state.floor.insert(partition.clone(), offset + 1);
                    }
                    accepted
                };
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

fn create_client(client: &ClientConfig, state: &SharedState) -> Result<InnerConsumer, KafkaError> {
    let context = PipelineContext {
        state: state.clone(),
    };
    client
        .create_with_context(context)
        .map_err(|source| KafkaError::CreateClient {
            client: "consumer",
            source,
        })
}

/// librdkafka's close blocks on the network (LeaveGroup); keep it off the async
/// runtime's threads.
fn close_in_background(consumer: Arc<InnerConsumer>) {
    let spawned = std::thread::Builder::new()
        .name("playlake-kafka-close".into())
        .spawn(move || drop(consumer));
    if let Err(e) = spawned {
        warn!(error = %e, "could not close the Kafka consumer in the background");
    }
}

/// librdkafka's assignment changes asynchronously; one given while the previous one
/// is still starting its fetchers can trip its internal assertions (seen with an
/// assignment per seek), so assignments are at least this far apart.
const MIN_ASSIGN_SPACING: Duration = Duration::from_millis(500);

/// Hands librdkafka the assignment when the stage positioned partitions since the
/// last one: every positioned partition at its next offset to deliver.
fn apply_assignment(consumer: &InnerConsumer, state: &SharedState) -> Result<(), KafkaError> {
    let (positioned, wait) = {
        let state = state.lock();
        if state.unapplied.is_empty() {
            return Ok(());
        }
        let wait = state.last_assign.map_or(Duration::ZERO, |at| {
            MIN_ASSIGN_SPACING.saturating_sub(at.elapsed())
        });
        (state.positioned(), wait)
    };
    std::thread::sleep(wait);
    let mut tpl = TopicPartitionList::with_capacity(positioned.len());
    for (tp, offset) in &positioned {
        tpl.add_partition_offset(&tp.topic, tp.partition, *offset)
            .map_err(|source| KafkaError::Assign { source })?;
    }
    consumer
        .assign(&tpl)
        .map_err(|source| KafkaError::Assign { source })?;
    let mut state = state.lock();
    state.unapplied.clear();
    state.last_assign = Some(Instant::now());
    debug!(
        partitions = positioned.len(),
        "assignment handed to librdkafka"
    );
    Ok(())
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

    fn end_offset_hint(&self, partition: &TopicPartition) -> Option<i64> {
        let consumer = self.inner().ok()?;
        cached_watermarks(consumer, partition).map(|(_, high)| high)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        KafkaConsumer::close(self)
            .await
            .map_err(|e| e.into_transport("close"))
    }
}
