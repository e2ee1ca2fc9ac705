//! Athena `CREATE EXTERNAL TABLE` statements for the lake's tables (SPEC section 5,
//! issue 4 item 6).
//!
//! Data flow: the writer encodes rows with [`Table::arrow_schema`] and lays files out
//! under `<table>/<col>=<value>/...` in the order of [`Table::partition_columns`];
//! [`athena_ddl`] reads the same two definitions and declares the table for Athena,
//! so the DDL cannot drift from the files. `deploy/athena/<table>.sql` holds the
//! output for the placeholder location [`PLACEHOLDER_LOCATION`]; the test
//! `pipeline/lake/tests/athena.rs` checks that those files are up to date and that
//! the declared columns equal the schema of Parquet files written by the lake writer.
//!
//! Partitions are declared with partition projection, so no `MSCK REPAIR TABLE` or
//! crawler is needed:
//!
//! | column | Athena type | projection |
//! |---|---|---|
//! | `dt` | `string` | `date`, format `yyyy-MM-dd`, range [`DT_RANGE`] |
//! | `hour` | `string` | `integer`, range `0,23`, digits 2 |
//! | `stream_id`, `table` | `string` | `injected`: every query must filter on the column with `=` or `IN` |
//!
//! `storage.location.template` repeats the Hive layout, for example
//! `s3://bucket/prefix/sessions/dt=${dt}/stream_id=${stream_id}/`. Injected values
//! are put into the path as written in the query, so a value that the writer
//! Hive-escaped (`/`, `=`, `%`, `..`, control characters) must be queried in its
//! escaped form, and the null partition (`__HIVE_DEFAULT_PARTITION__`) is only
//! reachable by filtering on that literal.

use arrow::datatypes::DataType;
use playlake_schemas::Table;

/// The location used for the checked-in `deploy/athena/*.sql` files.
pub const PLACEHOLDER_LOCATION: &str = "s3://YOUR-BUCKET/playlake";

/// The `projection.dt.range` of every table: from 2020-01-01 to tomorrow (UTC), so
/// that days of a time zone ahead of UTC are reachable.
pub const DT_RANGE: &str = "2020-01-01,NOW+1DAYS";

/// The Athena (Hive DDL) type of an Arrow type of the lake's schemas, `None` for a
/// type the lake never writes.
pub fn athena_type(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Timestamp(_, _) => Some("timestamp"),
        DataType::Int64 => Some("bigint"),
        DataType::Int32 => Some("int"),
        DataType::Float64 => Some("double"),
        DataType::Float32 => Some("float"),
        DataType::Utf8 | DataType::LargeUtf8 => Some("string"),
        DataType::Boolean => Some("boolean"),
        DataType::Binary | DataType::LargeBinary => Some("binary"),
        DataType::Date32 => Some("date"),
        _ => None,
    }
}

/// The data columns of `table` as Athena declares them: `(name, type)`, in file
/// order. A type without an Athena mapping (none exists today, a test checks it)
/// is declared as `string`.
pub fn data_columns(table: Table) -> Vec<(String, &'static str)> {
    table
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                athena_type(f.data_type()).unwrap_or("string"),
            )
        })
        .collect()
}

/// The projection properties of one partition column, without the `projection.`
/// prefix of their keys: `(key suffix, value)`.
fn projection(column: &str) -> Vec<(&'static str, &'static str)> {
    match column {
        "dt" => vec![
            ("type", "date"),
            ("format", "yyyy-MM-dd"),
            ("range", DT_RANGE),
            ("interval", "1"),
            ("interval.unit", "DAYS"),
        ],
        "hour" => vec![("type", "integer"), ("range", "0,23"), ("digits", "2")],
        _ => vec![("type", "injected")],
    }
}

/// An identifier quoted for Hive DDL.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal quoted for Hive DDL.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The `CREATE EXTERNAL TABLE` statement of `table` for a lake at `location`
/// (`s3://bucket/prefix`, a trailing `/` is ignored), in `database` if given. The
/// statement starts with SQL comments on how to query it and has no trailing `;`.
pub fn athena_ddl(table: Table, location: &str, database: Option<&str>) -> String {
    let root = format!("{}/{}", location.trim_end_matches('/'), table.name());
    let partitions = table.partition_columns();
    let name = match database {
        Some(db) => format!("{}.{}", ident(db), ident(table.name())),
        None => ident(table.name()),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "-- playlake lake table `{}`: Parquet under {root}/, partitioned by {}.\n",
        table.name(),
        partitions.join(", ")
    ));
    out.push_str(
        "-- Partition projection: no MSCK REPAIR TABLE or crawler is needed. \
         dt is the day in the processor's time zone.\n",
    );
    let injected: Vec<&str> = partitions
        .iter()
        .copied()
        .filter(|c| !matches!(*c, "dt" | "hour"))
        .collect();
    if !injected.is_empty() {
        out.push_str(&format!(
            "-- {} uses injected projection: every query MUST filter on it with = or IN \
             (for example WHERE \"{}\" = 'value'), or Athena rejects the query.\n",
            injected.join(", "),
            injected[0]
        ));
        out.push_str(
            "-- Values are Hive-escaped in paths (/ = % .. and control characters as %XX, \
             null as __HIVE_DEFAULT_PARTITION__); filter on the escaped form for such values.\n",
        );
    }
    out.push_str(&format!("CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n"));
    let columns = data_columns(table);
    let last = columns.len().saturating_sub(1);
    for (i, (column, ty)) in columns.iter().enumerate() {
        let sep = if i == last { "" } else { "," };
        out.push_str(&format!("  {} {ty}{sep}\n", ident(column)));
    }
    out.push_str(")\nPARTITIONED BY (\n");
    let last = partitions.len().saturating_sub(1);
    for (i, column) in partitions.iter().enumerate() {
        let sep = if i == last { "" } else { "," };
        out.push_str(&format!("  {} string{sep}\n", ident(column)));
    }
    out.push_str(")\nSTORED AS PARQUET\n");
    out.push_str(&format!("LOCATION {}\n", literal(&format!("{root}/"))));
    let mut template = root.clone();
    for column in partitions {
        template.push_str(&format!("/{column}=${{{column}}}"));
    }
    template.push('/');
    let mut properties = vec![("projection.enabled".to_owned(), "true".to_owned())];
    for column in partitions {
        for (key, value) in projection(column) {
            properties.push((format!("projection.{column}.{key}"), value.to_owned()));
        }
    }
    properties.push(("storage.location.template".to_owned(), template));
    out.push_str("TBLPROPERTIES (\n");
    let last = properties.len().saturating_sub(1);
    for (i, (key, value)) in properties.iter().enumerate() {
        let sep = if i == last { "" } else { "," };
        out.push_str(&format!("  {}={}{sep}\n", literal(key), literal(value)));
    }
    out.push(')');
    out
}

/// The statements of every table ([`Table::ALL`] order), separated by `;\n\n` and
/// ending with `;\n`.
pub fn all_ddl(location: &str, database: Option<&str>) -> String {
    let mut out = Table::ALL
        .into_iter()
        .map(|t| athena_ddl(t, location, database))
        .collect::<Vec<_>>()
        .join(";\n\n");
    out.push_str(";\n");
    out
}
