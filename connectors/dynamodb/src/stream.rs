//! DynamoDB Streams calls: the stream of a table, its shards (DescribeStream, every
//! page), iterators and records. Thin wrappers that turn SDK errors into
//! [`SourceError`] with the AWS error code kept, so the reader can tell throttling,
//! expired iterators and trimmed data apart.

use aws_sdk_dynamodbstreams::config::retry::RetryConfig;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

use crate::aws::{shard_info, Clients};
use crate::error::SourceError;
use crate::lease::Checkpoint;
use crate::shards::{ShardGraph, ShardInfo};

/// The table's current stream and its key attribute names.
#[derive(Clone, Debug)]
pub struct TableStream {
    pub stream_arn: String,
    pub key_attributes: Vec<String>,
    /// DescribeTable's approximate item count (updated about every 6 h on AWS).
    pub approximate_item_count: i64,
    pub size_bytes: i64,
}

pub async fn describe_table(clients: &Clients, table: &str) -> Result<TableStream, SourceError> {
    let out = clients
        .dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| SourceError::aws("DescribeTable", e))?;
    let t = out.table().ok_or_else(|| SourceError::Malformed {
        what: "DescribeTable response",
        detail: "no Table".into(),
    })?;
    let stream_arn = t
        .latest_stream_arn()
        .filter(|_| {
            t.stream_specification()
                .is_none_or(|spec| spec.stream_enabled())
        })
        .ok_or_else(|| SourceError::NoStream {
            table: table.to_string(),
        })?
        .to_string();
    Ok(TableStream {
        stream_arn,
        key_attributes: t
            .key_schema()
            .iter()
            .map(|k| k.attribute_name().to_string())
            .collect(),
        approximate_item_count: t.item_count().unwrap_or(0),
        size_bytes: t.table_size_bytes().unwrap_or(0),
    })
}

/// Every shard of the stream (DescribeStream, following `LastEvaluatedShardId`).
pub async fn describe_stream(
    clients: &Clients,
    stream_arn: &str,
) -> Result<ShardGraph, SourceError> {
    let mut pages: Vec<Vec<ShardInfo>> = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = clients
            .streams
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|e| SourceError::aws("DescribeStream", e))?;
        let Some(desc) = out.stream_description() else {
            break;
        };
        pages.push(desc.shards().iter().filter_map(shard_info).collect());
        match desc.last_evaluated_shard_id() {
            Some(last) if !last.is_empty() => start = Some(last.to_string()),
            _ => break,
        }
    }
    Ok(ShardGraph::from_describe(pages))
}

/// Who retries a failed GetShardIterator or GetRecords call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// The SDK's standard retries: for one-off reads whose caller has no backoff of
    /// its own (the backfill's tip).
    Sdk,
    /// None in the SDK: the caller backs off per shard and counts every retry by
    /// reason. The SDK's standard retries would absorb throttling
    /// (LimitExceededException is one of its throttling codes), so the source's
    /// backoff and `retries_total{reason="throttle"}` would never see it, and a
    /// throttled shard would hold up the whole round while the SDK sleeps.
    Caller,
}

impl Retries {
    /// The per-call configuration override, if any.
    fn overrides(self) -> Option<aws_sdk_dynamodbstreams::config::Builder> {
        match self {
            Retries::Sdk => None,
            Retries::Caller => Some(
                aws_sdk_dynamodbstreams::config::Builder::default()
                    .retry_config(RetryConfig::disabled()),
            ),
        }
    }
}

/// An iterator positioned right after `checkpoint` (or at the oldest record).
pub async fn iterator_after(
    clients: &Clients,
    stream_arn: &str,
    shard_id: &str,
    checkpoint: &Checkpoint,
    retries: Retries,
) -> Result<Option<String>, SourceError> {
    let req = clients
        .streams
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard_id);
    let req = match checkpoint {
        Checkpoint::After(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
        Checkpoint::TrimHorizon | Checkpoint::ShardEnd => {
            req.shard_iterator_type(ShardIteratorType::TrimHorizon)
        }
    };
    let sent = match retries.overrides() {
        Some(config) => req.customize().config_override(config).send().await,
        None => req.send().await,
    };
    let out = sent.map_err(|e| SourceError::aws("GetShardIterator", e))?;
    Ok(out.shard_iterator().map(str::to_string))
}

/// One GetRecords call: the records and the next iterator (`None`: the shard is
/// closed and read to its end).
pub async fn get_records(
    clients: &Clients,
    iterator: &str,
    limit: i32,
    retries: Retries,
) -> Result<(Vec<Record>, Option<String>), SourceError> {
    let req = clients
        .streams
        .get_records()
        .shard_iterator(iterator)
        .limit(limit);
    let sent = match retries.overrides() {
        Some(config) => req.customize().config_override(config).send().await,
        None => req.send().await,
    };
    let out = sent.map_err(|e| SourceError::aws("GetRecords", e))?;
    Ok((
        out.records().to_vec(),
        out.next_shard_iterator().map(str::to_string),
    ))
}

/// Reads an open shard from its oldest record to the current end and returns the
/// last sequence number (`None` when it holds no record): the backfill's position
/// taken before the Scan. An empty GetRecords response counts as the end.
pub async fn tip(
    clients: &Clients,
    stream_arn: &str,
    shard: &ShardInfo,
    limit: i32,
) -> Result<Option<String>, SourceError> {
    let mut last: Option<String> = None;
    let mut iterator = iterator_after(
        clients,
        stream_arn,
        &shard.shard_id,
        &Checkpoint::TrimHorizon,
        Retries::Sdk,
    )
    .await?;
    while let Some(it) = iterator {
        let (records, next) = get_records(clients, &it, limit, Retries::Sdk).await?;
        if let Some(seq) = records
            .last()
            .and_then(|r| r.dynamodb())
            .and_then(|d| d.sequence_number())
        {
            last = Some(seq.to_string());
        }
        if records.is_empty() {
            break;
        }
        iterator = next;
    }
    Ok(last)
}
