//! The schema of each lake table as SQL sees it: the Parquet columns of
//! [`Table::arrow_schema`] followed by the Hive partition columns of
//! [`Table::partition_columns`], typed as the Athena DDL declares them
//! (`playlake_lake::athena`: every partition column is a `string`, nullable because
//! `__HIVE_DEFAULT_PARTITION__` reads back as null).
//!
//! Data flow: [`crate::table::LakeTable`] scans files with [`file_schema`] and
//! appends the values of [`partition_fields`]; `playlake query --help` prints
//! [`tables_summary`].

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use playlake_lake::athena::athena_type;
use playlake_schemas::Table;

/// The columns stored in the table's Parquet files.
pub fn file_schema(table: Table) -> SchemaRef {
    table.arrow_schema()
}

/// The partition columns, outermost first: strings, as in the Athena DDL.
pub fn partition_fields(table: Table) -> Vec<FieldRef> {
    table
        .partition_columns()
        .iter()
        .map(|name| Arc::new(Field::new(*name, DataType::Utf8, true)))
        .collect()
}

/// The table's SQL schema: file columns, then partition columns.
pub fn table_schema(table: Table) -> SchemaRef {
    let file = file_schema(table);
    let mut fields: Vec<FieldRef> = file.fields().iter().cloned().collect();
    fields.extend(partition_fields(table));
    Arc::new(Schema::new(fields))
}

/// One block per table: its name, partition columns and every column with its
/// Athena type, for `--help` and for errors that name an unknown table or column.
pub fn tables_summary() -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let partitions = table.partition_columns();
        out.push_str(&format!(
            "  {} (partitioned by {})\n",
            table.name(),
            partitions.join(", ")
        ));
        let columns: Vec<String> = table_schema(table)
            .fields()
            .iter()
            .map(|f| {
                let ty = athena_type(f.data_type()).unwrap_or("string");
                format!("{} {ty}", f.name())
            })
            .collect();
        out.push_str(&format!("      {}\n", columns.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_columns_come_last_as_strings() {
        let schema = table_schema(Table::Sessions);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names.first(), Some(&"uuid"));
        assert_eq!(&names[names.len() - 2..], ["dt", "stream_id"]);
        for table in Table::ALL {
            for field in partition_fields(table) {
                assert_eq!(field.data_type(), &DataType::Utf8);
                assert!(field.is_nullable());
            }
        }
    }

    #[test]
    fn the_summary_names_every_table_and_column() {
        let summary = tables_summary();
        for table in Table::ALL {
            assert!(
                summary.contains(&format!("  {} (", table.name())),
                "{summary}"
            );
            for field in table_schema(table).fields() {
                assert!(summary.contains(field.name().as_str()), "{summary}");
            }
        }
        assert!(summary.contains("session_start timestamp"), "{summary}");
    }
}
