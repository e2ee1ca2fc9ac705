//! Behaviour cases every lake backend must pass, shared by this crate's unit tests
//! (local filesystem, in memory) and the integration tests against moto's S3
//! (`tests/tests/checkpoint_store.rs`). Enabled by the `testing` feature.
//!
//! Each case takes a lake and a scope name that no other test uses, and panics on a
//! failed expectation like any test assertion.

use bytes::Bytes;

use crate::{CheckpointError, CheckpointStore, Lake, Position, Sequence};

const STAGE: &str = "process";

fn positions(offset: i64) -> Vec<Position> {
    vec![
        Position::new("playback.events", 0, offset),
        Position::new("playback.events", 1, offset * 2),
    ]
}

/// Runs every case, each on its own scope derived from `scope_prefix`.
pub async fn all_cases(lake: &Lake, scope_prefix: &str) {
    round_trip(lake, &format!("{scope_prefix}-roundtrip")).await;
    sequence_is_monotonic(lake, &format!("{scope_prefix}-monotonic")).await;
    stale_writer_is_fenced(lake, &format!("{scope_prefix}-fenced")).await;
    garbage_collection_keeps_latest(lake, &format!("{scope_prefix}-gc")).await;
    writer_behind_collected_history_is_fenced(lake, &format!("{scope_prefix}-gcfence")).await;
    corrupt_latest_is_reported(lake, &format!("{scope_prefix}-corrupt")).await;
    attachments_round_trip(lake, &format!("{scope_prefix}-attach")).await;
}

/// Attachments are written, listed, read back and deleted beside the checkpoints,
/// without being mistaken for one.
pub async fn attachments_round_trip(lake: &Lake, scope: &str) {
    let mut store = CheckpointStore::new(lake, STAGE, scope).unwrap();
    assert!(store.list_attachments().await.unwrap().is_empty());
    assert_eq!(store.get_attachment("a.keys").await.unwrap(), None);
    let name = format!(
        "{:020}-{}.keys",
        store.next_sequence().get(),
        store.writer_id()
    );
    let body = Bytes::from((0..=255u8).collect::<Vec<_>>());
    store.put_attachment(&name, body.clone()).await.unwrap();
    store.put_attachment("b.keys", Bytes::new()).await.unwrap();
    store
        .save(vec![Position::new("t", 0, 1)], Bytes::from_static(b"s"))
        .await
        .unwrap();
    let mut names = vec![name.clone(), "b.keys".to_owned()];
    names.sort();
    assert_eq!(store.list_attachments().await.unwrap(), names);
    assert_eq!(store.get_attachment(&name).await.unwrap(), Some(body));
    assert_eq!(
        store.list_sequences().await.unwrap(),
        vec![Sequence::new(1)]
    );
    let loaded = store.load_latest().await.unwrap().unwrap();
    assert_eq!(loaded.sequence, Sequence::new(1));
    store.delete_attachment("b.keys").await.unwrap();
    store.delete_attachment("b.keys").await.unwrap();
    assert_eq!(store.list_attachments().await.unwrap(), vec![name]);
    assert!(store.put_attachment("../x", Bytes::new()).await.is_err());
    let parts = vec![
        Bytes::from_static(b"PLK"),
        Bytes::new(),
        Bytes::from((0..=255u8).rev().collect::<Vec<_>>()),
    ];
    store
        .put_attachment_parts("c.keys", parts.clone())
        .await
        .unwrap();
    assert_eq!(
        store.get_attachment("c.keys").await.unwrap(),
        Some(Bytes::from(parts.concat())),
        "parts are written one after the other"
    );
    assert!(store.put_attachment_parts("../y", parts).await.is_err());
    store.delete_attachment("c.keys").await.unwrap();
}

/// What is saved loads back unchanged, including binary state and positions.
pub async fn round_trip(lake: &Lake, scope: &str) {
    let mut store = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_writer_id("writer-a");
    assert_eq!(store.load_latest().await.expect("load empty"), None);
    let state = Bytes::from_static(b"\x00\x01binary state\xff");
    let seq = store
        .save(positions(10), state.clone())
        .await
        .expect("save");
    assert_eq!(seq, Sequence::new(1));

    let mut reader = CheckpointStore::new(lake, STAGE, scope).expect("valid names");
    let loaded = reader
        .load_latest()
        .await
        .expect("load")
        .expect("one checkpoint");
    assert_eq!(loaded.sequence, seq);
    assert_eq!(loaded.stage, STAGE);
    assert_eq!(loaded.scope, scope);
    assert_eq!(loaded.writer_id, "writer-a");
    assert_eq!(loaded.positions, positions(10));
    assert_eq!(loaded.state, state);
    assert!(loaded.created_unix_ms > 0);
}

