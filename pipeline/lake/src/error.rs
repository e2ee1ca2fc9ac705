//! The one error type of the lake writer, shaped so that the sink's run loop can act
//! on it.
//!
//! - [`LakeError::Config`]: a setting is out of range; fix the configuration.
//! - [`LakeError::Decode`] / [`LakeError::TimestampOutOfRange`] /
//!   [`LakeError::Batch`]: a record or row cannot be read, placed or encoded; the
//!   record (not the sink) is the problem.
//! - [`LakeError::Parquet`]: the Parquet encoder failed; the cause is kept.
//! - [`LakeError::Storage`]: object storage failed; [`LakeError::is_transient`] tells
//!   whether retrying with backoff can help (an outage) or not (no such bucket,
//!   access denied).
//! - [`LakeError::Manifest`]: the sink's saved state or a replay contradicts itself.

use playlake_schemas::TimestampOutOfRange;

/// Result alias of this crate.
pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// What can go wrong while turning rows into lake files.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A configuration value cannot be used; `reason` says what is allowed.
    #[error("invalid lake writer setting `{setting}`: {reason}")]
    Config {
        /// The setting's name, as in the configuration.
        setting: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// A row's timestamp has no calendar date, so it has no `dt` partition.
    #[error("{table} row has a timestamp outside the calendar range; it has no dt partition")]
    TimestampOutOfRange {
        /// Table of the row.
        table: &'static str,
        /// The timestamp.
        #[source]
        source: TimestampOutOfRange,
    },

    /// Building an Arrow record batch from rows failed.
    #[error("cannot build the Arrow batch of table {table}")]
    Batch {
        /// Table of the rows.
        table: &'static str,
        /// Arrow's reason.
        #[source]
        source: arrow::error::ArrowError,
    },

    /// The Parquet encoder failed while doing `operation` for the file of `path`.
    #[error("Parquet writer failed to {operation} for `{path}`")]
    Parquet {
        /// What the writer was doing.
        operation: &'static str,
        /// Partition directory (or file) concerned.
        path: String,
        /// Parquet's reason.
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// Object storage failed while doing `operation` on `path`.
    #[error("lake storage failed to {operation} `{path}`")]
    Storage {
        /// What was attempted (`put`, `put part`, `complete upload`, `rename`, ...).
        operation: &'static str,
        /// Object path.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// An object path built from partition values and a file name was refused.
    #[error("`{path}` is not a valid object path")]
    InvalidPath {
        /// The path text.
        path: String,
        /// object_store's reason.
        #[source]
        source: object_store::path::Error,
    },

    /// A record of an input topic holds no valid row of its table; the record is
    /// identified so it can be inspected (or sent to the DLQ by the caller).
    #[error("record {topic}/{partition}@{offset} is not a valid {table} row")]
    Decode {
        /// Table the record was read for.
        table: &'static str,
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// What is wrong with it.
        #[source]
        source: crate::decode::DecodeError,
    },

    /// The sink's manifest (saved cuts and positions) is inconsistent with what is
    /// being replayed; this is a bug or a tampered checkpoint, not a transient error.
    #[error("sink manifest is inconsistent: {reason}")]
    Manifest {
        /// What contradicts what.
        reason: String,
    },

    /// The Parquet encoder thread could not be started (the process is out of
    /// threads or memory).
    #[error("cannot start the Parquet encoder thread")]
    EncoderThread {
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },

    /// A file's encoding cannot go on: it failed before (with its own error,
    /// reported then), or the encoder thread is gone.
    #[error("the Parquet writer of {path} is unusable: {reason}")]
    Encoder {
        /// The partition directory of the file.
        path: String,
        /// What happened.
        reason: &'static str,
    },

    /// The sink's manifest could not be encoded or decoded.
    #[error("cannot {operation} the sink manifest")]
    ManifestCodec {
        /// `encode` or `decode`.
        operation: &'static str,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
}

impl LakeError {
    pub(crate) fn config(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            setting,
            reason: reason.into(),
        }
    }

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

    pub(crate) fn parquet(
        operation: &'static str,
        path: impl ToString,
        source: parquet::errors::ParquetError,
    ) -> Self {
        Self::Parquet {
            operation,
            path: path.to_string(),
            source,
        }
    }

    /// True when retrying the same operation later may succeed: storage errors other
    /// than missing buckets or objects, denied access, bad configuration or
    /// unsupported calls.
    /// Everything else is permanent for the input that caused it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Storage { source, .. } => {
                !names_permanent_s3_code(source)
                    && !matches!(
                        source,
                        object_store::Error::PermissionDenied { .. }
                            | object_store::Error::Unauthenticated { .. }
                            | object_store::Error::NotFound { .. }
                            | object_store::Error::NotSupported { .. }
                            | object_store::Error::NotImplemented { .. }
                            | object_store::Error::UnknownConfigurationKey { .. }
                            | object_store::Error::InvalidPath { .. }
                    )
            }
            _ => false,
        }
    }
}

/// S3 error codes that no retry heals. object_store reports most S3 failures other
/// than 401/403/404 on a single object as `Generic`, with the response body (which
/// holds `<Code>...</Code>`) in the message: a list of, or a put into, a bucket that
/// does not exist is one of those, and retrying it for minutes would hide a typo.
const PERMANENT_S3_CODES: [&str; 5] = [
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
];

/// True when `error` or one of its causes carries an S3 error code that no retry
/// heals (see [`PERMANENT_S3_CODES`]).
pub fn names_permanent_s3_code(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if PERMANENT_S3_CODES
            .iter()
            .any(|code| text.contains(&format!("<Code>{code}</Code>")))
        {
            return true;
        }
        current = e.source();
    }
    false
}
