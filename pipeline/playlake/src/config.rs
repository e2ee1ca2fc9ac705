//! Configuration: the TOML file, merged with flags and environment variables
//! (flag > env > file > default), then validated once at start into [`Settings`],
//! the typed value the rest of the binary trusts.
//!
//! Errors say which setting is wrong, where it came from and how to fix it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use playlake_kafka::{KafkaError, KafkaOption};
use playlake_processor::ProcessorConfig;
use serde::{Deserialize, Serialize};

use crate::cli::{CommonArgs, LogFormat, ProcessArgs, RunArgs, SinkArgs};

pub const DEFAULT_CONFIG_FILE: &str = "playlake.toml";
pub const DEFAULT_BROKERS: &str = "localhost:9092";
pub const DEFAULT_LAKE: &str = "file://./lake";
pub const DEFAULT_TOPIC_PREFIX: &str = "playback";
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
pub const DEFAULT_TOPIC_PARTITIONS: i32 = 6;
pub const DEFAULT_TOPIC_REPLICATION: i32 = 1;
pub const DEFAULT_METRICS_TOP_STREAMS: usize = 10;
pub const DEFAULT_SHUTDOWN_DEADLINE_SECONDS: u64 = 30;
pub const DEFAULT_MAX_STAGE_RESTARTS: u32 = 5;

/// The config file as written. Every field is optional: absent means "use the flag,
/// the environment or the default".
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    pub brokers: Option<String>,
    /// `file://...` or `s3://bucket/prefix`.
    pub lake: Option<String>,
    pub topic_prefix: Option<String>,
    pub metrics_addr: Option<String>,
    /// Streams the per-stream concurrent viewers gauge shows (the busiest ones);
    /// bounds that metric's label cardinality.
    pub metrics_top_streams: Option<usize>,
    pub log_format: Option<LogFormat>,
    /// librdkafka settings passed through (SASL, TLS), e.g.
    /// `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub kafka_options: BTreeMap<String, String>,
    #[serde(default)]
    pub topics: TopicsFileConfig,
    /// `[processor]`: event-time semantics (watermarks, session gap, windows, zone).
    #[serde(default)]
    pub processor: ProcessorConfig,
    /// `[process]`: how `playlake process` runs.
    #[serde(default)]
    pub process: ProcessFileConfig,
    /// `[sink]`: how `playlake sink` writes the lake.
    #[serde(default)]
    pub sink: SinkFileConfig,
    /// `[run]`: which stages `playlake run` starts and how it stops them.
    #[serde(default)]
    pub run: RunFileConfig,
    /// `[source.dynamodb]` (and `[source.dynamodb.mapping]`): the DynamoDB source.
    #[serde(default)]
    pub source: SourceFileConfig,
}

/// `[source.*]`: settings of `playlake source` by kind.
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFileConfig {
    pub dynamodb: Option<playlake_dynamodb::DynamoFileConfig>,
}

/// `[run]`: which stages `playlake run` starts and how it stops them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunFileConfig {
    /// Stages to start: `process`, `sink` [default: both].
    pub stages: Option<Vec<String>>,
    /// After SIGTERM or Ctrl-C, how long the stages may take to finish in-flight
    /// work and commit before the process exits anyway with status 1. Also bounds
    /// `playlake process`, `sink` and `source` when they run alone.
    pub shutdown_deadline_seconds: Option<u64>,
    /// Consecutive failures after which a stage is no longer restarted (from its last
    /// checkpoint) and `playlake run` stops.
    pub max_stage_restarts: Option<u32>,
}

/// A stage `playlake run` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageKind {
    /// `playlake process`: events -> sessions, viewers, daily stats, resume points.
    Process,
    /// `playlake sink`: topics -> Parquet in the lake.
    Sink,
    /// `playlake source dynamodb`: a table's stream -> Kafka (`[source.dynamodb]`).
    Source,
}

impl StageKind {
    pub const ALL: [StageKind; 3] = [StageKind::Source, StageKind::Process, StageKind::Sink];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Process => "process",
            StageKind::Sink => "sink",
            StageKind::Source => "source",
        }
    }
}

