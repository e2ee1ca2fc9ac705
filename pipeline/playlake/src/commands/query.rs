//! `playlake query "SQL"`: SQL over the lake with DataFusion (`playlake-query`), with
//! the Athena table names and columns, printed as a table, CSV or JSON.
//!
//! Data flow: `--lake` (or `PLAYLAKE_LAKE`, the config file) -> `LakeQuery::open`
//! (fails when nothing is there) -> one statement from the argument or `--file` ->
//! DataFusion over the lake's committed Parquet files -> stdout.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use playlake_query::{LakeQuery, OutputFormat};

use crate::cli::{QueryArgs, QueryFormat};
use crate::config::Settings;

/// The `--help` text after the flags: the tables, their columns, and the shipped
/// queries.
pub fn help_text() -> String {
    let mut text = String::from(
        "Tables (the Athena names; partition columns come last, as strings, with their \
         values unescaped; quote \"hour\" and \"table\" to be safe):\n",
    );
    text.push_str(&playlake_query::tables_summary());
    text.push_str("\nShipped questions (deploy/athena/queries/, run them with --file):\n");
    for query in playlake_query::SHIPPED {
        text.push_str(&format!("  {:<32} {}\n", query.file, query.title));
    }
    text.push_str(
        "\nExamples:\n  playlake query \"SELECT stream_id, sum(watched_seconds) FROM daily GROUP BY 1\"\n  \
         playlake query --format csv --file deploy/athena/queries/top_streams_by_watch_time.sql\n",
    );
    text
}

pub async fn run(settings: &Settings, args: &QueryArgs) -> anyhow::Result<()> {
    let sql = match (&args.sql, &args.file) {
        (Some(sql), None) => sql.clone(),
        (None, Some(file)) => read_sql(file)?,
        // clap enforces exactly one of them.
        _ => anyhow::bail!("give the SQL as an argument or with --file, not both"),
    };
    let query = LakeQuery::open(&settings.lake.to_string()).await?;
    let result = query.sql(&sql).await?;
    let format = match args.format {
        QueryFormat::Table => OutputFormat::Table,
        QueryFormat::Csv => OutputFormat::Csv,
        QueryFormat::Json => OutputFormat::Json,
    };
    let mut stdout = std::io::stdout().lock();
    result.write(format, &mut stdout)?;
    stdout.flush().context("writing the result")?;
    Ok(())
}

fn read_sql(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("reading the SQL file {}", file.display()))
}
