//! [`LakeTable`]: one lake table as a DataFusion table, read from its committed
//! Parquet files with its Hive partition values unescaped our way.
//!
//! Data flow, per query: [`LakeTable::scan`] lists `<root>/<table>/` in the object
//! store, keeps only committed data files ([`partition_values`]: a `*.parquet`
//! file at exactly the table's partition depth, every directory `column=value` with
//! the table's columns in order), unescapes each value with
//! [`playlake_lake::hive::unescape`] (so `a%2Fb` reads `a/b` and
//! `__HIVE_DEFAULT_PARTITION__` reads null), drops the files whose partition values
//! cannot match the query's filters on partition columns, and hands the rest to
//! DataFusion's Parquet scan, which appends the values as columns.
//!
//! Why not DataFusion's `ListingTable`: it percent-decodes every `%XX` (our writer
//! only ever escapes ASCII bytes, so a stray non-ASCII sequence would decode
//! differently) and turns `__HIVE_DEFAULT_PARTITION__` into that string rather than
//! null. Why listing is safe: the sink publishes a file under its final name only
//! when it is complete (S3 PUT / multipart completion, or a rename out of
//! `<lake>/_playlake/staging/`), and staging files, manifests and checkpoints all
//! live under `<lake>/_playlake/`, outside every table directory; files of another
//! layout under a table directory are skipped with a debug log.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{project_schema, DFSchema, ScalarValue};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use playlake_lake::PartitionPath;
use playlake_schemas::Table;

use crate::error::QueryError;
use crate::schema::{file_schema, partition_fields, table_schema};

/// One committed data file of a table and its unescaped partition values (in the
/// order of [`Table::partition_columns`]; `None` is the null partition).
#[derive(Debug, Clone)]
pub struct LakeFile {
    /// The object.
    pub meta: ObjectMeta,
    /// Partition values, unescaped.
    pub values: Vec<Option<String>>,
}

/// The partition values of a file at `relative` (its path under the table's
/// directory, e.g. `dt=2025-06-01/stream_id=a%2Fb/part-x.zstd.parquet`), or `None`
/// when it is not a committed data file of `table`'s layout.
pub fn partition_values(table: Table, relative: &str) -> Option<Vec<Option<String>>> {
    let (dir, name) = match relative.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, relative),
    };
    // Hidden and underscore files (`_SUCCESS`, `.crc`, editors' temporaries) are
    // never data, as in Hive and Spark.
    if !name.ends_with(".parquet") || name.starts_with('.') || name.starts_with('_') {
        return None;
    }
    let directory = match dir {
        Some(dir) => format!("{}/{dir}", table.name()),
        None => table.name().to_owned(),
    };
    let (parsed, values) = PartitionPath::parse(&directory)?;
    (parsed == table).then_some(values)
}

/// A lake table for DataFusion.
#[derive(Debug)]
pub struct LakeTable {
    table: Table,
    store: Arc<dyn ObjectStore>,
    /// The URL under which `store` is registered in the session's runtime.
    store_url: ObjectStoreUrl,
    /// `<lake root>/<table>`.
    prefix: Path,
    schema: SchemaRef,
}

impl LakeTable {
    /// The table `table` of the lake at `root` in `store`, which the session knows
    /// as `store_url`.
    pub fn new(
        table: Table,
        store: Arc<dyn ObjectStore>,
        store_url: ObjectStoreUrl,
        root: &Path,
    ) -> Self {
        let prefix = if root.as_ref().is_empty() {
            Path::from(table.name())
        } else {
            root.clone().join(table.name())
        };
        Self {
            table,
            store,
            store_url,
            prefix,
            schema: table_schema(table),
        }
    }

    /// The lake table this provider reads.
    pub fn table(&self) -> Table {
        self.table
    }

    /// Every committed data file of the table, in path order.
    pub async fn list_files(&self) -> Result<Vec<LakeFile>, QueryError> {
        let metas: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|source| QueryError::Storage {
                path: self.prefix.to_string(),
                source,
            })?;
        let mut files = Vec::with_capacity(metas.len());
        for meta in metas {
            let Some(relative) = meta
                .location
                .as_ref()
                .strip_prefix(self.prefix.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            match partition_values(self.table, relative) {
                Some(values) => files.push(LakeFile { meta, values }),
                None => tracing::debug!(
                    table = self.table.name(),
                    path = %meta.location,
                    "not a committed data file of this table; skipped"
                ),
            }
        }
        files.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
        Ok(files)
    }
}

