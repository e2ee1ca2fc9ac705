//! Atomic, fenced checkpoints of a stage's state together with the input positions
//! that state reflects, kept in the lake's object storage.
//!
//! Every stage (source, processor, sink) calls [`CheckpointStore::load_latest`] when
//! it starts, restores the opaque state it gets back and resumes reading its inputs at
//! the stored [`Position`]s; while running it calls [`CheckpointStore::save`] after
//! the output that the state covers is durable. Kafka consumer-group offsets are only
//! for assignment and lag: this store is the source of truth (see the project's
//! delivery guarantees).
//!
//! Layout: `<lake>/_playlake/checkpoints/<stage>/<scope>/<sequence>.ckpt`, where the
//! sequence is a zero-padded, monotonically increasing number. Each object is written
//! once, with a conditional create, so two writers can never both write sequence `N`:
//! a writer that loaded `N` writes `N + 1`, and if anyone else got there first it gets
//! [`CheckpointError::Fenced`] and must stop. After each save the newest few
//! checkpoints are kept and older ones deleted; the latest is never deleted.
//!
//! ```no_run
//! # async fn demo() -> playlake_checkpoint::Result<()> {
//! use playlake_checkpoint::{CheckpointStore, Lake, Position};
//! let lake = Lake::open("file://./lake")?;
//! let mut store = CheckpointStore::new(&lake, "process", "group-a")?;
//! let restored = store.load_latest().await?; // None on the first start
//! let positions = vec![Position::new("playback.events", 0, 1234)];
//! store.save(positions, bytes::Bytes::from_static(b"state")).await?;
//! # Ok(()) }
//! ```

mod envelope;
mod error;
mod lake;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use envelope::FORMAT_VERSION;
pub use error::{CheckpointError, Result};
pub use lake::{Lake, S3Options};
pub use store::{CheckpointStore, DEFAULT_RETAINED};

/// Number of a checkpoint within its stage and scope; starts at 1 and only grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sequence(u64);

impl Sequence {
    /// Wraps a raw sequence number.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The sequence that follows this one.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a stage resumes reading one input partition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Input topic (or stream) name.
    pub topic: String,
    /// Partition (or shard index) within the topic.
    pub partition: i32,
    /// Offset of the first record the saved state does not cover yet.
    pub next_offset: i64,
}

impl Position {
    /// A position at `next_offset` of `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: i32, next_offset: i64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            next_offset,
        }
    }
}

/// One saved checkpoint as loaded back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its place in the scope's history.
    pub sequence: Sequence,
    /// Stage that wrote it (`source`, `process`, `sink`, ...).
    pub stage: String,
    /// Scope within the stage: a consumer group, partition or shard id.
    pub scope: String,
    /// Writer instance that wrote it, for debugging fencing.
    pub writer_id: String,
    /// Wall-clock creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Input positions the state reflects.
    pub positions: Vec<Position>,
    /// The stage's opaque state.
    pub state: Bytes,
}
