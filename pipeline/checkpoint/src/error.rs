//! Errors of the checkpoint store, shaped so that callers can act on them.
//!
//! - [`CheckpointError::Fenced`]: another writer owns the scope now; stop writing.
//! - [`CheckpointError::InvalidUrl`] / [`CheckpointError::InvalidName`]: configuration
//!   mistakes, reported with how to fix them.
//! - [`CheckpointError::Corrupt`]: an object exists but is not a checkpoint we can trust.
//! - [`CheckpointError::Storage`]: object storage failed; the cause is kept as `source`.

use crate::Sequence;

/// Result alias of this crate.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// What can go wrong while saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Another writer already wrote `sequence` (or a later one) for this stage and
    /// scope: this writer works from a stale checkpoint and must stop. Restoring the
    /// latest checkpoint and starting again is the caller's decision.
    #[error(
        "checkpoint {stage}/{scope}: sequence {sequence} is already taken by a newer writer; \
         this writer is fenced and must stop (restore the latest checkpoint before writing again)"
    )]
    Fenced {
        stage: String,
        scope: String,
        sequence: Sequence,
    },

    /// The lake URL cannot be used; `reason` says how to write it.
    #[error("invalid lake URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// A stage, scope or writer id that cannot be used as a path segment.
    #[error("invalid checkpoint {what} `{value}`: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// An object under the checkpoint prefix is not a valid checkpoint.
    #[error(
        "corrupt checkpoint `{path}`: {reason} (inspect the object; deleting it makes the \
         previous checkpoint the latest again)"
    )]
    Corrupt { path: String, reason: String },

    /// Object storage failed while doing `operation` on `path`.
    #[error("checkpoint storage failed to {operation} `{path}`")]
    Storage {
        operation: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
}

impl CheckpointError {
    pub(crate) fn storage(
        operation: &'static str,
        path: impl ToString,
        source: object_store::Error,
    ) -> Self {
        Self::Storage {
            operation,
            path: path.to_string(),
            source,
        }
    }

    /// True when this writer lost ownership of its scope and must stop.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}
