//! The command line: clap definitions only. Values given here (flag or environment
//! variable) override the TOML config file, which overrides the defaults; the merge
//! and validation live in [`crate::config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use playlake_generator::GeneratorConfig;

/// playlake: exactly-once stream processing for video and live-stream playback
/// analytics.
///
/// Playback heartbeats and DynamoDB changes flow through Kafka into sessions,
/// concurrent viewers, daily stats and resume points, computed in event time and
/// written as Hive-partitioned Parquet for Athena.
///
/// Every flag also reads an environment variable and the TOML config file
/// (`--config`, default `playlake.toml` when present): flag > env > file > default.
#[derive(Debug, Parser)]
#[command(name = "playlake", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command shares.
#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// TOML config file. Default: `playlake.toml` in the working directory, when it
    /// exists.
    #[arg(long, global = true, env = "PLAYLAKE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers, comma-separated `host:port` [default: localhost:9092].
    #[arg(
        long,
        global = true,
        env = "PLAYLAKE_BROKERS",
        value_name = "HOST:PORT,..."
    )]
    pub brokers: Option<String>,

    /// The lake: `file://./lake`, `file:///abs/path` or `s3://bucket/prefix`
    /// [default: file://./lake]. Checkpoints live under its `_playlake/` prefix.
    #[arg(long, global = true, env = "PLAYLAKE_LAKE", value_name = "URL")]
    pub lake: Option<String>,

    /// Prefix of every topic name (`<prefix>.events`, `<prefix>.sessions`, ...)
    /// [default: playback].
    #[arg(
        long,
        global = true,
        env = "PLAYLAKE_TOPIC_PREFIX",
        value_name = "PREFIX"
    )]
    pub topic_prefix: Option<String>,

    /// Address of the metrics and health server [default: 127.0.0.1:9464].
    #[arg(
        long,
        global = true,
        env = "PLAYLAKE_METRICS_ADDR",
        value_name = "HOST:PORT"
    )]
    pub metrics_addr: Option<String>,

    /// librdkafka setting passed through as it is, e.g. `security.protocol=SASL_SSL`
    /// or `sasl.mechanism=SCRAM-SHA-512`. Repeatable; the environment variable takes a
    /// comma-separated list. Overrides the same key in the config file.
    #[arg(
        long = "kafka-option",
        global = true,
        env = "PLAYLAKE_KAFKA_OPTIONS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub kafka_options: Vec<String>,

    /// After SIGTERM or Ctrl-C, how long `run`, `process`, `sink` and `source` may
    /// take to finish in-flight work and checkpoint before they exit anyway with
    /// status 1, without the final checkpoint (the next start replays from the last
    /// one, so nothing is lost) [default: `[run] shutdown_deadline_seconds`, else 30].
    #[arg(
        long,
        global = true,
        env = "PLAYLAKE_SHUTDOWN_DEADLINE_SECONDS",
        value_name = "SECONDS"
    )]
    pub shutdown_deadline_seconds: Option<u64>,

    /// Log format [default: human].
    #[arg(long, global = true, env = "PLAYLAKE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stage the config enables (`[run] stages`, default process and
    /// sink) in one process, the production default: one metrics and health server
    /// (`--metrics-addr`: /metrics, /healthz, /readyz), one log, one shutdown. SIGTERM
    /// or Ctrl-C finishes in-flight work, commits and exits 0 within
    /// `shutdown_deadline_seconds`; a second signal exits at once. A failed stage is
    /// restarted from its last checkpoint.
    Run(RunArgs),

    /// Run the whole pipeline in one process with no server at all: generated
    /// playback traffic through the in-process log, the processor and the sink into a
    /// local lake (`--lake`, default ./lake), then print what it did.
    Demo(DemoArgs),

    /// Generate realistic playback traffic (players on live streams and VODs, 5 s
    /// heartbeats, seeks, pauses, stops, out-of-order and duplicate delivery, bad
    /// records) and produce it to `<prefix>.events`, keyed by uuid, or write it as
    /// items of a DynamoDB table (`--dynamodb-table`) for the DynamoDB source. The
    /// same seed gives the same events; prints the rate achieved.
    Produce(ProduceArgs),

    /// Print the Athena DDL (CREATE EXTERNAL TABLE with partition projection, no MSCK
    /// REPAIR needed) for every lake table, located under the `--lake` S3 URL.
    AthenaDdl(AthenaDdlArgs),

    /// Print the effective configuration (flags, environment, file and defaults
    /// merged and validated; secrets redacted) as TOML.
    Config,

    /// Create the pipeline's topics on the broker when they are missing.
    Topics(TopicsArgs),

    /// Run the stateful processor: playback events -> sessions, concurrent viewers,
    /// daily stats and resume points, in event time, exactly-once (checkpoints in the
    /// lake under `_playlake/checkpoints/process/`). Scale out by running more
    /// instances with the same `--group`. SIGTERM or Ctrl-C checkpoints and exits 0,
    /// or 1 past `--shutdown-deadline-seconds` (nothing lost: the next start replays).
    Process(ProcessArgs),

    /// Write the processor's results and the raw streams to the lake as
    /// Hive-partitioned Parquet for Athena, exactly-once (write-ahead cuts and
    /// positions in the lake under `_playlake/checkpoints/sink/`). SIGTERM or Ctrl-C
    /// publishes, commits and exits 0, or 1 past `--shutdown-deadline-seconds`
    /// (nothing lost: the next start replays).
    Sink(SinkArgs),

    /// Read a source into Kafka: `playlake source dynamodb --table T [--backfill]`
    /// tails a DynamoDB table's stream into `<prefix>.cdc.<table>` (and, with a
    /// `[source.dynamodb.mapping]`, playback events into `<prefix>.events`); every
    /// change at least once, redelivered copies identical, leases and checkpoints in
    /// a DynamoDB table.
    Source(crate::commands::source::SourceArgs),

    /// Validate playback events (one JSON object per line) against the input
    /// contract and print each rejected line's reason. Exits 1 when any is invalid.
    CheckEvents(CheckEventsArgs),

    /// Run SQL over the lake (`--lake`, file:// or s3://) with DataFusion, using the
    /// Athena table names and columns, and print the result as a table, CSV or JSON.
    /// Hive partition values read back unescaped.
    #[command(after_help = crate::commands::query::help_text())]
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// One SQL statement, e.g. "SELECT stream_id, peak_viewers FROM daily WHERE dt =
    /// '2025-06-01'".
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,

    /// Read the statement from a file, e.g. one of deploy/athena/queries/*.sql.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// An aligned text table and the row count.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of row objects (nulls explicit, timestamps RFC 3339).
    Json,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Partitions of each topic created [default: 6].
    #[arg(long, env = "PLAYLAKE_TOPIC_PARTITIONS")]
    pub partitions: Option<i32>,

    /// Replication factor of each topic created [default: 1].
    #[arg(long, env = "PLAYLAKE_TOPIC_REPLICATION")]
    pub replication_factor: Option<i32>,
}

