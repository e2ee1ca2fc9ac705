//! What the sink reads and how it writes: [`SinkConfig`], and what a run did:
//! [`SinkReport`].
//!
//! Data flow: the `playlake` binary builds a [`SinkConfig`] from its command line
//! and config file and passes it to [`crate::run`]; [`SinkConfig::topics`] maps each
//! selected table to its input topic, and [`SinkConfig::roll_policy`] turns the file
//! sizes and intervals into the lake writer's [`RollPolicy`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono_tz::Tz;
use playlake_lake::{Admit, Codec, ParquetOptions, RollPolicy};
use playlake_schemas::Table;

use crate::error::{Result, SinkError};

/// Settings of one sink instance. Units are in the field names.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Topic prefix (`playback`): tables are read from `<prefix>.sessions`,
    /// `<prefix>.viewers`, `<prefix>.daily`, `<prefix>.events`, `<prefix>.dlq` and
    /// `<prefix>.cdc.<table>`.
    pub topic_prefix: String,
    /// Consumer group; also part of the checkpoint scopes
    /// (`_playlake/checkpoints/sink/<group>.<topic>-<partition>/`). ASCII letters,
    /// digits, `.`, `_`, `-`.
    pub group_id: String,
    /// Tables to sink (default: sessions, viewers, daily, events, errors).
    /// `Table::Cdc` needs [`SinkConfig::cdc_tables`].
    pub tables: Vec<Table>,
    /// DynamoDB table names whose `<prefix>.cdc.<name>` topics feed the `cdc` table.
    pub cdc_tables: Vec<String>,
    /// Partitions of an input topic the sink creates because it is missing.
    pub topic_partitions: i32,
    /// Roll a file once it has been open this long, so idle partitions show up.
    pub flush_interval_seconds: u64,
    /// Roll a file once its encoded size reaches this (128 MiB default).
    pub target_file_size_bytes: u64,
    /// Roll a file once it holds this many rows.
    pub max_rows_per_file: u64,
    /// Keep all open files together under this much memory.
    pub memory_budget_bytes: u64,
    /// Time zone of the `dt` and `hour` partition values (follow the processor's).
    pub time_zone: Tz,
    /// Compression of the Parquet files.
    pub codec: Codec,
    /// Re-emitted results are deduplicated when they arrive within this long of the
    /// first copy (record timestamps).
    pub dedup_retention_seconds: u64,
    /// Give up on lake storage that stays down longer than this (transient errors
    /// are retried with backoff until then).
    pub storage_retry_max_seconds: u64,
    /// Read every assigned partition to its end, write and commit every file, return.
    pub drain: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        let policy = RollPolicy::default();
        Self {
            topic_prefix: "playback".into(),
            group_id: "playlake-sink".into(),
            tables: vec![
                Table::Sessions,
                Table::Viewers,
                Table::Daily,
                Table::Events,
                Table::Errors,
            ],
            cdc_tables: Vec::new(),
            topic_partitions: 6,
            flush_interval_seconds: policy.flush_interval.as_secs(),
            target_file_size_bytes: policy.target_file_bytes,
            max_rows_per_file: policy.max_file_rows,
            memory_budget_bytes: policy.memory_budget_bytes,
            time_zone: Tz::UTC,
            codec: Codec::default(),
            dedup_retention_seconds: 24 * 3600,
            storage_retry_max_seconds: 300,
            drain: false,
        }
    }
}

impl SinkConfig {
    /// Every input topic with the table it feeds, sorted by topic.
    pub fn topics(&self) -> Result<BTreeMap<String, Table>> {
        let mut topics = BTreeMap::new();
        for table in &self.tables {
            if *table == Table::Cdc {
                if self.cdc_tables.is_empty() {
                    return Err(SinkError::config(
                        "cdc_tables",
                        "the cdc table needs the DynamoDB table names whose cdc topics to read (--cdc-tables, `[sink] cdc_tables`, or `[source.dynamodb] table`)",
                    ));
                }
                for name in &self.cdc_tables {
                    let topic = format!("{}.{}{name}", self.topic_prefix, table.topic_suffix());
                    topics.insert(topic, Table::Cdc);
                }
            } else {
                topics.insert(
                    format!("{}.{}", self.topic_prefix, table.topic_suffix()),
                    *table,
                );
            }
        }
        if topics.is_empty() {
            return Err(SinkError::config("tables", "select at least one table"));
        }
        Ok(topics)
    }

