//! # playlake-sink
//!
//! The I/O layer of `playlake sink`: reads the processor's result topics and the raw
//! streams through the transport seam and writes them to the lake as
//! Hive-partitioned Parquet, exactly once (SPEC sections 4 to 6,
//! `pipeline/lake/DESIGN-sink.md`). The pure parts (decoding, partitioning, rolling,
//! the manifest) live in `playlake-lake`; this crate drives them.
//!
//! ```text
//! <prefix>.sessions/.viewers/.daily/.events/.dlq/.cdc.<t>
//!    | Consumer (group), Assigned -> restore manifest, seek replay_from   [run, partition]
//!    | DecodeRow -> SinkManifest::admit -> WriterPool::write_rows          [partition]
//!    | WriterPool::poll (size, rows, interval, memory) / drain / revoke    [run]
//!    | record_cuts -> checkpoint (intent) -> LakeStore::publish (retried)  [partition, retry]
//!    | commit -> checkpoint (position) -> group offsets (advisory)
//!    v
//! <lake>/<table>/dt=.../part-<topic>-<partition>-<first>-<last>.zstd.parquet
//! ```
//!
//! Entry point: [`run`] with a [`SinkConfig`]; it returns a [`SinkReport`] or a
//! [`SinkError`].

mod config;
mod error;
mod partition;
mod retry;
mod run;

pub use config::{SinkConfig, SinkReport};
pub use error::{Result, SinkError};
pub use partition::{checkpoint_scope, CHECKPOINT_STAGE};
pub use run::run;
