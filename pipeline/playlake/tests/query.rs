//! `playlake query` as a user runs it, over a lake made by `playlake demo`:
//!
//! - every shipped query (`deploy/athena/queries/*.sql`) gives the same answer
//!   through `playlake query --format json` as through DuckDB, an independent
//!   reader, over the same Parquet files. DuckDB reads the files with
//!   `read_parquet(..., filename=true)` and gets the partition columns from the file
//!   path with our Hive unescaping (`playlake_lake::hive::unescape`, re-written in
//!   Python below), as strings, like the Athena DDL; DuckDB's own
//!   `hive_partitioning` would type `dt` as a date and `hour` as a number and decode
//!   values its own way;
//! - the same lake uploaded to an S3 bucket (moto) gives the same answers through
//!   `--lake s3://...`;
//! - errors (unknown table, bad SQL, no lake) exit non-zero with a message, and
//!   `--help` names the tables and columns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use playlake_query::SHIPPED;
use playlake_tests::stack::{s3_bucket, Stack};
use serde_json::Value;

const EVENTS: &str = "20000";
const VIEWERS: &str = "150";

fn playlake(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playlake"));
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("PLAYLAKE_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(envs.iter().copied()).env("NO_COLOR", "1");
    cmd.output().expect("run playlake")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn queries_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/athena/queries")
}

/// Runs `playlake demo` into `dir` and returns its report.
fn demo(dir: &Path) -> String {
    let lake = format!("file://{}", dir.display());
    let out = playlake(
        &[
            "demo",
            "--events",
            EVENTS,
            "--viewers",
            VIEWERS,
            "--lake",
            &lake,
        ],
        &[],
    );
    assert!(out.status.success(), "demo failed:\n{}", text(&out.stderr));
    text(&out.stdout)
}

/// A value as both engines must agree on it: timestamps as epoch milliseconds,
/// every number as f64 (engines differ in integer widths: DuckDB sums to HUGEINT).
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Number(f64),
    Text(String),
}

impl Cell {
    fn from_json(value: &Value, timestamps_as_text: bool) -> Cell {
        match value {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Number(f64::from(u8::from(*b))),
            Value::Number(n) => Cell::Number(n.as_f64().expect("finite number")),
            Value::String(s) if timestamps_as_text => {
                match chrono::DateTime::parse_from_rfc3339(s) {
                    Ok(ts) => Cell::Number(ts.timestamp_millis() as f64),
                    Err(_) => Cell::Text(s.clone()),
                }
            }
            Value::String(s) => Cell::Text(s.clone()),
            other => panic!("unexpected JSON value {other}"),
        }
    }

    fn sort_key(&self) -> String {
        match self {
            Cell::Null => "\0".into(),
            Cell::Number(n) => format!("{n:+030.6}"),
            Cell::Text(s) => s.clone(),
        }
    }

    /// Equal, floats within 1e-9 relative: the engines sum doubles in different
    /// orders (both in parallel), which may change the last bits.
    fn agrees(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Number(a), Cell::Number(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }
}

type Rows = Vec<BTreeMap<String, Cell>>;

/// Rows of a JSON array of objects, sorted (by every column, in name order).
fn rows(json: &str, timestamps_as_text: bool) -> Rows {
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut rows: Rows = value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {json}"))
        .iter()
        .map(|row| {
            row.as_object()
                .expect("row object")
                .iter()
                .map(|(k, v)| (k.clone(), Cell::from_json(v, timestamps_as_text)))
                .collect()
        })
        .collect();
    rows.sort_by_key(|row| row.values().map(Cell::sort_key).collect::<Vec<_>>());
    rows
}

fn assert_same(what: &str, ours: &Rows, theirs: &Rows) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: row counts differ\nours:   {ours:?}\ntheirs: {theirs:?}"
    );
    for (a, b) in ours.iter().zip(theirs) {
        let same = a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|((ka, va), (kb, vb))| ka == kb && va.agrees(vb));
        assert!(same, "{what}: rows differ\nours:   {a:?}\ntheirs: {b:?}");
    }
}

/// `playlake query --format json --file <shipped>` against `lake`.
fn query_json(lake: &str, file: &str, envs: &[(&str, &str)]) -> Rows {
    let path = queries_dir().join(file);
    let path = path.to_string_lossy();
    let out = playlake(
        &["query", "--lake", lake, "--format", "json", "--file", &path],
        envs,
    );
    assert!(
        out.status.success(),
        "{file} failed:\n{}",
        text(&out.stderr)
    );
    rows(&text(&out.stdout), true)
}

/// Every shipped query through DuckDB, as `{file: rows}` (JSON, timestamps as epoch
/// milliseconds).
const DUCKDB_SCRIPT: &str = r#"
import json, os, sys
import duckdb, pyarrow as pa, pyarrow.compute as pc

root, queries = sys.argv[1], sys.argv[2]
MARKER = "__HIVE_DEFAULT_PARTITION__"

def unescape(text):
    # playlake_lake::hive::unescape: %XX (two hex digits) of an ASCII byte is
    # decoded; anything else, including a stray %, is kept; the marker is null.
    if text is None or text == MARKER:
        return None
    HEX = b"0123456789abcdefABCDEF"
    out, i, b = bytearray(), 0, text.encode("utf-8")
    while i < len(b):
        if b[i] == 0x25 and i + 2 < len(b) and b[i + 1] in HEX and b[i + 2] in HEX:
            byte = int(b[i + 1:i + 3], 16)
            if byte < 0x80:
                out.append(byte)
                i += 3
                continue
        out.append(b[i])
        i += 1
    return out.decode("utf-8", "replace")

PARTITIONS = {
    "sessions": ["dt", "stream_id"],
    "viewers": ["dt", "stream_id"],
    "daily": ["dt"],
    "events": ["dt", "hour"],
    "errors": ["dt"],
}