/// Validated `playlake run` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub stages: Vec<StageKind>,
    pub shutdown_deadline_seconds: u64,
    pub max_stage_restarts: u32,
}

/// `[sink]`: how `playlake sink` writes the lake.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFileConfig {
    pub group_id: Option<String>,
    pub tables: Option<Vec<String>>,
    /// DynamoDB tables whose cdc topics the `cdc` table reads.
    pub cdc_tables: Option<Vec<String>>,
    pub flush_interval_seconds: Option<u64>,
    pub target_file_size_bytes: Option<u64>,
    pub max_rows_per_file: Option<u64>,
    pub memory_budget_bytes: Option<u64>,
    /// Parquet compression: `zstd` (the default) or `snappy`.
    pub compression: Option<String>,
    /// zstd level, 1 (the default: fastest) to 22 (smallest files).
    pub zstd_level: Option<i32>,
}

/// `[process]`: how `playlake process` runs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessFileConfig {
    pub group_id: Option<String>,
    pub checkpoint_interval_ms: Option<u64>,
    pub repartition_partitions: Option<i32>,
}

/// `[topics]`: how missing topics are created.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsFileConfig {
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
}

/// Validated settings, shared by every command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub brokers: String,
    pub lake: LakeUrl,
    pub topic_prefix: String,
    pub metrics_addr: SocketAddr,
    pub metrics_top_streams: usize,
    pub log_format: LogFormat,
    #[serde(skip)]
    pub kafka_options: Vec<KafkaOption>,
    pub topic_partitions: i32,
    pub topic_replication: i32,
    pub processor: ProcessorConfig,
    pub process: ProcessFileConfig,
    pub sink: SinkFileConfig,
    pub run: RunFileConfig,
    pub source: SourceFileConfig,
    /// After the first signal, how long a long-running command may take to stop
    /// cleanly (`--shutdown-deadline-seconds`, else `[run]`, else 30).
    pub shutdown_deadline_seconds: u64,
}

/// Where the lake lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum LakeUrl {
    /// A local directory (relative paths resolve against the working directory).
    File(PathBuf),
    /// An S3 bucket and key prefix (may be empty).
    S3 { bucket: String, prefix: String },
}

impl From<LakeUrl> for String {
    fn from(value: LakeUrl) -> Self {
        value.to_string()
    }
}

impl std::fmt::Display for LakeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeUrl::File(path) => write!(f, "file://{}", path.display()),
            LakeUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            LakeUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}\nhint: run `playlake --help` for the settings and their meaning")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid Kafka option")]
    KafkaOption {
        #[source]
        source: KafkaError,
    },
    #[error("invalid {setting} {value:?}: {reason}\nhint: {fix}")]
    Invalid {
        setting: &'static str,
        value: String,
        reason: String,
        fix: String,
    },
}

impl ConfigError {
    fn invalid(
        setting: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            setting,
            value: value.into(),
            reason: reason.into(),
            fix: fix.into(),
        }
    }
}

