//! Exactly-once of `playlake process` on the real broker (Tansu), proven by crashing
//! it: issue 3's crash and multi-partition requirements.
//!
//! Design of [`sigkill_at_random_moments_changes_no_result`]:
//!
//! 1. Generated traffic (the generator behind `playlake produce`: players on live
//!    streams and VODs, out-of-order delivery within 3 s, duplicates, invalid
//!    records) goes to an 8-partition `<prefix>.events`, so sessions, the viewer and
//!    daily merges and the resume points all cross partitions.
//! 2. `playlake process` runs **without** `--drain`, with a 200 ms checkpoint
//!    interval: this exposes the windows a drain does not have (results emitted as
//!    watermarks advance, checkpoints in the middle of a poll's outputs, partials
//!    and watermark announcements on the repartition topic, rebalances on restart).
//!    Each run is SIGKILLed at a random moment chosen from observed progress: once
//!    the sum of the latest checkpoint sequences of its 16 scopes (8 events, 8
//!    partials) has grown by a random 1..=40 since the run started, plus a random
//!    0..=400 ms. So every kill lands while the processor is working, at a
//!    different point of a checkpoint cycle. The seed is printed
//!    (`PLAYLAKE_TEST_SEED` repeats a run).
//! 3. After 10 kills, `playlake process --drain` finishes the input.
//! 4. Every output topic is read back: sessions, viewers and daily deduplicated by
//!    natural key must equal `playlake_processor::reference::compute` over the valid
//!    events row for row, and no key may ever have been published with two
//!    different values; the last resume point per key equals the reference; the DLQ
//!    holds every invalid record (by source coordinates); nothing is late.
//!
//! Design of [`three_instances_with_a_kill_and_a_join_equal_one_instance`]
//! (issue 3's scale-out requirement): the same traffic goes to two prefixes. On
//! the first, one `playlake process --drain` does everything. On the second, three
//! instances in one group run `--drain` together; once they have made a random
//! amount of progress one of them is SIGKILLed and a fourth joins, so partitions
//! move twice (dead member expired, new member added) while results are being
//! made, and members that finish leave the group while others still work. Both
//! outputs, deduplicated by key with the two-values check, must be identical (and
//! equal the batch reference), including the DLQ's source coordinates.
//!
//! The consumer group runs with a 3 s session timeout (`FAST_GROUP`), so a restart
//! does not wait 45 s for the killed member to be expired.

mod common;

use std::time::Duration;

use common::{
    assert_outputs_equal_reference, checkpoint_progress, process_args, produce,
    read_process_outputs, traffic, wait_for_progress, Rng, StageProcess,
};
use playlake_checkpoint::Lake;
use playlake_kafka::{KafkaConfig, KafkaTransport};
use playlake_tests::stack::{unique_name, Stack};

