//! The query engine over a real local lake laid out by the lake writer's own path
//! code (`PartitionPath`, `hive::escape`), including hostile partition values,
//! internal and stray files, pruning, errors and output formats.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::parquet::arrow::ArrowWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use playlake_lake::PartitionPath;
use playlake_schemas::Table;

use super::*;

/// A Parquet file of the viewers table holding one window with `viewers`.
fn viewers_file(viewers: i64) -> Vec<u8> {
    let start = 1_748_736_000_000_i64;
    let batch = RecordBatch::try_new(
        Table::Viewers.arrow_schema(),
        vec![
            Arc::new(TimestampMillisecondArray::from(vec![start]).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(vec![start + 30_000]).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![viewers])),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

async fn put(store: &Arc<dyn ObjectStore>, path: &str, bytes: Vec<u8>) {
    store
        .put(&Path::parse(path).unwrap(), PutPayload::from(bytes))
        .await
        .unwrap();
}

/// Stream ids that escaping must carry through a directory name and back.
const HOSTILE: [&str; 12] = [
    "a/b",
    "a=b",
    "%",
    "100%",
    "%2F",
    "..",
    ".",
    "straße/ü",
    "x'y\"z",
    "new\nline",
    "__HIVE_DEFAULT_PARTITION__",
    "live-000",
];

struct Fixture {
    _dir: tempfile::TempDir,
    url: String,
    store: Arc<dyn ObjectStore>,
}

/// A local lake with one viewers file per hostile stream id (viewers = its index
/// + 1), one in the null partition (viewers 100), plus files that are not data.
async fn lake() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    for (i, stream) in HOSTILE.iter().enumerate() {
        let path = PartitionPath::new(Table::Viewers, &[Some("2025-06-01"), Some(stream)]).unwrap();
        put(
            &store,
            &format!("{path}/part-0.zstd.parquet"),
            viewers_file(i as i64 + 1),
        )
        .await;
    }
    let null = PartitionPath::new(Table::Viewers, &[Some("2025-06-01"), None]).unwrap();
    put(
        &store,
        &format!("{null}/part-0.zstd.parquet"),
        viewers_file(100),
    )
    .await;
    // Not data: the internal prefix, a hidden file, a file at the wrong depth, a
    // non-Parquet name. Reading any of them would fail (they are not Parquet).
    for junk in [
        "_playlake/staging/0123.parquet",
        "_playlake/checkpoints/sink/g/t-0/00000000000000000001",
        "viewers/dt=2025-06-01/stream_id=live-000/_part-1.parquet",
        "viewers/dt=2025-06-01/stream_id=live-000/.part-1.parquet",
        "viewers/dt=2025-06-01/part-1.parquet",
        "viewers/dt=2025-06-01/stream_id=live-000/part-1.parquet.tmp",
        "viewers/README.txt",
    ] {
        put(&store, junk, b"not parquet".to_vec()).await;
    }
    Fixture {
        url: format!("file://{}", dir.path().display()),
        _dir: dir,
        store,
    }
}

async fn json(query: &LakeQuery, sql: &str) -> String {
    let result = query
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    result.write(OutputFormat::Json, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn hostile_partition_values_read_back_unescaped() {
    let fixture = lake().await;
    let query = LakeQuery::open(&fixture.url).await.unwrap();
    let result = query
        .sql("SELECT stream_id, viewers FROM viewers ORDER BY viewers")
        .await
        .unwrap();
    let mut rows = Vec::new();
    for batch in &result.batches {
        let streams = batch
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let viewers = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            rows.push((
                streams.is_valid(i).then(|| streams.value(i).to_owned()),
                viewers.value(i),
            ));
        }
    }
    let mut want: Vec<(Option<String>, i64)> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, s)| (Some((*s).to_owned()), i as i64 + 1))
        .collect();
    want.push((None, 100));
    assert_eq!(rows, want);

    // Filters on the unescaped value select exactly that partition.
    for (i, stream) in HOSTILE.iter().enumerate() {
        let literal = stream.replace('\'', "''");
        let got = json(
            &query,
            &format!("SELECT viewers FROM viewers WHERE stream_id = '{literal}'"),
        )
        .await;
        assert_eq!(
            got.trim(),
            format!("[{{\"viewers\":{}}}]", i + 1),
            "{stream:?}"
        );
    }
    let got = json(
        &query,
        "SELECT viewers FROM viewers WHERE stream_id IS NULL",
    )
    .await;
    assert_eq!(got.trim(), r#"[{"viewers":100}]"#);
    // The null partition is not the string of its marker.
    let got = json(
        &query,
        "SELECT count(*) AS n FROM viewers WHERE stream_id = '__HIVE_DEFAULT_PARTITION__'",
    )
    .await;
    assert_eq!(got.trim(), r#"[{"n":1}]"#);
}

#[tokio::test]
async fn partition_filters_skip_files_without_reading_them() {
    let fixture = lake().await;
    // A corrupt file in another day: reading it fails, so a query that succeeds
    // without it proves the file was pruned by its dt.
    put(
        &fixture.store,
        "viewers/dt=2025-06-02/stream_id=live-000/part-0.zstd.parquet",
        b"corrupt".to_vec(),
    )
    .await;
    let query = LakeQuery::open(&fixture.url).await.unwrap();
    let got = json(
        &query,
        "SELECT sum(viewers) AS v FROM viewers WHERE dt = '2025-06-01' AND stream_id LIKE 'live%'",
    )
    .await;
    assert_eq!(got.trim(), r#"[{"v":12}]"#);
    let err = query
        .sql("SELECT sum(viewers) FROM viewers")
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("parquet"), "{err}");
}

#[tokio::test]
async fn empty_tables_answer_with_no_rows_and_every_table_is_registered() {
    let fixture = lake().await;
    let query = LakeQuery::open(&fixture.url).await.unwrap();
    for table in Table::ALL {
        let result = query
            .sql(&format!("SELECT * FROM \"{}\"", table.name()))
            .await
            .unwrap();
        let names: Vec<&str> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let want = schema::table_schema(table);
        let want: Vec<&str> = want.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, want, "{table}");
    }
    let result = query
        .sql("SELECT * FROM cdc WHERE \"table\" = 'x'")
        .await
        .unwrap();
    assert_eq!(result.num_rows(), 0);
    let mut out = Vec::new();
    result.write(OutputFormat::Json, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap().trim(), "[]");
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let fixture = lake().await;
    let query = LakeQuery::open(&fixture.url).await.unwrap();

    let err = query.sql("SELECT * FROM sesions").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, QueryError::Sql { .. }), "{err:?}");
    assert!(text.contains("sesions"), "{text}");
    assert!(
        text.contains("sessions (partitioned by dt, stream_id)"),
        "{text}"
    );

    let err = query.sql("SELECT nope FROM daily").await.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(
        err.to_string().contains("daily (partitioned by dt)"),
        "{err}"
    );

    let err = query.sql("SELEC 1").await.unwrap_err();
    assert!(matches!(err, QueryError::Sql { .. }), "{err:?}");
    assert!(!err.to_string().contains("the lake's tables"), "{err}");

    let missing = tempfile::tempdir().unwrap();
    let url = format!("file://{}/nothing-here", missing.path().display());
    let err = LakeQuery::open(&url).await.unwrap_err();
    assert!(matches!(err, QueryError::NoLake { .. }), "{err:?}");
    assert!(err.to_string().contains("--lake"), "{err}");
    assert!(
        !missing.path().join("nothing-here").exists(),
        "open must not create the lake"
    );

    let url = format!("file://{}", missing.path().display());
    let err = LakeQuery::open(&url).await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[tokio::test]
