//! [`Generator`]: the iterator of records in delivery order.
//!
//! Each call to `next` first releases the earliest buffered record if no future record
//! can be delivered before it (every future event has `event_time >=` the frontier, the
//! time of the last slot action, and delivery is never before event time); otherwise it
//! advances the earliest slot by one action, writes the event it emits, and buffers it
//! with its delivery time, plus possibly a duplicate (same bytes, delivered later but
//! within the jitter bound) and a bad record (same key, one defect).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use playlake_schemas::EventType;

use crate::bad::BadReason;
use crate::config::{ConfigError, GeneratorConfig};
use crate::format::{write_event, EventFields};
use crate::model::{Emitted, Population};
use crate::rng::Rng;
use crate::summary::Summary;

/// What a generated record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A valid event, the first delivery of it.
    Valid,
    /// A byte-identical redelivery of an earlier valid record.
    Duplicate,
    /// A malformed record the processor must send to the DLQ, and why.
    Bad(BadReason),
}

/// One record, exactly as a producer would send it to `playback.events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecord {
    /// The Kafka key: the event's uuid (also for bad records, even when the value
    /// lacks or mangles it).
    pub key: Vec<u8>,
    /// The record value: JSON bytes (or deliberately broken bytes for `Bad`).
    pub value: Vec<u8>,
    /// When the event happened on the player (epoch ms); for a bad record, the time of
    /// the event it was made from.
    pub event_time_ms: i64,
    /// When it arrives: `event_time_ms + d`, `0 <= d <= out_of_order_jitter_ms`.
    /// Records come out of the iterator ordered by this (ties in generation order).
    pub delivery_order_ms: i64,
    /// Valid, duplicate or bad.
    pub kind: RecordKind,
    /// For a bad record only: the valid value of the event it was made from. Writers
    /// that do not send JSON bytes (`playlake produce --dynamodb-table` writes items)
    /// rebuild the defect from it in their own format; `None` for valid records and
    /// duplicates, so the common case costs nothing.
    pub original: Option<Vec<u8>>,
}

/// The delivery buffer: records in a slab, and a min-heap of small keys
/// (delivery time, generation sequence, slab index) so the heap moves 24-byte entries.
#[derive(Debug)]
struct DeliveryBuffer {
    /// (delivery - base) << 64 | seq, and the slab index.
    heap: BinaryHeap<Reverse<(u128, u32)>>,
    /// Smallest delivery time (the slice start): keys are offsets from it.
    base_ms: i64,
    slab: Vec<Option<GeneratedRecord>>,
    free: Vec<u32>,
}

impl DeliveryBuffer {
    fn new(base_ms: i64) -> Self {
        DeliveryBuffer {
            heap: BinaryHeap::new(),
            base_ms,
            slab: Vec::new(),
            free: Vec::new(),
        }
    }

