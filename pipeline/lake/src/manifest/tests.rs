//! The manifest protocol against crashes at every step: a reference sink loop runs
//! over a partition of session results (with re-emits), crashes at step `n`,
//! restarts from its last checkpoint with a different clock, and the lake must hold
//! every session exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, StringArray, TimestampMillisecondArray};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use playlake_schemas::Session;

use super::*;
use crate::dedup::digest;
use crate::fixtures::{meta, session};
use crate::format::ParquetOptions;
use crate::partition::{PartitionConfig, PartitionPath};
use crate::policy::RollPolicy;
use crate::pool::WriterPool;
use crate::rows::LakeRow;
use crate::store::{LakeStore, PublishMode};

const TOPIC: &str = "playback.sessions";

fn source() -> SourcePartition {
    SourcePartition {
        topic: TOPIC.into(),
        partition: 0,
    }
}

/// 40 records over 3 streams; every 7th re-emits the session of 3 records earlier.
fn input() -> Vec<(i64, Session)> {
    (0..40)
        .map(|offset| {
            let i = if offset % 7 == 6 { offset - 3 } else { offset };
            let stream = ["s1", "a/b", ".."][(i % 3) as usize];
            (offset, session(i, stream))
        })
        .collect()
}

struct Crash;

/// The checkpoint store of the reference loop: the latest manifest and every key
/// segment written (orphans of crashed saves included).
#[derive(Default)]
struct Saved {
    manifest: Vec<u8>,
    segments: BTreeMap<String, Vec<u8>>,
    saves: u64,
}

impl Saved {
    fn fresh() -> Self {
        Self {
            manifest: SinkManifest::new(&source(), 0).encode().unwrap(),
            ..Self::default()
        }
    }

    /// Writes the new key segment, then (unless `step` crashes in between) the
    /// manifest, then deletes retired segments.
    fn save(
        &mut self,
        manifest: &mut SinkManifest,
        step: &mut impl FnMut() -> std::result::Result<(), Crash>,
    ) -> std::result::Result<(), Crash> {
        self.saves += 1;
        let name = format!("{:05}.keys", self.saves);
        if let Some(chunks) = manifest.seal_keys(&name) {
            self.segments.insert(name, chunks.finish().concat());
            step()?;
        }
        self.manifest = manifest.encode().expect("encode");
        for name in manifest.take_retired() {
            self.segments.remove(&name);
        }
        Ok(())
    }

    fn restore(&self) -> SinkManifest {
        let mut manifest = SinkManifest::decode(&self.manifest).expect("manifest");
        for segment in manifest.key_segments().to_vec() {
            let bytes = &self.segments[&segment.name];
            manifest
                .load_key_segment(&segment.name, bytes)
                .expect("segment");
        }
        assert!(manifest.keys_loaded());
        manifest
    }
}

/// The reference loop. Returns `Err(Crash)` when step `crash_at` is reached.
async fn run(
    store: &LakeStore,
    checkpoint: &mut Saved,
    crash_at: Option<u32>,
    ms_per_record: i64,
) -> std::result::Result<u32, Crash> {
    let steps = std::cell::Cell::new(0u32);
    let mut step = || {
        steps.set(steps.get() + 1);
        if crash_at == Some(steps.get()) {
            Err(Crash)
        } else {
            Ok(())
        }
    };
    let config = PartitionConfig::default();
    let policy = RollPolicy {
        max_file_rows: 4,
        flush_interval: Duration::from_millis(5_000),
        ..RollPolicy::default()
    };
    let mut pool = WriterPool::new(&ParquetOptions::default(), policy).expect("pool");
    let mut manifest = checkpoint.restore();
    for key in manifest.pending_file_keys().expect("pending keys") {
        pool.pin(key);
    }
    let records = input();
    let end = records.len() as i64;
    let replay_from = manifest.replay_from();
    for (offset, row) in records.into_iter().filter(|(o, _)| *o >= replay_from) {
        let m = meta(TOPIC, offset);
        let path = row.partition(&m, &config).expect("partition");
        let key = manifest.key_digest(&row.natural_key(&m));
        let now = offset * ms_per_record;
        let replaying = !manifest.pending().is_empty();
        if replaying {
            remake_due(store, &mut pool, &mut manifest, offset - 1, &mut step).await?;
        }
        if manifest.admit(path.as_str(), key, offset, m.timestamp.0) == Admit::Write {
            pool.write_rows(&source(), vec![(m, row)], &config, now)
                .expect("write");
        }
        if replaying {
            // Replaying recorded cuts: finish each exactly at its last offset.
            remake_due(store, &mut pool, &mut manifest, offset, &mut step).await?;
            if manifest.replay_complete() {
                let next = pool.first_open_offset(&source()).unwrap_or(offset + 1);
                manifest.commit(next, i64::MIN).expect("commit");
                checkpoint.save(&mut manifest, &mut step)?;
                step()?;
            }
            continue;
        }
        let files: Vec<_> = pool
            .poll(now)
            .expect("poll")
            .into_iter()
            .map(|f| f.0)
            .collect();
        let next = |pool: &WriterPool| pool.first_open_offset(&source()).unwrap_or(offset + 1);
        flush(
            store,
            checkpoint,
            &mut manifest,
            files,
            next(&pool),
            &mut step,
        )
        .await?;
    }
    let files = pool.finish_all().expect("drain");
    flush(store, checkpoint, &mut manifest, files, end, &mut step).await?;
    Ok(steps.get())
}

