//! `playlake produce`: the load generator and reference producer. Generated records
//! go to `<prefix>.events` (or, with `--dynamodb-table`, become items of a DynamoDB
//! table, see [`super::produce_dynamodb`]), paced to `--rate-per-second` when one is
//! set, until `--events` valid events or `--duration-seconds` are done. Prints what it
//! sent and the rate it achieved.
//!
//! Kafka path: records are handed to librdkafka in chunks of [`CHUNK_RECORDS`] while
//! earlier chunks are still being acknowledged (at most [`MAX_IN_FLIGHT_RECORDS`]
//! unacknowledged), so the rate is bounded by the broker's throughput rather than by
//! one round trip per batch; every record is acknowledged before produce reports it
//! as sent.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::Context;
use playlake_generator::{Generator, GeneratorConfig, RecordKind};
use playlake_kafka::KafkaOption;
use playlake_transport::{OutgoingRecord, TopicSpec, Transport};

use super::produce_dynamodb::{self, DynamoOptions, ItemMapping};
use crate::cli::ProduceArgs;
use crate::config::Settings;
use crate::topics::Topics;

/// Records per chunk handed to the producer at most; with a target rate, a chunk is
/// 40 ms of it (1,000 records at 25,000/s, 40 at 1,000/s), so slow rates are paced
/// smoothly rather than in bursts.
const CHUNK_RECORDS: usize = 1_000;

/// Unacknowledged records at most. Far below librdkafka's local queue
/// (`queue.buffering.max.messages`, 100,000 by default), so enqueueing a chunk never
/// meets a full queue and completes in one go: chunks reach librdkafka in generation
/// order, and a key's records stay in order on its partition.
const MAX_IN_FLIGHT_RECORDS: usize = 50_000;

/// Producer settings for bulk load, each unless `--kafka-option` sets it. A long
/// linger costs no throughput here because chunks are pipelined, and larger batches
/// mean fewer produce requests for the broker to handle. No compression: the broker,
/// not the network, is what limits a load test (measured on Tansu, 2 cores, 20 s
/// unthrottled: about 40k records/s uncompressed against 26-31k with lz4 and 28k with
/// zstd, the stages' default); over a real network add
/// `--kafka-option compression.type=zstd`.
const PRODUCE_DEFAULTS: [(&str, &str); 3] = [
    ("linger.ms", "50"),
    ("batch.size", "1000000"),
    ("compression.type", "none"),
];

/// Records sent, by kind.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub records: u64,
    pub valid: u64,
    pub duplicates: u64,
    pub bad: u64,
    /// From the first record to the last one handed over (the paced part of the run);
    /// the rest of the run is waiting for the last acknowledgements.
    pub sending: Duration,
}

impl Sent {
    pub fn count(&mut self, kind: RecordKind) {
        self.records += 1;
        match kind {
            RecordKind::Valid => self.valid += 1,
            RecordKind::Duplicate => self.duplicates += 1,
            RecordKind::Bad(_) => self.bad += 1,
        }
    }

    pub fn add(&mut self, other: &Sent) {
        self.records += other.records;
        self.valid += other.valid;
        self.duplicates += other.duplicates;
        self.bad += other.bad;
    }
}

/// The clock of a run: pacing to the target rate and the `--duration-seconds` limit.
pub struct Pacer {
    started: Instant,
    rate_per_second: u64,
    deadline: Option<Instant>,
}

impl Pacer {
    pub fn new(rate_per_second: u64, duration: Option<Duration>) -> Self {
        let started = Instant::now();
        Pacer {
            started,
            rate_per_second,
            deadline: duration.map(|d| started + d),
        }
    }

    /// Waits until `records` are due at the target rate (no wait without one).
    pub async fn pace(&self, records: u64) {
        if self.rate_per_second > 0 {
            let due = Duration::from_secs_f64(records as f64 / self.rate_per_second as f64);
            tokio::time::sleep_until((self.started + due).into()).await;
        }
    }