#[derive(Debug, Args)]
pub struct CheckEventsArgs {
    /// File of JSON lines; `-` or absent reads standard input.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct ProcessArgs {
    /// Read every input partition to the end it had at start, finalize every
    /// session, window and day, publish, checkpoint and exit 0 (batch mode).
    #[arg(long)]
    pub drain: bool,

    /// Consumer group shared by every instance [default: playlake-process].
    #[arg(long = "group", env = "PLAYLAKE_PROCESS_GROUP", value_name = "ID")]
    pub group_id: Option<String>,

    /// How often state and input positions are checkpointed [default: 5000].
    #[arg(long, env = "PLAYLAKE_CHECKPOINT_INTERVAL_MS", value_name = "MS")]
    pub checkpoint_interval_ms: Option<u64>,

    /// How late an event may arrive and still count [default: 10000].
    #[arg(long, env = "PLAYLAKE_MAX_OUT_OF_ORDERNESS_MS", value_name = "MS")]
    pub max_out_of_orderness_ms: Option<i64>,

    /// Wall-clock time after which a silent partition stops holding the watermark
    /// back [default: 30000].
    #[arg(long, env = "PLAYLAKE_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub idle_timeout_ms: Option<i64>,

    /// Largest gap between two events of one session [default: 30000].
    #[arg(long, env = "PLAYLAKE_SESSION_GAP_MS", value_name = "MS")]
    pub session_gap_ms: Option<i64>,

