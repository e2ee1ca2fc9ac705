//! The in-process consumer: reads assigned partitions from positions the stage sets,
//! turns group rebalances into `Revoked`/`Assigned` events, and reports
//! `EndOfPartition` each time it catches up with a partition.
//!
//! `poll` never sleeps for a fixed time: it looks for work, and when there is none it
//! waits on the transport's change counter (bumped by every append and rebalance)
//! until the timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;

use super::group::MemberId;
use super::{lock, Inner, PartitionLog, Topic};
use crate::{Consumer, ConsumerEvent, Position, Record, Result, TopicPartition, TransportError};

/// Reads from a [`MemoryTransport`](super::MemoryTransport)'s log, by manual
/// assignment or as a member of a consumer group. Dropping it leaves the group.
pub struct MemoryConsumer {
    inner: Arc<Inner>,
    group: String,
    changes: watch::Receiver<u64>,
    mode: Mode,
    /// The current assignment, sorted by partition.
    parts: Vec<PartState>,
    /// Where the next poll starts reading, so that no partition starves the others.
    cursor: usize,
    closed: bool,
}

impl std::fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("group", &self.group)
            .field("assignment", &self.assignment())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

enum Mode {
    Idle,
    Manual,
    Subscribed {
        member: MemberId,
        /// The group generation whose assignment this member last turned into events.
        seen: Option<u64>,
    },
}

/// One assigned partition.
struct PartState {
    tp: TopicPartition,
    topic: Arc<Topic>,
    /// The next offset to read; `None` until the stage seeks (group assignments).
    position: Option<i64>,
    /// The end offset last reported with `EndOfPartition`, so each catch-up is
    /// reported once.
    eof_reported: Option<i64>,
}

impl PartState {
    fn log(&self) -> Option<&Mutex<PartitionLog>> {
        self.topic.partition_log(self.tp.partition)
    }
}

/// The offset a position means on this log.
fn resolve(tp: &TopicPartition, log: &Mutex<PartitionLog>, position: Position) -> Result<i64> {
    match position {
        Position::Offset(offset) if offset < 0 => Err(TransportError::InvalidOffset {
            partition: tp.clone(),
            offset,
        }),
        Position::Offset(offset) => Ok(offset),
        Position::Beginning => Ok(0),
        Position::End => Ok(lock(log).end_offset()),
    }
}

/// Appends records to the last event when it is a `Records` event.
fn push_records(events: &mut Vec<ConsumerEvent>, mut records: Vec<Record>) {
    if let Some(ConsumerEvent::Records(last)) = events.last_mut() {
        last.append(&mut records);
    } else {
        events.push(ConsumerEvent::Records(records));
    }
}

