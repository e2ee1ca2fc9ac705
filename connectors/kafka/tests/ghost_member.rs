//! Group members that hold no partition, against the local stack's broker (Tansu).
//!
//! - `a_restarted_member_reads_what_a_ghost_held`: a member holds every partition
//!   and stops answering (SIGSTOP of its process: a ghost, like an instance killed
//!   before its LeaveGroup got through); a new member joins while the coordinator
//!   still counts the ghost, as a restarted `process --drain` does. On Tansu 0.6.0
//!   the ghost expires during the new member's join and the group settles with an
//!   empty assignment for everybody (issue 8: the drain sat idle for 4.5 minutes).
//!   The new member must get the partitions and read every record in bounded time.
//! - `a_group_with_more_members_than_partitions_stays_calm`: an empty assignment is
//!   also what a healthy group gives its extra members; they may rejoin now and
//!   then, never in a loop, and the group keeps reading.
//!
//! The broker address comes from `PLAYLAKE_TEST_BROKERS`, as for every test of the
//! stack (`playlake_tests::stack`, which this crate cannot depend on): without it a
//! test prints SKIPPED and passes, except under `CI=true`, where it fails.
//!
//! The ghost is this test binary run again as `ghost_member_process` (an ignored
//! test that does nothing without its environment variable), so that it can be
//! stopped without stopping the test.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use playlake_kafka::{KafkaConfig, KafkaConsumer, KafkaTransport};
use playlake_transport::{ConsumerEvent, OutgoingRecord, Position, TopicSpec, Transport};

/// Kafka bootstrap servers of the running test stack (written by tests/stack/start.sh).
const ENV_BROKERS: &str = "PLAYLAKE_TEST_BROKERS";
/// Set for the ghost process only: `<brokers> <topic> <group>`.
const ENV_GHOST: &str = "PLAYLAKE_TEST_GHOST_MEMBER";
/// What the ghost prints once it holds every partition.
const GHOST_READY: &str = "ghost member holds every partition";

/// The group's session timeout: Tansu expires a silent member after it. Tansu keeps
/// the session timeout of the member that created the group, so every member here
/// uses the same one.
const SESSION_TIMEOUT_MS: u64 = 6_000;
/// When the new member joins after the ghost stopped: before the coordinator
/// expires the ghost, but late enough that it expires during the join (Tansu 0.6.0
/// holds a follower's JoinGroup for 3 s), which is when Tansu settles the group
/// with an empty assignment. A scenario's timing, not a wait for a condition.
const JOIN_AFTER_STOP: Duration = Duration::from_millis(3_500);
/// How long the new member may take to read everything: the consumer's join stall
/// timeout (twice the session timeout, at least 30 s) plus a rebalance, with room
/// for a loaded machine.
const READ_DEADLINE: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 4;
const RECORDS: usize = 40;
const POLL: Duration = Duration::from_millis(200);

fn brokers() -> Option<String> {
    if let Some(brokers) = std::env::var(ENV_BROKERS).ok().filter(|v| !v.is_empty()) {
        return Some(brokers);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "the local test stack is not running but CI is set: {ENV_BROKERS} is missing; \
         run the tests through tests/run, which starts Tansu and exports it"
    );
    eprintln!("SKIPPED (stack not running; use tests/run)");
    None
}

/// A topic or group name no other test run uses.
fn unique_name(prefix: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{millis}", std::process::id())
}

fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .with_client_id("ghost-test")
        .with_options([
            format!("session.timeout.ms={SESSION_TIMEOUT_MS}"),
            format!("heartbeat.interval.ms={}", SESSION_TIMEOUT_MS / 20),
        ])
        .expect("valid options")
}

/// Creates the topic and writes `RECORDS` keyed records; returns their positions.
async fn topic_with_records(brokers: &str, topic: &str) -> BTreeSet<(i32, i64)> {
    let transport = KafkaTransport::new(config(brokers)).expect("kafka transport");
    transport
        .ensure_topic(&TopicSpec::new(topic, PARTITIONS))
        .await
        .expect("create the topic");
    let records = (0..RECORDS)
        .map(|i| OutgoingRecord {
            topic: topic.to_owned(),
            key: Some(format!("viewer-{i}").into_bytes()),
            value: Some(format!("event-{i}").into_bytes()),
            ..OutgoingRecord::default()
        })
        .collect();
    let producer = transport.producer().expect("producer");
    let deliveries = producer.send(records).await.expect("produce");
    let positions: BTreeSet<_> = deliveries.iter().map(|d| (d.partition, d.offset)).collect();
    let used: BTreeSet<_> = positions.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "the keys must spread over every partition"
    );
    positions
}

