//! The transport conformance suite (`playlake_tests::conformance`) against
//! `playlake_kafka::KafkaTransport` on the local stack's broker (Tansu), one test per
//! case, so the Kafka transport and the in-process log are held to the same contract.
//!
//! Without the stack a test prints SKIPPED and passes, except under `CI=true`, where
//! it fails (see `playlake_tests::stack`).

use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_tests::conformance;
use playlake_tests::stack::{unique_name, Stack};

/// Topics and groups live on a shared broker: every name is unique to this run.
fn names(base: &str) -> String {
    unique_name(&format!("kafka.{base}"))
}

fn transport(stack: &Stack) -> KafkaTransport {
    KafkaTransport::new(KafkaConfig::new(&stack.brokers).with_client_id("conformance"))
        .expect("kafka transport")
}

macro_rules! conformance_case {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let Some(stack) = Stack::from_env() else { return };
            conformance::$case(&transport(&stack), &names).await;
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