    /// Length of the concurrent-viewer windows [default: 30000].
    #[arg(long, env = "PLAYLAKE_VIEWER_WINDOW_MS", value_name = "MS")]
    pub viewer_window_ms: Option<i64>,

    /// IANA time zone of the daily stats' days, e.g. Asia/Seoul [default: UTC].
    #[arg(long, env = "PLAYLAKE_TIME_ZONE", value_name = "ZONE")]
    pub time_zone: Option<String>,

    /// Partitions of the internal repartition topic when it is created [default: 8].
    #[arg(long, env = "PLAYLAKE_REPARTITION_PARTITIONS", value_name = "N")]
    pub repartition_partitions: Option<i32>,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Stages to start, comma-separated: process, sink [default: `[run] stages`,
    /// else both].
    #[arg(
        long,
        env = "PLAYLAKE_RUN_STAGES",
        value_delimiter = ',',
        value_name = "STAGE,..."
    )]
    pub stages: Vec<String>,
    // Stage settings come from the config file's `[processor]`, `[process]` and
    // `[sink]` sections: the stages' own flags overlap (`--group`, `--time-zone`).
}

#[derive(Debug, Clone, Args, Default)]
pub struct SinkArgs {
    /// Read every input partition to the end it had at start, write and commit every
    /// file, and exit 0.
    #[arg(long)]
    pub drain: bool,

    /// Tables to write, comma-separated: sessions, viewers, daily, events, errors,
    /// cdc [default: all but cdc].
    #[arg(
        long,
        env = "PLAYLAKE_SINK_TABLES",
        value_delimiter = ',',
        value_name = "TABLE,..."
    )]
    pub tables: Vec<String>,

    /// DynamoDB tables whose `<prefix>.cdc.<table>` topics the cdc table reads,
    /// comma-separated [default: `[sink] cdc_tables`, else `[source.dynamodb]
    /// table`].
    #[arg(
        long,
        env = "PLAYLAKE_SINK_CDC_TABLES",
        value_delimiter = ',',
        value_name = "TABLE,..."
    )]
    pub cdc_tables: Vec<String>,

    /// Consumer group shared by every sink instance [default: playlake-sink].
    #[arg(long = "group", env = "PLAYLAKE_SINK_GROUP", value_name = "ID")]
    pub group_id: Option<String>,

    /// A partition's open file is written at the latest after this long, so an idle
    /// partition still appears [default: 300].
    #[arg(long, env = "PLAYLAKE_FLUSH_INTERVAL_SECONDS", value_name = "SECONDS")]
    pub flush_interval_seconds: Option<u64>,

    /// Target Parquet file size [default: 134217728 (128 MiB)].
    #[arg(long, env = "PLAYLAKE_TARGET_FILE_SIZE_BYTES", value_name = "BYTES")]
    pub target_file_size_bytes: Option<u64>,

    /// Memory for open files across all partitions; the largest or oldest is
    /// flushed first beyond it [default: 1073741824 (1 GiB)].
    #[arg(long, env = "PLAYLAKE_SINK_MEMORY_BUDGET_BYTES", value_name = "BYTES")]
    pub memory_budget_bytes: Option<u64>,

    /// IANA time zone of the `dt`/`hour` partitions; use the processor's
    /// [default: UTC].
    #[arg(long, env = "PLAYLAKE_TIME_ZONE", value_name = "ZONE")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Valid playback events to generate (duplicates and bad records come on top).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,

    /// Concurrent players in the generated traffic.
    #[arg(long, default_value_t = 300)]
    pub viewers: u32,

    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Partitions of the in-process events topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
}

#[derive(Debug, Args)]
pub struct AthenaDdlArgs {
    /// Glue/Athena database to qualify the table names with.
    #[arg(long, env = "PLAYLAKE_ATHENA_DATABASE")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = PRODUCE_HELP)]
pub struct ProduceArgs {
    /// Valid playback events to produce (duplicates and bad records come on top)
    /// [default: 100000, or no limit when --duration-seconds is given].
    #[arg(long, value_name = "N")]
    pub events: Option<u64>,

    /// Stop after this many seconds (whichever of --events and the duration comes
    /// first).
    #[arg(long, value_name = "SECONDS")]
    pub duration_seconds: Option<u64>,