/// Sequences grow by one per save, and a restarted writer continues after the latest.
pub async fn sequence_is_monotonic(lake: &Lake, scope: &str) {
    let mut store = CheckpointStore::new(lake, STAGE, scope).expect("valid names");
    store.load_latest().await.expect("load empty");
    for expected in 1..=4u64 {
        let seq = store
            .save(
                positions(expected as i64),
                Bytes::from(format!("s{expected}")),
            )
            .await
            .expect("save");
        assert_eq!(seq, Sequence::new(expected));
    }
    let mut restarted = CheckpointStore::new(lake, STAGE, scope).expect("valid names");
    let latest = restarted
        .load_latest()
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(latest.sequence, Sequence::new(4));
    assert_eq!(latest.state, Bytes::from("s4"));
    let seq = restarted
        .save(positions(5), Bytes::from("s5"))
        .await
        .expect("save after restart");
    assert_eq!(seq, Sequence::new(5));
}

/// Writer B takes over after A saved; A's next save is fenced and B's stays latest.
pub async fn stale_writer_is_fenced(lake: &Lake, scope: &str) {
    let mut a = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_writer_id("writer-a");
    a.load_latest().await.expect("load empty");
    a.save(positions(1), Bytes::from("a1"))
        .await
        .expect("a saves");

    let mut b = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_writer_id("writer-b");
    let from_a = b
        .load_latest()
        .await
        .expect("load")
        .expect("a's checkpoint");
    assert_eq!(from_a.state, Bytes::from("a1"));
    let b_seq = b
        .save(positions(2), Bytes::from("b2"))
        .await
        .expect("b saves");
    assert_eq!(b_seq, Sequence::new(2));

    let err = a
        .save(positions(3), Bytes::from("a-stale"))
        .await
        .expect_err("a is stale");
    match &err {
        CheckpointError::Fenced {
            stage,
            scope: fenced_scope,
            sequence,
        } => {
            assert_eq!(stage, STAGE);
            assert_eq!(fenced_scope, scope);
            assert_eq!(*sequence, Sequence::new(2));
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(err.is_fenced());

    let mut reader = CheckpointStore::new(lake, STAGE, scope).expect("valid names");
    let latest = reader.load_latest().await.expect("load").expect("exists");
    assert_eq!(latest.writer_id, "writer-b");
    assert_eq!(latest.state, Bytes::from("b2"));
}

/// Old checkpoints are deleted, the newest `retained` stay, the latest always.
pub async fn garbage_collection_keeps_latest(lake: &Lake, scope: &str) {
    let mut store = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_retained(2);
    store.load_latest().await.expect("load empty");
    for i in 1..=5i64 {
        store
            .save(positions(i), Bytes::from(format!("s{i}")))
            .await
            .expect("save");
    }
    let kept = store.list_sequences().await.expect("list");
    assert_eq!(kept, vec![Sequence::new(4), Sequence::new(5)]);

    let mut single = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_retained(0); // clamped to 1: the latest is never deleted
    single.load_latest().await.expect("load").expect("exists");
    single
        .save(positions(6), Bytes::from("s6"))
        .await
        .expect("save");
    let kept = single.list_sequences().await.expect("list");
    assert_eq!(kept, vec![Sequence::new(6)]);
    let latest = single.load_latest().await.expect("load").expect("exists");
    assert_eq!(latest.state, Bytes::from("s6"));
}

/// A writer whose next sequence was already garbage-collected can create it again,
/// but the check after the write still fences it.
pub async fn writer_behind_collected_history_is_fenced(lake: &Lake, scope: &str) {
    let mut stale = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_writer_id("stale");
    stale.load_latest().await.expect("load empty");
    stale
        .save(positions(1), Bytes::from("s1"))
        .await
        .expect("save");

    let mut fresh = CheckpointStore::new(lake, STAGE, scope)
        .expect("valid names")
        .with_writer_id("fresh")
        .with_retained(1);
    fresh.load_latest().await.expect("load").expect("exists");
    for i in 2..=4i64 {
        fresh
            .save(positions(i), Bytes::from(format!("s{i}")))
            .await
            .expect("save");
    }
    assert_eq!(
        fresh.list_sequences().await.expect("list"),
        vec![Sequence::new(4)]
    );
    let err = stale
        .save(positions(9), Bytes::from("stale"))
        .await
        .expect_err("stale writer");
    assert!(err.is_fenced(), "{err:?}");
    let latest = fresh.load_latest().await.expect("load").expect("exists");
    assert_eq!(latest.writer_id, "fresh");
    assert_eq!(latest.sequence, Sequence::new(4));
}

/// A damaged newest object is reported as corrupt, not skipped.
pub async fn corrupt_latest_is_reported(lake: &Lake, scope: &str) {
    use object_store::ObjectStoreExt;

    let mut store = CheckpointStore::new(lake, STAGE, scope).expect("valid names");
    store.load_latest().await.expect("load empty");
    store
        .save(positions(1), Bytes::from("good"))
        .await
        .expect("save");
    let path = store.object_path(Sequence::new(2));
    lake.store()
        .put(&path, Bytes::from_static(b"{ not a checkpoint").into())
        .await
        .expect("write garbage");
    let err = store.load_latest().await.expect_err("corrupt");
    assert!(
        matches!(err, CheckpointError::Corrupt { .. }),
        "expected Corrupt, got {err:?}"
    );
    assert!(err.to_string().contains(path.as_ref()), "{err}");
}