    /// The duration is over: stop generating.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Starts the clock again (after connecting: the rate counts from the first
    /// record), keeping the duration.
    pub fn restart(&mut self) {
        let now = Instant::now();
        self.deadline = self.deadline.map(|d| now + (d - self.started));
        self.started = now;
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// The generator settings of a run (shared by both paths; tests rebuild the same
/// traffic from the same flags).
pub fn generator_config(args: &ProduceArgs) -> GeneratorConfig {
    let max_events = match (args.events, args.duration_seconds) {
        (Some(n), _) => Some(n),
        // A duration alone: as many events as it takes.
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_EVENTS),
    };
    GeneratorConfig {
        viewers: args.viewers,
        max_events,
        // One day of traffic: 1,000 viewers give about 14 million events, more than
        // ten minutes at 25,000/s; --viewers scales it. Unchanged since the first
        // produce, so a seed still gives the same events.
        duration_ms: 24 * 3_600_000,
        live_streams: args.live_streams,
        vod_streams: args.vod_streams,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        start_time_ms: args
            .start_time
            .unwrap_or(GeneratorConfig::default().start_time_ms),
        out_of_order_jitter_ms: args.jitter_ms,
        duplicate_fraction: args.duplicate_fraction,
        bad_record_fraction: args.bad_record_fraction,
        seed: args.seed,
        ..GeneratorConfig::default()
    }
}

/// `--events` when neither it nor `--duration-seconds` is given.
pub const DEFAULT_EVENTS: u64 = 100_000;

pub async fn run(settings: &Settings, args: &ProduceArgs) -> anyhow::Result<()> {
    let mut generator =
        Generator::new(generator_config(args)).context("invalid traffic settings")?;
    let mut pacer = Pacer::new(
        args.rate_per_second,
        args.duration_seconds.map(Duration::from_secs),
    );
    let (target, sent, extra) = match &args.dynamodb_table {
        Some(table) => {
            let file = settings.source.dynamodb.clone().unwrap_or_default();
            let mapping = ItemMapping::from_config(file.mapping.as_ref())?;
            let options = DynamoOptions {
                table: table.clone(),
                endpoint_url: args.endpoint_url.clone().or(file.endpoint_url),
                writers: args.dynamodb_writers,
            };
            let written =
                produce_dynamodb::produce(&mut generator, &options, mapping, &mut pacer).await?;
            (
                serde_json::json!({ "table": table }),
                written.sent,
                serde_json::json!({
                    "unprocessed_item_retries": written.retries,
                    "dlq_reason_codes": written.dlq_reason_codes,
                }),
            )
        }
        None => {
            let topic = Topics::new(&settings.topic_prefix).events();
            let sent = produce_kafka(settings, &topic, &mut generator, &mut pacer).await?;
            (
                serde_json::json!({ "topic": topic }),
                sent,
                serde_json::json!({}),
            )
        }
    };
    let seconds = pacer.elapsed().as_secs_f64();
    let mut report = serde_json::json!({
        "records_sent": sent.records,
        "valid_events": sent.valid,
        "duplicates": sent.duplicates,
        "bad_records": sent.bad,
        "seconds": seconds,
        "records_per_second": sent.records as f64 / seconds.max(1e-9),
        "target_records_per_second": args.rate_per_second,
        "sending_seconds": sent.sending.as_secs_f64(),
    });
    for part in [target, extra] {
        if let (Some(report), serde_json::Value::Object(part)) = (report.as_object_mut(), part) {
            report.extend(part);
        }
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// An enqueued chunk: its size and the future of its acknowledgements.
type InFlight = (
    usize,
    Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>,
);

async fn produce_kafka(
    settings: &Settings,
    topic: &str,
    generator: &mut Generator,
    pacer: &mut Pacer,
) -> anyhow::Result<Sent> {
    let mut config = playlake_kafka::KafkaConfig::new(settings.brokers.clone());
    config.client_id = format!("playlake-{}-produce", env!("CARGO_PKG_VERSION"));
    config.options = settings.kafka_options.clone();
    for (key, value) in PRODUCE_DEFAULTS {
        if !config.options.iter().any(|o| o.key == key) {
            config.options.push(KafkaOption {
                key: key.into(),
                value: value.into(),
            });
        }
    }
    let transport = playlake_kafka::KafkaTransport::new(config)?;
    transport
        .ensure_topic(&TopicSpec {
            replication_factor: settings.topic_replication,
            ..TopicSpec::new(topic.to_string(), settings.topic_partitions)
        })
        .await
        .with_context(|| format!("creating {topic} on {}", settings.brokers))?;
    let producer = transport.kafka_producer().clone();
    pacer.restart();

    let mut sent = Sent::default();
    let mut enqueued: u64 = 0;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut unacked = 0usize;
    let chunk_records = match pacer.rate_per_second {
        0 => CHUNK_RECORDS,
        rate => usize::try_from(rate / 25).map_or(CHUNK_RECORDS, |n| n.clamp(1, CHUNK_RECORDS)),
    };
    let mut chunk = Vec::with_capacity(chunk_records);
    let mut chunk_count = Sent::default();
    loop {
        let record = if pacer.expired() {
            None
        } else {
            generator.next()
        };
        let done = record.is_none();
        if let Some(record) = record {
            chunk_count.count(record.kind);
            chunk.push(OutgoingRecord {
                topic: topic.to_string(),
                key: Some(record.key),
                value: Some(record.value),
                ..OutgoingRecord::default()
            });
        }
        if chunk.len() == chunk_records || (done && !chunk.is_empty()) {
            let n = chunk.len();
            let records = std::mem::take(&mut chunk);
            let producer = producer.clone();
            let offset = enqueued;
            let topic_name = topic.to_string();
            let mut acks: Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> =
                Box::pin(async move {
                    producer.send(&records).await.map(|_| ()).with_context(|| {
                        format!("producing to {topic_name} after {offset} records")
                    })
                });
            // Poll once now: that enqueues the whole chunk into librdkafka (see
            // MAX_IN_FLIGHT_RECORDS), before the next chunk is built.
            let first = std::future::poll_fn(|cx| Poll::Ready(acks.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    in_flight.push_back((n, acks));
                    unacked += n;
                }
            }
            enqueued += n as u64;
            sent.add(&std::mem::take(&mut chunk_count));
            while unacked > MAX_IN_FLIGHT_RECORDS {
                let Some((n, acks)) = in_flight.pop_front() else {
                    break;
                };
                acks.await?;
                unacked -= n;
            }
            pacer.pace(enqueued).await;
        }
        if done {
            break;
        }
    }
    sent.sending = pacer.elapsed();
    for (_, acks) in in_flight {
        acks.await?;
    }
    Ok(sent)
}
