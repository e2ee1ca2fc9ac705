//! Rows of every lake table as Arrow record batches, with their partition and their
//! natural key.
//!
//! Data flow: the sink decodes a Kafka record into one of the schema crate's row
//! types, then uses [`LakeRow`] three ways: [`LakeRow::partition`] picks the
//! directory, [`LakeRow::natural_key`] feeds the dedup of re-emitted results
//! ([`crate::manifest`]), and [`LakeRow::batch_of`] turns the rows of one directory
//! into a [`RecordBatch`] with exactly [`Table::arrow_schema`]'s columns (partition
//! columns are left out: they live in the path) for [`crate::file::PartitionFile`].
//! The rows come as [`Rows`], consecutive pieces (each decoded apart), and once in
//! a batch their vectors go back to the decoders through a [`RowBin`].

use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use playlake_schemas::{
    ChangeEvent, DailyStat, DlqRecord, PlaybackEvent, Session, Table, TimestampMs, ViewerWindow,
};

use crate::error::{LakeError, Result};
use crate::partition::{PartitionConfig, PartitionPath, PathParts};

/// Where a row was read from: its Kafka identity and the record's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    /// Topic of the record (borrowed from it: a meta is built for every row).
    pub topic: &'a str,
    /// Partition of the record.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
    /// The record's own timestamp (set by its producer, stored by the broker). It is
    /// the time of rows that have none of their own (the `errors` table), because it
    /// is the same on every replay, unlike the sink's wall clock.
    pub timestamp: TimestampMs,
}

/// A row type of one lake table.
pub trait LakeRow: Sized + Send + 'static {
    /// The table the rows go to.
    const TABLE: Table;

    /// What the row's partition directory is made of (no allocation: the sink
    /// calls it for every row and renders only directories it has not seen lately,
    /// [`crate::partition::PathMemo`]).
    fn path_parts<'a>(
        &'a self,
        meta: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>>;

    /// The row's partition directory.
    fn partition(&self, meta: &RecordMeta<'_>, config: &PartitionConfig) -> Result<PartitionPath> {
        self.path_parts(meta, config)?.render()
    }

    /// The row's natural key (SPEC section 4) as unambiguous bytes, in place of
    /// what `out` held (the sink reuses one buffer: an allocation per row cost 3%
    /// of its decoding): two rows with equal keys are the same result, re-emitted.
    fn write_natural_key(&self, meta: &RecordMeta, out: &mut Vec<u8>);

    /// [`LakeRow::write_natural_key`] into a new vector.
    fn natural_key(&self, meta: &RecordMeta) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_natural_key(meta, &mut out);
        out
    }

    /// The rows, given in pieces, as one batch with the table's Arrow schema.
    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch>;

    /// [`LakeRow::batch_of`] of one slice of rows.
    fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
        Self::batch_of(Rows::new(&[rows]))
    }
}

/// Rows in consecutive pieces, read as one sequence: the encoder builds a batch
/// from the pieces the decoding threads made without moving the rows into one
/// vector first (that copy was the sink's biggest `memmove`).
#[derive(Debug)]
pub struct Rows<'a, T> {
    pieces: &'a [&'a [T]],
    len: usize,
}

impl<T> Clone for Rows<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Rows<'_, T> {}

impl<'a, T> Rows<'a, T> {
    /// The rows of `pieces`, in order.
    pub fn new(pieces: &'a [&'a [T]]) -> Self {
        Self {
            pieces,
            len: pieces.iter().map(|p| p.len()).sum(),
        }
    }

    /// How many rows there are in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every row, piece after piece.
    pub fn iter(&self) -> RowIter<'a, T> {
        RowIter {
            pieces: self.pieces.iter(),
            current: [].iter(),
            left: self.len,
        }
    }
}

/// The iterator of [`Rows::iter`]; its exact length lets Arrow's builders size
/// their buffers once.
#[derive(Debug)]
pub struct RowIter<'a, T> {
    pieces: std::slice::Iter<'a, &'a [T]>,
    current: std::slice::Iter<'a, T>,
    left: usize,
}

