//! Settings of the DynamoDB source: `[source.dynamodb]` as written in the config
//! file ([`DynamoFileConfig`]), and the validated [`SourceConfig`] the run loop
//! trusts. The binary merges flags and environment over the file and calls
//! [`SourceConfig::validate`]; errors name the setting and say how to fix it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::SourceError;
use crate::mapping::MappingConfig;

/// What to do when a shard's unread records were trimmed by the 24 h retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrimmedDataPolicy {
    /// Log an error, count it, and stop with a non-zero exit (changes are lost; an
    /// operator must decide, e.g. re-run with `--backfill`).
    #[default]
    Fail,
    /// Log an error, count it, and continue from the oldest record still kept.
    Continue,
}

/// `[source.dynamodb]` as written in the file; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamoFileConfig {
    /// The DynamoDB table whose stream to read.
    pub table: Option<String>,
    /// DynamoDB/Streams endpoint (moto, LocalStack); default: the AWS variables.
    pub endpoint_url: Option<String>,
    /// Table holding the leases and checkpoints [default: playlake-source-<table>].
    pub lease_table: Option<String>,
    /// This process's name in the leases [default: host name + process id].
    pub worker_id: Option<String>,
    pub lease_duration_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub shard_sync_interval_ms: Option<u64>,
    pub max_records_per_get: Option<i32>,
    pub max_backoff_ms: Option<u64>,
    pub on_trimmed_data: Option<TrimmedDataPolicy>,
    pub backfill_segments: Option<i32>,
    pub backfill_read_capacity_units_per_second: Option<f64>,
    pub backfill_page_size_items: Option<i32>,
    /// `[source.dynamodb.mapping]`: playback table -> `<prefix>.events`.
    pub mapping: Option<MappingConfig>,
}

/// The validated settings of one source process.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub table: String,
    pub topic_prefix: String,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub lease_table: String,
    pub worker_id: String,
    /// A lease whose counter has not moved for this long is taken over.
    pub lease_duration_ms: u64,
    /// Pause before polling a shard again after it returned no records.
    pub poll_interval_ms: u64,
    /// How often DescribeStream looks for new shards.
    pub shard_sync_interval_ms: u64,
    /// GetRecords `Limit` (AWS allows at most 1000).
    pub max_records_per_get: i32,
    /// Ceiling of the exponential backoff on throttling and transient errors.
    pub max_backoff_ms: u64,
    pub on_trimmed_data: TrimmedDataPolicy,
    /// Exit 0 once every owned shard returned no new records and its checkpoint is
    /// written (tests and batch runs).
    pub until_caught_up: bool,
    /// Snapshot the table first (see `backfill.rs`).
    pub backfill: bool,
    pub backfill_segments: i32,
    /// The Scan's budget, so the live table is not throttled.
    pub backfill_read_capacity_units_per_second: f64,
    pub backfill_page_size_items: i32,
    pub mapping: Option<MappingConfig>,
}

impl SourceConfig {
    pub const DEFAULT_LEASE_DURATION_MS: u64 = 10_000;
    pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
    pub const DEFAULT_SHARD_SYNC_INTERVAL_MS: u64 = 10_000;
    pub const DEFAULT_MAX_RECORDS_PER_GET: i32 = 1_000;
    pub const DEFAULT_MAX_BACKOFF_MS: u64 = 10_000;
    pub const DEFAULT_BACKFILL_SEGMENTS: i32 = 4;
    pub const DEFAULT_BACKFILL_RCU_PER_SECOND: f64 = 100.0;
    pub const DEFAULT_BACKFILL_PAGE_SIZE_ITEMS: i32 = 500;

