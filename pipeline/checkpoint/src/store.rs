//! [`CheckpointStore`]: saves and loads one stage scope's checkpoints.
//!
//! Writes are conditional creates of immutable objects; fencing, garbage collection
//! and loading all derive from listing the scope's directory, so no lock, lease or
//! extra metadata object exists that could disagree with the checkpoints themselves.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::envelope;
use crate::error::{CheckpointError, Result};
use crate::lake::Lake;
use crate::{Checkpoint, Position, Sequence};

/// How many checkpoints a scope keeps after a save unless
/// [`CheckpointStore::with_retained`] says otherwise.
pub const DEFAULT_RETAINED: usize = 3;

const SUFFIX: &str = ".ckpt";
/// Subdirectory of a scope holding its attachments.
const ATTACHMENTS: &str = "attachments";
/// Zero padding of the sequence in object names, enough for any `u64`, so that
/// lexical order (what object stores list in) equals numeric order.
const SEQUENCE_WIDTH: usize = 20;
/// Loading retries when the latest object vanishes between list and get, which
/// happens only when a newer writer garbage-collected it meanwhile.
const LOAD_ATTEMPTS: usize = 5;

/// Saves and loads the checkpoints of one stage and scope.
///
/// A store is also a writer: [`CheckpointStore::save`] writes the sequence after the
/// one this store last loaded or saved, so a writer works on exactly one line of
/// history and learns through [`CheckpointError::Fenced`] when another took over.
#[derive(Debug)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    /// `<lake root>/_playlake/checkpoints/<stage>/<scope>`.
    dir: Path,
    stage: String,
    scope: String,
    writer_id: String,
    retained: usize,
    /// Sequence the caller's state is based on; 0 before any checkpoint exists.
    base: Sequence,
}

impl CheckpointStore {
    /// A store for `stage`/`scope` in `lake`. Names may hold ASCII letters, digits,
    /// `.`, `_`, `-` and `=`.
    pub fn new(lake: &Lake, stage: &str, scope: &str) -> Result<Self> {
        validate_name("stage", stage)?;
        validate_name("scope", scope)?;
        let mut dir = lake.root().clone();
        for part in ["_playlake", "checkpoints", stage, scope] {
            dir = dir.join(part);
        }
        Ok(Self {
            store: Arc::clone(lake.store()),
            dir,
            stage: stage.to_string(),
            scope: scope.to_string(),
            writer_id: default_writer_id(),
            retained: DEFAULT_RETAINED,
            base: Sequence::new(0),
        })
    }

    /// Names this writer in the checkpoints it writes (default: host, pid and time).
    pub fn with_writer_id(mut self, writer_id: impl Into<String>) -> Self {
        self.writer_id = writer_id.into();
        self
    }

    /// Keeps the newest `retained` checkpoints (at least 1) after each save.
    pub fn with_retained(mut self, retained: usize) -> Self {
        self.retained = retained.max(1);
        self
    }

    /// This writer's id.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// The directory holding this scope's checkpoints, relative to the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the object holding `sequence`.
    pub fn object_path(&self, sequence: Sequence) -> Path {
        self.dir.clone().join(format!(
            "{:0width$}{SUFFIX}",
            sequence.get(),
            width = SEQUENCE_WIDTH
        ))
    }

    /// The sequence the next [`save`](Self::save) will write.
    pub fn next_sequence(&self) -> Sequence {
        self.base.next()
    }

    /// Path of the attachment `name`: `<scope dir>/attachments/<name>`.
    pub fn attachment_path(&self, name: &str) -> Path {
        self.dir.clone().join(ATTACHMENTS).join(name)
    }

    /// Writes an attachment: an immutable object that a stage's state refers to by
    /// name (the sink's dedup key segments), so a save need not carry everything
    /// the state remembers. Write it before the checkpoint that refers to it; names
    /// are the caller's (make them unique per save, for example with
    /// [`next_sequence`](Self::next_sequence) and [`writer_id`](Self::writer_id)).
    pub async fn put_attachment(&self, name: &str, bytes: Bytes) -> Result<()> {
        self.put_attachment_parts(name, vec![bytes]).await
    }

