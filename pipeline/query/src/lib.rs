//! # playlake-query
//!
//! SQL over the lake (`playlake query`, SPEC section 8): DataFusion with one table per
//! lake table, under the same names and columns as the Athena DDL
//! (`playlake_lake::athena`), so the queries in `deploy/athena/queries/` run here
//! unchanged.
//!
//! ```text
//! --lake file:///path | s3://bucket/prefix
//!    | LakeQuery::open: playlake_checkpoint::Lake (S3 from the AWS variables,
//!    |                  AWS_ENDPOINT_URL honoured, http allowed for loopback)
//!    v
//! SessionContext: sessions, viewers, daily, events, cdc, errors    [schema]
//!    | each a LakeTable: at every scan, list <root>/<table>/, keep committed
//!    | *.parquet files at the partition depth, unescape values       [table]
//!    v
//! LakeQuery::sql -> QueryResult (Arrow batches) -> table | CSV | JSON   [output]
//! ```
//!
//! Partition columns (`dt`, `hour`, `stream_id`, `table`) are strings, as in the
//! Athena DDL, appended after the file columns, with values unescaped (`a%2Fb` reads
//! `a/b`; `__HIVE_DEFAULT_PARTITION__` reads null). Athena itself does not unescape
//! injected partition values; see `deploy/athena/queries/README.md`. The lake's
//! internal prefix `_playlake/` (staging files, manifests, checkpoints) is outside
//! every table and never read.

pub mod error;
pub mod output;
pub mod schema;
pub mod shipped;
pub mod table;

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::path::Path;
use object_store::ObjectStore;
use playlake_checkpoint::Lake;
use playlake_schemas::Table;

pub use error::{QueryError, Result};
pub use output::{OutputFormat, QueryResult};
pub use schema::tables_summary;
pub use shipped::{shipped, ShippedQuery, SHIPPED};
pub use table::{partition_values, LakeFile, LakeTable};

/// The URL under which the lake's object store is registered in the session. It is
/// internal: table paths are object paths inside that one store, whatever the lake.
const STORE_URL: &str = "playlake-lake://lake";

/// A DataFusion session over one lake.
pub struct LakeQuery {
    ctx: SessionContext,
    url: String,
}

impl std::fmt::Debug for LakeQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeQuery").field("url", &self.url).finish()
    }
}

impl LakeQuery {
    /// Opens the lake at `url` (`file:///abs`, `file://./rel`, `s3://bucket/prefix`).
    /// Fails with [`QueryError::NoLake`] when nothing is there: a read-only command
    /// must not create an empty lake, and an empty answer to a mistyped path would
    /// mislead.
    pub async fn open(url: &str) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("file://") {
            let dir = local_dir(rest);
            if !dir.is_dir() {
                return Err(QueryError::NoLake {
                    url: url.to_owned(),
                    reason: format!("{} is not a directory", dir.display()),
                });
            }
        }
        let lake = Lake::open(url).map_err(QueryError::Lake)?;
        let top = lake
            .store()
            .list_with_delimiter(Some(lake.root()))
            .await
            .map_err(|source| QueryError::Storage {
                path: lake.root().to_string(),
                source,
            })?;
        if top.common_prefixes.is_empty() && top.objects.is_empty() {
            return Err(QueryError::NoLake {
                url: url.to_owned(),
                reason: "the location is empty".to_owned(),
            });
        }
        Self::from_store(lake.store().clone(), lake.root().clone(), url)
    }

    /// A session over the lake at `root` in `store` (for an opened
    /// [`playlake_checkpoint::Lake`], or an in-memory store in tests). `url` is only
    /// used in messages.
    pub fn from_store(store: Arc<dyn ObjectStore>, root: Path, url: &str) -> Result<Self> {
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        ctx.runtime_env()
            .register_object_store(store_url.as_ref(), store.clone());
        for table in Table::ALL {
            let provider = LakeTable::new(table, store.clone(), store_url.clone(), &root);
            ctx.register_table(table.name(), Arc::new(provider))?;
        }
        Ok(Self {
            ctx,
            url: url.to_owned(),
        })
    }

    /// Runs one SQL statement and collects its result.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        let frame = self.ctx.sql(sql).await?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(QueryResult { schema, batches })
    }

    /// The DataFusion session, for callers that want DataFrames.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The lake URL this session reads.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The directory of a `file://` URL's remainder, resolved as
/// `playlake_checkpoint::Lake` resolves it (`/abs` stays, `./rel` and `rel` are
/// relative to the working directory).
fn local_dir(rest: &str) -> PathBuf {
    if rest.starts_with('/') {
        return PathBuf::from(rest);
    }
    let relative = rest.strip_prefix("./").unwrap_or(rest);
    std::env::current_dir()
        .map(|cwd| cwd.join(relative))
        .unwrap_or_else(|_| PathBuf::from(relative))
}

#[cfg(test)]
mod tests;