async fn remake_due(
    store: &LakeStore,
    pool: &mut WriterPool,
    manifest: &mut SinkManifest,
    through: i64,
    step: &mut impl FnMut() -> std::result::Result<(), Crash>,
) -> std::result::Result<(), Crash> {
    for cut in manifest.due_cuts(through) {
        let key = (
            PartitionPath::from_relative(&cut.path).expect("path"),
            source(),
        );
        let file = pool
            .finish(&key)
            .expect("finish")
            .expect("the cut's file is open");
        manifest.remade(&file).expect("same cut");
        store.publish(&file).await.expect("publish");
        step()?;
    }
    Ok(())
}

async fn flush(
    store: &LakeStore,
    checkpoint: &mut Saved,
    manifest: &mut SinkManifest,
    files: Vec<FinishedFile>,
    next_replay_from: i64,
    step: &mut impl FnMut() -> std::result::Result<(), Crash>,
) -> std::result::Result<(), Crash> {
    if files.is_empty() {
        return Ok(());
    }
    manifest.record_cuts(&files).expect("record cuts");
    step()?;
    checkpoint.save(manifest, step)?; // the write-ahead intent
    step()?;
    for file in &files {
        store.publish(file).await.expect("publish");
        step()?;
    }
    manifest.commit(next_replay_from, i64::MIN).expect("commit");
    checkpoint.save(manifest, step)?; // positions advance
    step()
}

/// Every (uuid, session_start) in the lake with how often it occurs.
async fn lake_rows(store: &Arc<InMemory>) -> BTreeMap<(String, i64), usize> {
    let mut out = BTreeMap::new();
    let objects: Vec<_> = store
        .list(Some(&Path::from("sessions")))
        .try_collect()
        .await
        .unwrap();
    for object in objects {
        let bytes = store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let uuid = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let start = batch
                .column(2)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                *out.entry((uuid.value(i).to_owned(), start.value(i)))
                    .or_default() += 1;
            }
        }
    }
    out
}

fn expected() -> BTreeMap<(String, i64), usize> {
    input()
        .into_iter()
        .map(|(_, s)| ((s.uuid, s.session_start.0), 1))
        .collect()
}

async fn steps_of_clean_run() -> u32 {
    let memory = Arc::new(InMemory::new());
    let store = LakeStore::new(memory, Path::default(), PublishMode::Direct);
    let mut checkpoint = Saved::fresh();
    run(&store, &mut checkpoint, None, 1_000).await.unwrap_or(0)
}

#[tokio::test]
async fn clean_run_writes_every_session_once() {
    let memory = Arc::new(InMemory::new());
    let store = LakeStore::new(memory.clone(), Path::default(), PublishMode::Direct);
    let mut checkpoint = Saved::fresh();
    assert!(run(&store, &mut checkpoint, None, 1_000).await.is_ok());
    assert_eq!(lake_rows(&memory).await, expected());
    let manifest = checkpoint.restore();
    assert_eq!(manifest.remembered_keys(), 35, "40 records, 5 re-emits");
    assert_eq!(manifest.replay_from(), 40);
    assert!(manifest.pending().is_empty());
}

#[tokio::test]
async fn crash_at_every_step_then_restart_is_exactly_once() {
    let total = steps_of_clean_run().await;
    assert!(total > 10, "{total}");
    let mut restarts_with_pending_cuts = 0;
    for crash_at in 1..total {
        let memory = Arc::new(InMemory::new());
        let store = LakeStore::new(memory.clone(), Path::default(), PublishMode::Direct);
        let mut checkpoint = Saved::fresh();
        assert!(run(&store, &mut checkpoint, Some(crash_at), 1_000)
            .await
            .is_err());
        if !checkpoint.restore().pending().is_empty() {
            restarts_with_pending_cuts += 1;
        }
        // Restart with a different clock: without the recorded cuts, files would be
        // cut elsewhere and rows duplicated. Crash once more, then finish.
        let _ = run(&store, &mut checkpoint, Some(crash_at % 7 + 1), 700).await;
        assert!(run(&store, &mut checkpoint, None, 1_300).await.is_ok());
        assert_eq!(
            lake_rows(&memory).await,
            expected(),
            "crash at step {crash_at}"
        );
    }
    // Many crashes hit the window between the intent and the commit.
    assert!(
        restarts_with_pending_cuts > 5,
        "{restarts_with_pending_cuts}"
    );
}

