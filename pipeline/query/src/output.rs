//! Rendering a query's result: an aligned text table for people, CSV with a header,
//! or a JSON array of objects (one per row, every column present, nulls as `null`,
//! timestamps as RFC 3339 strings) for programs.
//!
//! Data flow: [`crate::LakeQuery::sql`] returns a [`QueryResult`]; `playlake query`
//! and `playlake demo` write it with [`QueryResult::write`].

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::error::{QueryError, Result};

/// How a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table followed by the row count.
    #[default]
    Table,
    /// RFC 4180 CSV with a header line.
    Csv,
    /// A JSON array of row objects.
    Json,
}

impl OutputFormat {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!(
                "unknown output format {other:?}: use table, csv or json"
            )),
        }
    }
}

/// The rows a query returned.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// The result's columns (also when there are no rows).
    pub schema: SchemaRef,
    /// The rows, in the order the query produced them.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The first `max_rows` rows as an aligned text table (the header alone when
    /// there are none).
    pub fn to_table(&self, max_rows: usize) -> Result<String> {
        let mut left = max_rows;
        let mut shown = Vec::new();
        for batch in &self.batches {
            if left == 0 {
                break;
            }
            let take = batch.num_rows().min(left);
            shown.push(batch.slice(0, take));
            left -= take;
        }
        if shown.is_empty() {
            shown.push(RecordBatch::new_empty(self.schema.clone()));
        }
        let table = pretty_format_batches(&shown).map_err(|source| QueryError::Output {
            format: "table",
            source,
        })?;
        Ok(table.to_string())
    }

    /// Writes every row in `format`.
    pub fn write(&self, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
        let fail = |source: ArrowError| QueryError::Output {
            format: format.name(),
            source,
        };
        let io = |e: std::io::Error| fail(ArrowError::IoError(e.to_string(), e));
        match format {
            OutputFormat::Table => {
                let rows = self.num_rows();
                writeln!(out, "{}", self.to_table(usize::MAX)?).map_err(io)?;
                let noun = if rows == 1 { "row" } else { "rows" };
                writeln!(out, "({rows} {noun})").map_err(io)?;
            }
            OutputFormat::Csv => {
                let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut *out);
                if self.batches.is_empty() {
                    writer
                        .write(&RecordBatch::new_empty(self.schema.clone()))
                        .map_err(fail)?;
                }
                for batch in &self.batches {
                    writer.write(batch).map_err(fail)?;
                }
            }
            OutputFormat::Json => {
                let mut writer = WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, JsonArray>(&mut *out);
                for batch in &self.batches {
                    writer.write(batch).map_err(fail)?;
                }
                // Also writes `[]` for an empty result.
                writer.finish().map_err(fail)?;
                drop(writer);
                writeln!(out).map_err(io)?;
            }
        }
        Ok(())
    }
}
