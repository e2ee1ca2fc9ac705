use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;

use super::*;
use crate::testing;

fn file_lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(&format!("file://{}", dir.path().display())).expect("file lake")
}

#[tokio::test]
async fn filesystem_passes_every_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    testing::all_cases(&file_lake(&dir), "unit").await;
}

#[tokio::test]
async fn in_memory_passes_every_case() {
    let lake = Lake::from_store(Arc::new(InMemory::new()), Path::from("root"), "memory://");
    testing::all_cases(&lake, "unit").await;
}

#[tokio::test]
async fn objects_live_under_the_playlake_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = CheckpointStore::new(&file_lake(&dir), "process", "group-a").expect("names");
    store.load_latest().await.expect("load");
    store.save(vec![], Bytes::from("x")).await.expect("save");
    let file = dir
        .path()
        .join("_playlake/checkpoints/process/group-a/00000000000000000001.ckpt");
    assert!(file.is_file(), "{} missing", file.display());
}

#[tokio::test]
async fn foreign_objects_are_ignored() {
    use object_store::ObjectStoreExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = file_lake(&dir);
    let mut store = CheckpointStore::new(&lake, "process", "g").expect("names");
    for name in ["README", "1.ckpt", "nested/00000000000000000009.ckpt"] {
        lake.store()
            .put(&store.dir().clone().join(name), Bytes::from("x").into())
            .await
            .expect("put");
    }
    assert_eq!(store.load_latest().await.expect("load"), None);
    assert_eq!(
        store.save(vec![], Bytes::new()).await.expect("save"),
        Sequence::new(1)
    );
}

#[test]
fn names_are_validated() {
    let lake = Lake::from_store(Arc::new(InMemory::new()), Path::default(), "memory://");
    for bad in ["", ".", "..", "a/b", "a b", "ü"] {
        let err = CheckpointStore::new(&lake, "process", bad).expect_err(bad);
        assert!(matches!(err, CheckpointError::InvalidName { .. }), "{err}");
    }
    assert!(CheckpointStore::new(&lake, "sink", "playback.events-3=x_y").is_ok());
}

#[test]
fn sequence_names_sort_numerically() {
    assert_eq!(
        parse_sequence("00000000000000000042.ckpt"),
        Some(Sequence::new(42))
    );
    assert_eq!(parse_sequence("42.ckpt"), None);
    assert_eq!(parse_sequence("0000000000000000004x.ckpt"), None);
    assert_eq!(
        parse_sequence(&format!("{:020}.ckpt", u64::MAX)),
        Some(Sequence::new(u64::MAX))
    );
}