#[test]
fn conflicting_cuts_and_foreign_files_are_rejected() {
    let mut manifest = SinkManifest::new(&source(), 0);
    assert_eq!(manifest.admit("p", 1, 0, 0), Admit::Write);
    assert_eq!(manifest.admit("p", 1, 1, 0), Admit::Duplicate);
    assert!(SinkManifest::decode(b"{}").is_err());
    assert!(manifest.commit(-1, 0).is_err(), "position never goes back");
    assert!(
        manifest.load_key_segment("x.keys", &[]).is_err(),
        "not listed"
    );
    let bytes = manifest.encode().unwrap();
    let mut back = SinkManifest::decode(&bytes).unwrap();
    assert_eq!(back.remembered_keys(), 0, "keys live in segments");
    let segment = manifest.seal_keys("1.keys").unwrap().finish().concat();
    let bytes = manifest.encode().unwrap();
    back = SinkManifest::decode(&bytes).unwrap();
    assert!(!back.keys_loaded());
    back.load_key_segment("1.keys", &segment).unwrap();
    assert!(back.keys_loaded());
    assert_eq!(back, manifest);
    assert!(
        back.load_key_segment("1.keys", &segment).is_err(),
        "read twice"
    );
    assert_eq!(manifest.next_cut_end(0), None);
}

#[test]
fn a_backlog_sizes_the_index_once_and_within_the_cap() {
    let mut manifest = SinkManifest::new(&source(), 0);
    manifest.expect_records(100_000);
    let room = manifest.seen.headroom();
    assert!(room >= 100_000, "{room}");
    for key in 1..=1_000u128 {
        manifest.admit("p", key, key as i64, 0);
    }
    manifest.expect_records(50_000);
    assert_eq!(
        manifest.seen.headroom(),
        room - 1_000,
        "room enough already: not resized"
    );
    manifest.expect_records(-5);
    let mut huge = SinkManifest::new(&source(), 0);
    huge.expect_records(i64::MAX);
    let capped = huge.seen.headroom();
    assert!(
        (MAX_RESERVED_KEYS..2 * MAX_RESERVED_KEYS).contains(&capped),
        "{capped}"
    );
}

/// Cuts the running sink records have their files: rows go on while their flush
/// runs, and nothing waits to re-make them. The same cuts restored from the saved
/// intent are to re-make, in order.
#[test]
fn cuts_recorded_by_the_running_sink_are_made_and_restored_ones_are_not() {
    let mut live = SinkManifest::new(&source(), 0);
    let path = PartitionPath::from_relative("sessions/dt=2025-06-01/stream_id=s1").unwrap();
    let file = FinishedFile {
        path,
        source: source(),
        name: "part-x.zstd.parquet".into(),
        first_offset: 3,
        last_offset: 9,
        rows: 4,
        bytes: Default::default(),
    };
    live.record_cuts([&file]).unwrap();
    assert!(live.replay_complete());
    assert!(live.due_cuts(100).is_empty());
    assert_eq!(live.next_cut_end(0), None);
    assert_eq!(live.pending().len(), 1, "pending until the commit");
    let mut restored = SinkManifest::decode(&live.encode().unwrap()).unwrap();
    assert!(!restored.replay_complete());
    assert_eq!(restored.next_cut_end(0), Some(9));
    assert!(restored.due_cuts(8).is_empty());
    assert_eq!(restored.due_cuts(9).len(), 1);
    restored.remade(&file).unwrap();
    assert!(restored.replay_complete());
    live.commit(10, 0).unwrap();
    assert!(live.pending().is_empty());
}

