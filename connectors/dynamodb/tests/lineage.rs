//! Shard lineage against a SCRIPTED DynamoDB Streams endpoint
//! (`tests/scripted_streams.py`): moto has one shard per table that never splits or
//! closes, so lineage, closed shards, paging of DescribeStream, expired iterators,
//! throttling and trimmed data are served from recorded-shape responses, while the
//! DynamoDB calls (DescribeTable, the lease table) go through to moto.
//!
//! The source publishes into the in-process log (one partition, so the global order
//! is visible) and must read every parent before its children.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ScalarAttributeType, StreamSpecification,
    StreamViewType,
};
use playlake_dynamodb::lease::Checkpoint;
use playlake_dynamodb::lease_table::LeaseTable;
use playlake_dynamodb::{SourceConfig, SourceError, SourceMetrics, TrimmedDataPolicy};
use playlake_schemas::ChangeEvent;
use playlake_tests::stack::{unique_name, Stack};
use playlake_transport::memory::MemoryTransport;
use playlake_transport::{ConsumerEvent, Position, Producer, TopicPartition, TopicSpec, Transport};

struct Scripted {
    child: Child,
    endpoint: String,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scripted(stack: &Stack, scenario: &str) -> Scripted {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripted_streams.py");
    let mut child = stack
        .python()
        .args([script, &stack.aws_endpoint, scenario])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the scripted endpoint");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line.trim().parse().expect("the script prints its port");
    Scripted {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

async fn make_table(stack: &Stack) -> String {
    let table = unique_name("lineage");
    let db = playlake_dynamodb::aws::Clients::connect(
        Some(&stack.aws_endpoint),
        Some(&stack.aws_region),
    )
    .await
    .dynamodb;
    db.create_table()
        .table_name(&table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("spec"),
        )
        .send()
        .await
        .expect("create table");
    table
}

fn config(table: &str, endpoint: &str, stack: &Stack) -> SourceConfig {
    let mut c = SourceConfig::from_file(table.to_string(), "lin".into(), &Default::default());
    c.endpoint_url = Some(endpoint.to_string());
    c.region = Some(stack.aws_region.clone());
    c.worker_id = "w1".into();
    c.poll_interval_ms = 50;
    c.shard_sync_interval_ms = 500;
    c.lease_duration_ms = 3_000;
    c.max_backoff_ms = 200;
    c.until_caught_up = true;
    c
}

/// A counter's value from the text exposition (summed over label sets matching `label`).
fn counter(registry: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> u64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| label.is_none_or(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_are_read_before_children_across_closes_and_splits() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let server = scripted(&stack, "lineage");
    let table = make_table(&stack).await;
    let config = config(&table, &server.endpoint, &stack);
    let log = MemoryTransport::new();
    log.ensure_topic(&TopicSpec::new(config.cdc_topic(), 1))
        .await
        .expect("topic");
    let producer: Arc<dyn Producer> = Arc::from(log.producer().expect("producer"));
    let registry = prometheus::Registry::new();
    let metrics = SourceMetrics::new(&registry).expect("metrics");
    let report = tokio::time::timeout(
        Duration::from_secs(90),
        playlake_dynamodb::run(config.clone(), producer, metrics, std::future::pending()),
    )
    .await
    .expect("caught up in time")
    .expect("source ran");
    assert_eq!(report.stream_records, 8, "{report:?}");
    assert_eq!(
        report.shards_finished, 2,
        "the two closed shards: {report:?}"
    );

    let mut consumer = log.consumer("check").expect("consumer");
    consumer
        .assign(&[(
            TopicPartition::new(config.cdc_topic(), 0),
            Position::Beginning,
        )])
        .expect("assign");
    let mut seqs = Vec::new();
    let mut by_key: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for _ in 0..20 {
        for event in consumer
            .poll(100, Duration::from_millis(50))
            .await
            .expect("poll")
        {
            if let ConsumerEvent::Records(records) = event {
                for r in records {
                    let c: ChangeEvent =
                        serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
                    let seq: u64 = c
                        .sequence_number
                        .as_deref()
                        .expect("seq")
                        .parse()
                        .expect("n");
                    seqs.push((seq, c.shard_id.clone().expect("shard")));
                    by_key.entry(c.kafka_key()).or_default().push(
                        c.new_image
                            .as_ref()
                            .map(|i| i["v"].as_i64().unwrap_or(-1))
                            .unwrap_or(-1),
                    );
                }
            }
        }
        if seqs.len() >= 8 {
            break;
        }
    }
    assert_eq!(seqs.len(), 8, "{seqs:?}");
    let pos = |s: u64| seqs.iter().position(|(q, _)| *q == s).expect("present");
    // Root before its child, child before both split children.
    for (parent, child) in [(102, 200), (201, 300), (201, 400)] {
        assert!(
            pos(parent) < pos(child),
            "{parent} before {child}: {seqs:?}"
        );
    }
    // Per item, every version in order, whichever shard held it.
    assert_eq!(by_key[r#"{"pk":"k1"}"#], vec![1, 2, 3, 4]);
    assert_eq!(by_key[r#"{"pk":"k2"}"#], vec![1, 2, 3]);
    // The shard whose parent was trimmed is read at once.
    assert!(by_key.contains_key(r#"{"pk":"k9"}"#));
    assert!(
        counter(
            &registry,
            "playlake_source_retries_total",
            Some(("reason", "expired_iterator"))
        ) >= 1
    );
    assert!(
        counter(
            &registry,
            "playlake_source_retries_total",
            Some(("reason", "throttle"))
        ) >= 1
    );
    assert_eq!(
        counter(&registry, "playlake_source_records_in_total", None),
        8
    );
    drop(server);
}

/// The lease of the scripted "trimmed" shard, checkpointed after record 100 (as if
/// a run had read it a day ago): the next record, 101, is gone.
async fn stale_lease(stack: &Stack, config: &SourceConfig) -> LeaseTable {
    let db = playlake_dynamodb::aws::Clients::connect(
        Some(&stack.aws_endpoint),
        Some(&stack.aws_region),
    )
    .await
    .dynamodb;
    let leases = LeaseTable::new(db, config.lease_table.clone());
    leases.ensure_table().await.expect("lease table");
    leases
        .create_if_missing("shardId-0001-t", None, &Checkpoint::After("100".into()))
        .await
        .expect("lease");
    leases
}

async fn checkpoint_of(leases: &LeaseTable, shard: &str) -> Checkpoint {
    leases
        .list()
        .await
        .expect("leases")
        .into_iter()
        .find(|l| l.key == shard)
        .expect("the shard's lease")
        .checkpoint
}

/// Sequence numbers on the in-process cdc topic, in order.
async fn published(log: &MemoryTransport, topic: &str) -> Vec<String> {
    let mut consumer = log.consumer("check").expect("consumer");
    consumer
        .assign(&[(TopicPartition::new(topic, 0), Position::Beginning)])
        .expect("assign");
    let mut seqs = Vec::new();
    // The in-process log holds everything already: poll until a poll brings nothing.
    loop {
        let before = seqs.len();
        for event in consumer
            .poll(100, Duration::from_millis(50))
            .await
            .expect("poll")
        {
            if let ConsumerEvent::Records(records) = event {
                for r in records {
                    let c: ChangeEvent =
                        serde_json::from_slice(r.value.as_deref().expect("value")).expect("json");
                    seqs.push(c.sequence_number.expect("seq"));
                }
            }
        }
        if seqs.len() == before {
            return seqs;
        }
    }
}

/// TrimmedDataAccess (moto cannot produce it; the scripted endpoint answers it as
/// AWS does for an iterator after a record the 24 h retention removed). By default
/// the source stops with the error and a hint, leaving the checkpoint as it was.
/// With `on_trimmed_data = "continue"` it reports the loss once (error log, metric,
/// report), reads on from the oldest kept record and catches up; the checkpoint
/// moved on, so the next run reports nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_data_stops_the_source_unless_told_to_continue() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let server = scripted(&stack, "trimmed");
    let table = make_table(&stack).await;
    let config = config(&table, &server.endpoint, &stack);
    let leases = stale_lease(&stack, &config).await;
    let log = MemoryTransport::new();
    log.ensure_topic(&TopicSpec::new(config.cdc_topic(), 1))
        .await
        .expect("topic");
    let producer: Arc<dyn Producer> = Arc::from(log.producer().expect("producer"));
    let registry = prometheus::Registry::new();
    let metrics = SourceMetrics::new(&registry).expect("metrics");
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        playlake_dynamodb::run(
            config.clone(),
            producer.clone(),
            metrics,
            std::future::pending(),
        ),
    )
    .await
    .expect("stopped in time")
    .expect_err("trimmed data must stop the source");
    assert!(
        matches!(&err, SourceError::TrimmedData { shard_id } if shard_id == "shardId-0001-t"),
        "{err}"
    );
    assert!(err.to_string().contains("hint:"), "{err}");
    assert_eq!(
        counter(&registry, "playlake_source_trimmed_data_total", None),
        1
    );
    assert_eq!(
        checkpoint_of(&leases, "shardId-0001-t").await,
        Checkpoint::After("100".into()),
        "a stopped source leaves the checkpoint for the operator"
    );
    assert!(published(&log, &config.cdc_topic()).await.is_empty());

    // Continue: the loss is counted once, the kept records are published, and the
    // source catches up (no loop over the trimmed position).
    let mut cont = config.clone();
    cont.on_trimmed_data = TrimmedDataPolicy::Continue;
    let registry = prometheus::Registry::new();
    let metrics = SourceMetrics::new(&registry).expect("metrics");
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        playlake_dynamodb::run(
            cont.clone(),
            producer.clone(),
            metrics,
            std::future::pending(),
        ),
    )
    .await
    .expect("caught up in time: the trimmed shard must not be re-read forever")
    .expect("continues past trimmed data");
    assert_eq!(report.trimmed, 1, "{report:?}");
    assert_eq!(report.stream_records, 3, "{report:?}");
    assert_eq!(
        counter(&registry, "playlake_source_trimmed_data_total", None),
        1
    );
    assert_eq!(
        published(&log, &config.cdc_topic()).await,
        vec!["102", "103", "104"]
    );
    assert_eq!(
        checkpoint_of(&leases, "shardId-0001-t").await,
        Checkpoint::After("104".into())
    );

    // The next run starts after 104: nothing lost, nothing reported again.
    let registry = prometheus::Registry::new();
    let metrics = SourceMetrics::new(&registry).expect("metrics");
    let again = tokio::time::timeout(
        Duration::from_secs(60),
        playlake_dynamodb::run(cont, producer, metrics, std::future::pending()),
    )
    .await
    .expect("caught up in time")
    .expect("runs");
    assert_eq!((again.trimmed, again.stream_records), (0, 0), "{again:?}");
    assert_eq!(
        counter(&registry, "playlake_source_trimmed_data_total", None),
        0
    );
    drop(server);
}

/// A shard that answers TrimmedDataAccess to every read, even from TRIM_HORIZON
/// (not seen on AWS; the worst case of the horizon moving under the iterator): with
/// "continue" the loss is counted once and the source backs off between tries
/// (`retries_total{reason="trimmed"}`) instead of spinning or counting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_at_every_read_is_counted_once_and_backed_off() {
    let Some(stack) = Stack::from_env() else {
        return;
    };
    let server = scripted(&stack, "trimmed-always");
    let table = make_table(&stack).await;
    let mut config = config(&table, &server.endpoint, &stack);
    config.on_trimmed_data = TrimmedDataPolicy::Continue;
    config.until_caught_up = false;
    let log = MemoryTransport::new();
    log.ensure_topic(&TopicSpec::new(config.cdc_topic(), 1))
        .await
        .expect("topic");
    let producer: Arc<dyn Producer> = Arc::from(log.producer().expect("producer"));
    let registry = prometheus::Registry::new();
    let metrics = SourceMetrics::new(&registry).expect("metrics");
    let retries = || {
        counter(
            &registry,
            "playlake_source_retries_total",
            Some(("reason", "trimmed")),
        )
    };
    let started = std::time::Instant::now();
    // Stop once the source has met the trimmed shard six more times.
    let shutdown = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while retries() < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the source stopped retrying the trimmed shard"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let report = playlake_dynamodb::run(config, producer, metrics.clone(), shutdown)
        .await
        .expect("continues past trimmed data");
    let elapsed = started.elapsed();
    assert_eq!(report.trimmed, 1, "{report:?}");
    assert_eq!(
        counter(&registry, "playlake_source_trimmed_data_total", None),
        1,
        "the loss of one shard is counted once"
    );
    // Backoff: 100 ms after the first retry, then max_backoff_ms (200), so the
    // sixth retry comes at least 100 + 4 * 200 ms after the first; a spinning reader
    // would do them in a few ms.
    let retried = retries();
    assert!(
        elapsed >= Duration::from_millis(900),
        "{retried} retries in {elapsed:?}: not backing off"
    );
    drop(server);
}
