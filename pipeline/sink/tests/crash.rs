//! Stopping and crashing the sink mid-way, then draining: every row is in the lake
//! exactly once. Storage failures: transient ones are retried, permanent ones stop
//! the sink with the recorded cuts replayed by the next run.

mod common;

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use playlake_checkpoint::{CheckpointStore, Lake};
use playlake_lake::SinkManifest;
use playlake_sink::{checkpoint_scope, run, SinkConfig, SinkError, CHECKPOINT_STAGE};

const DEADLINE: Duration = Duration::from_secs(30);

async fn produce_sessions(
    transport: &playlake_transport::memory::MemoryTransport,
    range: std::ops::Range<i64>,
) {
    let mut records: Vec<_> = range.clone().map(|i| session_record(&session(i))).collect();
    // Re-emits of a few of them (the processor's crash).
    records.extend(range.step_by(17).map(|i| session_record(&session(i))));
    send(transport, records).await;
}

fn exactly_once(dir: &std::path::Path, expected: usize) {
    let uuids = session_uuids(dir);
    let twice: Vec<_> = uuids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "rows written more than once: {twice:?}");
    assert_eq!(uuids.len(), expected, "rows missing");
}

async fn drain(
    transport: &playlake_transport::memory::MemoryTransport,
    lake: Lake,
) -> playlake_sink::SinkReport {
    run(
        dyn_transport(transport),
        lake,
        config(true),
        std::future::pending(),
    )
    .await
    .expect("drain")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_mid_way_then_drain_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(3).await;
    produce_sessions(&transport, 0..400).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let root = dir.path().to_owned();
    let watcher = tokio::spawn(async move {
        wait_until("some files", DEADLINE, || parquet_files(&root).len() >= 5).await;
        let _ = stop.send(());
    });
    let report = run(
        dyn_transport(&transport),
        lake(dir.path()),
        config(false),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .expect("stopped run");
    watcher.await.unwrap();
    assert!(report.files_written >= 5, "{report:?}");
    produce_sessions(&transport, 400..450).await;
    drain(&transport, lake(dir.path())).await;
    exactly_once(dir.path(), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_at_random_points_then_drain_is_exactly_once() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(3).await;
    let mut produced = 0;
    let mut with_pending = 0;
    for round in 0..10usize {
        produce_sessions(&transport, produced..produced + 120).await;
        produced += 120;
        let root = dir.path().to_owned();
        // Crash after 1 to 3 more files appeared.
        let files = parquet_files(&root).len() + 1 + round % 3;
        let config = SinkConfig {
            max_rows_per_file: 3 + round as u64,
            ..config(false)
        };
        // Dropping the run future mid-way is a crash: no shutdown, no final flush.
        tokio::select! {
            outcome = run(dyn_transport(&transport), lake(dir.path()), config, std::future::pending()) => {
                panic!("a run without drain returned: {outcome:?}");
            }
            () = wait_until("files to appear", DEADLINE, || parquet_files(&root).len() >= files) => {}
        }
        with_pending += pending_cuts(dir.path(), 3).await;
    }
    drain(&transport, lake(dir.path())).await;
    exactly_once(dir.path(), produced as usize);
    println!("crashes that left recorded cuts to re-make: {with_pending}");
    // Crashes land between an intent and its commit often (3 to 9 of 10 rounds
    // in practice): the restarts above re-made recorded cuts without draining.
    assert!(with_pending > 0, "no crash hit the intent window");
    let again = drain(&transport, lake(dir.path())).await;
    assert_eq!(again.total_rows(), 0, "{again:?}");
}

/// The dedup index is saved as key segments beside the checkpoints, not inside
/// them: re-emits arriving after a restart are still caught, the checkpoint stays
/// small, and a restore deletes orphan segments older than its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keys_survive_restarts_in_segments_beside_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(1).await;
    produce_sessions(&transport, 0..300).await;
    drain(&transport, lake(dir.path())).await;
    exactly_once(dir.path(), 300);

    let scope = checkpoint_scope("playlake-sink", "playback.sessions", 0);
    let mut store = CheckpointStore::new(&lake(dir.path()), CHECKPOINT_STAGE, &scope).unwrap();
    let saved = store.load_latest().await.unwrap().expect("a checkpoint");
    let segments = store.list_attachments().await.unwrap();
    assert!(!segments.is_empty(), "no key segment written");
    let manifest = SinkManifest::decode(&saved.state).unwrap();
    let listed: Vec<_> = manifest
        .key_segments()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(segments, listed, "every segment written is listed");
    let keys: u64 = manifest.key_segments().iter().map(|s| s.keys).sum();
    assert!(keys >= 300, "{keys} keys for 300 sessions");
    // Bounded by what the keys themselves would take (16 bytes each at the least),
    // not by a fixed size: how many segments and files the manifest lists depends on
    // how the background saves fell, and it was just over 2,000 bytes 1 run in 8.
    assert!(
        (saved.state.len() as u64) < 16 * keys,
        "the manifest carries the keys itself: {} bytes for {keys} keys",
        saved.state.len()
    );

    // An orphan of a save that crashed before its checkpoint, and a segment of a
    // sequence beyond the checkpoint (a newer writer's): only the orphan goes.
    store
        .put_attachment(
            "00000000000000000001-crashed.keys",
            bytes::Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    let ahead = format!("{:020}-newer.keys", saved.sequence.get() + 5);
    store
        .put_attachment(&ahead, bytes::Bytes::from_static(b"y"))
        .await
        .unwrap();

    // Every session again (the processor re-emitting after its own crash) and 20 new.
    produce_sessions(&transport, 0..320).await;
    let report = drain(&transport, lake(dir.path())).await;
    exactly_once(dir.path(), 320);
    assert!(report.duplicates_skipped >= 300, "{report:?}");
    let left = store.list_attachments().await.unwrap();
    assert!(!left.iter().any(|n| n.contains("crashed")), "{left:?}");
    assert!(left.contains(&ahead), "{left:?}");
}

/// Partitions (of `playback.sessions`) whose latest checkpoint holds recorded cuts.
async fn pending_cuts(dir: &std::path::Path, partitions: i32) -> usize {
    let mut count = 0;
    for partition in 0..partitions {
        let scope = checkpoint_scope("playlake-sink", "playback.sessions", partition);
        let mut store = CheckpointStore::new(&lake(dir), CHECKPOINT_STAGE, &scope).unwrap();
        if let Some(saved) = store.load_latest().await.unwrap() {
            let manifest = SinkManifest::decode(&saved.state).unwrap();
            count += usize::from(!manifest.pending().is_empty());
        }
    }
    count
}

/// A lake store whose table uploads fail: `failures` more times with an outage
/// (transient), or for ever with access denied when `failures` is negative.
#[derive(Debug)]
struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    failures: AtomicI64,
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

impl FailingStore {
    fn check(&self, location: &Path) -> object_store::Result<()> {
        if location.as_ref().starts_with("_playlake/checkpoints") {
            return Ok(());
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left < 0 {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "access denied (test)".into(),
            });
        }
        if left > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "test",
                source: "connection refused (test outage)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

fn failing_lake(dir: &std::path::Path, failures: i64) -> Lake {
    let plain = lake(dir);
    let store = FailingStore {
        inner: Arc::clone(plain.store()),
        failures: AtomicI64::new(failures),
    };
    Lake::from_store(Arc::new(store), plain.root().clone(), plain.url())
}

#[tokio::test]
async fn transient_storage_errors_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(1).await;
    produce_sessions(&transport, 0..30).await;
    let report = drain(&transport, failing_lake(dir.path(), 3)).await;
    assert_eq!(report.rows_written["sessions"], 30);
    exactly_once(dir.path(), 30);
}

#[tokio::test]
async fn a_permanent_error_stops_and_the_next_run_remakes_the_recorded_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(1).await;
    produce_sessions(&transport, 0..40).await;
    let err = run(
        dyn_transport(&transport),
        failing_lake(dir.path(), -1),
        config(true),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SinkError::Lake { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(parquet_files(dir.path()).is_empty());

    // The intent was saved before publishing: the cuts are pending.
    let scope = checkpoint_scope("playlake-sink", "playback.sessions", 0);
    let mut store = CheckpointStore::new(&lake(dir.path()), CHECKPOINT_STAGE, &scope).unwrap();
    let saved = store.load_latest().await.unwrap().expect("a checkpoint");
    let manifest = SinkManifest::decode(&saved.state).unwrap();
    assert!(!manifest.pending().is_empty(), "{manifest:?}");

    // More input arrives; the next run re-makes the recorded cuts first.
    produce_sessions(&transport, 40..60).await;
    let report = drain(&transport, lake(dir.path())).await;
    assert!(
        report.files_by_reason.get("cut").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    exactly_once(dir.path(), 60);
    for cut in manifest.pending() {
        assert!(
            dir.path().join(&cut.path).join(&cut.name).exists(),
            "{cut:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_appears_within_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(1).await;
    produce_sessions(&transport, 0..3).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let root = dir.path().to_owned();
    let watcher = tokio::spawn(async move {
        wait_until("the interval roll", DEADLINE, || {
            !parquet_files(&root).is_empty()
        })
        .await;
        let _ = stop.send(());
    });
    let config = SinkConfig {
        flush_interval_seconds: 1,
        max_rows_per_file: 1_000,
        ..config(false)
    };
    let report = run(dyn_transport(&transport), lake(dir.path()), config, async {
        let _ = stopped.await;
    })
    .await
    .expect("run");
    watcher.await.unwrap();
    let interval = report.files_by_reason.get("interval").copied().unwrap_or(0);
    assert!(interval >= 1, "{report:?}");
    assert_eq!(report.files_written, interval, "{report:?}");
    exactly_once(dir.path(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_split_partitions_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let transport = transport(4).await;
    produce_sessions(&transport, 0..300).await;
    let (stop_a, stopped_a) = tokio::sync::oneshot::channel::<()>();
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let root = dir.path().to_owned();
    let t = transport.clone();
    let a = tokio::spawn({
        let (t, lake) = (dyn_transport(&transport), lake(dir.path()));
        async move {
            run(t, lake, config(false), async {
                let _ = stopped_a.await;
            })
            .await
        }
    });
    wait_until("instance a's files", DEADLINE, || {
        parquet_files(&root).len() >= 3
    })
    .await;
    let b = tokio::spawn({
        let (t, lake) = (dyn_transport(&transport), lake(dir.path()));
        async move {
            run(t, lake, config(false), async {
                let _ = stopped_b.await;
            })
            .await
        }
    });
    produce_sessions(&t, 300..600).await;
    // Both instances must publish: each holds about half of the new records.
    wait_until("both instances' files", DEADLINE, || {
        session_uuids(&root).len() >= 500
    })
    .await;
    let _ = stop_b.send(());
    let report_b = b.await.unwrap().expect("instance b");
    let _ = stop_a.send(());
    let report_a = a.await.unwrap().expect("instance a");
    assert!(
        report_a.files_written > 0 && report_b.files_written > 0,
        "{report_a:?} {report_b:?}"
    );
    drain(&transport, lake(dir.path())).await;
    exactly_once(dir.path(), 600);
}