impl MemoryConsumer {
    pub(super) fn new(inner: Arc<Inner>, group: &str) -> Self {
        let changes = inner.changes.subscribe();
        Self {
            inner,
            group: group.to_owned(),
            changes,
            mode: Mode::Idle,
            parts: Vec::new(),
            cursor: 0,
            closed: false,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    fn part_state(&self, tp: &TopicPartition, position: Option<i64>) -> Result<PartState> {
        let topic = self.inner.topic(&tp.topic)?;
        topic.partition(tp)?;
        Ok(PartState {
            tp: tp.clone(),
            topic,
            position,
            eof_reported: None,
        })
    }

    /// Applies a new group generation: events for what changed.
    fn apply_rebalance(&mut self, events: &mut Vec<ConsumerEvent>) {
        let Mode::Subscribed { member, seen } = &mut self.mode else {
            return;
        };
        let Some(view) = self.inner.member_view(&self.group, *member, *seen) else {
            return;
        };
        *seen = Some(view.generation);
        let target = view.assignment.unwrap_or_default();
        let revoked: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|p| target.binary_search(&p.tp).is_err())
            .map(|p| p.tp.clone())
            .collect();
        let assigned: Vec<TopicPartition> = target
            .iter()
            .filter(|tp| self.parts.binary_search_by(|p| p.tp.cmp(tp)).is_err())
            .cloned()
            .collect();
        self.parts.retain(|p| target.binary_search(&p.tp).is_ok());
        for tp in &assigned {
            // Topics are never deleted, so this only fails on a broken invariant.
            if let Ok(part) = self.part_state(tp, None) {
                self.parts.push(part);
            }
        }
        self.parts.sort_by(|a, b| a.tp.cmp(&b.tp));
        if !revoked.is_empty() {
            events.push(ConsumerEvent::Revoked(revoked));
        }
        if !assigned.is_empty() {
            events.push(ConsumerEvent::Assigned(assigned));
        }
    }

    /// Everything that is ready now: rebalance events, then up to `max_records`
    /// records, each partition followed by its `EndOfPartition` when caught up.
    fn collect(&mut self, max_records: usize) -> Vec<ConsumerEvent> {
        let mut events = Vec::new();
        self.apply_rebalance(&mut events);
        let count = self.parts.len();
        let mut budget = max_records;
        for i in 0..count {
            let part = &mut self.parts[(self.cursor + i) % count];
            let Some(position) = part.position else {
                continue;
            };
            let Some(log) = part.topic.partition_log(part.tp.partition) else {
                continue;
            };
            let log = lock(log);
            let end = log.end_offset();
            let mut next = position;
            if position < end && budget > 0 {
                // position is in 0..end, so both fit in usize.
                let start = position as usize;
                let stop = (end as usize).min(start.saturating_add(budget));
                let slice = &log.records[start..stop];
                let mut records = Vec::with_capacity(slice.len());
                for (stored, offset) in slice.iter().zip(position..) {
                    records.push(Record {
                        topic: part.tp.topic.clone(),
                        partition: part.tp.partition,
                        offset,
                        key: stored.key.clone(),
                        value: stored.value.clone(),
                        headers: stored.headers.clone(),
                        timestamp_ms: Some(stored.timestamp_ms),
                    });
                }
                drop(log);
                budget -= records.len();
                next = position + records.len() as i64;
                part.position = Some(next);
                push_records(&mut events, records);
            } else {
                drop(log);
            }
            if next == end && part.eof_reported != Some(end) {
                part.eof_reported = Some(end);
                events.push(ConsumerEvent::EndOfPartition {
                    partition: part.tp.clone(),
                    next_offset: end,
                });
            }
        }
        if count > 0 {
            self.cursor = (self.cursor + 1) % count;
        }
        events
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        self.check_open()?;
        let member = match self.mode {
            Mode::Manual => {
                return Err(TransportError::Config(
                    "this consumer has a manual assignment; subscribe and assign are exclusive"
                        .into(),
                ))
            }
            Mode::Subscribed { member, .. } => Some(member),
            Mode::Idle => None,
        };
        if topics.is_empty() {
            return Err(TransportError::Config(
                "subscribe needs at least one topic".into(),
            ));
        }
        let member = self.inner.join_group(&self.group, member, topics)?;
        if let Mode::Subscribed { .. } = self.mode {
            return Ok(());
        }
        self.mode = Mode::Subscribed { member, seen: None };
        Ok(())
    }

    fn assign(&mut self, positions: &[(TopicPartition, Position)]) -> Result<()> {
        self.check_open()?;
        if let Mode::Subscribed { .. } = self.mode {
            return Err(TransportError::Config(
                "this consumer is subscribed to a group; subscribe and assign are exclusive".into(),
            ));
        }
        let mut parts = Vec::with_capacity(positions.len());
        for (tp, position) in positions {
            let mut part = self.part_state(tp, None)?;
            let log = part.log().ok_or_else(|| TransportError::UnknownPartition {
                partition: tp.clone(),
            })?;
            part.position = Some(resolve(tp, log, *position)?);
            parts.push(part);
        }
        parts.sort_by(|a, b| a.tp.cmp(&b.tp));
        parts.dedup_by(|later, earlier| later.tp == earlier.tp);
        self.parts = parts;
        self.cursor = 0;
        self.mode = if self.parts.is_empty() {
            Mode::Idle
        } else {
            Mode::Manual
        };
        Ok(())
    }

    fn seek(&mut self, partition: &TopicPartition, position: Position) -> Result<()> {
        self.check_open()?;
        let index = self
            .parts
            .binary_search_by(|p| p.tp.cmp(partition))
            .map_err(|_| TransportError::NotAssigned {
                partition: partition.clone(),
            })?;
        let part = &mut self.parts[index];
        let log = part.log().ok_or_else(|| TransportError::UnknownPartition {
            partition: partition.clone(),
        })?;
        part.position = Some(resolve(partition, log, position)?);
        part.eof_reported = None;
        // A waiting poll elsewhere is impossible (&mut self), so no wake-up is needed.
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<ConsumerEvent>> {
        self.check_open()?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Mark the current version seen before looking, so a change that lands
            // after the look wakes the wait below.
            self.changes.borrow_and_update();
            let events = self.collect(max_records);
            if !events.is_empty() {
                return Ok(events);
            }
            let changed = self.changes.changed();
            let woke = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, changed).await {
                    Ok(result) => result,
                    Err(_elapsed) => return Ok(Vec::new()),
                },
                None => changed.await,
            };
            // The sender lives in the shared state this consumer holds, so it cannot
            // be dropped; treat it as closed if it ever is.
            woke.map_err(|_| TransportError::Closed)?;
        }
    }

    async fn commit(&mut self, positions: &[(TopicPartition, i64)]) -> Result<()> {
        self.check_open()?;
        for (tp, offset) in positions {
            self.inner.topic(&tp.topic)?.partition(tp)?;
            if *offset < 0 {
                return Err(TransportError::InvalidOffset {
                    partition: tp.clone(),
                    offset: *offset,
                });
            }
        }
        let mut committed = lock(&self.inner.committed);
        let offsets = committed.entry(self.group.clone()).or_default();
        for (tp, offset) in positions {
            offsets.insert(tp.clone(), *offset);
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.iter().map(|p| p.tp.clone()).collect()
    }

    fn end_offset_hint(&self, partition: &TopicPartition) -> Option<i64> {
        let part = self.parts.iter().find(|p| p.tp == *partition)?;
        Some(lock(part.log()?).end_offset())
    }

    async fn close(&mut self) -> Result<()> {
        self.leave();
        self.closed = true;
        Ok(())
    }
}

impl MemoryConsumer {
    /// Drops the assignment and, for a group member, leaves the group.
    fn leave(&mut self) {
        if let Mode::Subscribed { member, .. } = self.mode {
            self.inner.leave_group(&self.group, member);
        }
        self.mode = Mode::Idle;
        self.parts.clear();
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}
