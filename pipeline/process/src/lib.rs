//! # playlake-process
//!
//! The I/O layer of `playlake process` (SPEC sections 3, 4 and 6): it reads playback
//! events through the [`Transport`] seam, feeds them to the pure operators of
//! `playlake-processor`, publishes what they return and checkpoints their state
//! together with the input positions that state reflects.
//!
//! ```text
//!  <prefix>.events  (consumer group <group_id>)
//!     | parse: invalid -> <prefix>.dlq (original bytes + 4 headers)
//!     v
//!  source side (source.rs): one PartitionProcessor per owned events partition,
//!     | late events -> <prefix>.late (operator + watermark headers)
//!     | final sessions -> <prefix>.sessions (JSON, key = natural key)
//!     | partials (key stream_id), resume candidates (key user_id/stream_id)
//!     |   then watermark announcements to every repartition partition (one
//!     |   record per repartition partition a round, at most once a second)
//!     v
//!  <prefix>.internal.partials  (consumer group <group_id>.merge)
//!     v
//!  merge side (merge.rs): one MergeOperator + ResumeMerge per repartition partition
//!     -> <prefix>.viewers, <prefix>.daily, <prefix>.resume (compacted)
//! ```
//!
//! Both sides run in one task ([`run`]), each with its own consumer group and its own
//! checkpoint scopes (`events-<p>` and `partials-<p>` in stage `process`). Every
//! `send` returns after the log acknowledged the records, and each poll's outputs are
//! sent before the next poll, so when a checkpoint is written every output of the
//! state it holds is durable. After a crash the state is restored and the input
//! replayed: replayed outputs are identical (the operators are deterministic) and the
//! merge side replaces partials by identity `(source partition, key)`, so results
//! deduplicated by natural key are exactly-once, without Kafka transactions.
//!
//! **Drain mode** ([`ProcessConfig::drain`]): the end offsets of the events topic are
//! read at start; the source side reads each partition up to its end, calls
//! `drain()` (everything final, real watermark kept), publishes, and sends a
//! *drained* marker to every repartition partition. The merge side finishes a
//! repartition partition once every source partition's marker covering its end has
//! arrived; then it drains, publishes and checkpoints. The run returns when every
//! partition this instance owns is finished *and* the checkpoint store shows every
//! repartition partition of the group finished, so several instances in one group
//! drain together: a member whose partitions are done keeps its place in the group
//! (and takes over partitions of members that die) until the whole input is done. A
//! member never assigned anything waits for its shutdown.
//!
//! **Rebalances**: a revoked partition is dropped without a final checkpoint; its new
//! owner restores the last checkpoint and replays, re-emitting identical records. A
//! checkpoint write refused as `Fenced` (a newer writer exists) drops the partition's
//! state with an error log; if the group still assigns the partition here, the newer
//! checkpoint is restored and replayed from.
//!
//! Kafka group offsets are committed after each checkpoint, for lag monitoring only.
//!
//! Metrics ([`metrics`]): [`run_with_metrics`] reports counters, state sizes,
//! watermark lag, checkpoint latency and concurrent viewers into a shared registry;
//! [`run`] keeps them in a private one.
//!
//! * [`codec`]: topic names, the repartition record format, output records.
//! * [`source`]: the source side; [`merge`]: the merge side; `runner.rs`: the loop
//!   ([`run`]).

pub mod codec;
mod error;
pub mod merge;
pub mod metrics;
mod runner;
pub mod source;

use std::collections::BTreeMap;

pub use error::ProcessError;
pub use metrics::ProcessMetrics;
pub use playlake_processor::Settings;
pub use runner::{run, run_with_metrics};

#[doc(no_inline)]
pub use playlake_checkpoint::Lake;
#[doc(no_inline)]
pub use playlake_transport::Transport;

/// Checkpoint stage name of the processor (`_playlake/checkpoints/process/...`).
pub const CHECKPOINT_STAGE: &str = "process";

/// Default checkpoint interval: 5 s.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 5_000;

/// Configuration of one `playlake process` instance.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    /// Topic prefix (`playback`): reads `<prefix>.events`, writes the other topics.
    pub topic_prefix: String,
    /// Consumer group of the source side; the merge side uses `<group_id>.merge`.
    pub group_id: String,
    /// Wall-clock time between checkpoints, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Event-time settings of the operators.
    pub settings: Settings,
    /// Read everything present at start, finalize everything, checkpoint, return.
    pub drain: bool,
    /// Partitions of `<prefix>.internal.partials` when it is created.
    pub repartition_partitions: i32,
    /// Partitions of the other topics when this process creates them (missing).
    pub topic_partitions: i32,
    /// Longest wait of one consumer poll, in milliseconds (also the shutdown latency).
    pub poll_timeout_ms: u64,
    /// Most records handled per poll. Large, so that the loop's fixed cost per poll
    /// (acknowledged sends, about three a poll) is shared by everything queued: at
    /// 2,000 a poll the loop kept up with 2,000 live records/s on Tansu only while a
    /// poll took under a second.
    pub max_poll_records: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            topic_prefix: "playback".to_owned(),
            group_id: "playlake-process".to_owned(),
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            settings: Settings::default(),
            drain: false,
            repartition_partitions: 8,
            topic_partitions: 8,
            poll_timeout_ms: 100,
            max_poll_records: 20_000,
        }
    }
}

/// What one [`run`] did. Reconciles: `records_in = valid + sum(dlq_by_reason)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessReport {
    /// Records read from `<prefix>.events` (replays after a restore included).
    pub records_in: u64,
    /// Records that parsed as valid playback events.
    pub valid: u64,
    /// Records sent to the DLQ, by `InvalidEvent::reason_code`.
    pub dlq_by_reason: BTreeMap<String, u64>,
    /// Valid events that were copies of an event already applied.
    pub duplicates: u64,
    /// Late events per operator (`sessions`, `viewers`, `daily`).
    pub late_by_operator: BTreeMap<String, u64>,
    /// Records written to `<prefix>.sessions`.
    pub sessions_out: u64,
    /// Partials and resume candidates written to the repartition topic.
    pub partials_out: u64,
    /// Of those, open partials of idle partitions, sent before their idle
    /// announcement (replaced at the merge if the partition wakes up).
    pub provisional_partials: u64,
    /// Partials the merge dropped because their key was already final (replays).
    pub partials_already_final: u64,
    /// Records written to `<prefix>.viewers`.
    pub viewers_out: u64,
    /// Records written to `<prefix>.daily`.
    pub daily_out: u64,
    /// Records written to `<prefix>.resume`.
    pub resume_out: u64,
    /// Repartition records that could not be decoded (skipped, logged as errors).
    pub repartition_undecodable: u64,
    /// Checkpoints written (both sides).
    pub checkpoints_written: u64,
    /// Largest checkpoint state written, in bytes.
    pub checkpoint_bytes_max: u64,
    /// Longest checkpoint restore (list + read), in milliseconds.
    pub restore_ms_max: u64,
    /// Checkpoint writes refused because another writer fenced this one (the
    /// partition's state is dropped and, if still assigned, restored anew).
    pub fenced: u64,
}
