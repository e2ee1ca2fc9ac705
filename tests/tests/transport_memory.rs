//! The transport conformance suite against the in-process log, one test per case,
//! plus the in-process log's own inspection helpers (committed offsets, lag).

use playlake_tests::conformance;
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{Position, TopicPartition, TopicSpec, Transport};

/// Each test has its own transport, so names only need to be readable.
fn names(base: &str) -> String {
    format!("memory.{base}")
}

macro_rules! conformance_case {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            conformance::$case(&MemoryTransport::new(), &names).await;
        }
    )*};
}

conformance_case!(
    ensure_topic_is_idempotent,
    keyed_records_round_trip,
    per_key_order_is_preserved,
    offsets_are_consecutive_per_partition,
    assign_and_seek,
    no_records_before_seek,
    end_of_partition,
    group_splits_and_rebalances,
    commit_is_accepted,
    unknown_topic_errors,
    produce_to_unknown_topic_fails,
);

#[tokio::test]
async fn run_all_on_one_transport() {
    conformance::run_all(&MemoryTransport::new(), &names).await;
}

#[tokio::test]
async fn committed_offsets_and_end_offsets_give_lag() {
    let t = MemoryTransport::new();
    t.ensure_topic(&TopicSpec::new("lag", 1)).await.unwrap();
    let p0 = TopicPartition::new("lag", 0);
    let records = (0..5)
        .map(|i| playlake_transport::OutgoingRecord {
            topic: "lag".into(),
            value: Some(vec![i]),
            ..Default::default()
        })
        .collect();
    t.producer().unwrap().send(records).await.unwrap();
    let mut c = t.consumer("lag-group").unwrap();
    c.assign(&[(p0.clone(), Position::Beginning)]).unwrap();
    assert_eq!(t.committed("lag-group", &p0), None);
    c.commit(&[(p0.clone(), 2)]).await.unwrap();
    assert_eq!(t.committed("lag-group", &p0), Some(2));
    assert_eq!(t.end_offset(&p0).unwrap() - 2, 3);
}
