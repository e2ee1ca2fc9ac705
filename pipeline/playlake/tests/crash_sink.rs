//! Exactly-once of `playlake sink` on the real stack (Tansu + moto's S3), proven by
//! crashing it: issue 4's crash requirement.
//!
//! Design of [`sigkill_at_random_moments_loses_and_duplicates_nothing`]:
//!
//! 1. Generated events go to an 8-partition `<prefix>.events`: a quarter before the
//!    first run, the rest in small batches *while* the sink is being killed, so the
//!    sink is mostly caught up and its files roll on the 1 s flush interval (the
//!    wall-clock decision the write-ahead intent must make replay-stable), not only
//!    on size.
//! 2. `playlake sink --tables events --flush-interval-seconds 1` writes to an
//!    `s3://` lake in moto. Each run is SIGKILLed at a random moment chosen from
//!    observed progress: once the sum of the latest checkpoint sequences of its 8
//!    scopes (intents and commits both save one) has grown by a random 1..=12 since
//!    the run started, plus a random 0..=800 ms, so kills land between intent and
//!    publish, during publishing and between commits. The seed is printed
//!    (`PLAYLAKE_TEST_SEED` repeats a run).
//! 3. After 10 kills and the last batch, `sink --drain` catches up.
//! 4. DuckDB (over a boto3 download) and pyarrow (straight from moto) read the
//!    `events` table: every distinct valid `(uuid, event_id)` is there exactly once,
//!    nothing else is, and the two readers agree row for row.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_exactly_once, checkpoint_progress, lake_event_keys, outgoing, read_lake_rows, s3_env,
    traffic, wait_for_progress, Rng, StageProcess, FAST_GROUP,
};
use playlake_checkpoint::Lake;
use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_tests::stack::{s3_bucket, unique_name, Stack};
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

const PARTITIONS: i32 = 8;
/// SIGKILLs in one run: issue 4 asks for at least 10.
const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let mut rng = Rng::from_env("sigkill_at_random_moments_loses_and_duplicates_nothing");
    let prefix = unique_name("crashsink");
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = s3_bucket(&stack);
    let lake_url = format!("s3://{bucket}/lake");
    let lake = Lake::open_with(&lake_url, &stack.s3_options()).expect("lake");
    let transport =
        Arc::new(KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka"));
    let topic = format!("{prefix}.events");
    transport
        .ensure_topic(&TopicSpec::new(&topic, PARTITIONS))
        .await
        .expect("create the events topic");

    let traffic = traffic(40_000, 300, 13);
    let records = outgoing(&topic, &traffic.records);
    let (first, rest) = records.split_at(records.len() / 4);
    let producer = Arc::new(transport.producer().expect("producer"));
    producer.send(first.to_vec()).await.expect("produce");
    // The rest arrives in one share per run, while that run is up: every run then
    // has new input to write and checkpoint, so its progress target is reachable
    // (with a timer-driven feeder the input could run out before the last kills).
    let shares: Vec<Vec<OutgoingRecord>> = rest
        .chunks(rest.len().div_ceil(KILLS))
        .map(<[OutgoingRecord]>::to_vec)
        .collect();
    let feed = |share: Vec<OutgoingRecord>| {
        let producer = Arc::clone(&producer);
        tokio::spawn(async move {
            for piece in share.chunks(600) {
                producer.send(piece.to_vec()).await.expect("produce");
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };

    let group = format!("{prefix}-sink");
    let scopes: Vec<String> = (0..PARTITIONS)
        .map(|p| playlake_sink::checkpoint_scope(&group, &topic, p))
        .collect();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "sink",
            "--brokers",
            &stack.brokers,
            "--topic-prefix",
            &prefix,
            "--lake",
            &lake_url,
            "--group",
            &group,
            "--tables",
            "events",
            "--flush-interval-seconds",
            "1",
            "--metrics-addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(FAST_GROUP.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let env = s3_env(&stack, &stack.aws_endpoint);

    for (kill, share) in shares.into_iter().enumerate() {
        let start = checkpoint_progress(&lake, "sink", &scopes).await;
        let feeder = feed(share);
        let mut run = StageProcess::spawn(dir.path(), &format!("sink-{kill}"), &args(&[]), &env);
        // Each partition gets new input in every share, so every run reaches at
        // least one checkpoint per partition.
        let target = start + rng.range(1, PARTITIONS as u64);
        let reached = wait_for_progress(&mut run, target, Duration::from_secs(90), || {
            checkpoint_progress(&lake, "sink", &scopes)
        })
        .await;
        let delay = rng.range(0, 800);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        run.assert_running();
        run.sigkill();
        eprintln!("kill {kill}: checkpoint progress {start} -> {reached}, +{delay} ms");
        feeder.await.expect("feeder");
    }

    let mut drain = StageProcess::spawn(dir.path(), "sink-drain", &args(&["--drain"]), &env);
    let report = drain.report(Duration::from_secs(240)).await;
    eprintln!("final drain: {report}");

    let keys = lake_event_keys(&stack, &lake_url);
    assert_exactly_once(&keys, &traffic.distinct_events());
    let files = read_lake_rows(&stack, &lake_url, &stack.aws_endpoint, &[])
        .paths
        .iter()
        .filter(|p| p.starts_with("events/"))
        .count();
    eprintln!("{} rows in {files} files", keys.len());
    assert!(
        files > 2 * PARTITIONS as usize,
        "files must have rolled on the timer while events arrived ({files} files)"
    );
}