/// What a stage does with rebalance events: positions every assigned partition
/// (here at the beginning) and drops revoked ones. Returns the records.
fn handle(
    consumer: &mut KafkaConsumer,
    events: Vec<ConsumerEvent>,
    saw_empty_assignment: &mut bool,
) -> Vec<(i32, i64)> {
    let mut read = Vec::new();
    for event in events {
        match event {
            ConsumerEvent::Assigned(partitions) => {
                *saw_empty_assignment |= partitions.is_empty();
                for partition in &partitions {
                    consumer
                        .seek(partition, Position::Beginning)
                        .expect("seek an assigned partition");
                }
            }
            ConsumerEvent::Records(records) => {
                read.extend(records.iter().map(|r| (r.partition, r.offset)));
            }
            ConsumerEvent::Revoked(_) | ConsumerEvent::EndOfPartition { .. } => {}
        }
    }
    read
}

/// The ghost: joins, holds every partition, says so, and polls until stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the ghost member process of a_restarted_member_reads_what_a_ghost_held, which runs it"]
async fn ghost_member_process() {
    let Ok(spec) = std::env::var(ENV_GHOST) else {
        return;
    };
    let [brokers, topic, group]: [&str; 3] = spec
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .expect("<brokers> <topic> <group>");
    let mut consumer = KafkaConsumer::new(&config(brokers), group).expect("consumer");
    consumer.subscribe(&[topic.to_owned()]).expect("subscribe");
    let mut announced = false;
    let mut ignored = false;
    loop {
        let events = consumer.poll(1_000, POLL).await.expect("poll");
        handle(&mut consumer, events, &mut ignored);
        if !announced && consumer.assignment().len() == PARTITIONS as usize {
            println!("{GHOST_READY}");
            announced = true;
        }
    }
}

/// The ghost's process; killed (SIGKILL works on a stopped process) when dropped.
struct Ghost {
    child: Child,
}

impl Ghost {
    /// Starts the ghost and waits until it holds every partition.
    fn start(brokers: &str, topic: &str, group: &str) -> Self {
        let exe = std::env::current_exe().expect("path of the test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                "ghost_member_process",
                "--ignored",
                "--nocapture",
            ])
            .env(ENV_GHOST, format!("{brokers} {topic} {group}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the ghost member process");
        let stdout = child.stdout.take().expect("the ghost's stdout");
        let ghost = Self { child };
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.contains(GHOST_READY) => return ghost,
                Ok(_) => {}
                Err(_) => panic!("the ghost member did not get every partition within 60 s"),
            }
        }
    }

    /// Freezes the process: no heartbeat, no LeaveGroup, its connections stay open.
    fn stop(&self) {
        let status = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status()
            .expect("run kill -STOP");
        assert!(status.success(), "kill -STOP failed: {status}");
    }
}

