//! A partition's saves and publishes, run beside the decoding thread.
//!
//! Data flow: when files roll, the decoding thread records their cuts in the
//! manifest and prepares a [`Job`] (the key segment still to frame, the manifest's
//! bytes, the positions, the files), which is cheap; then it hands the job and the
//! partition's checkpoint store to a runtime worker ([`Flight::launch`]) and goes on
//! with the next polls. The worker does the slow part in the order of the protocol
//! (DESIGN.md section 9): frame and write the key segment, save the checkpoint,
//! delete retired segments, publish every file, each with retries. The decoding
//! thread collects the outcome between polls ([`Flight::land`]), commits and
//! launches the next job (the commit save, merged with the intent of files that
//! rolled meanwhile).
//!
//! A partition has at most one flight, and the manifest is only touched on the
//! decoding thread, so a partition's saves keep the order the protocol needs, and a
//! crash anywhere leaves what a crash of the synchronous sequence would: a
//! checkpoint whose recorded cuts are re-made, or one that lists published files.
//! The same [`run`] is awaited in place where the sink must wait anyway (drain,
//! revocation, re-made cuts).

use bytes::Bytes;
use object_store::ObjectStoreExt;
use playlake_checkpoint::{CheckpointStore, Position};
use playlake_lake::{FinishedFile, LakeError, LakeStore, RollReason, SegmentBuilder};
use playlake_metrics::prometheus::{Histogram, IntCounter};
use playlake_transport::TopicPartition;

use crate::error::{Result, SinkError};
use crate::retry::{retry_lake, Backoff, RetryBudget};

/// One save of a partition's manifest, and the files to publish after it.
#[derive(Debug)]
pub(crate) struct Job {
    /// What the save is, for errors and logs ("save the intent", ...).
    pub operation: &'static str,
    pub scope: String,
    /// The key segment to write before the checkpoint that lists it.
    pub segment: Option<(String, SegmentBuilder)>,
    /// The manifest's bytes.
    pub state: Bytes,
    pub positions: Vec<Position>,
    /// Key segments no longer listed, deleted once the save succeeded.
    pub retired: Vec<String>,
    /// Files whose cuts this save records, published after it.
    pub files: Vec<(FinishedFile, RollReason)>,
    /// The position this save commits (for the advisory group offsets), and when
    /// the flush it commits started.
    pub commits: Option<(TopicPartition, i64, std::time::Instant)>,
    /// When the flush of `files` started.
    pub files_started: std::time::Instant,
}

/// What a job needs besides the checkpoint store: the lake, the retry budget and
/// the metric handles it reports into (cheap clones, shared with the sink).
#[derive(Debug, Clone)]
pub(crate) struct JobIo {
    pub store: LakeStore,
    pub retry: RetryBudget,
    pub checkpoint_retries: IntCounter,
    pub publish_retries: IntCounter,
    pub checkpoint_write_seconds: Histogram,
    pub checkpoint_size_bytes: Histogram,
}

/// Runs `job`: segment, save, retired segments, publishes.
pub(crate) async fn run(checkpoint: &mut CheckpointStore, job: &mut Job, io: &JobIo) -> Result<()> {
    let mut backoff = Backoff::new(job.operation, &io.retry);
    let scope = job.scope.as_str();
    let mut segment_bytes = 0;
    if let Some((name, builder)) = job.segment.take() {
        // Framing hashes every key learnt since the last save: done here, off the
        // decoding thread.
        let parts: Vec<Bytes> = builder.finish().into_iter().map(Bytes::from).collect();
        segment_bytes = parts.iter().map(Bytes::len).sum();
        loop {
            let call = checkpoint.put_attachment_parts(&name, parts.clone());
            if backoff
                .attempt(scope, &io.checkpoint_retries, call)
                .await?
                .is_some()
            {
                break;
            }
        }
    }
    let started = loop {
        let started = std::time::Instant::now();
        let call = checkpoint.save(job.positions.clone(), job.state.clone());
        if backoff
            .attempt(scope, &io.checkpoint_retries, call)
            .await?
            .is_some()
        {
            break started;
        }
    };
    io.checkpoint_write_seconds
        .observe(started.elapsed().as_secs_f64());
    io.checkpoint_size_bytes
        .observe((job.state.len() + segment_bytes) as f64);
    for retired in std::mem::take(&mut job.retired) {
        // Not listed any more; a failed delete leaves an orphan that the next
        // restore of this scope removes.
        if let Err(error) = checkpoint.delete_attachment(&retired).await {
            tracing::warn!(segment = %retired, error = %error,
                "could not delete a retired key segment");
        }
    }
    for (file, _) in &job.files {
        publish(io, file).await?;
    }
    Ok(())
}

/// Publishes one file, with retries; a concurrent publish of the same cut by
/// another instance counts as published.
pub(crate) async fn publish(io: &JobIo, file: &FinishedFile) -> Result<()> {
    let store = &io.store;
    let mut attempts = 0u64;
    let published = retry_lake("publish a file", &io.retry, || {
        attempts += 1;
        store.publish(file)
    })
    .await;
    if attempts > 1 {
        io.publish_retries.inc_by(attempts - 1);
    }
    match published {
        Ok(_) => Ok(()),
        Err(e) if published_by_another(store, file, &e).await => {
            tracing::info!(file = %file.relative_path(),
                "another instance published the same cut concurrently (same name and bytes)");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A staged file whose rename found no staging object lost a race with another
/// instance publishing the same cut (same staging name, same bytes: a fenced
/// owner finishing what it recorded while the new owner re-makes it). The cut
/// is durable when its object is there with the file's size.
async fn published_by_another(store: &LakeStore, file: &FinishedFile, error: &SinkError) -> bool {
    let SinkError::Lake { source, .. } = error else {
        return false;
    };
    let LakeError::Storage {
        operation: "rename into place",
        source: object_store::Error::NotFound { .. },
        ..
    } = source.as_ref()
    else {
        return false;
    };
    let Ok(target) = store.object_path(&file.relative_path()) else {
        return false;
    };
    matches!(store.store().head(&target).await,
            Ok(meta) if meta.size == file.bytes.len() as u64)
}

/// What a landed flight gives back.
pub(crate) type Landed = (CheckpointStore, Job, Result<()>);

/// A job running on a runtime worker with the partition's checkpoint store.
/// Dropping it aborts the job, which is safe at any point: it is what a crash does.
#[derive(Debug)]
pub(crate) struct Flight {
    handle: Option<tokio::task::JoinHandle<Landed>>,
}

impl Flight {
    /// Starts `job` on a runtime worker.
    pub fn launch(mut checkpoint: CheckpointStore, mut job: Job, io: JobIo) -> Self {
        let handle = tokio::spawn(async move {
            let outcome = run(&mut checkpoint, &mut job, &io).await;
            (checkpoint, job, outcome)
        });
        Self {
            handle: Some(handle),
        }
    }

    /// True once the job is over (landing does not wait).
    pub fn is_done(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the job: the checkpoint store back, the job and its outcome. `Err`
    /// when the job's task panicked or was aborted (the store is lost with it: the
    /// partition must be restored again).
    pub async fn land(mut self, scope: &str) -> Result<Landed> {
        let Some(handle) = self.handle.take() else {
            return Err(SinkError::Background {
                scope: scope.to_owned(),
                reason: "the flight was already landed".to_owned(),
            });
        };
        handle.await.map_err(|e| SinkError::Background {
            scope: scope.to_owned(),
            reason: e.to_string(),
        })
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