impl<'a, T> Iterator for RowIter<'a, T> {
    type Item = &'a T;

    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(row) = self.current.next() {
                self.left -= 1;
                return Some(row);
            }
            self.current = self.pieces.next()?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for RowIter<'_, T> {}

/// Vectors of rows the encoder is done with, for the decoders to fill again: a
/// recycled row keeps its strings' buffers, so decoding into it allocates nothing
/// for the usual record, and the encoder's thread frees nothing the decoding
/// threads allocated (those cross-thread frees and the allocations were a tenth of
/// the sink's CPU). Shared by the decoders and the encoder; bounded, so a burst
/// never keeps more than [`RowBin::MAX_VECTORS`] vectors alive.
#[derive(Debug)]
pub struct RowBin<R> {
    vectors: Arc<Mutex<Vec<Vec<R>>>>,
}

impl<R> Clone for RowBin<R> {
    fn clone(&self) -> Self {
        Self {
            vectors: Arc::clone(&self.vectors),
        }
    }
}

impl<R> Default for RowBin<R> {
    fn default() -> Self {
        Self {
            vectors: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<R> RowBin<R> {
    /// The most vectors the bin keeps (the sink's pieces hold up to 128 rows: a few
    /// MiB in all, about the encoder's queue of batches).
    pub const MAX_VECTORS: usize = 512;

    /// A vector of old rows to decode into (its rows are stale, there to be
    /// overwritten), or an empty one with room for `capacity` rows.
    pub fn take(&self, capacity: usize) -> Vec<R> {
        let recycled = self
            .vectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        recycled.unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Gives vectors back once their rows are encoded (beyond the bound they are
    /// dropped here).
    pub fn give(&self, vectors: impl IntoIterator<Item = Vec<R>>) {
        let mut bin = self.vectors.lock().unwrap_or_else(PoisonError::into_inner);
        for rows in vectors {
            if bin.len() >= Self::MAX_VECTORS {
                break;
            }
            if !rows.is_empty() {
                bin.push(rows);
            }
        }
    }
}

/// Length-prefixed concatenation into `out`, so `("a", "bc")` and `("ab", "c")`
/// differ.
fn key(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.clear();
    out.reserve(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(table.arrow_schema(), columns).map_err(|source| LakeError::Batch {
        table: table.name(),
        source,
    })
}

fn text<'a, T: 'a>(rows: Rows<'a, T>, f: impl Fn(&'a T) -> &'a str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn opt_text<'a, T: 'a>(rows: Rows<'a, T>, f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn ts<T>(rows: Rows<'_, T>, f: impl Fn(&T) -> TimestampMs) -> ArrayRef {
    Arc::new(
        TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| f(r).as_millis()))
            .with_timezone("UTC"),
    )
}

fn int<T>(rows: Rows<'_, T>, f: impl Fn(&T) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

fn float<T>(rows: Rows<'_, T>, f: impl Fn(&T) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

impl LakeRow for Session {
    const TABLE: Table = Table::Sessions;

    fn path_parts<'a>(
        &'a self,
        _: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>> {
        PathParts::day_stream(Self::TABLE, config, self.session_start, &self.stream_id)
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        let start = self.session_start.as_millis().to_be_bytes();
        let ordinal = self.start_ordinal.to_be_bytes();
        // The ordinal is a fourth part only when nonzero, so the keys (and the
        // persisted digests) of all other sessions stay what they were.
        let parts: &[&[u8]] = if self.start_ordinal == 0 {
            &[self.uuid.as_bytes(), self.stream_id.as_bytes(), &start]
        } else {
            &[
                self.uuid.as_bytes(),
                self.stream_id.as_bytes(),
                &start,
                &ordinal,
            ]
        };
        key(out, parts)
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        batch(
            Self::TABLE,
            vec![
                text(rows, |r| &r.uuid),
                opt_text(rows, |r| r.user_id.as_deref()),
                ts(rows, |r| r.session_start),
                ts(rows, |r| r.session_end),
                float(rows, |r| r.position_start),
                float(rows, |r| r.position_end),
                float(rows, |r| r.watched_seconds),
                int(rows, |r| r.event_count),
                int(rows, |r| r.seek_count),
                text(rows, |r| r.ended_by.as_str()),
            ],
        )
    }
}

impl LakeRow for ViewerWindow {
    const TABLE: Table = Table::Viewers;

    fn path_parts<'a>(
        &'a self,
        _: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>> {
        PathParts::day_stream(Self::TABLE, config, self.window_start, &self.stream_id)
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        let start = self.window_start.as_millis().to_be_bytes();
        key(out, &[self.stream_id.as_bytes(), &start])
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        batch(
            Self::TABLE,
            vec![
                ts(rows, |r| r.window_start),
                ts(rows, |r| r.window_end),
                int(rows, |r| r.viewers),
            ],
        )
    }
}

impl LakeRow for DailyStat {
    const TABLE: Table = Table::Daily;

    fn path_parts<'a>(&'a self, _: &RecordMeta<'_>, _: &PartitionConfig) -> Result<PathParts<'a>> {
        Ok(PathParts::day(Self::TABLE, self.dt))
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        let day = self.dt.format("%Y-%m-%d").to_string();
        key(out, &[day.as_bytes(), self.stream_id.as_bytes()])
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        batch(
            Self::TABLE,
            vec![
                text(rows, |r| &r.stream_id),
                int(rows, |r| r.views),
                int(rows, |r| r.unique_users),
                float(rows, |r| r.watched_seconds),
                int(rows, |r| r.peak_viewers),
            ],
        )
    }
}

impl LakeRow for PlaybackEvent {
    const TABLE: Table = Table::Events;

    fn path_parts<'a>(
        &'a self,
        _: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>> {
        PathParts::day_hour(Self::TABLE, config, self.event_time, None)
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        key(out, &[self.uuid.as_bytes(), self.event_id.as_bytes()])
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        batch(
            Self::TABLE,
            vec![
                text(rows, |r| &r.event_id),
                text(rows, |r| &r.uuid),
                text(rows, |r| &r.stream_id),
                opt_text(rows, |r| r.user_id.as_deref()),
                text(rows, |r| r.event_type.as_str()),
                ts(rows, |r| r.event_time),
                float(rows, |r| r.position_start),
                float(rows, |r| r.position_end),
            ],
        )
    }
}

impl LakeRow for ChangeEvent {
    const TABLE: Table = Table::Cdc;

    fn path_parts<'a>(
        &'a self,
        _: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>> {
        PathParts::day_hour(
            Self::TABLE,
            config,
            self.approximate_creation_time,
            Some(&self.table),
        )
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        key(out, &[self.table.as_bytes(), self.event_id.as_bytes()])
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        let json = |v: Option<&serde_json::Value>| ChangeEvent::image_json(v);
        let keys: StringArray = rows.iter().map(|r| Some(r.keys.to_string())).collect();
        let new: StringArray = rows.iter().map(|r| json(r.new_image.as_ref())).collect();
        let old: StringArray = rows.iter().map(|r| json(r.old_image.as_ref())).collect();
        batch(
            Self::TABLE,
            vec![
                text(rows, |r| &r.event_id),
                text(rows, |r| r.event_name.as_str()),
                opt_text(rows, |r| r.sequence_number.as_deref()),
                opt_text(rows, |r| r.shard_id.as_deref()),
                ts(rows, |r| r.approximate_creation_time),
                Arc::new(keys),
                Arc::new(new),
                Arc::new(old),
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.ttl_expired))
                        .collect::<BooleanArray>(),
                ),
            ],
        )
    }
}

impl LakeRow for DlqRecord {
    const TABLE: Table = Table::Errors;

    fn path_parts<'a>(
        &'a self,
        meta: &RecordMeta<'_>,
        config: &PartitionConfig,
    ) -> Result<PathParts<'a>> {
        PathParts::day_of(Self::TABLE, config, meta.timestamp)
    }

    fn write_natural_key(&self, _: &RecordMeta, out: &mut Vec<u8>) {
        let partition = i64::from(self.source_partition).to_be_bytes();
        let offset = self.source_offset.to_be_bytes();
        key(out, &[self.source_topic.as_bytes(), &partition, &offset])
    }

    fn batch_of(rows: Rows<'_, Self>) -> Result<RecordBatch> {
        let raw: StringArray = rows.iter().map(|r| Some(r.raw_lossy())).collect();
        batch(
            Self::TABLE,
            vec![
                text(rows, |r| &r.source_topic),
                int(rows, |r| i64::from(r.source_partition)),
                int(rows, |r| r.source_offset),
                text(rows, |r| &r.reason),
                Arc::new(raw),
            ],
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;
