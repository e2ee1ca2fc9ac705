//! One open Parquet file per (partition directory, input partition), encoded in
//! memory until it rolls, and its deterministic name.
//!
//! Data flow: [`crate::pool::WriterPool`] appends record batches to a
//! [`PartitionFile`], together with the Kafka offsets the rows came from; the pool's
//! [`crate::policy::RollPolicy`] reads [`PartitionFile::stats`] and decides when to
//! [`PartitionFile::finish`] it; the resulting [`FinishedFile`] goes to
//! [`crate::store::LakeStore::publish`]. A file only ever holds rows of one input
//! partition, in offset order, so its name can be derived from the Kafka identity of
//! its rows ([`file_name`]): a replay of the same offsets produces the same name and
//! the same bytes.

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::error::{LakeError, Result};
use crate::format::Codec;
use crate::partition::PartitionPath;
use crate::policy::FileStats;

/// Estimated fixed memory of one open writer that its own accounting does not
/// report (schema descriptors, column writer state, the output buffer's slack).
pub const PER_FILE_OVERHEAD_BYTES: u64 = 16 * 1024;

/// An input partition: the Kafka identity half of a file's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePartition {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
}

/// The name of the file holding the rows of `source` from `first_offset` to
/// `last_offset` (inclusive) of one partition directory:
/// `part-<topic>-<partition>-<first>-<last>.<codec>.parquet`, offsets zero-padded to
/// 20 digits so names sort by offset.
pub fn file_name(
    source: &SourcePartition,
    first_offset: i64,
    last_offset: i64,
    codec: Codec,
) -> String {
    format!(
        "part-{}-{}-{:020}-{:020}.{}.parquet",
        source.topic,
        source.partition,
        first_offset,
        last_offset,
        codec.name()
    )
}

/// A Parquet file being written for one partition directory and one input partition.
pub struct PartitionFile {
    path: PartitionPath,
    source: SourcePartition,
    writer: ArrowWriter<Vec<u8>>,
    first_offset: Option<i64>,
    last_offset: i64,
    rows: u64,
    opened_at_ms: i64,
}

impl std::fmt::Debug for PartitionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionFile")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("first_offset", &self.first_offset)
            .field("last_offset", &self.last_offset)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl PartitionFile {
    /// Opens an empty file; `now_ms` is the wall clock, for the flush interval.
    pub fn new(
        path: PartitionPath,
        source: SourcePartition,
        properties: WriterProperties,
        now_ms: i64,
    ) -> Result<Self> {
        let schema = path.table().arrow_schema();
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))
            .map_err(|e| LakeError::parquet("open a writer", &path, e))?;
        Ok(Self {
            path,
            source,
            writer,
            first_offset: None,
            last_offset: -1,
            rows: 0,
            opened_at_ms: now_ms,
        })
    }

    /// Appends rows read from offsets `first_offset..=last_offset` of the file's input
    /// partition. Offsets must grow from call to call.
    pub fn write(
        &mut self,
        batch: &RecordBatch,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<()> {
        if first_offset > last_offset || first_offset <= self.last_offset {
            return Err(LakeError::Manifest {
                reason: format!(
                    "rows for {} from {}/{} offsets {first_offset}..={last_offset} do not follow \
                     offset {}",
                    self.path, self.source.topic, self.source.partition, self.last_offset
                ),
            });
        }
        self.writer
            .write(batch)
            .map_err(|e| LakeError::parquet("write rows", &self.path, e))?;
        self.first_offset.get_or_insert(first_offset);
        self.last_offset = last_offset;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Size, memory, rows and age, for the rolling policy.
    pub fn stats(&self) -> FileStats {
        let written = self.writer.bytes_written() as u64;
        let buffered = self.writer.inner().capacity() as u64;
        FileStats {
            encoded_bytes: written + self.writer.in_progress_size() as u64,
            memory_bytes: buffered + self.writer.memory_size() as u64 + PER_FILE_OVERHEAD_BYTES,
            rows: self.rows,
            opened_at_ms: self.opened_at_ms,
        }
    }

    /// The partition directory of the file.
    pub fn path(&self) -> &PartitionPath {
        &self.path
    }

    /// The input partition of the file's rows.
    pub fn source(&self) -> &SourcePartition {
        &self.source
    }

    /// Offset of the first row, if any row was written.
    pub fn first_offset(&self) -> Option<i64> {
        self.first_offset
    }

    /// Offset of the last row written (-1 before the first).
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Closes the file: writes the footer and returns the complete bytes with their
    /// deterministic name. `None` when no row was ever written.
    pub fn finish(self, codec: Codec) -> Result<Option<FinishedFile>> {
        let Some(first_offset) = self.first_offset else {
            return Ok(None);
        };
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| LakeError::parquet("finish the file", &self.path, e))?;
        let name = file_name(&self.source, first_offset, self.last_offset, codec);
        Ok(Some(FinishedFile {
            path: self.path,
            source: self.source,
            name,
            first_offset,
            last_offset: self.last_offset,
            rows: self.rows,
            bytes: Bytes::from(bytes),
        }))
    }
}

/// A complete Parquet file, ready to be published to the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFile {
    /// Partition directory.
    pub path: PartitionPath,
    /// Input partition of its rows.
    pub source: SourcePartition,
    /// Deterministic file name (see [`file_name`]).
    pub name: String,
    /// Offset of its first row.
    pub first_offset: i64,
    /// Offset of its last row.
    pub last_offset: i64,
    /// Number of rows.
    pub rows: u64,
    /// The encoded file.
    pub bytes: Bytes,
}

impl FinishedFile {
    /// `<table>/<partition values>/<name>`, relative to the lake root.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.path, self.name)
    }
}