/// Saves with pruning and compaction, restoring after every save: the restored
/// index always equals the live one, segments stay few, and expired or compacted
/// segments are retired.
#[test]
fn restored_index_equals_the_saved_one_through_prunes_and_compactions() {
    let mut live = SinkManifest::new(&source(), 0);
    let mut segments: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut offset = 0i64;
    let mut most_segments = 0;
    let mut compactions = 0;
    for save in 0..60i64 {
        // 50 records a save, a tenth of them copies of a key 30 records earlier; the
        // record time is a second an offset.
        for _ in 0..50 {
            let id = if offset % 10 == 9 {
                offset - 30
            } else {
                offset
            };
            live.admit("p", digest(&id.to_be_bytes()), offset, offset * 1_000);
            offset += 1;
        }
        if save % 3 == 2 {
            // Retention of 1,200 records' time (24 saves, 20 minutes); a clock that
            // sometimes goes back.
            let clock_back = if save % 9 == 8 { 200_000 } else { 0 };
            live.commit(offset - 20, offset * 1_000 - 1_200_000 - clock_back)
                .unwrap();
        }
        let name = format!("{save:03}.keys");
        let before = live.key_segments().len();
        if let Some(chunks) = live.seal_keys(&name) {
            segments.insert(name, chunks.finish().concat());
        }
        if live.key_segments().len() < before {
            compactions += 1;
        }
        let bytes = live.encode().unwrap();
        for gone in live.take_retired() {
            assert!(segments.remove(&gone).is_some(), "{gone}");
        }
        most_segments = most_segments.max(live.key_segments().len());
        let mut restored = SinkManifest::decode(&bytes).unwrap();
        for segment in restored.key_segments().to_vec() {
            restored
                .load_key_segment(&segment.name, &segments[&segment.name])
                .unwrap();
        }
        assert_eq!(restored.seen, live.seen, "after save {save}");
        assert_eq!(segments.len(), live.key_segments().len());
    }
    // The retention's 1,200 keys, the records since the last commit, and at most
    // SWEEP_EVERY_MS (600 records) of forgotten keys not yet swept.
    assert!(live.remembered_keys() < 2_000, "{}", live.remembered_keys());
    assert!(most_segments <= MAX_KEY_SEGMENTS + 1, "{most_segments}");
    assert!(compactions >= 1, "{compactions}");
}

#[test]
fn a_new_manifest_draws_its_own_sip_key_and_keeps_it() {
    let a = SinkManifest::new(&source(), 0);
    let b = SinkManifest::new(&source(), 0);
    let key = b"uuid-1/event-1";
    assert_ne!(
        a.key_digest(key),
        b.key_digest(key),
        "each index its own key"
    );
    assert_ne!(a.key_digest(key), digest(key), "not SHA-256");
    assert_ne!(a.key_digest(key), a.key_digest(b"uuid-1/event-2"));
    let back = SinkManifest::decode(&a.encode().unwrap()).unwrap();
    assert_eq!(
        back.key_digest(key),
        a.key_digest(key),
        "saved with the manifest"
    );
}

#[test]
fn a_version_2_manifest_keeps_digesting_with_sha256() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&SinkManifest::new(&source(), 0).encode().unwrap()).unwrap();
    json["version"] = 2.into();
    json.as_object_mut().unwrap().remove("key_hasher");
    let read = SinkManifest::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(read.key_digest(b"k"), digest(b"k"));
    let again = SinkManifest::decode(&read.encode().unwrap()).unwrap();
    assert_eq!(
        again.key_digest(b"k"),
        digest(b"k"),
        "saved as version 3, same hasher"
    );
    let saved: serde_json::Value = serde_json::from_slice(&read.encode().unwrap()).unwrap();
    assert_eq!(saved["version"], MANIFEST_VERSION);
    assert_eq!(saved["key_hasher"], "sha256");
}

#[test]
fn version_1_manifests_with_an_inline_index_are_read() {
    let mut old = SinkManifest::new(&source(), 0);
    old.admit("p", 7, 3, 30);
    old.admit("p", 9, 4, 40);
    let mut json: serde_json::Value = serde_json::from_slice(&old.encode().unwrap()).unwrap();
    json["version"] = 1.into();
    json["seen"] = serde_json::json!([[0, 7, 3, 30], [0, 9, 4, 40]]);
    json.as_object_mut().unwrap().remove("key_segments");
    json.as_object_mut()
        .unwrap()
        .remove("keys_pruned_before_ms");
    json.as_object_mut().unwrap().remove("key_hasher");
    let mut read = SinkManifest::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    assert_eq!(read.remembered_keys(), 2);
    assert_eq!(
        read.key_digest(b"k"),
        digest(b"k"),
        "its digests are SHA-256"
    );
    assert_eq!(read.admit("p", 7, 5, 50), Admit::Duplicate);
    let segment = read
        .seal_keys("1.keys")
        .expect("its keys get a segment")
        .finish()
        .concat();
    let mut again = SinkManifest::decode(&read.encode().unwrap()).unwrap();
    again.load_key_segment("1.keys", &segment).unwrap();
    assert_eq!(again.seen, read.seen);
    json["version"] = (MANIFEST_VERSION + 1).into();
    assert!(SinkManifest::decode(&serde_json::to_vec(&json).unwrap()).is_err());
}
