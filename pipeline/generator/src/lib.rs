//! # playlake-generator
//!
//! A pure, deterministic generator of realistic playback traffic, used by `playlake
//! demo` (through the in-process log) and `playlake produce` (to Kafka). No I/O and no
//! clock reads: the slice's start time is part of [`GeneratorConfig`], and the same
//! config (including `seed`) always yields byte-identical records.
//!
//! ```text
//! GeneratorConfig --validate--> Generator
//!   model::Population   viewer slots: sessions of start/heartbeat/pause/seek/stop,
//!        |              returns (same or new uuid), multi-device users, live + VOD
//!        v  event-time order (min-heap of each slot's next action)
//!   format::write_event JSON bytes as a player would send them (RFC 3339 with
//!        |              offsets or epoch ms, event_id present or not), plus
//!        |              duplicates (same bytes) and bad records (one defect each)
//!        v  delivery = event_time + random delay <= out_of_order_jitter_ms
//!   delivery buffer     min-heap on delivery time, released once no later event
//!        |              can be delivered earlier
//!        v
//!   Iterator<Item = GeneratedRecord> in delivery order  (+ Summary)
//! ```
//!
//! Memory is constant in the number of events: the slots (one per viewer), the streams,
//! and the delivery buffer (the records of one jitter window).
//!
//! ```
//! use playlake_generator::{Generator, GeneratorConfig, RecordKind};
//!
//! let config = GeneratorConfig { viewers: 20, duration_ms: 60_000, ..GeneratorConfig::default() };
//! let mut generator = Generator::new(config).expect("valid config");
//! let valid = generator.by_ref().filter(|r| r.kind == RecordKind::Valid).count();
//! assert_eq!(generator.summary().valid_events, valid as u64);
//! ```

mod bad;
mod config;
mod format;
mod generator;
mod model;
mod rng;
mod summary;

pub use bad::BadReason;
pub use config::{ConfigError, GeneratorConfig, DEFAULT_START_TIME_MS, MAX_STREAMS, MAX_VIEWERS};
pub use generator::{GeneratedRecord, Generator, RecordKind};
pub use summary::Summary;