/// Input partitions: issue 3 asks for at least 8.
const PARTITIONS: i32 = 8;
/// SIGKILLs in one run: issue 3 asks for at least 10.
const KILLS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_changes_no_result() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let mut rng = Rng::from_env("sigkill_at_random_moments_changes_no_result");
    let prefix = unique_name("crashproc");
    let dir = tempfile::tempdir().expect("tempdir");
    let lake_dir = dir.path().join("lake");
    let lake_url = format!("file://{}", lake_dir.display());
    let transport = KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka");

    let traffic = traffic(60_000, 400, 7);
    // A quarter up front, then one share before each run: every run has new input
    // to process and checkpoint, so its progress target is reachable (with all
    // input up front, the last runs could find nothing left to do).
    let topic = format!("{prefix}.events");
    let (first, rest) = traffic.records.split_at(traffic.records.len() / 4);
    produce(&transport, &topic, PARTITIONS, first).await;
    let mut shares = rest.chunks(rest.len().div_ceil(KILLS));

    let lake = Lake::open(&lake_url).expect("lake");
    let scopes: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| [format!("events-{p}"), format!("partials-{p}")])
        .collect();
    let group = format!("{prefix}-process");
    let mut args = process_args(&stack.brokers, &prefix, &lake_url, &group);
    args.extend(["--checkpoint-interval-ms".into(), "200".into()]);

    for kill in 0..KILLS {
        let start = checkpoint_progress(&lake, "process", &scopes).await;
        if let Some(share) = shares.next() {
            produce(&transport, &topic, PARTITIONS, share).await;
        }
        let mut run = StageProcess::spawn(dir.path(), &format!("process-{kill}"), &args, &[]);
        // Every events partition gets input in every share, so each run checkpoints
        // at least once per partition.
        let target = start + rng.range(1, PARTITIONS as u64);
        let reached = wait_for_progress(&mut run, target, Duration::from_secs(90), || {
            checkpoint_progress(&lake, "process", &scopes)
        })
        .await;
        let delay = rng.range(0, 400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        run.assert_running();
        run.sigkill();
        eprintln!("kill {kill}: checkpoint progress {start} -> {reached}, +{delay} ms");
    }

    args.push("--drain".into());
    let mut finish = StageProcess::spawn(dir.path(), "process-drain", &args, &[]);
    let report = finish.report(Duration::from_secs(240)).await;
    eprintln!("final drain: {report}");

    let outputs = read_process_outputs(&transport, &prefix).await;
    assert!(
        outputs.session_records >= outputs.sessions.len(),
        "sessions read back"
    );
    eprintln!(
        "sessions: {} records for {} keys (copies re-emitted after kills are expected)",
        outputs.session_records,
        outputs.sessions.len()
    );
    assert_outputs_equal_reference(&outputs, &traffic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_a_kill_and_a_join_equal_one_instance() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let mut rng = Rng::from_env("three_instances_with_a_kill_and_a_join_equal_one_instance");
    let dir = tempfile::tempdir().expect("tempdir");
    let transport = KafkaTransport::new(KafkaConfig::new(stack.brokers.clone())).expect("kafka");
    let traffic = traffic(45_000, 300, 21);
    let single = unique_name("scale1");
    let many = unique_name("scale3");
    for prefix in [&single, &many] {
        produce(
            &transport,
            &format!("{prefix}.events"),
            PARTITIONS,
            &traffic.records,
        )
        .await;
    }

    // One instance.
    let lake_one = format!("file://{}", dir.path().join("lake-one").display());
    let mut args = process_args(&stack.brokers, &single, &lake_one, &format!("{single}-p"));
    args.push("--drain".into());
    let mut one = StageProcess::spawn(dir.path(), "single", &args, &[]);
    one.report(Duration::from_secs(240)).await;

    // Three instances, one killed and one added midway.
    let lake_dir = dir.path().join("lake-many");
    let lake_url = format!("file://{}", lake_dir.display());
    let lake = Lake::open(&lake_url).expect("lake");
    let scopes: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| [format!("events-{p}"), format!("partials-{p}")])
        .collect();
    let mut args = process_args(&stack.brokers, &many, &lake_url, &format!("{many}-p"));
    args.extend([
        "--drain".into(),
        "--checkpoint-interval-ms".into(),
        "300".into(),
    ]);
    let mut members: Vec<StageProcess> = ["a", "b", "c"]
        .iter()
        .map(|name| StageProcess::spawn(dir.path(), &format!("member-{name}"), &args, &[]))
        .collect();
    let target = rng.range(20, 60);
    let reached = wait_for_progress(&mut members[0], target, Duration::from_secs(120), || {
        checkpoint_progress(&lake, "process", &scopes)
    })
    .await;
    members[0].sigkill();
    eprintln!("member a killed at checkpoint progress {reached}; member d joins");
    members.push(StageProcess::spawn(dir.path(), "member-d", &args, &[]));
    for member in members.iter_mut().skip(1) {
        let report = member.report(Duration::from_secs(240)).await;
        eprintln!("{}: {report}", member.name);
    }

    let got_one = read_process_outputs(&transport, &single).await;
    let got_many = read_process_outputs(&transport, &many).await;
    assert_outputs_equal_reference(&got_one, &traffic);
    assert_outputs_equal_reference(&got_many, &traffic);
    assert!(got_many.sessions == got_one.sessions, "sessions differ");
    assert!(got_many.viewers == got_one.viewers, "viewer windows differ");
    assert!(got_many.daily == got_one.daily, "daily stats differ");
    assert!(got_many.resume == got_one.resume, "resume points differ");
    assert_eq!(got_many.dlq, got_one.dlq, "DLQ source coordinates differ");
    assert_eq!(got_many.late, got_one.late);
}
