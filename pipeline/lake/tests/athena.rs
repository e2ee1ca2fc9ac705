//! The Athena DDL against the files the lake writer really produces.
//!
//! For every table: a tiny Parquet file is written with the crate's own writer
//! (`LakeRow::to_batch` + `PartitionFile`), its schema is read back with
//! `ParquetRecordBatchReaderBuilder`, and the columns declared by `athena_ddl`
//! (parsed from the emitted text) must equal the file's columns, names and types in
//! order; the declared partition columns must be exactly `partition_columns()`,
//! strings, and absent from the file. The checked-in `deploy/athena/<table>.sql`
//! files must equal the generator's output; regenerate them with
//! `PLAYLAKE_UPDATE_DDL=1 cargo test -p playlake-lake --test athena`.

use std::path::PathBuf;

use arrow::datatypes::{DataType, TimeUnit};
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, TimeUnit as ParquetTimeUnit, Type as PhysicalType};
use playlake_lake::athena::{all_ddl, athena_ddl, athena_type, PLACEHOLDER_LOCATION};
use playlake_lake::{
    Codec, Encoder, LakeRow, ParquetOptions, PartitionFile, PartitionPath, SourcePartition,
};
use playlake_schemas::{
    ChangeEvent, ChangeEventName, DailyStat, DlqRecord, EndedBy, EventType, PlaybackEvent, Session,
    Table, TimestampMs, ViewerWindow,
};
use serde_json::json;

const T0: i64 = 1_748_736_000_000;
const UPDATE_ENV: &str = "PLAYLAKE_UPDATE_DDL";

/// One or two rows of `table`, as the record batch the writer appends.
fn batch(table: Table) -> arrow::array::RecordBatch {
    let batch = match table {
        Table::Sessions => Session::to_batch(&[Session {
            uuid: "u1".into(),
            stream_id: "s1".into(),
            user_id: None,
            session_start: TimestampMs(T0),
            session_end: TimestampMs(T0 + 30_500),
            position_start: 1.5,
            position_end: 32.0,
            watched_seconds: 30.5,
            event_count: 7,
            seek_count: 1,
            ended_by: EndedBy::Stop,
            start_ordinal: 0,
        }]),
        Table::Viewers => ViewerWindow::to_batch(&[ViewerWindow {
            stream_id: "s1".into(),
            window_start: TimestampMs(T0),
            window_end: TimestampMs(T0 + 30_000),
            viewers: 3,
        }]),
        Table::Daily => DailyStat::to_batch(&[DailyStat {
            dt: NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(),
            stream_id: "s1".into(),
            views: 10,
            unique_users: 4,
            watched_seconds: 1234.5,
            peak_viewers: 6,
        }]),
        Table::Events => PlaybackEvent::to_batch(&[PlaybackEvent {
            event_id: "e1".into(),
            uuid: "u1".into(),
            stream_id: "s1".into(),
            user_id: Some("alice".into()),
            event_type: EventType::ALL[0],
            event_time: TimestampMs(T0),
            position_start: 0.0,
            position_end: 5.0,
        }]),
        Table::Cdc => ChangeEvent::to_batch(&[ChangeEvent {
            table: "t".into(),
            event_id: "c1".into(),
            event_name: ChangeEventName::Modify,
            sequence_number: Some("1000".into()),
            shard_id: None,
            approximate_creation_time: TimestampMs(T0),
            keys: json!({"stream_id": "s", "uuid": "u1"}),
            new_image: Some(json!({"n": 1})),
            old_image: None,
            ttl_expired: false,
            snapshot: false,
        }]),
        Table::Errors => DlqRecord::to_batch(&[DlqRecord {
            source_topic: "playback.events".into(),
            source_partition: 2,
            source_offset: 100,
            reason: "invalid_json".into(),
            raw: b"not json".to_vec(),
        }]),
    };
    batch.unwrap()
}

/// A complete Parquet file of `table` as the lake writer encodes it.
fn written_file(table: Table) -> bytes::Bytes {
    let values: Vec<Option<&str>> = table
        .partition_columns()
        .iter()
        .map(|c| match *c {
            "dt" => Some("2025-06-01"),
            "hour" => Some("00"),
            _ => Some("s1"),
        })
        .collect();
    let path = PartitionPath::new(table, &values).unwrap();
    let source = SourcePartition {
        topic: "playback.test".into(),
        partition: 0,
    };
    let properties = ParquetOptions::default().writer_properties(table).unwrap();
    let mut file = PartitionFile::new(path, source, properties, Encoder::inline(), 0).unwrap();
    file.write(&batch(table), 0, 0).unwrap();
    file.finish(Codec::default())
        .unwrap()
        .unwrap()
        .bytes
        .to_bytes()
}

/// The Athena type a reader derives from a Parquet column's physical and logical
/// type, independently of the Arrow schema.
fn athena_type_of_parquet(physical: PhysicalType, logical: Option<&LogicalType>) -> String {
    let utc_millis = LogicalType::timestamp(true, ParquetTimeUnit::MILLIS);
    match (physical, logical) {
        (PhysicalType::INT64, Some(l)) if *l == utc_millis => "timestamp".into(),
        (PhysicalType::INT64, None) => "bigint".into(),
        (PhysicalType::DOUBLE, None) => "double".into(),
        (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)) => "string".into(),
        (PhysicalType::BOOLEAN, None) => "boolean".into(),
        (p, l) => format!("unexpected {p:?} {l:?}"),
    }
}

