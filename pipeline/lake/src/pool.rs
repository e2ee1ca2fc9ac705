//! The open files of the sink: one [`PartitionFile`] per (partition directory, input
//! partition), rolled by the [`RollPolicy`].
//!
//! Data flow: the sink passes decoded rows with their [`RecordMeta`] to
//! [`WriterPool::write_rows`], which groups them by [`LakeRow::partition`], builds
//! one record batch per directory and appends it to that directory's open file. On
//! every tick the sink calls [`WriterPool::poll`] with the wall clock: the files the
//! policy names (size, rows, interval, memory budget) are finished and returned as
//! [`FinishedFile`]s, to be recorded in the manifest and published by
//! [`crate::store::LakeStore`]. [`WriterPool::finish_source`] closes every file of an
//! input partition (shutdown, `--drain`, a lost partition), and
//! [`WriterPool::first_open_offset`] tells where a replay of an input partition must
//! start so that no buffered row is lost.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Result;
use crate::file::{Encoder, FinishedFile, PartitionFile, SourcePartition};
use crate::format::{Codec, ParquetOptions};
use crate::partition::{PartitionConfig, PartitionPath};
use crate::policy::{RollPolicy, RollReason};
use crate::rows::{LakeRow, RecordMeta, RowBin};

/// Identity of an open file: its directory and the input partition of its rows.
pub type FileKey = (PartitionPath, SourcePartition);

/// Every open file of the sink and the rules that close them.
#[derive(Debug)]
pub struct WriterPool {
    /// How files are encoded (valid: checked by [`WriterPool::new`]).
    options: ParquetOptions,
    policy: RollPolicy,
    encoder: Encoder,
    files: BTreeMap<FileKey, PartitionFile>,
    /// Files whose end is fixed by a recorded cut: the policy must not roll them.
    pinned: BTreeSet<FileKey>,
}

impl WriterPool {
    /// An empty pool; fails when an option is out of range.
    pub fn new(options: &ParquetOptions, policy: RollPolicy) -> Result<Self> {
        policy.validate()?;
        options.validate()?;
        Ok(Self {
            options: options.clone(),
            policy,
            encoder: if options.background_encoding {
                Encoder::background()?
            } else {
                Encoder::inline()
            },
            files: BTreeMap::new(),
            pinned: BTreeSet::new(),
        })
    }

    /// Appends rows of one input partition, in offset order, to their directories'
    /// open files (opening files as needed at `now_ms`).
    pub fn write_rows<R: LakeRow>(
        &mut self,
        source: &SourcePartition,
        rows: Vec<(RecordMeta, R)>,
        config: &PartitionConfig,
        now_ms: i64,
    ) -> Result<()> {
        let rows = rows
            .into_iter()
            .map(|(meta, row)| Ok((row.partition(&meta, config)?, meta.offset, row)))
            .collect::<Result<Vec<_>>>()?;
        self.write_partitioned_rows(source, rows, now_ms)
    }

    /// [`WriterPool::write_rows`] for rows whose directories the caller already
    /// computed (the sink needs them before writing, for deduplication), so the
    /// path is not derived twice per row. Each row comes with its record's offset.
    pub fn write_partitioned_rows<R: LakeRow>(
        &mut self,
        source: &SourcePartition,
        rows: Vec<(PartitionPath, i64, R)>,
        now_ms: i64,
    ) -> Result<()> {
        // (directory, its rows, first offset, last offset), in order of appearance.
        let mut groups: Vec<(PartitionPath, Vec<R>, i64, i64)> = Vec::new();
        let mut index: HashMap<PartitionPath, usize> = HashMap::new();
        let mut last = 0;
        for (path, offset, row) in rows {
            // Consecutive rows mostly share a directory: try the previous one first.
            if groups.get(last).is_none_or(|g| g.0 != path) {
                last = match index.get(&path) {
                    Some(&i) => i,
                    None => {
                        index.insert(path.clone(), groups.len());
                        groups.push((path, Vec::new(), offset, offset));
                        groups.len() - 1
                    }
                };
            }
            if let Some(group) = groups.get_mut(last) {
                group.1.push(row);
                group.3 = offset;
            }
        }
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (path, rows, first, last) in groups {
            self.file(path, source, now_ms)?
                .write_rows(rows, first, last)?;
        }
        Ok(())
    }

    /// Appends rows of one directory, `first_offset..=last_offset` of `source` in
    /// offset order, given in pieces: they are joined into one batch on the
    /// encoder's thread, not on the caller's, and then given to `recycle`.
    #[allow(clippy::too_many_arguments)]
    pub fn write_row_pieces<R: LakeRow>(
        &mut self,
        source: &SourcePartition,
        path: PartitionPath,
        pieces: Vec<Vec<R>>,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
        recycle: Option<RowBin<R>>,
    ) -> Result<()> {
        self.file(path, source, now_ms)?.write_row_pieces(
            pieces,
            first_offset,
            last_offset,
            recycle,
        )
    }