    /// Concurrent players.
    #[arg(long, default_value_t = 1_000)]
    pub viewers: u32,

    /// Target rate in records per second; 0 produces as fast as the broker (or the
    /// table) takes them.
    #[arg(long, visible_alias = "rate", default_value_t = 0, value_name = "R")]
    pub rate_per_second: u64,

    /// Live streams the players choose from (popular ones draw most live viewers).
    #[arg(long, default_value_t = GeneratorConfig::default().live_streams, value_name = "N")]
    pub live_streams: u32,

    /// Video-on-demand titles the players choose from (with pauses, seeks, resumes).
    #[arg(long, default_value_t = GeneratorConfig::default().vod_streams, value_name = "N")]
    pub vod_streams: u32,

    /// Player heartbeat period (SPEC: 5 s).
    #[arg(
        long,
        default_value_t = GeneratorConfig::default().heartbeat_interval_ms,
        value_name = "MS"
    )]
    pub heartbeat_interval_ms: u64,

    /// Event time of the first event, RFC 3339 (`2026-12-01T00:00:00Z`); event time then
    /// advances with the traffic, not with the clock [default: 2025-06-01T00:00:00Z].
    #[arg(long, value_name = "TIME", value_parser = parse_start_time)]
    pub start_time: Option<i64>,

    /// Largest delivery delay behind event time (out-of-order delivery).
    #[arg(long, default_value_t = 3_000)]
    pub jitter_ms: u64,

    /// Share of events delivered twice.
    #[arg(long, default_value_t = 0.01)]
    pub duplicate_fraction: f64,

    /// Share of extra invalid records (they must land in the DLQ).
    #[arg(long, default_value_t = 0.001)]
    pub bad_record_fraction: f64,

    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Write the events as items of this DynamoDB table instead of producing to Kafka,
    /// for `playlake source dynamodb` to read back (see below). The table must exist.
    #[arg(long, env = "PLAYLAKE_PRODUCE_DYNAMODB_TABLE", value_name = "TABLE")]
    pub dynamodb_table: Option<String>,

    /// DynamoDB endpoint (moto, LocalStack), as for `playlake source dynamodb`
    /// [default: `endpoint_url` in [source.dynamodb], else the AWS variables, e.g.
    /// AWS_ENDPOINT_URL]. Region and credentials come from the AWS variables.
    #[arg(long, env = "PLAYLAKE_DYNAMODB_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Concurrent BatchWriteItem calls (25 items each) with --dynamodb-table.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub dynamodb_writers: usize,
}

/// `playlake produce --help`, after the flags.
const PRODUCE_HELP: &str = "\
Kafka: records go to <prefix>.events keyed by uuid, every one acknowledged (acks=all,
idempotent) before it counts as sent. Bulk-load producer defaults, each overridable with
--kafka-option: linger.ms=50, batch.size=1000000, compression.type=none (the broker, not
the network, limits a load test; add compression.type=zstd over a real network).

DynamoDB (--dynamodb-table T): every record becomes one item (BatchWriteItem, 25 items a
call, UnprocessedItems retried with backoff, --dynamodb-writers calls at once). Its
attributes are the ones [source.dynamodb.mapping] in the config file names, which must
then name every field; without a mapping they are named like the fields (uuid,
stream_id, user_id, event_type, event_time, position_start, position_end, event_id) and
the source needs that mapping too. The table's key must be string attributes among
uuid, stream_id and event_id; produce prints the create-table command when it is
missing. With the source's mapping every item maps back to exactly the generated event
(same event_id and fields). Duplicates are the same item written again later; bad
records are items with one defect (missing attribute, wrong type, unknown event type,
negative or reversed positions, out-of-range or unparseable time, oversized uuid) that
the mapping sends to <prefix>.dlq with the reason, their event_id suffixed `.bad`.

Both print a JSON report: records sent by kind, seconds (until the last record is
acknowledged), records_per_second (the rate achieved over those seconds) and
sending_seconds (until the last record was handed over).

Example: playlake produce --rate 25000 --duration-seconds 30";

/// `--start-time`: an RFC 3339 timestamp as epoch milliseconds.
fn parse_start_time(value: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{e}: give an RFC 3339 time with a zone, e.g. 2026-12-01T00:00:00Z"))
}
