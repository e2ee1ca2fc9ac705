//! The sink's exactly-once bookkeeping for one input partition: recorded cuts,
//! what is durable, where to replay from, and the dedup index. Pure; saved as the
//! opaque state of the sink's checkpoint (`playlake-checkpoint`), whose positions are
//! [`SinkManifest::replay_from`].
//!
//! The protocol (see DESIGN.md section 9), per input partition:
//!
//! 1. For each record, [`SinkManifest::admit`] says whether to write its row: not if
//!    it is a re-emitted copy (dedup by natural key) or already in a durable file.
//! 2. When the pool finishes files, [`SinkManifest::record_cuts`] notes each file's
//!    cut (directory, name, offsets, rows) as *pending*, and the sink saves a
//!    checkpoint (the write-ahead intent) *before* publishing them.
//! 3. After every pending file is durable, [`SinkManifest::commit`] moves them to
//!    *done* and advances `replay_from` to the first offset still buffered; the sink
//!    saves another checkpoint (this may be merged with the next intent).
//!
//! After a crash the sink restores the manifest and replays from `replay_from`.
//! Pending cuts are re-made exactly: the sink pins their files so the rolling policy
//! cannot cut them elsewhere, splits its input at [`SinkManifest::next_cut_end`],
//! finishes each file when its last offset is reached ([`SinkManifest::due_cuts`]),
//! checks it with [`SinkManifest::remade`] and publishes it again under the same name with the
//! same bytes.
//!
//! The dedup index is not in the manifest's bytes: before each save the sink asks
//! [`SinkManifest::seal_keys`] for the keys learnt since the previous save, writes
//! them as an immutable key segment next to the checkpoint, and the manifest lists
//! its segments. After a restore the sink reads them back with
//! [`SinkManifest::load_key_segment`]. When the list grows past
//! [`MAX_KEY_SEGMENTS`], one segment holding every remembered key replaces it;
//! segments whose keys are all past the retention are dropped at a commit. Segments
//! no longer listed are handed out by [`SinkManifest::take_retired`] for deletion.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dedup::{decode_segment, KeyDigest, KeyHasher, KeyIndex, SegmentBuilder};
use crate::error::{LakeError, Result};
use crate::file::{FinishedFile, SourcePartition};
use crate::partition::PartitionPath;
use crate::pool::FileKey;

/// Version of the encoded manifest. Version 1 held the dedup index inline; it is
/// still read (its keys are written as a segment at the next save). Version 2 had
/// no `key_hasher`: its index digests with SHA-256, and keeps doing so.
pub const MANIFEST_VERSION: u32 = 3;

/// Above this many key segments, the next save writes one compacted segment.
pub const MAX_KEY_SEGMENTS: usize = 16;

/// The most keys [`SinkManifest::expect_records`] makes room for at once (about
/// 512 MiB of index): past it the index grows as keys come, so a backlog longer
/// than the dedup retention cannot reserve memory it will never fill.
pub const MAX_RESERVED_KEYS: usize = 1 << 24;

/// A persisted key segment of the dedup index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySegment {
    /// Object name, relative to the checkpoint scope's key directory.
    pub name: String,
    /// Number of keys in it.
    pub keys: u64,
    /// Largest first offset among its keys.
    pub max_offset: i64,
    /// Latest record time among its keys.
    pub max_record_ms: i64,
}

impl KeySegment {
    fn of(name: &str, entries: &SegmentBuilder) -> Self {
        Self {
            name: name.to_owned(),
            keys: entries.len(),
            max_offset: entries.max_offset(),
            max_record_ms: entries.max_record_ms(),
        }
    }
}

/// A file whose cut is recorded: it will be (or was) published under `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCut {
    /// Partition directory, relative to the lake root.
    pub path: String,
    /// Deterministic file name.
    pub name: String,
    /// Offset of the file's first row.
    pub first_offset: i64,
    /// Offset of the file's last row.
    pub last_offset: i64,
    /// Number of rows.
    pub rows: u64,
}

impl FileCut {
    fn of(file: &FinishedFile) -> Self {
        Self {
            path: file.path.as_str().to_owned(),
            name: file.name.clone(),
            first_offset: file.first_offset,
            last_offset: file.last_offset,
            rows: file.rows,
        }
    }
}

/// What to do with one record's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it to its directory's open file.
    Write,
    /// An earlier record had the same natural key: drop it (counted as duplicate).
    Duplicate,
    /// It is already in a durable file of its directory: skip it.
    Durable,
}