/// Reads the config file: the one named, or `playlake.toml` when it exists, or none.
pub fn load_file(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.exists() {
                return Ok(FileConfig::default());
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse_file(&path, &text)
}

pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Flags and environment (already merged by clap) over the file over defaults.
pub fn resolve(
    args: &CommonArgs,
    file: &FileConfig,
    topics: TopicOverrides,
) -> Result<Settings, ConfigError> {
    let brokers = pick(&args.brokers, &file.brokers, DEFAULT_BROKERS);
    let lake = pick(&args.lake, &file.lake, DEFAULT_LAKE);
    let topic_prefix = pick(&args.topic_prefix, &file.topic_prefix, DEFAULT_TOPIC_PREFIX);
    let metrics_addr = pick(&args.metrics_addr, &file.metrics_addr, DEFAULT_METRICS_ADDR);
    let log_format = args
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Human);

    // File options first, then flags: a later setting of the same key wins in
    // librdkafka, and validation (reserved keys, syntax) is the Kafka crate's.
    let mut kafka_options = Vec::with_capacity(file.kafka_options.len() + args.kafka_options.len());
    for (key, value) in &file.kafka_options {
        kafka_options.push(KafkaOption::new(key, value).map_err(kafka_option_error)?);
    }
    for option in &args.kafka_options {
        kafka_options.push(KafkaOption::parse(option).map_err(kafka_option_error)?);
    }

    let topic_partitions = topics
        .partitions
        .or(file.topics.partitions)
        .unwrap_or(DEFAULT_TOPIC_PARTITIONS);
    let topic_replication = topics
        .replication_factor
        .or(file.topics.replication_factor)
        .unwrap_or(DEFAULT_TOPIC_REPLICATION);

    Ok(Settings {
        brokers: validate_brokers(&brokers)?,
        lake: parse_lake_url(&lake)?,
        topic_prefix: validate_topic_prefix(&topic_prefix)?,
        metrics_addr: metrics_addr.parse().map_err(|e: std::net::AddrParseError| {
            ConfigError::invalid(
                "metrics_addr",
                &metrics_addr,
                e.to_string(),
                "give an IP address and port, e.g. 127.0.0.1:9464 (use 0.0.0.0:9464 only when the port must be reachable from other hosts)",
            )
        })?,
        metrics_top_streams: validate_top_streams(
            file.metrics_top_streams
                .unwrap_or(DEFAULT_METRICS_TOP_STREAMS),
        )?,
        log_format,
        kafka_options,
        topic_partitions: validate_positive("topics.partitions", topic_partitions)?,
        topic_replication: validate_positive("topics.replication_factor", topic_replication)?,
        processor: file.processor.clone(),
        process: file.process.clone(),
        sink: file.sink.clone(),
        run: file.run.clone(),
        source: file.source.clone(),
        shutdown_deadline_seconds: validate_shutdown_deadline(
            args.shutdown_deadline_seconds
                .or(file.run.shutdown_deadline_seconds)
                .unwrap_or(DEFAULT_SHUTDOWN_DEADLINE_SECONDS),
        )?,
    })
}

fn validate_shutdown_deadline(seconds: u64) -> Result<u64, ConfigError> {
    if !(1..=3_600).contains(&seconds) {
        return Err(ConfigError::invalid(
            "run.shutdown_deadline_seconds",
            seconds.to_string(),
            "must be between 1 second and 1 hour",
            "give the stages time to publish open files and checkpoint (the default is 30); keep it below your orchestrator's kill timeout",
        ));
    }
    Ok(seconds)
}

fn validate_top_streams(n: usize) -> Result<usize, ConfigError> {
    if n > 1_000 {
        return Err(ConfigError::invalid(
            "metrics_top_streams",
            n.to_string(),
            "at most 1000 streams: each is one time series in Prometheus",
            "keep it small (the default is 10); per-stream history for all streams is in the lake's viewers table",
        ));
    }
    Ok(n)
}

/// Applies `playlake run` flags over the file's `[run]` section.
pub fn resolve_run(settings: &Settings, args: &RunArgs) -> Result<RunOptions, ConfigError> {
    let file = &settings.run;
    let names = if args.stages.is_empty() {
        file.stages.clone()
    } else {
        Some(args.stages.clone())
    };
    let source_configured = settings
        .source
        .dynamodb
        .as_ref()
        .is_some_and(|d| d.table.is_some());
    let mut stages = Vec::new();
    // By default: the processor and the sink, and the source when the file configures
    // one (`[source.dynamodb]` with a table).
    let defaults = || {
        StageKind::ALL
            .iter()
            .filter(|s| **s != StageKind::Source || source_configured)
            .map(|s| s.name().to_owned())
            .collect()
    };
    for name in names.unwrap_or_else(defaults) {
        let stage = match name.trim() {
            "process" => StageKind::Process,
            "sink" => StageKind::Sink,
            "source" if source_configured => StageKind::Source,
            "source" => {
                return Err(ConfigError::invalid(
                    "run.stages",
                    name.clone(),
                    "the source stage needs a table, and the config file names none",
                    "add `[source.dynamodb]` with `table = \"...\"` to the config file",
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    "run.stages",
                    name.clone(),
                    "not a stage",
                    "choose from source, process, sink",
                ))
            }
        };
        if !stages.contains(&stage) {
            stages.push(stage);
        }
    }
    if stages.is_empty() {
        return Err(ConfigError::invalid(
            "run.stages",
            "[]",
            "no stage to run",
            "list at least one of source, process, sink",
        ));
    }
    Ok(RunOptions {
        stages,
        shutdown_deadline_seconds: settings.shutdown_deadline_seconds,
        max_stage_restarts: file
            .max_stage_restarts
            .unwrap_or(DEFAULT_MAX_STAGE_RESTARTS),
    })
}