    /// Defaults for `table`, overridden by the file section.
    pub fn from_file(table: String, topic_prefix: String, file: &DynamoFileConfig) -> Self {
        Self {
            lease_table: file
                .lease_table
                .clone()
                .unwrap_or_else(|| format!("playlake-source-{table}")),
            table,
            topic_prefix,
            endpoint_url: file.endpoint_url.clone(),
            region: None,
            worker_id: file.worker_id.clone().unwrap_or_else(default_worker_id),
            lease_duration_ms: file
                .lease_duration_ms
                .unwrap_or(Self::DEFAULT_LEASE_DURATION_MS),
            poll_interval_ms: file
                .poll_interval_ms
                .unwrap_or(Self::DEFAULT_POLL_INTERVAL_MS),
            shard_sync_interval_ms: file
                .shard_sync_interval_ms
                .unwrap_or(Self::DEFAULT_SHARD_SYNC_INTERVAL_MS),
            max_records_per_get: file
                .max_records_per_get
                .unwrap_or(Self::DEFAULT_MAX_RECORDS_PER_GET),
            max_backoff_ms: file.max_backoff_ms.unwrap_or(Self::DEFAULT_MAX_BACKOFF_MS),
            on_trimmed_data: file.on_trimmed_data.unwrap_or_default(),
            until_caught_up: false,
            backfill: false,
            backfill_segments: file
                .backfill_segments
                .unwrap_or(Self::DEFAULT_BACKFILL_SEGMENTS),
            backfill_read_capacity_units_per_second: file
                .backfill_read_capacity_units_per_second
                .unwrap_or(Self::DEFAULT_BACKFILL_RCU_PER_SECOND),
            backfill_page_size_items: file
                .backfill_page_size_items
                .unwrap_or(Self::DEFAULT_BACKFILL_PAGE_SIZE_ITEMS),
            mapping: file.mapping.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), SourceError> {
        let invalid = |setting: &'static str, value: String, reason: &str, fix: &str| {
            Err(SourceError::Config {
                setting,
                value,
                reason: reason.into(),
                fix: fix.into(),
            })
        };
        let table_ok = (3..=255).contains(&self.table.len())
            && self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !table_ok {
            return invalid(
                "source.dynamodb.table",
                self.table.clone(),
                "not a DynamoDB table name",
                "pass --table with 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'",
            );
        }
        if self.lease_table.len() < 3 || self.lease_table == self.table {
            return invalid(
                "source.dynamodb.lease_table",
                self.lease_table.clone(),
                "must be a separate table of at least 3 characters",
                "leave it unset (default playlake-source-<table>) or name another table",
            );
        }
        if self.worker_id.is_empty() {
            return invalid(
                "source.dynamodb.worker_id",
                String::new(),
                "empty",
                "leave it unset (host name and process id) or give each process a distinct name",
            );
        }
        if self.lease_duration_ms < 1_000 {
            return invalid(
                "source.dynamodb.lease_duration_ms",
                self.lease_duration_ms.to_string(),
                "shorter than 1 s",
                "use at least 1000; renewals happen every third of it",
            );
        }
        if self.poll_interval_ms == 0
            || self.shard_sync_interval_ms == 0
            || self.max_backoff_ms == 0
        {
            return invalid(
                "source.dynamodb.poll_interval_ms/shard_sync_interval_ms/max_backoff_ms",
                "0".into(),
                "must be positive",
                "use e.g. 1000 / 10000 / 10000",
            );
        }
        if !(1..=1000).contains(&self.max_records_per_get) {
            return invalid(
                "source.dynamodb.max_records_per_get",
                self.max_records_per_get.to_string(),
                "GetRecords takes 1 to 1000",
                "use 1000 (the AWS maximum) unless records are very large",
            );
        }
        if !(1..=1_000_000).contains(&self.backfill_segments) {
            return invalid(
                "source.dynamodb.backfill_segments",
                self.backfill_segments.to_string(),
                "a parallel Scan takes 1 to 1000000 segments",
                "use about one segment per 2 GB of table, e.g. 4",
            );
        }
        if !(self.backfill_read_capacity_units_per_second > 0.0
            && self.backfill_read_capacity_units_per_second.is_finite())
        {
            return invalid(
                "source.dynamodb.backfill_read_capacity_units_per_second",
                self.backfill_read_capacity_units_per_second.to_string(),
                "must be a positive number",
                "use a share of the table's provisioned read capacity, e.g. 100",
            );
        }
        if !(1..=10_000).contains(&self.backfill_page_size_items) {
            return invalid(
                "source.dynamodb.backfill_page_size_items",
                self.backfill_page_size_items.to_string(),
                "must be 1 to 10000",
                "use e.g. 500",
            );
        }
        Ok(())
    }

    /// `<prefix>.cdc.<table>`.
    pub fn cdc_topic(&self) -> String {
        format!("{}.cdc.{}", self.topic_prefix, self.table)
    }

    /// `<prefix>.events` (mapping output).
    pub fn events_topic(&self) -> String {
        format!("{}.events", self.topic_prefix)
    }

    /// `<prefix>.dlq` (unmappable items).
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.topic_prefix)
    }

    pub fn lease_duration(&self) -> Duration {
        Duration::from_millis(self.lease_duration_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_mistakes_say_how_to_fix() {
        let c = SourceConfig::from_file(
            "plays".into(),
            "playback".into(),
            &DynamoFileConfig::default(),
        );
        c.validate().unwrap();
        assert_eq!(c.lease_table, "playlake-source-plays");
        assert_eq!(c.cdc_topic(), "playback.cdc.plays");
        let bad = SourceConfig {
            max_records_per_get: 5000,
            ..c.clone()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert!(
            msg.contains("max_records_per_get") && msg.contains("hint:"),
            "{msg}"
        );
        let bad = SourceConfig {
            table: "a b".into(),
            ..c
        };
        assert!(bad.validate().unwrap_err().to_string().contains("hint:"));
    }

    #[test]
    fn file_section_rejects_unknown_keys() {
        let err = serde_json::from_str::<DynamoFileConfig>(r#"{"tabel": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"));
        let ok: DynamoFileConfig = serde_json::from_str(
            r#"{"table": "x", "on_trimmed_data": "continue",
                "mapping": {"uuid": "SK", "stream_id": "PK"}}"#,
        )
        .unwrap();
        assert_eq!(ok.on_trimmed_data, Some(TrimmedDataPolicy::Continue));
    }
}
