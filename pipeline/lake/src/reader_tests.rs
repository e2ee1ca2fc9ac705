//! The lake as an independent reader sees it: files of every table, with hostile
//! partition values, written to a temporary `file://` lake and read back by pyarrow
//! with Hive partitioning (and by DuckDB for row counts).
//!
//! The interpreter comes from `PLAYLAKE_TEST_PYTHON`, else the repository's `.venv`
//! (created by `tests/stack/install.sh` with pyarrow and duckdb). Without one the
//! test prints SKIPPED, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use serde_json::Value;

use crate::file::SourcePartition;
use crate::fixtures::*;
use crate::format::ParquetOptions;
use crate::partition::PartitionConfig;
use crate::policy::RollPolicy;
use crate::pool::WriterPool;
use crate::rows::{LakeRow, RecordMeta};
use crate::store::{LakeStore, PublishMode};

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLAYLAKE_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    venv.exists().then_some(venv)
}

const READER: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.dataset as ds
root = sys.argv[1]
parts = {"sessions": ["dt", "stream_id"], "viewers": ["dt", "stream_id"], "daily": ["dt"],
         "events": ["dt", "hour"], "cdc": ["table", "dt", "hour"], "errors": ["dt"]}
out = {}
for table, cols in parts.items():
    schema = pa.schema([(c, pa.string()) for c in cols])
    d = ds.dataset(f"{root}/{table}", format="parquet",
                   partitioning=ds.partitioning(schema, flavor="hive"))
    t = d.to_table()
    files = [f for f in d.files]
    phys = ds.dataset(files[0], format="parquet").schema
    out[table] = {
        "rows": t.num_rows,
        "file_columns": [f"{f.name}:{f.type}" for f in phys],
        "partitions": sorted({json.dumps([t.column(c)[i].as_py() for c in cols],
                                         separators=(",", ":"), ensure_ascii=False)
                              for i in range(t.num_rows)}),
    }
try:
    import duckdb
    for table in parts:
        n = duckdb.sql(f"select count(*) from read_parquet('{root}/{table}/**/*.parquet', "
                       "hive_partitioning=true)").fetchall()[0][0]
        out[table]["duckdb_rows"] = n
except ImportError:
    pass
print(json.dumps(out))
"#;

fn write<R: LakeRow>(
    pool: &mut WriterPool,
    topic: &str,
    rows: Vec<R>,
    want: &mut BTreeMap<String, (usize, Vec<String>)>,
) {
    let config = PartitionConfig::default();
    let source = SourcePartition {
        topic: topic.into(),
        partition: 0,
    };
    let entry = want.entry(R::TABLE.name().to_owned()).or_default();
    let mut batch = Vec::new();
    for (offset, row) in rows.into_iter().enumerate() {
        let meta: RecordMeta = meta(topic, offset as i64);
        let path = row.partition(&meta, &config).expect("partition");
        let (_, values) = crate::partition::PartitionPath::parse(path.as_str()).expect("parse");
        entry.0 += 1;
        entry.1.push(serde_json::to_string(&values).expect("json"));
        batch.push((meta, row));
    }
    entry.1.sort();
    entry.1.dedup();
    pool.write_rows(&source, batch, &config, 0).expect("write");
}

#[tokio::test]
async fn pyarrow_reads_every_table_with_original_partition_values() {
    let Some(python) = python() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no Python with pyarrow: set PLAYLAKE_TEST_PYTHON or run tests/stack/install.sh"
        );
        println!("SKIPPED: no Python with pyarrow (set PLAYLAKE_TEST_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    let store = LakeStore::new(
        Arc::new(local),
        Path::default(),
        PublishMode::StageThenRename,
    );
    let mut pool = WriterPool::new(&ParquetOptions::default(), RollPolicy::default()).unwrap();
    let mut want = BTreeMap::new();
    let n = HOSTILE.len() as i64 * 3;
    let hostile = |i: i64| HOSTILE[(i as usize) % HOSTILE.len()];
    write(
        &mut pool,
        "playback.sessions",
        (0..n).map(|i| session(i, hostile(i))).collect(),
        &mut want,
    );
    write(
        &mut pool,
        "playback.viewers",
        (0..n).map(|i| viewer(i, hostile(i))).collect(),
        &mut want,
    );
    write(
        &mut pool,
        "playback.daily",
        (0..n).map(|i| daily(i, hostile(i))).collect(),
        &mut want,
    );
    write(
        &mut pool,
        "playback.events",
        (0..n).map(|i| event(i, hostile(i))).collect(),
        &mut want,
    );
    write(
        &mut pool,
        "playback.cdc.t",
        (0..n).map(|i| change(i, hostile(i + 1))).collect(),
        &mut want,
    );
    write(
        &mut pool,
        "playback.dlq",
        (0..n).map(dlq).collect(),
        &mut want,
    );
    // A null stream id lands in Hive's default partition and reads back as null.
    let null_path = crate::partition::PartitionPath::new(
        playlake_schemas::Table::Sessions,
        &[Some("2025-06-01"), None],
    )
    .expect("path");
    let rows = [session(0, "ignored")];
    let batch = playlake_schemas::Session::to_batch(&rows).expect("batch");
    let source = SourcePartition {
        topic: "playback.sessions.null".into(),
        partition: 0,
    };
    pool.write_batch(null_path, &source, &batch, 0, 0, 0)
        .expect("write");
    let sessions = want.entry("sessions".to_owned()).or_default();
    sessions.0 += 1;
    sessions.1.push(r#"["2025-06-01",null]"#.to_owned());
    sessions.1.sort();
    for file in pool.finish_all().expect("finish") {
        store.publish(&file).await.expect("publish");
    }
    let output = Command::new(&python)
        .args(["-c", READER])
        .arg(dir.path())
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("reader output");
    for (table, (rows, partitions)) in &want {
        let t = &got[table];
        assert_eq!(t["rows"], Value::from(*rows), "{table} rows");
        if let Some(duck) = t.get("duckdb_rows") {
            assert_eq!(duck, &Value::from(*rows), "{table} rows in DuckDB");
        }
        let mut seen: Vec<String> = t["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect();
        seen.sort();
        assert_eq!(&seen, partitions, "{table} partition values");
        let table: playlake_schemas::Table = table.parse().expect("table");
        let columns: Vec<String> = t["file_columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: Vec<String> = table
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.data_type() {
                    arrow::datatypes::DataType::Utf8 => "string",
                    arrow::datatypes::DataType::Int64 => "int64",
                    arrow::datatypes::DataType::Float64 => "double",
                    arrow::datatypes::DataType::Boolean => "bool",
                    _ => "timestamp[ms, tz=UTC]",
                };
                format!("{}:{ty}", f.name())
            })
            .collect();
        assert_eq!(
            columns, expected,
            "{table} file columns (no partition columns)"
        );
    }
    // Nothing but table directories and the (empty) staging area at the root.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "_playlake",
            "cdc",
            "daily",
            "errors",
            "events",
            "sessions",
            "viewers"
        ]
    );
}