/// Applies `playlake sink` flags over the file's `[sink]` section. The sink
/// validates the combined values itself when it starts.
pub fn resolve_sink(
    settings: &Settings,
    args: &SinkArgs,
) -> Result<playlake_sink::SinkConfig, ConfigError> {
    let defaults = playlake_sink::SinkConfig::default();
    let file = &settings.sink;
    let table_names = if args.tables.is_empty() {
        file.tables.clone()
    } else {
        Some(args.tables.clone())
    };
    let tables = match table_names {
        None => defaults.tables.clone(),
        Some(names) => names
            .iter()
            .map(|name| {
                name.trim().parse::<playlake_schemas::Table>().map_err(|_| {
                    ConfigError::invalid(
                        "sink.tables",
                        name.clone(),
                        "not a lake table",
                        "choose from sessions, viewers, daily, events, errors, cdc",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let zone_name = args
        .time_zone
        .clone()
        .unwrap_or_else(|| settings.processor.time_zone.clone());
    let time_zone = zone_name.parse::<chrono_tz::Tz>().map_err(|_| {
        ConfigError::invalid(
            "time_zone",
            zone_name.clone(),
            "not a known IANA time zone",
            "use a name such as UTC, Asia/Seoul or Europe/Paris, the same as the processor's",
        )
    })?;
    let codec = sink_codec(file)?;
    // The cdc table reads the topics of the DynamoDB tables named here, or of the
    // one this config's source streams.
    let cdc_tables = if !args.cdc_tables.is_empty() {
        args.cdc_tables.clone()
    } else if let Some(names) = &file.cdc_tables {
        names.clone()
    } else {
        settings
            .source
            .dynamodb
            .as_ref()
            .and_then(|d| d.table.clone())
            .into_iter()
            .collect()
    };
    Ok(playlake_sink::SinkConfig {
        cdc_tables,
        topic_prefix: settings.topic_prefix.clone(),
        group_id: args
            .group_id
            .clone()
            .or_else(|| file.group_id.clone())
            .unwrap_or(defaults.group_id.clone()),
        tables,
        topic_partitions: settings.topic_partitions,
        flush_interval_seconds: args
            .flush_interval_seconds
            .or(file.flush_interval_seconds)
            .unwrap_or(defaults.flush_interval_seconds),
        target_file_size_bytes: args
            .target_file_size_bytes
            .or(file.target_file_size_bytes)
            .unwrap_or(defaults.target_file_size_bytes),
        max_rows_per_file: file.max_rows_per_file.unwrap_or(defaults.max_rows_per_file),
        memory_budget_bytes: args
            .memory_budget_bytes
            .or(file.memory_budget_bytes)
            .unwrap_or(defaults.memory_budget_bytes),
        time_zone,
        codec,
        drain: args.drain,
        ..defaults
    })
}

/// `[sink] compression` and `zstd_level` as the lake writer's codec.
fn sink_codec(file: &SinkFileConfig) -> Result<playlake_lake::Codec, ConfigError> {
    use playlake_lake::{Codec, DEFAULT_ZSTD_LEVEL};
    let level = file.zstd_level;
    match file.compression.as_deref().map(str::trim) {
        None | Some("zstd") => {
            let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
            if !(1..=22).contains(&level) {
                return Err(ConfigError::invalid(
                    "sink.zstd_level",
                    level.to_string(),
                    "not a zstd level",
                    "use 1 (fastest, the default) to 22 (smallest files); 3 is Spark's default",
                ));
            }
            Ok(Codec::Zstd { level })
        }
        Some("snappy") => match level {
            None => Ok(Codec::Snappy),
            Some(level) => Err(ConfigError::invalid(
                "sink.zstd_level",
                level.to_string(),
                "only applies to zstd, and compression is snappy",
                "remove zstd_level, or set compression = \"zstd\"",
            )),
        },
        Some(other) => Err(ConfigError::invalid(
            "sink.compression",
            other,
            "not a supported Parquet codec",
            "use zstd (the default) or snappy",
        )),
    }
}

/// Applies `playlake process` flags over the file's `[processor]` and `[process]`
/// sections and validates the result.
pub fn resolve_process(
    settings: &Settings,
    args: &ProcessArgs,
) -> Result<playlake_process::ProcessConfig, ConfigError> {
    let mut processor = settings.processor.clone();
    if let Some(v) = args.max_out_of_orderness_ms {
        processor.max_out_of_orderness_ms = v;
    }
    if let Some(v) = args.idle_timeout_ms {
        processor.idle_timeout_ms = v;
    }
    if let Some(v) = args.session_gap_ms {
        processor.session_gap_ms = v;
    }
    if let Some(v) = args.viewer_window_ms {
        processor.viewer_window_ms = v;
    }
    if let Some(v) = &args.time_zone {
        processor.time_zone = v.clone();
    }
    let validated = processor.validate().map_err(|e| {
        ConfigError::invalid(
            "processor",
            format!("{processor:?}"),
            e.to_string(),
            "fix the flag or the `[processor]` setting named above",
        )
    })?;
    let defaults = playlake_process::ProcessConfig::default();
    let file = &settings.process;
    let checkpoint_interval_ms = args
        .checkpoint_interval_ms
        .or(file.checkpoint_interval_ms)
        .unwrap_or(defaults.checkpoint_interval_ms);
    if !(100..=3_600_000).contains(&checkpoint_interval_ms) {
        return Err(ConfigError::invalid(
            "process.checkpoint_interval_ms",
            checkpoint_interval_ms.to_string(),
            "must be between 100 ms and 1 hour",
            "the default, 5000, suits most pipelines",
        ));
    }
    let repartition_partitions = validate_positive(
        "process.repartition_partitions",
        args.repartition_partitions
            .or(file.repartition_partitions)
            .unwrap_or(defaults.repartition_partitions),
    )?;
    let group_id = args
        .group_id
        .clone()
        .or_else(|| file.group_id.clone())
        .unwrap_or(defaults.group_id.clone());
    if group_id.trim().is_empty() {
        return Err(ConfigError::invalid(
            "process.group_id",
            group_id,
            "must not be empty",
            "every instance of one processor must use the same non-empty --group",
        ));
    }
    Ok(playlake_process::ProcessConfig {
        topic_prefix: settings.topic_prefix.clone(),
        group_id,
        checkpoint_interval_ms,
        settings: validated,
        drain: args.drain,
        repartition_partitions,
        topic_partitions: settings.topic_partitions,
        ..defaults
    })
}

/// Topic creation settings that only some commands take as flags.
#[derive(Debug, Default, Clone, Copy)]
pub struct TopicOverrides {
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
}

fn pick(flag: &Option<String>, file: &Option<String>, default: &str) -> String {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_string())
}

fn validate_positive(setting: &'static str, value: i32) -> Result<i32, ConfigError> {
    if value < 1 {
        return Err(ConfigError::invalid(
            setting,
            value.to_string(),
            "must be at least 1",
            format!("set {setting} to a positive number"),
        ));
    }
    Ok(value)
}

fn validate_brokers(brokers: &str) -> Result<String, ConfigError> {
    let fix = "give comma-separated host:port pairs, e.g. --brokers localhost:9092,broker2:9092";
    let list: Vec<&str> = brokers.split(',').map(str::trim).collect();
    for broker in &list {
        let valid = broker
            .rsplit_once(':')
            .map(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            .unwrap_or(false);
        if !valid {
            return Err(ConfigError::invalid(
                "brokers",
                brokers,
                format!("{broker:?} is not host:port"),
                fix,
            ));
        }
    }
    Ok(list.join(","))
}

/// Parses `file://...` and `s3://bucket/prefix`.
pub fn parse_lake_url(url: &str) -> Result<LakeUrl, ConfigError> {
    let fix = "use file://./lake, file:///absolute/path or s3://bucket/prefix";
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err(ConfigError::invalid("lake", url, "the path is empty", fix));
        }
        return Ok(LakeUrl::File(PathBuf::from(path)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(ConfigError::invalid(
                "lake",
                url,
                format!("{bucket:?} is not a valid S3 bucket name (3-63 lowercase letters, digits, '-', '.')"),
                fix,
            ));
        }
        return Ok(LakeUrl::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        });
    }
    Err(ConfigError::invalid("lake", url, "unsupported scheme", fix))
}

fn validate_topic_prefix(prefix: &str) -> Result<String, ConfigError> {
    // Kafka topic names: [a-zA-Z0-9._-], at most 249 characters; leave room for the
    // longest suffix (`.cdc.<table>`).
    let valid_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if prefix.is_empty() || prefix.len() > 120 || !valid_chars {
        return Err(ConfigError::invalid(
            "topic_prefix",
            prefix,
            "must be 1-120 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
            "choose a prefix such as `playback` or `prod.playback`",
        ));
    }
    Ok(prefix.to_string())
}

fn kafka_option_error(source: KafkaError) -> ConfigError {
    ConfigError::KafkaOption { source }
}

impl Settings {
    /// The settings as TOML, with secret values redacted.
    pub fn to_redacted_toml(&self) -> String {
        let file = FileConfig {
            brokers: Some(self.brokers.clone()),
            lake: Some(self.lake.to_string()),
            topic_prefix: Some(self.topic_prefix.clone()),
            metrics_addr: Some(self.metrics_addr.to_string()),
            metrics_top_streams: Some(self.metrics_top_streams),
            log_format: Some(self.log_format),
            kafka_options: self
                .kafka_options
                .iter()
                .map(|o| (o.key.clone(), o.display_value().to_string()))
                .collect(),
            topics: TopicsFileConfig {
                partitions: Some(self.topic_partitions),
                replication_factor: Some(self.topic_replication),
            },
            processor: self.processor.clone(),
            process: self.process.clone(),
            sink: self.sink.clone(),
            run: RunFileConfig {
                shutdown_deadline_seconds: Some(self.shutdown_deadline_seconds),
                ..self.run.clone()
            },
            source: self.source.clone(),
        };
        toml::to_string_pretty(&file).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CommonArgs {
        CommonArgs::default()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = resolve(&args(), &FileConfig::default(), TopicOverrides::default()).unwrap();
        assert_eq!(s.brokers, "localhost:9092");
        assert_eq!(s.lake, LakeUrl::File(PathBuf::from("./lake")));
        assert_eq!(s.topic_prefix, "playback");
        assert_eq!(s.metrics_addr.to_string(), "127.0.0.1:9464");
        assert_eq!(s.topic_partitions, 6);
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file = parse_file(
            Path::new("t.toml"),
            "brokers = \"file:1\"\ntopic_prefix = \"fromfile\"\n[topics]\npartitions = 3\n",
        )
        .unwrap();
        let mut a = args();
        a.brokers = Some("flag:2".into());
        let s = resolve(&a, &file, TopicOverrides::default()).unwrap();
        assert_eq!(s.brokers, "flag:2");
        assert_eq!(s.topic_prefix, "fromfile");
        assert_eq!(s.topic_partitions, 3);
        let s = resolve(
            &a,
            &file,
            TopicOverrides {
                partitions: Some(12),
                replication_factor: None,
            },
        )
        .unwrap();
        assert_eq!(s.topic_partitions, 12);
    }

    #[test]
    fn unknown_file_keys_are_rejected_with_their_name() {
        let err = parse_file(Path::new("t.toml"), "brokerz = \"x:1\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("brokerz"), "{msg}");
        assert!(msg.contains("t.toml"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_setting_and_the_fix() {
        let cases = [
            ("brokers", "nohostport"),
            ("lake", "hdfs://x"),
            ("lake", "s3://Bad_Bucket/x"),
            ("metrics_addr", "localhost"),
            ("topic_prefix", "bad/prefix"),
        ];
        for (setting, value) in cases {
            let mut a = args();
            match setting {
                "brokers" => a.brokers = Some(value.into()),
                "lake" => a.lake = Some(value.into()),
                "metrics_addr" => a.metrics_addr = Some(value.into()),
                _ => a.topic_prefix = Some(value.into()),
            }
            let err = resolve(&a, &FileConfig::default(), TopicOverrides::default()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(setting), "{setting}: {msg}");
            assert!(msg.contains("hint:"), "{setting}: {msg}");
        }
    }

    #[test]
    fn the_cdc_table_reads_the_sources_table_unless_told_otherwise() {
        let with_cdc = SinkArgs {
            tables: vec!["cdc".into(), "events".into()],
            ..SinkArgs::default()
        };
        let file = parse_file(
            Path::new("t.toml"),
            "[source.dynamodb]\ntable = \"plays\"\n",
        )
        .unwrap();
        let s = resolve(&args(), &file, TopicOverrides::default()).unwrap();
        let topics = resolve_sink(&s, &with_cdc).unwrap().topics().unwrap();
        assert!(topics.contains_key("playback.cdc.plays"), "{topics:?}");
        // The flag wins over the file.
        let flag = SinkArgs {
            cdc_tables: vec!["a".into(), "b".into()],
            ..with_cdc.clone()
        };
        let topics = resolve_sink(&s, &flag).unwrap().topics().unwrap();
        assert!(topics.contains_key("playback.cdc.a") && topics.contains_key("playback.cdc.b"));
        assert!(!topics.contains_key("playback.cdc.plays"));
        // Without any table name the sink says how to give one.
        let bare = resolve(&args(), &FileConfig::default(), TopicOverrides::default()).unwrap();
        let err = resolve_sink(&bare, &with_cdc)
            .unwrap()
            .topics()
            .unwrap_err();
        assert!(err.to_string().contains("cdc_tables"), "{err}");
    }

    #[test]
    fn compression_and_zstd_level_choose_the_codec() {
        use playlake_lake::Codec;
        let codec = |text: &str| {
            let file = parse_file(Path::new("t.toml"), text).unwrap();
            let s = resolve(&args(), &file, TopicOverrides::default()).unwrap();
            resolve_sink(&s, &SinkArgs::default()).map(|c| c.codec)
        };
        assert_eq!(codec("").unwrap(), Codec::default());
        assert_eq!(
            codec("[sink]\nzstd_level = 9\n").unwrap(),
            Codec::Zstd { level: 9 }
        );
        assert_eq!(
            codec("[sink]\ncompression = \"snappy\"\n").unwrap(),
            Codec::Snappy
        );
        for (text, setting) in [
            ("[sink]\nzstd_level = 0\n", "sink.zstd_level"),
            ("[sink]\nzstd_level = 23\n", "sink.zstd_level"),
            (
                "[sink]\ncompression = \"snappy\"\nzstd_level = 3\n",
                "sink.zstd_level",
            ),
            ("[sink]\ncompression = \"gzip\"\n", "sink.compression"),
        ] {
            let msg = codec(text).unwrap_err().to_string();
            assert!(
                msg.contains(setting) && msg.contains("hint:"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn run_stages_and_deadline_resolve_and_validate() {
        let file = parse_file(
            Path::new("t.toml"),
            "metrics_top_streams = 5\n[run]\nstages = [\"sink\"]\nshutdown_deadline_seconds = 9\n",
        )
        .unwrap();
        let s = resolve(&args(), &file, TopicOverrides::default()).unwrap();
        assert_eq!(s.metrics_top_streams, 5);
        let run = resolve_run(&s, &RunArgs::default()).unwrap();
        assert_eq!(run.stages, [StageKind::Sink]);
        assert_eq!(run.shutdown_deadline_seconds, 9);
        let flags = RunArgs {
            stages: vec!["process".into(), "sink".into()],
        };
        let run = resolve_run(&s, &flags).unwrap();
        assert_eq!(run.stages, [StageKind::Process, StageKind::Sink]);
        assert_eq!(run.shutdown_deadline_seconds, 9);
        let mut flag = args();
        flag.shutdown_deadline_seconds = Some(20);
        let s = resolve(&flag, &file, TopicOverrides::default()).unwrap();
        assert_eq!(s.shutdown_deadline_seconds, 20, "the flag beats the file");
        assert_eq!(
            resolve_run(&s, &flags).unwrap().shutdown_deadline_seconds,
            20
        );
        let defaults = resolve(&args(), &FileConfig::default(), TopicOverrides::default()).unwrap();
        let run = resolve_run(&defaults, &RunArgs::default()).unwrap();
        assert_eq!(
            run.stages,
            [StageKind::Process, StageKind::Sink],
            "no source without a table"
        );
        let with_table = parse_file(
            Path::new("t.toml"),
            "[source.dynamodb]\ntable = \"playback\"\n",
        )
        .unwrap();
        let with_table = resolve(&args(), &with_table, TopicOverrides::default()).unwrap();
        let run = resolve_run(&with_table, &RunArgs::default()).unwrap();
        assert_eq!(run.stages, StageKind::ALL, "a configured source runs too");
        assert_eq!(
            run.shutdown_deadline_seconds,
            DEFAULT_SHUTDOWN_DEADLINE_SECONDS
        );
        for stages in [vec!["sinks"], vec!["source"]] {
            let bad = RunArgs {
                stages: stages.into_iter().map(String::from).collect(),
            };
            let msg = resolve_run(&defaults, &bad).unwrap_err().to_string();
            assert!(msg.contains("run.") && msg.contains("hint:"), "{msg}");
        }
        for deadline in [0, 3_601] {
            let mut bad = args();
            bad.shutdown_deadline_seconds = Some(deadline);
            let msg = resolve(&bad, &FileConfig::default(), TopicOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("run.shutdown_deadline_seconds") && msg.contains("hint:"),
                "{msg}"
            );
        }
        let mut a = args();
        a.metrics_addr = None;
        let too_many = parse_file(Path::new("t.toml"), "metrics_top_streams = 100000\n").unwrap();
        let msg = resolve(&a, &too_many, TopicOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("metrics_top_streams"), "{msg}");
    }

    #[test]
    fn s3_lake_urls_parse() {
        assert_eq!(
            parse_lake_url("s3://my-bucket/a/b/").unwrap(),
            LakeUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            parse_lake_url("s3://my-bucket").unwrap().to_string(),
            "s3://my-bucket"
        );
    }

    #[test]
    fn kafka_options_merge_and_reserved_keys_are_refused() {
        let file = parse_file(
            Path::new("t.toml"),
            "[kafka_options]\n\"security.protocol\" = \"SSL\"\n\"sasl.password\" = \"hunter2\"\n",
        )
        .unwrap();
        let mut a = args();
        a.kafka_options = vec!["security.protocol=SASL_SSL".into()];
        let s = resolve(&a, &file, TopicOverrides::default()).unwrap();
        let printed = s.to_redacted_toml();
        assert!(
            printed.contains("\"security.protocol\" = \"SASL_SSL\""),
            "{printed}"
        );
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"), "{printed}");

        a.kafka_options = vec!["enable.auto.commit=true".into()];
        let msg = format!(
            "{:#}",
            anyhow::Error::from(resolve(&a, &file, TopicOverrides::default()).unwrap_err())
        );
        assert!(msg.contains("enable.auto.commit"), "{msg}");

        a.kafka_options = vec!["sasl.password".into()];
        let msg = format!(
            "{:#}",
            anyhow::Error::from(resolve(&a, &file, TopicOverrides::default()).unwrap_err())
        );
        assert!(msg.contains("key=value"), "{msg}");
    }
}
