//! The one error type of the sink's run loop, shaped so that an operator knows what
//! to do:
//!
//! - [`SinkError::Config`]: a setting is out of range; fix the configuration.
//! - [`SinkError::Transport`]: the log (Kafka, or the in-process log) failed.
//! - [`SinkError::Storage`]: lake storage failed permanently (no such bucket, access
//!   denied) or stayed down longer than the retry budget.
//! - [`SinkError::Interrupted`]: shutdown during a storage outage; nothing to fix,
//!   the next start replays.
//! - [`SinkError::Checkpoint`]: saving or loading a partition's manifest failed.
//! - [`SinkError::Lake`]: writing or checking a file failed for a reason retrying
//!   cannot fix (Parquet encoder, an inconsistent manifest).
//! - [`SinkError::Background`]: the task saving and publishing a partition's files
//!   beside the decoding thread died (a bug); restart, the next run replays.

use playlake_checkpoint::CheckpointError;
use playlake_lake::LakeError;
use playlake_transport::TransportError;

/// Result alias of this crate.
pub type Result<T, E = SinkError> = std::result::Result<T, E>;

/// Why `playlake sink` stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A sink setting cannot be used; `reason` says what is allowed.
    #[error("invalid sink setting `{setting}`: {reason}")]
    Config {
        /// The setting's name, as in [`crate::SinkConfig`].
        setting: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// The transport failed while doing `operation`; check the broker connection.
    #[error("transport failed to {operation}")]
    Transport {
        /// What the sink was doing.
        operation: &'static str,
        /// The transport's error.
        #[source]
        source: TransportError,
    },

    /// Writing or publishing a lake file failed. `attempts` > 1 means a transient
    /// error did not heal within the retry budget (`storage_retry_max_seconds`);
    /// otherwise the error is permanent (check bucket, credentials, the manifest).
    #[error("lake write failed to {operation} after {attempts} attempt(s)")]
    Lake {
        /// What the sink was doing.
        operation: &'static str,
        /// How many times it was tried.
        attempts: u32,
        /// The lake writer's error.
        #[source]
        source: Box<LakeError>,
    },

    /// Shutdown was requested while a transient storage error was being retried
    /// (an outage): the sink stops without committing past its durable files, and
    /// the next start replays from the last checkpoint. Not a failure of the data.
    #[error("shutdown requested while retrying to {operation} after {attempts} attempt(s)")]
    Interrupted {
        /// What the sink was doing.
        operation: &'static str,
        /// How many times it was tried.
        attempts: u32,
    },

    /// Loading or saving the checkpoint of `scope` failed (after `attempts` tries).
    #[error("checkpoint {scope} failed to {operation} after {attempts} attempt(s)")]
    Checkpoint {
        /// What the sink was doing (`load`, `save the intent`, `save the commit`).
        operation: &'static str,
        /// The checkpoint scope (group and input partition).
        scope: String,
        /// How many times it was tried.
        attempts: u32,
        /// The checkpoint store's error.
        #[source]
        source: Box<CheckpointError>,
    },

    /// The task running a partition's saves and publishes stopped without an
    /// outcome (it panicked). Nothing it did not finish was committed.
    #[error("the save and publish task of checkpoint {scope} died: {reason}")]
    Background {
        /// The checkpoint scope (group and input partition).
        scope: String,
        /// The task's panic.
        reason: String,
    },
}

impl SinkError {
    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            setting,
            reason: reason.into(),
        }
    }

    pub(crate) fn transport(operation: &'static str, source: TransportError) -> Self {
        Self::Transport { operation, source }
    }

    pub(crate) fn lake(operation: &'static str, source: LakeError) -> Self {
        Self::Lake {
            operation,
            attempts: 1,
            source: Box::new(source),
        }
    }

    /// True when a shutdown interrupted the retries of a storage outage.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Interrupted { .. })
    }

    /// True when another instance took over a partition (its checkpoint is fenced).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Checkpoint { source, .. } if source.is_fenced())
    }
}