async fn results_render_as_table_csv_and_json() {
    let fixture = lake().await;
    let query = LakeQuery::open(&fixture.url).await.unwrap();
    let result = query
        .sql(
            "SELECT stream_id, window_start, viewers FROM viewers \
             WHERE stream_id IN ('a/b', 'live-000') ORDER BY stream_id",
        )
        .await
        .unwrap();
    let mut table = Vec::new();
    result.write(OutputFormat::Table, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(
        table.contains("| a/b       | 2025-06-01T00:00:00Z | 1       |"),
        "{table}"
    );
    assert!(table.ends_with("(2 rows)\n"), "{table}");

    let mut csv = Vec::new();
    result.write(OutputFormat::Csv, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(
        csv,
        "stream_id,window_start,viewers\na/b,2025-06-01T00:00:00Z,1\nlive-000,2025-06-01T00:00:00Z,12\n"
    );

    let mut json = Vec::new();
    result.write(OutputFormat::Json, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.starts_with(
            r#"[{"stream_id":"a/b","window_start":"2025-06-01T00:00:00Z","viewers":1}"#
        ),
        "{json}"
    );
    assert_eq!(result.to_table(1).unwrap().lines().count(), 5);
    assert_eq!("csv".parse::<OutputFormat>(), Ok(OutputFormat::Csv));
    assert!("xml"
        .parse::<OutputFormat>()
        .unwrap_err()
        .contains("table, csv or json"));
}
