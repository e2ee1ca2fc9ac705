//! The Parquet settings of every lake file, made explicit.
//!
//! Data flow: the sink's configuration becomes a validated [`ParquetOptions`], which
//! [`ParquetOptions::writer_properties`] turns into the `WriterProperties` that every
//! [`crate::file::PartitionFile`] uses. Choices, for Athena/Trino and DataFusion:
//! zstd (level configurable) or snappy; dictionary encoding on, except for each
//! table's columns of distinct values ([`Table::distinct_columns`]); page-level statistics,
//! which also writes the column index and offset index (the page index) so readers
//! can skip pages; Parquet 1.0 data pages, which every engine reads; row groups cut at
//! `row_group_bytes` (128 MiB by default, the usual Athena block size) or
//! `row_group_rows`, whichever comes first. Timestamps are written as INT64
//! TIMESTAMP(MILLIS, isAdjustedToUTC = true) because the Arrow schemas say
//! `Timestamp(Millisecond, "UTC")`.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use playlake_schemas::Table;

use crate::error::{LakeError, Result};

/// 128 MiB: the default row group and target file size.
pub const DEFAULT_TARGET_BYTES: u64 = 128 * 1024 * 1024;

/// The default zstd level. Level 1 is what pyarrow and Arrow C++ write by default;
/// level 3 (Spark's and Trino's default) made the sink benchmark's files 1.5%
/// smaller (197 vs 200 MB) and cost 7-8% of its rows per second: zstd was the
/// encoder thread's largest item. `zstd_level` picks another.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Compression codec of the lake's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd at the given level (1..=22).
    Zstd {
        /// Compression level, 1 (fastest) to 22 (smallest).
        level: i32,
    },
    /// Snappy: faster, larger files.
    Snappy,
}

impl Codec {
    /// Short name used in file names: `zstd` or `snappy`.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Zstd { .. } => "zstd",
            Codec::Snappy => "snappy",
        }
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

/// How the lake's Parquet files are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Compression of every column.
    pub codec: Codec,
    /// A row group is closed once its estimated encoded size reaches this many bytes.
    pub row_group_bytes: usize,
    /// ... or once it holds this many rows.
    pub row_group_rows: usize,
    /// Target size of a data page, in bytes (Parquet's default is 1 MiB).
    pub data_page_bytes: usize,
    /// Encode on a thread of the writer pool's own ([`crate::file::Encoder`]),
    /// overlapping the caller's decoding; off by default (the caller's thread).
    pub background_encoding: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            row_group_bytes: DEFAULT_TARGET_BYTES as usize,
            row_group_rows: 1024 * 1024,
            data_page_bytes: 1024 * 1024,
            background_encoding: false,
        }
    }
}

impl ParquetOptions {
    /// Checks every value; the writer properties can then be built without failing.
    pub fn validate(&self) -> Result<()> {
        if let Codec::Zstd { level } = self.codec {
            ZstdLevel::try_new(level).map_err(|_| {
                LakeError::config("zstd_level", format!("{level} is not in 1..=22"))
            })?;
        }
        for (setting, value) in [
            ("row_group_bytes", self.row_group_bytes),
            ("row_group_rows", self.row_group_rows),
            ("data_page_bytes", self.data_page_bytes),
        ] {
            if value == 0 {
                return Err(LakeError::config(setting, "must be greater than 0"));
            }
        }
        Ok(())
    }

    /// The Parquet writer properties of `table`'s files: dictionary encoding for
    /// every column but the table's [`Table::distinct_columns`].
    pub fn writer_properties(&self, table: Table) -> Result<WriterProperties> {
        self.validate()?;
        let compression = match self.codec {
            Codec::Zstd { level } => {
                let level = ZstdLevel::try_new(level).map_err(|_| {
                    LakeError::config("zstd_level", format!("{level} is not in 1..=22"))
                })?;
                Compression::ZSTD(level)
            }
            Codec::Snappy => Compression::SNAPPY,
        };
        let builder = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(compression)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_offset_index_disabled(false)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_data_page_size_limit(self.data_page_bytes);
        Ok(table
            .distinct_columns()
            .iter()
            .fold(builder, |builder, column| {
                builder.set_column_dictionary_enabled(ColumnPath::from(*column), false)
            })
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_explicit() {
        let props = ParquetOptions::default()
            .writer_properties(Table::Events)
            .unwrap();
        let col = ColumnPath::from("uuid");
        assert_eq!(
            props.compression(&col),
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
        );
        assert!(props.dictionary_enabled(&col));
        assert!(!props.dictionary_enabled(&ColumnPath::from("event_id")));
        assert!(!props.dictionary_enabled(&ColumnPath::from("event_time")));
        assert_eq!(props.statistics_enabled(&col), EnabledStatistics::Page);
        assert_eq!(props.max_row_group_row_count(), Some(1024 * 1024));
        assert_eq!(props.max_row_group_bytes(), Some(128 * 1024 * 1024));
    }

    #[test]
    fn bad_values_are_config_errors() {
        let bad = ParquetOptions {
            codec: Codec::Zstd { level: 99 },
            ..ParquetOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(LakeError::Config {
                setting: "zstd_level",
                ..
            })
        ));
        let bad = ParquetOptions {
            row_group_rows: 0,
            ..ParquetOptions::default()
        };
        assert!(matches!(
            bad.writer_properties(Table::Events),
            Err(LakeError::Config { .. })
        ));
        let snappy = ParquetOptions {
            codec: Codec::Snappy,
            ..ParquetOptions::default()
        };
        let props = snappy.writer_properties(Table::Sessions).unwrap();
        let col = ColumnPath::from("uuid");
        assert_eq!(props.compression(&col), Compression::SNAPPY);
        assert_eq!(Codec::Snappy.name(), "snappy");
    }
}