con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
# Every directory value in the lake and its unescaped value, as a table the views
# look values up in (a Python UDF would need numpy, which the venv lacks).
con.execute("CREATE TABLE pl_unescape (raw VARCHAR, value VARCHAR)")
raw = set()
for base, dirs, _ in os.walk(root):
    for d in dirs:
        if "=" in d:
            raw.add(d.split("=", 1)[1])
con.executemany("INSERT INTO pl_unescape VALUES (?, ?)", [(r, unescape(r)) for r in sorted(raw)])
for table, columns in PARTITIONS.items():
    if not os.path.isdir(os.path.join(root, table)):
        continue
    glob = "/".join([root, table] + ["*"] * len(columns) + ["*.parquet"])
    parts = ", ".join(
        f"(SELECT u.value FROM pl_unescape u WHERE u.raw = regexp_extract(filename, '/{c}=([^/]*)/', 1)) AS \"{c}\"" for c in columns
    )
    con.execute(
        f"CREATE VIEW \"{table}\" AS SELECT * EXCLUDE (filename), {parts} "
        f"FROM read_parquet('{glob}', hive_partitioning = false, filename = true)"
    )

answers = {}
for name in sorted(os.listdir(queries)):
    if not name.endswith(".sql"):
        continue
    sql = open(os.path.join(queries, name)).read()
    table = con.sql(sql).to_arrow_table()
    columns = []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type):
            column = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        elif pa.types.is_decimal(field.type):
            column = column.cast(pa.float64())
        columns.append(column)
    rows = pa.table(columns, names=table.schema.names).to_pylist()
    answers[name] = rows
print(json.dumps(answers))
"#;

fn duckdb_answers(stack: &Stack, lake_dir: &Path) -> BTreeMap<String, Rows> {
    let out = stack.run_python(
        DUCKDB_SCRIPT,
        &[
            &lake_dir.display().to_string(),
            &queries_dir().display().to_string(),
        ],
    );
    let answers: BTreeMap<String, Value> =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    answers
        .into_iter()
        .map(|(file, value)| (file, rows(&value.to_string(), false)))
        .collect()
}

#[test]
fn shipped_queries_agree_with_duckdb_on_a_local_and_an_s3_lake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = demo(dir.path());
    let lake = format!("file://{}", dir.path().display());

    let mut ours = BTreeMap::new();
    for query in SHIPPED {
        let rows = query_json(&lake, query.file, &[]);
        // A query that finds nothing would agree with anything: the parameters in
        // the shipped files must match the demo's traffic.
        assert!(
            !rows.is_empty(),
            "{} found no rows in the demo lake",
            query.file
        );
        ours.insert(query.file.to_owned(), rows);
    }

    // The demo printed three of those answers.
    assert!(
        report.contains("top streams by watch time (deploy/athena/queries/"),
        "{report}"
    );
    assert!(report.contains("| stream_id"), "{report}");

    let Some(stack) = Stack::from_env() else {
        return;
    };
    let theirs = duckdb_answers(&stack, dir.path());
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (file, rows) in &ours {
        assert_same(&format!("{file} (DuckDB)"), rows, &theirs[file]);
    }

    // The same lake in S3 (moto), uploaded file by file with boto3.
    let bucket = s3_bucket(&stack);
    stack.run_python(
        r#"
import os, sys, boto3
root, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3")
for base, _, names in os.walk(root):
    for name in names:
        path = os.path.join(base, name)
        key = "lakes/demo/" + os.path.relpath(path, root)
        s3.upload_file(path, bucket, key)
"#,
        &[&dir.path().display().to_string(), &bucket],
    );
    let s3_lake = format!("s3://{bucket}/lakes/demo");
    let envs = [
        ("AWS_ENDPOINT_URL", stack.aws_endpoint.as_str()),
        ("AWS_REGION", stack.aws_region.as_str()),
        ("AWS_ACCESS_KEY_ID", stack.aws_access_key_id.as_str()),
        (
            "AWS_SECRET_ACCESS_KEY",
            stack.aws_secret_access_key.as_str(),
        ),
    ];
    for query in SHIPPED {
        let rows = query_json(&s3_lake, query.file, &envs);
        assert_same(&format!("{} (s3)", query.file), &rows, &ours[query.file]);
    }

    // A prefix with nothing under it is no lake.
    let out = playlake(
        &[
            "query",
            "--lake",
            &format!("s3://{bucket}/nothing"),
            "SELECT 1",
        ],
        &envs,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no lake at"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("daily")).expect("mkdir");
    let lake = format!("file://{}", dir.path().display());

    let out = playlake(&["query", "--lake", &lake, "SELECT * FROM sesions"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("sesions"), "{err}");
    assert!(
        err.contains("sessions (partitioned by dt, stream_id)"),
        "{err}"
    );

    let out = playlake(&["query", "--lake", &lake, "SELEC 1"], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("error: "),
        "{}",
        text(&out.stderr)
    );

    let missing = format!("file://{}/missing", dir.path().display());
    let out = playlake(&["query", "--lake", &missing, "SELECT 1"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("no lake at") && err.contains("--lake"),
        "{err}"
    );

    // An empty table is not an error: no rows.
    let out = playlake(
        &[
            "query",
            "--lake",
            &lake,
            "--format",
            "csv",
            "SELECT stream_id, views FROM daily",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "stream_id,views\n");
}

#[test]
fn help_names_the_tables_columns_and_shipped_queries() {
    let out = playlake(&["query", "--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "sessions (partitioned by dt, stream_id)",
        "cdc (partitioned by table, dt, hour)",
        "watched_seconds double",
        "--format",
        "--file",
        "top_streams_by_watch_time.sql",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}