    fn push(&mut self, seq: u64, record: GeneratedRecord) {
        let offset = (record.delivery_order_ms - self.base_ms).max(0) as u64;
        let key = (u128::from(offset) << 64) | u128::from(seq);
        let index = match self.free.pop() {
            Some(i) => {
                if let Some(place) = self.slab.get_mut(i as usize) {
                    *place = Some(record);
                }
                i
            }
            None => {
                self.slab.push(Some(record));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((key, index)));
    }

    fn earliest_delivery(&self) -> Option<i64> {
        self.heap
            .peek()
            .map(|Reverse((key, _))| self.base_ms + (key >> 64) as i64)
    }

    fn pop(&mut self) -> Option<GeneratedRecord> {
        let Reverse((_, index)) = self.heap.pop()?;
        self.free.push(index);
        self.slab.get_mut(index as usize)?.take()
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Internal counters, turned into a [`Summary`] on demand.
#[derive(Debug, Default)]
struct Counters {
    records: u64,
    yielded: u64,
    valid: u64,
    duplicates: u64,
    bad: [u64; BadReason::ALL.len()],
    by_type: [u64; EventType::ALL.len()],
    uuids: u64,
    streams_seen: Vec<bool>,
    streams: u64,
    users_seen: Vec<u64>,
    users: u64,
    first_time: Option<i64>,
    last_time: Option<i64>,
    max_delay: u64,
    bytes: u64,
}

const SLOT_BITS: u32 = 24;

fn schedule_key(start_ms: i64, t: i64, slot: u32) -> u64 {
    (((t - start_ms).max(0) as u64) << SLOT_BITS) | u64::from(slot)
}

/// The traffic generator: an iterator of [`GeneratedRecord`]s in delivery order.
#[derive(Debug)]
pub struct Generator {
    config: GeneratorConfig,
    rng: Rng,
    population: Population,
    /// Each active slot's next action: (event time - slice start) << 24 | slot. Fits:
    /// the slice is at most 366 days (< 2^40 ms) and slots at most 10M (< 2^24).
    schedule: BinaryHeap<Reverse<u64>>,
    pending: DeliveryBuffer,
    next_seq: u64,
    end_ms: i64,
    /// Event time of the last slot action: no future record is delivered before it.
    frontier: i64,
    done: bool,
    scratch: Vec<u8>,
    counters: Counters,
}

impl Generator {
    /// Validates `config` and sets up the audience.
    pub fn new(config: GeneratorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(config.seed);
        let (population, first) = Population::new(&config, &mut rng);
        let schedule = first
            .into_iter()
            .enumerate()
            .map(|(i, t)| Reverse(schedule_key(config.start_time_ms, t, i as u32)))
            .collect();
        let start = config.start_time_ms;
        let counters = Counters {
            streams_seen: vec![false; population.streams.len()],
            ..Counters::default()
        };
        Ok(Generator {
            end_ms: config.end_time_ms(),
            frontier: config.start_time_ms,
            config,
            rng,
            population,
            schedule,
            pending: DeliveryBuffer::new(start),
            next_seq: 0,
            done: false,
            scratch: Vec::with_capacity(512),
            counters,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Records generated but not yet yielded (the delivery buffer: about one jitter
    /// window of traffic, independent of the total).
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// What has been generated so far (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        let c = &self.counters;
        Summary {
            records: c.records,
            records_yielded: c.yielded,
            valid_events: c.valid,
            duplicates: c.duplicates,
            bad_records: c.bad.iter().sum(),
            bad_by_reason: BadReason::ALL
                .iter()
                .zip(c.bad)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.as_str(), n))
                .collect(),
            events_by_type: EventType::ALL
                .iter()
                .zip(c.by_type)
                .filter(|(_, n)| *n > 0)
                .map(|(t, n)| (t.as_str(), n))
                .collect(),
            distinct_uuids: c.uuids,
            distinct_streams: c.streams,
            distinct_users: c.users,
            first_event_time_ms: c.first_time,
            last_event_time_ms: c.last_time,
            max_delivery_delay_ms: c.max_delay,
            bytes: c.bytes,
        }
    }

    /// Advances the earliest slot by one action.
    fn generate_one(&mut self) {
        let Some(Reverse(key)) = self.schedule.pop() else {
            self.done = true;
            return;
        };
        let t = self.config.start_time_ms + (key >> SLOT_BITS) as i64;
        let slot = (key & ((1 << SLOT_BITS) - 1)) as u32;
        if t >= self.end_ms {
            self.done = true;
            self.schedule.clear();
            return;
        }
        self.frontier = t;
        let (emitted, next) = self.population.step(&mut self.rng, slot as usize, t);
        if next < self.end_ms {
            let key = schedule_key(self.config.start_time_ms, next, slot);
            self.schedule.push(Reverse(key));
        }
        if let Some(ev) = emitted {
            self.emit(&ev, t);
        }
        if self
            .config
            .max_events
            .is_some_and(|max| self.counters.valid >= max)
        {
            self.done = true;
        }
    }

    /// A delivery delay: mostly small, sometimes anywhere up to the jitter bound.
    fn delay(&mut self) -> i64 {
        let jitter = self.config.out_of_order_jitter_ms;
        let d = if self.rng.chance(0.8) {
            self.rng.below(jitter / 10 + 1)
        } else {
            self.rng.between(0, jitter)
        };
        d as i64
    }

    fn emit(&mut self, ev: &Emitted, t: i64) {
        // Every random choice first, in a fixed order, then the bytes.
        let jitter = self.config.out_of_order_jitter_ms as i64;
        let delivery = t + self.delay();
        let duplicate_at = if self.rng.chance(self.config.duplicate_fraction) {
            Some(delivery + self.rng.between(0, (t + jitter - delivery) as u64) as i64)
        } else {
            None
        };
        let bad = if self.rng.chance(self.config.bad_record_fraction) {
            let reason = BadReason::ALL[self.rng.below(BadReason::ALL.len() as u64) as usize];
            Some((reason, t + self.delay()))
        } else {
            None
        };
        let Some(stream) = self.population.streams.get(ev.stream as usize) else {
            return;
        };
        let fields = EventFields {
            uuid: &ev.uuid,
            stream_id: &stream.id,
            user: ev.user,
            event_type: ev.event_type,
            time_ms: t,
            pos_start_ms: ev.pos_start_ms,
            pos_end_ms: ev.pos_end_ms,
            event_seq: ev.event_seq,
            style: ev.style,
        };
        self.scratch.clear();
        write_event(&mut self.scratch, &fields, None);
        let value = self.scratch.clone();
        let bad_value = bad.map(|(reason, at)| {
            self.scratch.clear();
            write_event(&mut self.scratch, &fields, Some(reason));
            (reason, at, self.scratch.clone(), value.clone())
        });
        // The original first: on equal delivery times the lower sequence goes first.
        match duplicate_at {
            Some(at) => {
                self.push(ev, value.clone(), t, delivery, RecordKind::Valid, None);
                self.push(ev, value, t, at, RecordKind::Duplicate, None);
            }
            None => self.push(ev, value, t, delivery, RecordKind::Valid, None),
        }
        if let Some((reason, at, bytes, original)) = bad_value {
            self.push(ev, bytes, t, at, RecordKind::Bad(reason), Some(original));
        }
        self.count_valid(ev, t);
    }

    fn push(
        &mut self,
        ev: &Emitted,
        value: Vec<u8>,
        t: i64,
        delivery: i64,
        kind: RecordKind,
        original: Option<Vec<u8>>,
    ) {
        let c = &mut self.counters;
        c.records += 1;
        match kind {
            RecordKind::Valid => c.valid += 1,
            RecordKind::Duplicate => c.duplicates += 1,
            RecordKind::Bad(reason) => {
                if let Some(i) = BadReason::ALL.iter().position(|r| *r == reason) {
                    c.bad[i] += 1;
                }
            }
        }
        c.max_delay = c.max_delay.max((delivery - t) as u64);
        c.bytes += (ev.uuid.len() + value.len()) as u64;
        let record = GeneratedRecord {
            key: ev.uuid.to_vec(),
            value,
            event_time_ms: t,
            delivery_order_ms: delivery,
            kind,
            original,
        };
        self.pending.push(self.next_seq, record);
        self.next_seq += 1;
    }

    fn count_valid(&mut self, ev: &Emitted, t: i64) {
        let c = &mut self.counters;
        if let Some(i) = EventType::ALL.iter().position(|k| *k == ev.event_type) {
            c.by_type[i] += 1;
        }
        c.uuids += u64::from(ev.uuid_first);
        if let Some(seen) = c.streams_seen.get_mut(ev.stream as usize) {
            if !*seen {
                *seen = true;
                c.streams += 1;
            }
        }
        if let Some(user) = ev.user {
            let word = (user / 64) as usize;
            if word >= c.users_seen.len() {
                let want = (self.population.persons() / 64 + 1) as usize;
                c.users_seen.resize(want.max(word + 1), 0);
            }
            let bit = 1u64 << (user % 64);
            if c.users_seen[word] & bit == 0 {
                c.users_seen[word] |= bit;
                c.users += 1;
            }
        }
        c.first_time = Some(c.first_time.map_or(t, |f| f.min(t)));
        c.last_time = Some(c.last_time.map_or(t, |l| l.max(t)));
    }
}

impl Iterator for Generator {
    type Item = GeneratedRecord;

    fn next(&mut self) -> Option<GeneratedRecord> {
        loop {
            match self.pending.earliest_delivery() {
                Some(delivery) if self.done || delivery <= self.frontier => {
                    let record = self.pending.pop()?;
                    self.counters.yielded += 1;
                    return Some(record);
                }
                None if self.done => return None,
                _ => self.generate_one(),
            }
        }
    }
}
