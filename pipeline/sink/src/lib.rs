//! # playlake-sink
//!
//! The I/O layer of `playlake sink`: reads the processor's result topics and the raw
//! streams through the transport seam and writes them to the lake as
//! Hive-partitioned Parquet, exactly once (SPEC sections 4 to 6,
//! DESIGN.md section 9). The pure parts (decoding, partitioning, rolling,
//! the manifest) live in `playlake-lake`; this crate drives them.
//!
//! ```text
//! <prefix>.sessions/.viewers/.daily/.events/.dlq/.cdc.<t>
//!    | Consumer (group), Assigned -> restore manifest, seek replay_from   [run, partition]
//!    | DecodeRow (split with a helper thread) -> SinkManifest::admit      [decode]
//!    |   -> WriterPool::write_partitioned_rows (encoder thread)             [partition]
//!    | WriterPool::poll (size, rows, interval, memory) / drain / revoke    [run]
//!    | record_cuts, then on a runtime worker (one flight per partition):  [partition]
//!    |   key segment -> checkpoint (intent) -> LakeStore::publish (retried) [flight, retry]
//!    | commit (+ next intent) -> checkpoint (position) -> group offsets     [partition, flight]
//!    v
//! <lake>/<table>/dt=.../part-<topic>-<partition>-<first>-<last>.zstd.parquet
//! ```
//!
//! Entry point: [`run`] with a [`SinkConfig`]; it returns a [`SinkReport`] or a
//! [`SinkError`]. [`run_with_metrics`] also reports into a shared Prometheus
//! registry ([`metrics`]).
//!
//! ## What holds
//!
//! - Each input partition has its own manifest, saved as the checkpoint
//!   `_playlake/checkpoints/sink/<group>.<topic>-<partition>/` ([`checkpoint_scope`])
//!   whose position is `replay_from`; group offsets are committed after each save
//!   for lag monitoring only.
//! - A file's cut is saved (intent) before the file is published; positions
//!   advance only after every file they cover is published. Dropping the future of
//!   [`run`] at any await (a crash) loses nothing: the next run restores, re-makes
//!   the recorded cuts under the same names with the same bytes, and replays.
//! - Re-emitted results are written once (dedup by natural key, per partition).
//! - A partition whose checkpoint save is fenced drops its open files; it is
//!   restored again from the newest checkpoint when the group still assigns it to
//!   this member (a rebalance race), else left to its new owner.
//! - Transient storage errors are retried with backoff for
//!   `storage_retry_max_seconds`; permanent ones stop the run with the cause.
//! - Undecodable records are counted ([`SinkReport::undecodable_records`]) and
//!   logged with their coordinates; invalid `events` records are counted apart
//!   (they are archived from the DLQ by the `errors` table).
//!
//! ## Limits
//!
//! - While any partition is re-making recorded cuts, the rolling policy is not
//!   asked for any partition (the cuts fix where those files end); the replay
//!   ends as soon as the records up to the last recorded cut are read again.
//! - Row and size limits are checked between chunks of at most
//!   `min(max_rows_per_file, 1000)` records (and about 1 MiB) of a partition, so a
//!   file may hold up to one chunk more than `max_rows_per_file` when several
//!   directories interleave.

mod config;
mod decode;
mod error;
mod flight;
pub mod metrics;
mod partition;
mod retry;
mod run;

pub use config::{SinkConfig, SinkReport};
pub use error::{Result, SinkError};
pub use metrics::SinkMetrics;
pub use partition::{checkpoint_scope, CHECKPOINT_STAGE};
pub use run::{run, run_with_metrics};
