//! # playlake-lake
//!
//! The lake writer of `playlake sink`: rows in, Hive-partitioned Parquet files in
//! object storage out, exactly once (SPEC sections 4 and 5). The crate is I/O-light:
//! everything but [`store`] is pure and tested without a network.
//!
//! ```text
//! Kafka record --DecodeRow::decode--> row (playlake-schemas) + RecordMeta  [decode]
//!    | SinkManifest::admit (dedup by natural key, skip what is durable)   [manifest, dedup]
//!    | LakeRow::partition -> PartitionPath (Hive-escaped, dt/hour in a time zone) [partition, hive]
//!    | LakeRow::batch_of -> Arrow RecordBatch                              [rows]
//!    v
//! WriterPool: one PartitionFile (ArrowWriter, explicit WriterProperties)    [pool, file, format]
//!    | RollPolicy::plan: size, rows, flush interval, memory budget          [policy]
//!    v
//! FinishedFile (deterministic name from topic, partition, offsets)
//!    | SinkManifest::record_cuts -> checkpoint (write-ahead intent)
//!    | LakeStore::publish: PUT / multipart, or stage + rename on file://    [store]
//!    | SinkManifest::commit -> checkpoint (positions advance)
//!    v
//! <lake>/<table>/<col>=<value>/.../part-<topic>-<partition>-<first>-<last>.zstd.parquet
//! ```
//!
//! The sink's run loop (consuming, checkpoint saves, retries) lives in the `playlake`
//! binary; DESIGN.md section 9 explains why the protocol is exactly-once.

pub mod athena;
pub mod decode;
pub mod dedup;
pub mod error;
pub mod file;
pub mod filebuf;
pub mod format;
pub mod hive;
mod keytable;
pub mod manifest;
pub mod partition;
pub mod policy;
pub mod pool;
pub mod rows;
pub mod store;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod reader_tests;

pub use decode::{DecodeError, DecodeRow};
pub use dedup::{digest, KeyDigest, KeyHasher, KeyIndex, SegmentBuilder};
pub use error::{LakeError, Result};
pub use file::{file_name, Encoder, FinishedFile, PartitionFile, SourcePartition};
pub use format::{Codec, ParquetOptions, DEFAULT_ZSTD_LEVEL};
pub use hive::HIVE_DEFAULT_PARTITION;
pub use manifest::{Admit, FileCut, SinkManifest};
pub use partition::{PartitionConfig, PartitionPath, PathMemo, PathParts};
pub use policy::{EvictOrder, FileStats, RollPolicy, RollReason};
pub use pool::{FileKey, WriterPool};
pub use rows::{LakeRow, RecordMeta, RowBin, RowIter, Rows};
pub use store::{LakeStore, PublishMode};