    /// The open file of `path` for `source`, opened at `now_ms` if there is none.
    fn file(
        &mut self,
        path: PartitionPath,
        source: &SourcePartition,
        now_ms: i64,
    ) -> Result<&mut PartitionFile> {
        Ok(match self.files.entry((path, source.clone())) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                let properties = self.options.writer_properties(slot.key().0.table())?;
                let file = PartitionFile::new(
                    slot.key().0.clone(),
                    source.clone(),
                    properties,
                    self.encoder.clone(),
                    now_ms,
                )?;
                slot.insert(file)
            }
        })
    }

    /// Appends a batch read from `first_offset..=last_offset` of `source` to the open
    /// file of `path`.
    pub fn write_batch(
        &mut self,
        path: PartitionPath,
        source: &SourcePartition,
        batch: &arrow::array::RecordBatch,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        self.file(path, source, now_ms)?
            .write(batch, first_offset, last_offset)
    }

    /// Exempts the file of `key` from the rolling policy until it is finished: its
    /// end is fixed by a recorded cut being replayed.
    pub fn pin(&mut self, key: FileKey) {
        self.pinned.insert(key);
    }

    /// Finishes the files the policy names at `now_ms` (never a pinned one).
    pub fn poll(&mut self, now_ms: i64) -> Result<Vec<(FinishedFile, RollReason)>> {
        let pinned = &self.pinned;
        let candidates = self
            .files
            .iter()
            .filter(|(k, _)| !pinned.contains(*k))
            .map(|(k, f)| (k, f.stats()));
        let plan = self.policy.plan(candidates, now_ms);
        let keys: Vec<(FileKey, RollReason)> =
            plan.into_iter().map(|(k, r)| (k.clone(), r)).collect();
        let mut finished = Vec::with_capacity(keys.len());
        for (key, reason) in keys {
            if let Some(file) = self.finish(&key)? {
                finished.push((file, reason));
            }
        }
        Ok(finished)
    }

    /// Finishes one open file now (a recorded cut ends here).
    pub fn finish(&mut self, key: &FileKey) -> Result<Option<FinishedFile>> {
        self.pinned.remove(key);
        match self.files.remove(key) {
            Some(file) => file.finish(self.options.codec),
            None => Ok(None),
        }
    }

    /// Finishes every open file of `source` (drain, shutdown, partition revoked).
    pub fn finish_source(&mut self, source: &SourcePartition) -> Result<Vec<FinishedFile>> {
        let keys: Vec<FileKey> = self
            .files
            .keys()
            .filter(|k| &k.1 == source)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in keys {
            out.extend(self.finish(&key)?);
        }
        Ok(out)
    }

    /// Finishes every open file.
    pub fn finish_all(&mut self) -> Result<Vec<FinishedFile>> {
        self.pinned.clear();
        let files = std::mem::take(&mut self.files);
        let mut out = Vec::new();
        for file in files.into_values() {
            out.extend(file.finish(self.options.codec)?);
        }
        Ok(out)
    }

    /// Drops every open file of `source` without writing it (the partition was taken
    /// over by another instance, which replays those rows itself).
    pub fn discard_source(&mut self, source: &SourcePartition) {
        self.files.retain(|k, _| &k.1 != source);
        self.pinned.retain(|k| &k.1 != source);
    }

    /// The smallest first offset among the open files of `source`: a restart must
    /// replay from there (or from the next unread offset, if no file is open).
    pub fn first_open_offset(&self, source: &SourcePartition) -> Option<i64> {
        self.files
            .iter()
            .filter(|(k, _)| &k.1 == source)
            .filter_map(|(_, f)| f.first_offset())
            .min()
    }

    /// The open file of `key`, if any.
    pub fn get(&self, key: &FileKey) -> Option<&PartitionFile> {
        self.files.get(key)
    }

    /// Number of open files.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Memory held by all open files, as the policy counts it.
    pub fn memory_bytes(&self) -> u64 {
        self.files.values().map(|f| f.stats().memory_bytes).sum()
    }

    /// The codec of the files (part of their names).
    pub fn codec(&self) -> Codec {
        self.options.codec
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fixtures::{meta, session};

    fn source() -> SourcePartition {
        SourcePartition {
            topic: "playback.sessions".into(),
            partition: 3,
        }
    }

    fn pool(policy: RollPolicy) -> WriterPool {
        WriterPool::new(&ParquetOptions::default(), policy).unwrap()
    }

    fn fill(pool: &mut WriterPool, paths: i64) {
        let config = PartitionConfig::default();
        let rows = (0..paths)
            .map(|i| {
                (
                    meta("playback.sessions", i),
                    session(0, &format!("stream-{i}")),
                )
            })
            .collect();
        pool.write_rows(&source(), rows, &config, 0).unwrap();
    }

    #[test]
    fn rows_are_grouped_by_directory_and_named_by_offsets() {
        let mut pool = pool(RollPolicy::default());
        let config = PartitionConfig::default();
        let rows = vec![
            (meta("playback.sessions", 5), session(1, "a")),
            (meta("playback.sessions", 6), session(2, "b")),
            (meta("playback.sessions", 9), session(3, "a")),
        ];
        pool.write_rows(&source(), rows, &config, 0).unwrap();
        assert_eq!(pool.open_files(), 2);
        assert_eq!(pool.first_open_offset(&source()), Some(5));
        let files = pool.finish_source(&source()).unwrap();
        let names: Vec<String> = files.iter().map(FinishedFile::relative_path).collect();
        assert_eq!(
            names,
            [
                "sessions/dt=2025-06-01/stream_id=a/part-playback.sessions-3-00000000000000000005-00000000000000000009.zstd.parquet",
                "sessions/dt=2025-06-01/stream_id=b/part-playback.sessions-3-00000000000000000006-00000000000000000006.zstd.parquet",
            ]
        );
        assert_eq!(files[0].rows, 2);
        assert_eq!(pool.open_files(), 0);
        assert_eq!(pool.first_open_offset(&source()), None);
    }

    #[test]
    fn same_rows_give_the_same_bytes() {
        let run = || {
            let mut pool = pool(RollPolicy::default());
            fill(&mut pool, 3);
            pool.finish_all().unwrap()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn rows_in_pieces_give_the_file_of_one_batch() {
        let config = PartitionConfig::default();
        let rows: Vec<playlake_schemas::Session> = (0..10).map(|i| session(i, "a")).collect();
        let path = rows[0]
            .partition(&meta("playback.sessions", 0), &config)
            .unwrap();
        let mut whole = pool(RollPolicy::default());
        whole
            .write_row_pieces(
                &source(),
                path.clone(),
                vec![rows.clone()],
                100,
                109,
                0,
                None,
            )
            .unwrap();
        let mut pieces = pool(RollPolicy::default());
        let split = vec![rows[..3].to_vec(), Vec::new(), rows[3..].to_vec()];
        let bin = RowBin::default();
        pieces
            .write_row_pieces(&source(), path, split, 100, 109, 0, Some(bin.clone()))
            .unwrap();
        let (whole, pieces) = (whole.finish_all().unwrap(), pieces.finish_all().unwrap());
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].rows, 10);
        assert_eq!(whole, pieces);
        // Once encoded, the pieces with rows come back for the decoders to reuse
        // (last given, first taken); then the bin hands out fresh vectors.
        assert_eq!(bin.take(1), rows[3..].to_vec());
        assert_eq!(bin.take(1), rows[..3].to_vec());
        let fresh = bin.take(7);
        assert!(fresh.is_empty() && fresh.capacity() >= 7);
    }

    #[test]
    fn interval_rolls_and_pinned_files_wait_for_their_cut() {
        let mut pool = pool(RollPolicy {
            flush_interval: Duration::from_secs(10),
            ..RollPolicy::default()
        });
        fill(&mut pool, 2);
        assert!(pool.poll(9_999).unwrap().is_empty());
        let key = pool.files.keys().next().cloned().unwrap();
        pool.pin(key.clone());
        let rolled = pool.poll(10_000).unwrap();
        assert_eq!(rolled.len(), 1);
        assert_eq!(rolled[0].1, RollReason::Interval);
        assert!(pool.get(&key).is_some(), "pinned file stays open");
        assert!(pool.finish(&key).unwrap().is_some());
        assert!(pool.finish(&key).unwrap().is_none());
    }

    #[test]
    fn ten_thousand_open_paths_stay_within_the_memory_budget() {
        let mut unbounded = pool(RollPolicy::default());
        fill(&mut unbounded, 10_000);
        assert_eq!(unbounded.open_files(), 10_000);
        let total = unbounded.memory_bytes();
        drop(unbounded);

        let budget = total / 4;
        let mut bounded = pool(RollPolicy {
            memory_budget_bytes: budget,
            ..RollPolicy::default()
        });
        fill(&mut bounded, 10_000);
        let rolled = bounded.poll(0).unwrap();
        assert!(
            bounded.memory_bytes() <= budget,
            "{} > {budget}",
            bounded.memory_bytes()
        );
        assert!(rolled
            .iter()
            .all(|(_, reason)| *reason == RollReason::Memory));
        assert_eq!(rolled.len() + bounded.open_files(), 10_000);
        assert!(bounded.open_files() > 0);
        let rows: u64 = rolled.iter().map(|(f, _)| f.rows).sum();
        assert_eq!(rows as usize, rolled.len());
    }
}