/// Keeps the files whose partition values can satisfy every filter in `filters`
/// (each of which refers to partition columns only). A filter that is false or null
/// for a file's values rules the file out; evaluation is exact because it runs on
/// the very values the scan will attach to the file's rows.
fn prune(
    table: Table,
    files: Vec<LakeFile>,
    filters: &[Expr],
    state: &dyn Session,
) -> DfResult<Vec<LakeFile>> {
    let Some(predicate) = conjunction(filters.iter().cloned()) else {
        return Ok(files);
    };
    if files.is_empty() {
        return Ok(files);
    }
    let fields = partition_fields(table);
    let columns: Vec<ArrayRef> = (0..fields.len())
        .map(|i| {
            let values: StringArray = files.iter().map(|f| f.values[i].as_deref()).collect();
            Arc::new(values) as ArrayRef
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let df_schema = DFSchema::try_from(schema)?;
    let expr = state.create_physical_expr(predicate, &df_schema)?;
    let result = expr.evaluate(&batch)?.into_array(files.len())?;
    let keep = result
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            DataFusionError::Internal("a partition filter did not evaluate to booleans".into())
        })?
        .clone();
    Ok(files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.is_valid(*i) && keep.value(*i))
        .map(|(_, f)| f)
        .collect())
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters on partition columns select files; everything is still filtered
        // again above the scan (Inexact), so file selection is only an optimisation.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = self
            .list_files()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let partition_columns = self.table.partition_columns();
        let partition_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| expr_applicable_for_cols(partition_columns, f))
            .cloned()
            .collect();
        let files = prune(self.table, files, &partition_filters, state)?;
        if files.is_empty() {
            let projected = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }

        let target = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); target.min(files.len())];
        let group_count = groups.len();
        for (i, file) in files.into_iter().enumerate() {
            let values = file
                .values
                .into_iter()
                .map(ScalarValue::Utf8)
                .collect::<Vec<_>>();
            groups[i % group_count]
                .push(PartitionedFile::new_from_meta(file.meta).with_partition_values(values));
        }

        let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
        let source = format.file_source(
            TableSchema::builder(file_schema(self.table))
                .with_table_partition_cols(partition_fields(self.table))
                .build(),
        );
        // Limits only hold when nothing above the scan filters rows out.
        let limit = if filters.is_empty() { limit } else { None };
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_files_at_the_partition_depth_count() {
        let values = |t, p| partition_values(t, p);
        assert_eq!(
            values(
                Table::Sessions,
                "dt=2025-06-01/stream_id=a%2Fb/part-x.zstd.parquet"
            ),
            Some(vec![Some("2025-06-01".into()), Some("a/b".into())])
        );
        assert_eq!(
            values(
                Table::Viewers,
                "dt=2025-06-01/stream_id=__HIVE_DEFAULT_PARTITION__/p.parquet"
            ),
            Some(vec![Some("2025-06-01".into()), None])
        );
        assert_eq!(
            values(
                Table::Viewers,
                "dt=2025-06-01/stream_id=%5F_HIVE_DEFAULT_PARTITION__/p.parquet"
            ),
            Some(vec![
                Some("2025-06-01".into()),
                Some("__HIVE_DEFAULT_PARTITION__".into())
            ])
        );
        assert_eq!(
            values(Table::Events, "dt=2025-06-01/hour=07/p.snappy.parquet"),
            Some(vec![Some("2025-06-01".into()), Some("07".into())])
        );
        // Not data: wrong depth, wrong column, wrong order, not Parquet, hidden.
        for (table, path) in [
            (Table::Sessions, "dt=2025-06-01/p.parquet"),
            (Table::Sessions, "dt=2025-06-01/stream_id=s/x/p.parquet"),
            (Table::Sessions, "stream_id=s/dt=2025-06-01/p.parquet"),
            (Table::Daily, "day=2025-06-01/p.parquet"),
            (Table::Daily, "dt=2025-06-01/p.parquet.tmp"),
            (Table::Daily, "dt=2025-06-01/_SUCCESS"),
            (Table::Daily, "dt=2025-06-01/.p.parquet"),
            (Table::Daily, "dt=2025-06-01/_p.parquet"),
            (Table::Daily, "p.parquet"),
        ] {
            assert_eq!(values(table, path), None, "{table} {path}");
        }
    }
}