/// The Athena type of an Arrow type read back from a file (the rules of the brief).
fn athena_type_of_arrow(data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "timestamp".into()
        }
        DataType::Int64 => "bigint".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 => "string".into(),
        DataType::Boolean => "boolean".into(),
        other => format!("unexpected {other:?}"),
    }
}

/// The `(name, type)` lines of the parenthesised list that follows `header` in `ddl`.
fn declared(ddl: &str, header: &str) -> Vec<(String, String)> {
    let mut lines = ddl.lines().skip_while(|l| !l.ends_with(header));
    assert!(lines.next().is_some(), "no {header:?} in\n{ddl}");
    lines
        .take_while(|l| !l.starts_with(')'))
        .map(|l| {
            let l = l.trim().trim_end_matches(',');
            let (name, ty) = l.rsplit_once(' ').unwrap();
            (name.trim_matches('`').to_owned(), ty.to_owned())
        })
        .collect()
}

#[test]
fn ddl_columns_equal_the_written_parquet_schema() {
    for table in Table::ALL {
        let ddl = athena_ddl(table, "s3://bucket/prefix", None);
        let builder = ParquetRecordBatchReaderBuilder::try_new(written_file(table)).unwrap();

        let from_arrow: Vec<(String, String)> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), athena_type_of_arrow(f.data_type())))
            .collect();
        let from_parquet: Vec<(String, String)> = builder
            .parquet_schema()
            .columns()
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    athena_type_of_parquet(c.physical_type(), c.logical_type_ref()),
                )
            })
            .collect();
        let columns = declared(&ddl, " (");
        assert_eq!(columns, from_arrow, "{table}: DDL vs file's Arrow schema");
        assert_eq!(
            columns, from_parquet,
            "{table}: DDL vs file's Parquet schema"
        );

        let partitions = declared(&ddl, "PARTITIONED BY (");
        let names: Vec<&str> = partitions.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, table.partition_columns(), "{table}");
        for (name, ty) in &partitions {
            assert_eq!(ty, "string", "{table}.{name}");
            assert!(
                builder.schema().field_with_name(name).is_err(),
                "{table}.{name} is a partition column but stored in the file"
            );
        }
    }
}

#[test]
fn every_lake_type_has_an_athena_type() {
    for table in Table::ALL {
        for field in table.arrow_schema().fields() {
            assert!(
                athena_type(field.data_type()).is_some(),
                "{table}.{}: {:?}",
                field.name(),
                field.data_type()
            );
        }
    }
}

#[test]
fn projection_and_layout() {
    let sessions = athena_ddl(Table::Sessions, "s3://bucket/prefix/", Some("lake"));
    for line in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `lake`.`sessions` (",
        "STORED AS PARQUET",
        "LOCATION 's3://bucket/prefix/sessions/'",
        "  'projection.enabled'='true',",
        "  'projection.dt.type'='date',",
        "  'projection.dt.format'='yyyy-MM-dd',",
        "  'projection.stream_id.type'='injected',",
        "  'storage.location.template'='s3://bucket/prefix/sessions/dt=${dt}/stream_id=${stream_id}/'",
    ] {
        assert!(sessions.lines().any(|l| l == line), "{line:?} not in\n{sessions}");
    }
    assert!(sessions.contains("MUST filter on it"), "{sessions}");
    assert!(!sessions.contains("MSCK REPAIR TABLE;"));

    let cdc = athena_ddl(Table::Cdc, "s3://b/p", None);
    for line in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `cdc` (",
        "  'projection.table.type'='injected',",
        "  'projection.hour.type'='integer',",
        "  'projection.hour.range'='0,23',",
        "  'projection.hour.digits'='2',",
        "  'storage.location.template'='s3://b/p/cdc/table=${table}/dt=${dt}/hour=${hour}/'",
    ] {
        assert!(cdc.lines().any(|l| l == line), "{line:?} not in\n{cdc}");
    }

    // Tables without injected columns need no filter.
    let daily = athena_ddl(Table::Daily, "s3://b/p", None);
    assert!(!daily.contains("injected"), "{daily}");
    assert!(daily.contains("'storage.location.template'='s3://b/p/daily/dt=${dt}/'"));

    let all = all_ddl("s3://b/p", None);
    let statements: Vec<&str> = all.trim_end_matches(";\n").split(";\n\n").collect();
    assert_eq!(statements.len(), Table::ALL.len());
    for (statement, table) in statements.iter().zip(Table::ALL) {
        assert_eq!(*statement, athena_ddl(table, "s3://b/p", None));
    }
}

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/athena")
}

/// The content of `deploy/athena/<table>.sql`.
fn deploy_file(table: Table) -> String {
    format!(
        "-- Generated from playlake_schemas::Table by playlake_lake::athena::athena_ddl; do not \
         edit.\n-- Regenerate: {UPDATE_ENV}=1 cargo test -p playlake-lake --test athena\n\
         -- Replace {PLACEHOLDER_LOCATION} with your lake's s3://bucket/prefix.\n{};\n",
        athena_ddl(table, PLACEHOLDER_LOCATION, None)
    )
}

#[test]
fn deploy_files_are_up_to_date() {
    let update = std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for table in Table::ALL {
        let path = deploy_dir().join(format!("{}.sql", table.name()));
        let want = deploy_file(table);
        if update {
            std::fs::create_dir_all(deploy_dir()).unwrap();
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from the generator's output; regenerate with \
         `{UPDATE_ENV}=1 cargo test -p playlake-lake --test athena`"
    );
}