    /// [`put_attachment`](Self::put_attachment) of the concatenation of `parts`,
    /// without copying them into one buffer first.
    pub async fn put_attachment_parts(&self, name: &str, parts: Vec<Bytes>) -> Result<()> {
        validate_name("attachment", name)?;
        let path = self.attachment_path(name);
        self.store
            .put(&path, PutPayload::from_iter(parts))
            .await
            .map(|_| ())
            .map_err(|e| CheckpointError::storage("write", &path, e))
    }

    /// Reads an attachment; `None` when it does not exist (deleted by a newer
    /// writer after the checkpoint that listed it was superseded: load again).
    pub async fn get_attachment(&self, name: &str) -> Result<Option<Bytes>> {
        validate_name("attachment", name)?;
        let path = self.attachment_path(name);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(CheckpointError::storage("read", &path, e)),
        }
    }

    /// Names of the scope's attachments, sorted.
    pub async fn list_attachments(&self) -> Result<Vec<String>> {
        let dir = self.dir.clone().join(ATTACHMENTS);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| CheckpointError::storage("list", &dir, e))?;
        let mut names: Vec<String> = objects
            .iter()
            .filter_map(|meta| meta.location.filename().map(str::to_owned))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Deletes an attachment; a missing one is not an error.
    pub async fn delete_attachment(&self, name: &str) -> Result<()> {
        validate_name("attachment", name)?;
        let path = self.attachment_path(name);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(CheckpointError::storage("delete", &path, e)),
        }
    }

    /// Sequences present in storage, oldest first. Objects that are not named like
    /// checkpoints are ignored.
    pub async fn list_sequences(&self) -> Result<Vec<Sequence>> {
        let objects: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| CheckpointError::storage("list", &self.dir, e))?;
        let mut sequences: Vec<Sequence> = objects
            .iter()
            .filter(|meta| {
                meta.location
                    .prefix_match(&self.dir)
                    .is_some_and(|mut p| p.nth(1).is_none())
            })
            .filter_map(|meta| parse_sequence(meta.location.filename()?))
            .collect();
        sequences.sort_unstable();
        Ok(sequences)
    }

    /// Loads the newest checkpoint and makes it this writer's base, so the next
    /// [`save`](Self::save) writes the sequence after it. `None` when the scope has
    /// none yet. A damaged newest object is an error ([`CheckpointError::Corrupt`]),
    /// never silently skipped.
    pub async fn load_latest(&mut self) -> Result<Option<Checkpoint>> {
        for _ in 0..LOAD_ATTEMPTS {
            let Some(&latest) = self.list_sequences().await?.last() else {
                self.base = Sequence::new(0);
                tracing::info!(stage = %self.stage, scope = %self.scope, "no checkpoint yet");
                return Ok(None);
            };
            let Some(checkpoint) = self.read(latest).await? else {
                continue; // deleted by a newer writer's garbage collection: list again
            };
            self.base = latest;
            tracing::info!(
                stage = %self.stage,
                scope = %self.scope,
                sequence = latest.get(),
                writer = %checkpoint.writer_id,
                checkpoint_bytes = checkpoint.state.len(),
                "checkpoint loaded"
            );
            return Ok(Some(checkpoint));
        }
        Err(CheckpointError::Corrupt {
            path: self.dir.to_string(),
            reason: format!(
                "the newest checkpoint kept disappearing during {LOAD_ATTEMPTS} attempts to read it"
            ),
        })
    }

    /// Saves `state` and the `positions` it reflects as the next sequence.
    ///
    /// Fails with [`CheckpointError::Fenced`] when another writer already wrote that
    /// sequence or a later one: this writer is stale and must stop.
    pub async fn save(&mut self, positions: Vec<Position>, state: Bytes) -> Result<Sequence> {
        let started = Instant::now();
        let sequence = self.base.next();
        let checkpoint = Checkpoint {
            sequence,
            stage: self.stage.clone(),
            scope: self.scope.clone(),
            writer_id: self.writer_id.clone(),
            created_unix_ms: now_unix_ms(),
            positions,
            state,
        };
        let path = self.object_path(sequence);
        let body = envelope::encode(&checkpoint).map_err(|e| CheckpointError::Corrupt {
            path: path.to_string(),
            reason: format!("cannot encode the checkpoint header: {e}"),
        })?;
        let size = body.len();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(body), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A retried request may find its own first attempt: that is a success.
                if !self.is_own(sequence, &checkpoint).await? {
                    return Err(self.fenced(sequence));
                }
            }
            Err(e) => return Err(CheckpointError::storage("write", &path, e)),
        }
        self.base = sequence;
        let write_ms = started.elapsed().as_secs_f64() * 1000.0;

        // The listing both garbage-collects and catches a stale writer whose next
        // sequence had already been garbage-collected, so its create succeeded.
        let sequences = self.list_sequences().await?;
        if sequences.last().is_some_and(|newest| *newest > sequence) {
            return Err(self.fenced(sequence));
        }
        self.collect_garbage(sequence, &sequences).await;
        tracing::debug!(
            stage = %self.stage,
            scope = %self.scope,
            sequence = sequence.get(),
            checkpoint_bytes = size,
            write_ms,
            "checkpoint saved"
        );
        Ok(sequence)
    }

    /// Deletes sequences older than the newest `retained`, counted back from
    /// `latest`, which this writer just wrote and verified to be the newest. Failures
    /// only log: the next save tries again.
    async fn collect_garbage(&self, latest: Sequence, sequences: &[Sequence]) {
        let keep_from = latest
            .get()
            .saturating_sub(self.retained.saturating_sub(1) as u64);
        for old in sequences.iter().filter(|s| s.get() < keep_from) {
            let path = self.object_path(*old);
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(
                    %path,
                    error = &error as &dyn std::error::Error,
                    "could not delete an old checkpoint; retrying after the next save"
                ),
            }
        }
    }

    /// Reads and decodes `sequence`; `None` when it no longer exists.
    async fn read(&self, sequence: Sequence) -> Result<Option<Checkpoint>> {
        let path = self.object_path(sequence);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(bytes) => {
                envelope::decode(path.as_ref(), bytes, &self.stage, &self.scope, sequence).map(Some)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(CheckpointError::storage("read", &path, e)),
        }
    }

    /// Whether the object at `sequence` is `mine` (same writer, same creation time).
    async fn is_own(&self, sequence: Sequence, mine: &Checkpoint) -> Result<bool> {
        Ok(match self.read(sequence).await {
            Ok(Some(found)) => {
                found.writer_id == mine.writer_id && found.created_unix_ms == mine.created_unix_ms
            }
            Ok(None) | Err(CheckpointError::Corrupt { .. }) => false,
            Err(e) => return Err(e),
        })
    }

    fn fenced(&self, sequence: Sequence) -> CheckpointError {
        tracing::warn!(
            stage = %self.stage,
            scope = %self.scope,
            sequence = sequence.get(),
            writer = %self.writer_id,
            "checkpoint writer fenced by a newer writer"
        );
        CheckpointError::Fenced {
            stage: self.stage.clone(),
            scope: self.scope.clone(),
            sequence,
        }
    }
}

fn parse_sequence(filename: &str) -> Option<Sequence> {
    let digits = filename.strip_suffix(SUFFIX)?;
    if digits.len() != SEQUENCE_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Sequence::new)
}

fn validate_name(what: &'static str, value: &str) -> Result<()> {
    let invalid = |reason| CheckpointError::InvalidName {
        what,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() || value == "." || value == ".." {
        return Err(invalid(
            "must be a non-empty path segment other than `.` and `..`",
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'='))
    {
        return Err(invalid(
            "may hold only ASCII letters, digits, `.`, `_`, `-` and `=`",
        ));
    }
    Ok(())
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn default_writer_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

#[cfg(test)]
mod tests;