    /// The lake writer's rolling rules.
    pub fn roll_policy(&self) -> RollPolicy {
        RollPolicy {
            target_file_bytes: self.target_file_size_bytes,
            max_file_rows: self.max_rows_per_file,
            flush_interval: Duration::from_secs(self.flush_interval_seconds),
            memory_budget_bytes: self.memory_budget_bytes,
            ..RollPolicy::default()
        }
    }

    /// The Parquet encoding settings.
    pub fn parquet_options(&self) -> ParquetOptions {
        ParquetOptions {
            codec: self.codec,
            background_encoding: true,
            ..ParquetOptions::default()
        }
    }

    /// Checks what the lake writer does not check itself.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.topic_prefix.is_empty() {
            return Err(SinkError::config("topic_prefix", "must not be empty"));
        }
        if self.group_id.is_empty()
            || !self
                .group_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(SinkError::config(
                "group_id",
                "use ASCII letters, digits, `.`, `_` and `-` (it names checkpoint scopes)",
            ));
        }
        if self.topic_partitions <= 0 {
            return Err(SinkError::config(
                "topic_partitions",
                "must be greater than 0",
            ));
        }
        if self.storage_retry_max_seconds == 0 {
            return Err(SinkError::config(
                "storage_retry_max_seconds",
                "must be greater than 0",
            ));
        }
        self.roll_policy()
            .validate()
            .map_err(|e| SinkError::config("roll policy", e.to_string()))?;
        self.topics().map(|_| ())
    }
}

/// What one run of the sink did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkReport {
    /// Rows in the files this run published, per table name (a file re-published
    /// while replaying a recorded cut counts again).
    pub rows_written: BTreeMap<String, u64>,
    /// Files published.
    pub files_written: u64,
    /// Bytes of the files published.
    pub bytes_written: u64,
    /// Files rolled, per reason (`size`, `rows`, `interval`, `memory`, `cut`).
    pub files_by_reason: BTreeMap<String, u64>,
    /// Records dropped because an earlier record had the same natural key.
    pub duplicates_skipped: u64,
    /// Records skipped because their rows were already in durable files (replay).
    pub durable_skipped: u64,
    /// Records that hold no row of their table (bad JSON, bad DLQ headers, no
    /// value, a timestamp without a date); each is logged with its coordinates.
    pub undecodable_records: u64,
    /// `events` records that fail validation: they are in the DLQ (the `errors`
    /// table), not in `events`.
    pub invalid_events_skipped: u64,
    /// Partitions dropped because another instance's checkpoint fenced this one.
    pub fenced_partitions: u64,
    /// Rows a local (file://) lake cannot hold: a partition directory name longer
    /// than the file system's 255 bytes (a valid stream_id may be 256 bytes, and
    /// escaping can triple it). Each is logged with its coordinates; S3 lakes have
    /// no such limit.
    pub path_too_long_skipped: u64,
}

impl SinkReport {
    /// Total rows written over every table.
    pub fn total_rows(&self) -> u64 {
        self.rows_written.values().sum()
    }

    /// Counts a row the dedup decided to skip; true when it is to be written.
    pub(crate) fn tally(&mut self, admit: Admit) -> bool {
        match admit {
            Admit::Write => return true,
            Admit::Duplicate => self.duplicates_skipped += 1,
            Admit::Durable => self.durable_skipped += 1,
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tables_map_to_their_topics() {
        let config = SinkConfig::default();
        let topics = config.topics().unwrap();
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "playback.daily",
                "playback.dlq",
                "playback.events",
                "playback.sessions",
                "playback.viewers"
            ]
        );
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cdc = SinkConfig {
            tables: vec![Table::Cdc],
            ..SinkConfig::default()
        };
        assert!(matches!(
            cdc.validate(),
            Err(SinkError::Config {
                setting: "cdc_tables",
                ..
            })
        ));
        let cdc = SinkConfig {
            cdc_tables: vec!["plays".into()],
            ..cdc
        };
        assert_eq!(cdc.topics().unwrap()["playback.cdc.plays"], Table::Cdc);
        let bad = SinkConfig {
            group_id: "a/b".into(),
            ..SinkConfig::default()
        };
        assert!(bad.validate().is_err());
        let zero = SinkConfig {
            flush_interval_seconds: 0,
            ..SinkConfig::default()
        };
        assert!(zero.validate().is_err());
    }
}