impl Drop for Ghost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of the ghost scenario; returns whether the new member was given an
/// empty assignment on the way (the state of issue 8).
async fn restarted_member_after_a_ghost(brokers: &str, attempt: u32) -> bool {
    let topic = unique_name(&format!("ghost-{attempt}"));
    let group = unique_name(&format!("ghost-group-{attempt}"));
    let written = topic_with_records(brokers, &topic).await;
    let ghost = Ghost::start(brokers, &topic, &group);
    ghost.stop();
    let stopped = Instant::now();
    tokio::time::sleep(JOIN_AFTER_STOP).await;

    let mut consumer = KafkaConsumer::new(&config(brokers), &group).expect("consumer");
    consumer
        .subscribe(std::slice::from_ref(&topic))
        .expect("subscribe");
    let mut read = BTreeSet::new();
    let mut saw_empty_assignment = false;
    let deadline = Instant::now() + READ_DEADLINE;
    while read.len() < written.len() {
        assert!(
            Instant::now() < deadline,
            "attempt {attempt}: the new member read {} of {} records within {READ_DEADLINE:?} \
             after joining a group whose other member stopped answering; its assignment: {:?}, \
             empty assignment seen: {saw_empty_assignment}, rejoins: {}",
            read.len(),
            written.len(),
            consumer.assignment(),
            consumer.rejoins(),
        );
        let events = consumer.poll(1_000, POLL).await.expect("poll");
        read.extend(handle(&mut consumer, events, &mut saw_empty_assignment));
    }
    assert_eq!(read, written, "attempt {attempt}: every record, once");
    eprintln!(
        "attempt {attempt}: read everything {:.1}s after the ghost stopped; \
         empty assignment seen: {saw_empty_assignment}, rejoins: {}",
        stopped.elapsed().as_secs_f64(),
        consumer.rejoins()
    );
    if saw_empty_assignment {
        assert!(
            consumer.rejoins() >= 1,
            "the member left its empty assignment without rejoining?"
        );
    }
    consumer.close().await.expect("close");
    drop(ghost);
    saw_empty_assignment
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_reads_what_a_ghost_held() {
    let Some(brokers) = brokers() else { return };
    // The empty assignment needs the ghost to expire inside the new member's join:
    // a loaded machine can miss that window, and then the member is simply given
    // everything. Each attempt must read everything; one must have gone through
    // the empty assignment.
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        if restarted_member_after_a_ghost(&brokers, attempt).await {
            return;
        }
    }
    panic!(
        "in {ATTEMPTS} attempts the broker never gave the new member an empty assignment: \
         the scenario's timing missed (JOIN_AFTER_STOP), or the broker no longer settles a \
         group without its leader's assignment (then this test needs a new way to get there)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_more_members_than_partitions_stays_calm() {
    let Some(brokers) = brokers() else { return };
    let topic = unique_name("crowded");
    let group = unique_name("crowded-group");
    let transport = KafkaTransport::new(config(&brokers)).expect("kafka transport");
    transport
        .ensure_topic(&TopicSpec::new(&topic, 1))
        .await
        .expect("create the topic");
    let producer = transport.producer().expect("producer");
    let mut members = [
        KafkaConsumer::new(&config(&brokers), &group).expect("consumer"),
        KafkaConsumer::new(&config(&brokers), &group).expect("consumer"),
    ];
    for member in &mut members {
        member
            .subscribe(std::slice::from_ref(&topic))
            .expect("subscribe");
    }
    // Longer than two waits of 30 s (the join stall timeout), shorter than an idle
    // member's first wait plus its doubled second one: a member rejoining in a loop
    // would rejoin twice, one that backs off at most once (each member goes idle
    // when the other's rejoin moves the partition to it).
    let observe = Duration::from_secs(85);
    let started = Instant::now();
    let mut written = BTreeSet::new();
    let mut read = BTreeSet::new();
    let mut ignored = false;
    let mut next_write = Instant::now();
    while started.elapsed() < observe || read.len() < written.len() {
        assert!(
            started.elapsed() < observe + READ_DEADLINE,
            "the group read {} of {} records; assignments {:?} / {:?}, rejoins {} / {}",
            read.len(),
            written.len(),
            members[0].assignment(),
            members[1].assignment(),
            members[0].rejoins(),
            members[1].rejoins(),
        );
        if started.elapsed() < observe && Instant::now() >= next_write {
            let deliveries = producer
                .send(vec![OutgoingRecord {
                    topic: topic.clone(),
                    value: Some(b"tick".to_vec()),
                    ..OutgoingRecord::default()
                }])
                .await
                .expect("produce");
            written.extend(deliveries.iter().map(|d| (d.partition, d.offset)));
            next_write = Instant::now() + Duration::from_secs(1);
        }
        for member in &mut members {
            let events = member.poll(1_000, POLL / 2).await.expect("poll");
            read.extend(handle(member, events, &mut ignored));
        }
    }
    assert!(
        read.is_superset(&written),
        "every record written while the group had an idle member is read"
    );
    let rejoins = [members[0].rejoins(), members[1].rejoins()];
    assert!(
        rejoins.iter().all(|n| *n <= 1),
        "members of a group with more members than partitions rejoined {rejoins:?} times in {observe:?}"
    );
    eprintln!("rejoins per member in {observe:?}: {rejoins:?}; every record read");
    for member in &mut members {
        member.close().await.expect("close");
    }
}