/// The exactly-once state of one input partition of the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkManifest {
    version: u32,
    source: SourcePartitionRecord,
    replay_from: i64,
    pending: Vec<FileCut>,
    /// Per directory, the last offset of its rows already in a durable file. Entries
    /// below `replay_from` are dropped: replay never reads those offsets again.
    done_through: BTreeMap<String, i64>,
    /// The dedup index's persisted segments, oldest first.
    #[serde(default)]
    key_segments: Vec<KeySegment>,
    /// The latest retention cutoff applied to the index: keys older than it (by
    /// record time) and before `replay_from` are forgotten, also when segments are
    /// read back, so a restored index equals the one that was saved.
    #[serde(default = "no_cutoff")]
    keys_pruned_before_ms: i64,
    /// How the index digests natural keys; chosen when the manifest is created.
    #[serde(default = "sha256_hasher")]
    key_hasher: KeyHasher,
    /// The dedup index (in memory; persisted as `key_segments`).
    #[serde(skip)]
    seen: KeyIndex,
    /// Version 1's inline index, only read.
    #[serde(rename = "seen", default, skip_serializing)]
    inline_seen: Option<KeyIndex>,
    /// Listed segments not read back yet since the decode (not saved).
    #[serde(skip)]
    unloaded: BTreeSet<String>,
    /// Segments no longer listed, to delete once a save stopped listing them.
    #[serde(skip)]
    retired: Vec<String>,
    /// Directories whose pending cut has its file in this run (not saved): re-made
    /// during the replay, or recorded from a finished file by
    /// [`SinkManifest::record_cuts`] (its flush may still run while rows go on).
    #[serde(skip)]
    remade: BTreeSet<String>,
}

fn no_cutoff() -> i64 {
    i64::MIN
}

