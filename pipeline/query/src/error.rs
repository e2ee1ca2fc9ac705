//! The one error type of `playlake-query`, with messages a user of `playlake query`
//! can act on.
//!
//! - [`QueryError::NoLake`]: the `--lake` location holds nothing; point it at a lake.
//! - [`QueryError::Lake`]: the lake URL cannot be opened (bad scheme, S3 settings).
//! - [`QueryError::Storage`]: listing the lake's files failed (network, permissions).
//! - [`QueryError::Sql`]: DataFusion refused or failed the query (syntax, unknown
//!   table or column, a function it lacks); the message names the lake's tables
//!   when a table or column was not found.
//! - [`QueryError::Output`]: the result could not be rendered as CSV or JSON.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::schema::tables_summary;

/// Result alias of this crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// What can go wrong while querying the lake.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Nothing exists at the lake location.
    #[error(
        "no lake at {url}: {reason}; give --lake the lake's URL (file:///path or \
         s3://bucket/prefix), or run `playlake demo` to make one in ./lake"
    )]
    NoLake {
        /// The lake URL as given.
        url: String,
        /// What was found instead.
        reason: String,
    },

    /// The lake URL cannot be opened.
    #[error("cannot open the lake")]
    Lake(#[source] playlake_checkpoint::CheckpointError),

    /// Listing or reading the lake's objects failed.
    #[error("cannot list the lake's files under `{path}`")]
    Storage {
        /// The object path listed.
        path: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// DataFusion refused or failed the query. The message already is DataFusion's
    /// root cause, so `error` is kept for callers ([`QueryError::datafusion`]) but not
    /// chained as a source, which would print the same text twice.
    #[error("{message}{hint}")]
    Sql {
        /// DataFusion's message, without its "Error during planning" prefixes.
        message: String,
        /// The list of tables and columns, when the query named an unknown one.
        hint: String,
        /// DataFusion's error.
        error: Box<DataFusionError>,
    },

    /// The result could not be written as CSV or JSON.
    #[error("cannot write the result as {format}")]
    Output {
        /// `csv` or `json`.
        format: &'static str,
        /// Arrow's reason.
        #[source]
        source: ArrowError,
    },
}

impl QueryError {
    /// Wraps a DataFusion error, adding the tables and their columns when the
    /// query named a table or column the lake does not have.
    pub fn sql(source: DataFusionError) -> Self {
        let root = source.find_root().to_string();
        let message = root
            .trim_start_matches("Error during planning: ")
            .trim_start_matches("SQL error: ")
            .trim_start_matches("Schema error: ")
            .to_owned();
        let lower = message.to_ascii_lowercase();
        let unknown_name = lower.contains("not found")
            || lower.contains("no field named")
            || lower.contains("does not exist");
        let hint = if unknown_name {
            format!("\nthe lake's tables:\n{}", tables_summary())
        } else {
            String::new()
        };
        QueryError::Sql {
            message,
            hint,
            error: Box::new(source),
        }
    }

    /// DataFusion's own error, for a [`QueryError::Sql`].
    pub fn datafusion(&self) -> Option<&DataFusionError> {
        match self {
            QueryError::Sql { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(source: DataFusionError) -> Self {
        QueryError::sql(source)
    }
}
