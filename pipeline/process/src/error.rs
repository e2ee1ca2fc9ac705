//! The one error type of the processor's I/O layer.

use playlake_checkpoint::CheckpointError;
use playlake_transport::TransportError;

/// Why `playlake process` stopped. Each variant names what to check.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The configuration cannot work (see the message for the field to fix).
    #[error("invalid process configuration: {0}")]
    Config(String),

    /// The log (Kafka or the in-process transport) failed.
    #[error(
        "transport failed to {operation} (check that the broker is reachable and the topic exists)"
    )]
    Transport {
        /// What was being done.
        operation: String,
        /// The transport's error.
        #[source]
        source: Box<TransportError>,
    },

    /// The checkpoint store failed (other than fencing, which is handled per scope).
    #[error("checkpoint {scope} failed to {operation} (check the lake URL and its permissions)")]
    Checkpoint {
        /// The checkpoint scope.
        scope: String,
        /// What was being done.
        operation: &'static str,
        /// The store's error.
        #[source]
        source: Box<CheckpointError>,
    },

    /// A checkpoint exists but its state cannot be decoded (written by an
    /// incompatible version?). Deleting it makes the previous one the latest.
    #[error("checkpoint {scope} holds state that cannot be decoded")]
    CorruptState {
        /// The checkpoint scope.
        scope: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be encoded as JSON (a bug: every state and row is plain data).
    #[error("could not encode {what} as JSON")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },

    /// Drain mode could not learn where the input partitions end.
    #[error("drain: no end of partition reported for {topic} within {timeout_ms} ms (is the broker reachable?)")]
    EndOffsets {
        /// The input topic.
        topic: String,
        /// How long it waited.
        timeout_ms: u64,
    },
}

impl ProcessError {
    pub(crate) fn transport(operation: impl Into<String>) -> impl FnOnce(TransportError) -> Self {
        let operation = operation.into();
        move |source| Self::Transport {
            operation,
            source: Box::new(source),
        }
    }

    pub(crate) fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Encode { what, source }
    }
}
