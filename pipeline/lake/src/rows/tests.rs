//! Batches carry exactly the tables' schemas, and written files have the
//! promised Parquet metadata.

use arrow::array::RecordBatch;
use parquet::basic::{LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::file::{Encoder, PartitionFile, SourcePartition};
use crate::fixtures::*;
use crate::format::{Codec, ParquetOptions};
use crate::partition::PartitionConfig;
use crate::rows::{LakeRow, RowBin, Rows};
use playlake_schemas::{PlaybackEvent, Session, Table};

fn check_schema<R: LakeRow>(rows: &[R]) -> RecordBatch {
    let batch = R::to_batch(rows).unwrap();
    assert_eq!(batch.schema(), R::TABLE.arrow_schema());
    assert_eq!(batch.num_rows(), rows.len());
    batch
}

#[test]
fn every_table_builds_batches_with_its_schema() {
    check_schema(&(0..5).map(|i| session(i, "s")).collect::<Vec<_>>());
    check_schema(&(0..5).map(|i| viewer(i, "s")).collect::<Vec<_>>());
    check_schema(&(0..5).map(|i| daily(i, "s")).collect::<Vec<_>>());
    check_schema(&(0..5).map(|i| event(i, "s")).collect::<Vec<_>>());
    check_schema(&(0..5).map(|i| change(i, "t")).collect::<Vec<_>>());
    check_schema(&(0..5).map(dlq).collect::<Vec<_>>());
    check_schema::<playlake_schemas::Session>(&[]);
}

#[test]
fn natural_keys_follow_the_spec() {
    let m = meta("t", 1);
    let a = session(1, "s");
    let mut b = a.clone();
    b.watched_seconds = 99.0;
    assert_eq!(a.natural_key(&m), b.natural_key(&meta("t", 9)));
    b.session_start.0 += 1;
    assert_ne!(a.natural_key(&m), b.natural_key(&m));
    // A session sharing its start with an earlier one has a key of its own; the
    // others keep the three-part key (the digests persisted by earlier versions).
    let mut three_parts = Vec::new();
    for part in [
        a.uuid.as_bytes(),
        a.stream_id.as_bytes(),
        &a.session_start.as_millis().to_be_bytes(),
    ] {
        three_parts.extend_from_slice(&(part.len() as u64).to_be_bytes());
        three_parts.extend_from_slice(part);
    }
    assert_eq!(a.natural_key(&m), three_parts);
    let second = Session {
        start_ordinal: 1,
        ..a.clone()
    };
    assert_ne!(a.natural_key(&m), second.natural_key(&m));
    // Length prefixes keep ("ab","c") and ("a","bc") apart.
    let mut x = viewer(0, "ab");
    let y = viewer(0, "a");
    x.window_start = y.window_start;
    assert_ne!(x.natural_key(&m), y.natural_key(&m));
}

#[test]
fn written_files_carry_types_compression_statistics_and_page_index() {
    let rows: Vec<_> = (0..50).map(|i| session(i, "s")).collect();
    let path = rows[0]
        .partition(&meta("t", 0), &PartitionConfig::default())
        .unwrap();
    for (codec, want) in [
        (Codec::Zstd { level: 3 }, "ZSTD"),
        (Codec::Snappy, "SNAPPY"),
    ] {
        let options = ParquetOptions {
            codec,
            ..ParquetOptions::default()
        };
        let source = SourcePartition {
            topic: "playback.sessions".into(),
            partition: 0,
        };
        let mut file = PartitionFile::new(
            path.clone(),
            source,
            options.writer_properties(Table::Sessions).unwrap(),
            Encoder::inline(),
            0,
        )
        .unwrap();
        let batch = Session::to_batch(&rows).unwrap();
        file.write(&batch, 0, 49).unwrap();
        let done = file.finish(codec).unwrap().unwrap();
        assert_eq!(
            done.name,
            format!(
                "part-playback.sessions-0-{:020}-{:020}.{}.parquet",
                0,
                49,
                codec.name()
            )
        );
        let reader = SerializedFileReader::new(done.bytes.to_bytes()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 50);
        let schema = meta.file_metadata().schema_descr();
        let start = schema.column(2);
        assert_eq!(start.name(), "session_start");
        assert_eq!(start.physical_type(), PhysicalType::INT64);
        assert_eq!(
            start.logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MILLIS))
        );
        assert_eq!(schema.column(0).physical_type(), PhysicalType::BYTE_ARRAY);
        assert_eq!(
            schema.column(0).logical_type_ref(),
            Some(&LogicalType::String)
        );
        assert_eq!(schema.column(4).physical_type(), PhysicalType::DOUBLE);
        assert_eq!(schema.column(7).physical_type(), PhysicalType::INT64);
        let rg = meta.row_group(0);
        for col in rg.columns() {
            let name = format!("{:?}", col.compression());
            assert!(name.starts_with(want), "{name}");
            assert!(col.statistics().is_some(), "{}", col.column_path());
            assert!(col.column_index_offset().is_some(), "column index");
            assert!(col.offset_index_offset().is_some(), "offset index");
            // Dictionary-encoded, but for the columns of distinct values.
            let distinct = Table::Sessions
                .distinct_columns()
                .contains(&col.column_path().string().as_str());
            assert_eq!(
                col.dictionary_page_offset().is_some(),
                !distinct,
                "dictionary of {}",
                col.column_path()
            );
        }
    }
}

#[test]
fn rows_in_pieces_build_the_batch_of_the_whole() {
    let rows: Vec<_> = (0..9).map(|i| event(i, "s")).collect();
    let whole = PlaybackEvent::to_batch(&rows).unwrap();
    for cuts in [[0, 0], [0, 9], [3, 3], [2, 7], [9, 9]] {
        let pieces = [&rows[..cuts[0]], &rows[cuts[0]..cuts[1]], &rows[cuts[1]..]];
        let view = Rows::new(&pieces);
        assert_eq!(view.len(), 9);
        let mut iter = view.iter();
        assert_eq!(iter.size_hint(), (9, Some(9)));
        iter.next();
        assert_eq!(iter.len(), 8);
        assert_eq!(view.iter().cloned().collect::<Vec<_>>(), rows, "{cuts:?}");
        let batch = PlaybackEvent::batch_of(view).unwrap();
        assert_eq!(batch, whole, "{cuts:?}");
    }
    assert!(Rows::<Session>::new(&[]).is_empty());
}

#[test]
fn the_row_bin_is_bounded_and_keeps_no_empty_vector() {
    let bin = RowBin::<Session>::default();
    bin.give([Vec::new()]);
    assert_eq!(bin.take(3).len(), 0, "an empty vector is not kept");
    bin.give((0..RowBin::<Session>::MAX_VECTORS + 5).map(|i| vec![session(i as i64, "s")]));
    let mut kept = 0;
    while !bin.take(1).is_empty() {
        kept += 1;
    }
    assert_eq!(kept, RowBin::<Session>::MAX_VECTORS);
}
