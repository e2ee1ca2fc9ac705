//! The source's one error type. Variants say what failed and, where the operator can
//! act, how to fix it; AWS errors keep their cause chain and their error code, which
//! the reader matches to decide between backing off, re-acquiring and stopping.

use playlake_transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid {setting} {value:?}: {reason}\nhint: {fix}")]
    Config {
        setting: &'static str,
        value: String,
        reason: String,
        fix: String,
    },

    #[error("DynamoDB {operation} failed{}: {source}", .code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Aws {
        operation: &'static str,
        /// The AWS error code (`ExpiredIteratorException`, `ThrottlingException`, ...)
        /// when the service sent one.
        code: Option<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("table {table} has no DynamoDB stream\nhint: enable one with `aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`")]
    NoStream { table: String },

    #[error("records of shard {shard_id} were trimmed by the stream's 24 h retention before they were read (TrimmedDataAccessException): changes are lost\nhint: re-run with --backfill to re-snapshot the table, or set on_trimmed_data = \"continue\" in [source.dynamodb] to skip to the oldest record still kept")]
    TrimmedData { shard_id: String },

    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },

    #[error("publishing to Kafka failed: {0}")]
    Transport(#[from] TransportError),

    #[error("registering metrics failed: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl SourceError {
    pub(crate) fn aws<E>(operation: &'static str, err: E) -> Self
    where
        E: std::error::Error
            + Send
            + Sync
            + 'static
            + aws_sdk_dynamodb::error::ProvideErrorMetadata,
    {
        let code = err.code().map(str::to_string);
        SourceError::Aws {
            operation,
            code,
            source: Box::new(err),
        }
    }

    /// A request that could not be built (a bug in the request, never transient).
    pub(crate) fn request<E>(operation: &'static str, err: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        SourceError::Aws {
            operation,
            code: Some("InvalidRequest".into()),
            source: Box::new(err),
        }
    }

    /// The AWS error code, if this is an AWS error that has one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            SourceError::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Throttling: back off and retry.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self.aws_code(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "LimitExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
            )
        )
    }

    /// A transient AWS failure (network, 5xx): retry with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Aws { code, .. } => match code.as_deref() {
                None => true,
                Some(c) => matches!(
                    c,
                    "InternalServerError" | "InternalFailure" | "ServiceUnavailable"
                ),
            },
            _ => false,
        }
    }
}