fn sha256_hasher() -> KeyHasher {
    KeyHasher::Sha256
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SourcePartitionRecord {
    topic: String,
    partition: i32,
}

impl SinkManifest {
    /// A fresh manifest: nothing written yet, reading starts at `start_offset`.
    pub fn new(source: &SourcePartition, start_offset: i64) -> Self {
        Self {
            version: MANIFEST_VERSION,
            source: SourcePartitionRecord {
                topic: source.topic.clone(),
                partition: source.partition,
            },
            replay_from: start_offset,
            pending: Vec::new(),
            done_through: BTreeMap::new(),
            key_segments: Vec::new(),
            keys_pruned_before_ms: i64::MIN,
            key_hasher: KeyHasher::random(),
            seen: KeyIndex::default(),
            inline_seen: None,
            unloaded: BTreeSet::new(),
            retired: Vec::new(),
            remade: BTreeSet::new(),
        }
    }

    /// The input partition this manifest belongs to.
    pub fn source(&self) -> SourcePartition {
        SourcePartition {
            topic: self.source.topic.clone(),
            partition: self.source.partition,
        }
    }

    /// The offset to resume reading from: the checkpoint's position.
    pub fn replay_from(&self) -> i64 {
        self.replay_from
    }

    /// Cuts recorded but not yet committed.
    pub fn pending(&self) -> &[FileCut] {
        &self.pending
    }

    /// The digest of a row's natural key, as this partition's index takes it
    /// ([`KeyHasher`]): the same function in every run that restores this manifest.
    pub fn key_digest(&self, natural_key: &[u8]) -> KeyDigest {
        self.key_hasher.digest(natural_key)
    }

    /// The function [`SinkManifest::key_digest`] uses (to digest on another thread).
    pub fn key_hasher(&self) -> KeyHasher {
        self.key_hasher
    }

    /// Number of keys in the dedup index.
    pub fn remembered_keys(&self) -> usize {
        self.seen.len()
    }

    /// The dedup index's persisted segments. After [`SinkManifest::decode`], read
    /// each back with [`SinkManifest::load_key_segment`] before admitting records.
    pub fn key_segments(&self) -> &[KeySegment] {
        &self.key_segments
    }

    /// True when every listed key segment was read back since the decode.
    pub fn keys_loaded(&self) -> bool {
        self.unloaded.is_empty()
    }

    /// Merges the bytes of the listed segment `name` into the dedup index, leaving
    /// out keys the saved index had already forgotten.
    pub fn load_key_segment(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        if !self.unloaded.remove(name) {
            return Err(LakeError::Manifest {
                reason: format!("key segment {name} is not listed, or was already read"),
            });
        }
        let (cutoff, replay_from) = (self.keys_pruned_before_ms, self.replay_from);
        let seen = &mut self.seen;
        decode_segment(name, bytes, |(key, offset, ts)| {
            if ts >= cutoff || offset >= replay_from {
                seen.restore(key, offset, ts);
            }
        })
    }

    /// Before a save: the dedup keys learnt since the previous save as a new key
    /// segment named `name` (unique per save; [`SegmentBuilder::finish`] frames it), which the sink must write
    /// durably *before* saving the manifest that lists it. `None` when there is
    /// nothing new. Past [`MAX_KEY_SEGMENTS`] the segment holds every remembered key
    /// and replaces the others (retired, see [`SinkManifest::take_retired`]).
    pub fn seal_keys(&mut self, name: &str) -> Option<SegmentBuilder> {
        let fresh = self.seen.take_fresh();
        if fresh.is_empty() {
            return None;
        }
        let entries = if self.key_segments.len() >= MAX_KEY_SEGMENTS {
            self.retired
                .extend(self.key_segments.drain(..).map(|segment| segment.name));
            self.seen.all_entries()
        } else {
            fresh
        };
        self.key_segments.push(KeySegment::of(name, &entries));
        Some(entries)
    }

    /// Segments no longer listed; delete them after the next successful save (a
    /// failed delete leaves an orphan that a later restore removes).
    pub fn take_retired(&mut self) -> Vec<String> {
        std::mem::take(&mut self.retired)
    }

    /// A backlog of `records` records lies ahead (from the transport's end offset):
    /// sizes the dedup index for a key each at once, up to [`MAX_RESERVED_KEYS`],
    /// rather than letting it double its way there. Every doubling rehashes into
    /// fresh memory, and on the 9M-record benchmark that was a fifth of the
    /// decoding thread's time (zeroing new pages, mostly). An index that has the
    /// room already is left alone.
    pub fn expect_records(&mut self, records: i64) {
        let wanted = usize::try_from(records).unwrap_or(0).min(MAX_RESERVED_KEYS);
        if wanted > self.seen.headroom() {
            self.seen.reserve(wanted);
        }
    }

    /// Prepares the dedup index for the [`SinkManifest::admit`] of these keys
    /// ([`KeyIndex::warm`]).
    pub fn warm<'a>(&self, keys: impl Iterator<Item = &'a KeyDigest>) {
        self.seen.warm(keys);
    }

    /// Decides about the row of the record at `offset` (in directory `path`, natural
    /// key digest `key`, record timestamp `record_ms`). Records must come in offset
    /// order from [`SinkManifest::replay_from`] on.
    pub fn admit(&mut self, path: &str, key: KeyDigest, offset: i64, record_ms: i64) -> Admit {
        if !self.seen.admit(key, offset, record_ms) {
            return Admit::Duplicate;
        }
        match self.done_through.get(path) {
            Some(done) if offset <= *done => Admit::Durable,
            _ => Admit::Write,
        }
    }

    /// The pending cut of directory `path`, if the open file there must end at it.
    pub fn cut_for(&self, path: &str) -> Option<&FileCut> {
        self.pending.iter().find(|c| c.path == path)
    }

    /// The open-file keys of the pending cuts, for [`crate::pool::WriterPool::pin`]
    /// when a replay starts.
    pub fn pending_file_keys(&self) -> Result<Vec<FileKey>> {
        self.pending
            .iter()
            .map(|cut| {
                PartitionPath::from_relative(&cut.path)
                    .map(|path| (path, self.source()))
                    .ok_or_else(|| LakeError::Manifest {
                        reason: format!("pending cut has an invalid directory {:?}", cut.path),
                    })
            })
            .collect()
    }

    /// The pending cuts not yet re-made that end at or before `offset`. Call it with
    /// `offset - 1` before writing the row at `offset` and with `offset` after it:
    /// each returned cut's file must be finished now, checked with
    /// [`SinkManifest::remade`] and published.
    pub fn due_cuts(&self, offset: i64) -> Vec<FileCut> {
        self.pending
            .iter()
            .filter(|c| c.last_offset <= offset && !self.remade.contains(&c.path))
            .cloned()
            .collect()
    }

    /// True when every pending cut was re-made in this replay (or none is pending):
    /// the sink may [`SinkManifest::commit`] once their files are published.
    pub fn replay_complete(&self) -> bool {
        self.pending.iter().all(|c| self.remade.contains(&c.path))
    }

    /// The smallest last offset of the pending cuts that is `>= offset`: the sink
    /// must stop feeding rows after that offset, finish the cut's file, then go on.
    pub fn next_cut_end(&self, offset: i64) -> Option<i64> {
        self.pending
            .iter()
            .filter(|c| !self.remade.contains(&c.path))
            .map(|c| c.last_offset)
            .filter(|last| *last >= offset)
            .min()
    }

    /// Records the cuts of newly finished files, before they are published. A file
    /// that re-makes a pending cut must match it exactly. The cuts are made (their
    /// files exist): [`SinkManifest::due_cuts`] and
    /// [`SinkManifest::replay_complete`] do not wait for them.
    pub fn record_cuts<'f>(
        &mut self,
        files: impl IntoIterator<Item = &'f FinishedFile>,
    ) -> Result<()> {
        for file in files {
            self.check_source(file)?;
            let cut = FileCut::of(file);
            match self.pending.iter().find(|c| c.path == cut.path) {
                Some(existing) if *existing == cut => {
                    self.remade.insert(cut.path);
                }
                Some(existing) => {
                    return Err(LakeError::Manifest {
                        reason: format!(
                            "directory {} already has the pending cut {existing:?}; a second cut \
                             {cut:?} must wait until it is committed",
                            cut.path
                        ),
                    })
                }
                None => {
                    self.remade.insert(cut.path.clone());
                    self.pending.push(cut);
                }
            }
        }
        Ok(())
    }

    /// Checks that a file re-made during replay equals its recorded cut (same name,
    /// offsets and rows), so publishing it overwrites the object with equal bytes,
    /// and marks the cut re-made.
    pub fn remade(&mut self, file: &FinishedFile) -> Result<()> {
        self.check_source(file)?;
        let cut = FileCut::of(file);
        match self.cut_for(&cut.path) {
            Some(recorded) if *recorded == cut => {
                self.remade.insert(cut.path);
                Ok(())
            }
            Some(recorded) => Err(LakeError::Manifest {
                reason: format!("replayed file {cut:?} differs from its recorded cut {recorded:?}"),
            }),
            None => Err(LakeError::Manifest {
                reason: format!("replayed file {cut:?} has no recorded cut"),
            }),
        }
    }

    /// Marks every pending cut durable and moves `replay_from` to `next_replay_from`
    /// (the first offset still buffered in an open file, or the next unread offset).
    /// Forgets dedup keys older than `dedup_cutoff_ms`. Call only after every pending
    /// file is published.
    pub fn commit(&mut self, next_replay_from: i64, dedup_cutoff_ms: i64) -> Result<()> {
        if next_replay_from < self.replay_from {
            return Err(LakeError::Manifest {
                reason: format!(
                    "replay position would move back from {} to {next_replay_from}",
                    self.replay_from
                ),
            });
        }
        self.remade.clear();
        for cut in self.pending.drain(..) {
            let done = self.done_through.entry(cut.path).or_insert(cut.last_offset);
            *done = (*done).max(cut.last_offset);
        }
        self.replay_from = next_replay_from;
        self.done_through
            .retain(|_, last| *last >= next_replay_from);
        // The cutoff never moves back (a wall clock may), so that every prune so far
        // equals one prune with the latest (cutoff, replay_from): what a restore does.
        let cutoff = dedup_cutoff_ms.max(self.keys_pruned_before_ms);
        self.keys_pruned_before_ms = cutoff;
        self.seen.prune(cutoff, next_replay_from);
        let (expired, kept): (Vec<_>, Vec<_>) = self
            .key_segments
            .drain(..)
            .partition(|s| s.max_record_ms < cutoff && s.max_offset < next_replay_from);
        self.key_segments = kept;
        self.retired.extend(expired.into_iter().map(|s| s.name));
        Ok(())
    }

    /// The manifest as checkpoint state bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|source| LakeError::ManifestCodec {
            operation: "encode",
            source,
        })
    }

    /// Reads checkpoint state bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut manifest: Self =
            serde_json::from_slice(bytes).map_err(|source| LakeError::ManifestCodec {
                operation: "decode",
                source,
            })?;
        match (manifest.version, manifest.inline_seen.take()) {
            (1, inline) => {
                // Written by an older sink: its keys go into a segment at the next save.
                manifest.seen = inline.unwrap_or_default();
                manifest.seen.mark_all_fresh();
                manifest.version = MANIFEST_VERSION;
            }
            // Written before the key hasher was saved: it digested with SHA-256
            // (the serde default), and goes on doing so.
            (2, None) => manifest.version = MANIFEST_VERSION,
            (MANIFEST_VERSION, None) => {}
            (version, _) => {
                return Err(LakeError::Manifest {
                    reason: format!(
                        "manifest version {version} is not {MANIFEST_VERSION}; upgrade playlake"
                    ),
                })
            }
        }
        manifest.unloaded = manifest
            .key_segments
            .iter()
            .map(|s| s.name.clone())
            .collect();
        // Room for every listed key at once (an upper bound: some are past the
        // retention), instead of doubling the index while the segments load.
        let listed: u64 = manifest.key_segments.iter().map(|s| s.keys).sum();
        manifest
            .seen
            .reserve(usize::try_from(listed).unwrap_or(usize::MAX));
        Ok(manifest)
    }

    fn check_source(&self, file: &FinishedFile) -> Result<()> {
        if file.source.topic != self.source.topic || file.source.partition != self.source.partition
        {
            return Err(LakeError::Manifest {
                reason: format!(
                    "file {} of {}/{} given to the manifest of {}/{}",
                    file.name,
                    file.source.topic,
                    file.source.partition,
                    self.source.topic,
                    self.source.partition
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
