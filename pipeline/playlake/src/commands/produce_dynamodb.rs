//! `playlake produce --dynamodb-table T`: the generated traffic as DynamoDB items, so
//! the DynamoDB source (`playlake source dynamodb`) can be exercised end to end.
//!
//! Data flow:
//! ```text
//! Generator --> parse_playback_event (the processor's parser: event_id given or derived)
//!   --> ItemMapping::event_item   one item per event, attribute names from the
//!                                 source's `[source.dynamodb.mapping]`
//!   --> batches of 25 (no two writes of one key in a batch: DynamoDB rejects that)
//!   --> `writers` concurrent BatchWriteItem calls, UnprocessedItems retried with backoff
//! ```
//!
//! The source's mapping turns each item's stream record back into the very event that
//! was generated (same event_id, same fields), because every field is written to the
//! attribute the mapping reads it from. Duplicates are the same item written again
//! later (on AWS an unchanged item makes no stream record; moto emits a MODIFY that
//! maps to the same event_id, which the processor deduplicates). Bad records become
//! items the mapping rejects to `<prefix>.dlq` with a reason: the generator's byte
//! defects (truncated JSON, invalid UTF-8) cannot exist in an item, so each
//! [`BadReason`] has an item-level counterpart, see [`item_reason_code`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ScalarAttributeType, WriteRequest};
use playlake_dynamodb::mapping::EpochUnit;
use playlake_dynamodb::MappingConfig;
use playlake_generator::{BadReason, GeneratedRecord, Generator, RecordKind};
use playlake_schemas::{parse_playback_event, EventType, PlaybackEvent, TimestampMs};
use tokio::task::JoinSet;

use super::produce::{Pacer, Sent};

/// BatchWriteItem takes at most 25 writes.
pub const BATCH_ITEMS: usize = 25;
/// Attempts of one batch while DynamoDB keeps returning UnprocessedItems (throttling);
/// with the backoff below that is about a minute before giving up.
const MAX_ATTEMPTS: u32 = 15;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub type Item = HashMap<String, AttributeValue>;

/// Which attribute holds which playback field: the source's mapping, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMapping {
    pub uuid: String,
    pub stream_id: String,
    pub user_id: String,
    pub event_type: String,
    pub event_time: String,
    pub event_time_unit: EpochUnit,
    pub position_start: String,
    pub position_end: String,
    pub event_id: String,
}

impl ItemMapping {
    /// Attributes named like the fields: the mapping produce uses when the config has
    /// no `[source.dynamodb.mapping]` (the source then needs [`Self::toml`]).
    pub fn identity() -> Self {
        ItemMapping {
            uuid: "uuid".into(),
            stream_id: "stream_id".into(),
            user_id: "user_id".into(),
            event_type: "event_type".into(),
            event_time: "event_time".into(),
            event_time_unit: EpochUnit::Milliseconds,
            position_start: "position_start".into(),
            position_end: "position_end".into(),
            event_id: "event_id".into(),
        }
    }

    /// The config's mapping, which must name every field: a field the mapping does not
    /// read (say `event_time`, which then comes from the change's own time) could not
    /// round-trip, and the point of produce is that the source gives back exactly the
    /// generated events.
    pub fn from_config(config: Option<&MappingConfig>) -> anyhow::Result<Self> {
        let Some(m) = config else {
            return Ok(Self::identity());
        };
        let mut missing = Vec::new();
        let mut take = |field: &'static str, attr: &Option<String>| match attr {
            Some(a) => a.clone(),
            None => {
                missing.push(field);
                String::new()
            }
        };
        let mapping = ItemMapping {
            uuid: m.uuid.clone(),
            stream_id: m.stream_id.clone(),
            user_id: take("user_id", &m.user_id),
            event_type: take("event_type", &m.event_type),
            event_time: take("event_time", &m.event_time),
            event_time_unit: m.event_time_unit,
            position_start: take("position_start", &m.position_start),
            position_end: take("position_end", &m.position_end),
            event_id: take("event_id", &m.event_id),
        };
        if !missing.is_empty() {
            bail!(
                "[source.dynamodb.mapping] does not name an attribute for {}: produce writes \
                 every field of an event so that the source maps it back unchanged\n\
                 hint: add them to the mapping, e.g. {}",
                missing.join(", "),
                missing
                    .iter()
                    .map(|f| format!("{f} = \"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let attrs = mapping.attributes();
        let distinct: HashSet<&str> = attrs.iter().copied().collect();
        if distinct.len() != attrs.len() {
            bail!(
                "[source.dynamodb.mapping] names one attribute for two fields ({}); \
                 produce needs one attribute per field\nhint: give each field its own attribute",
                attrs.join(", ")
            );
        }
        Ok(mapping)
    }

    fn attributes(&self) -> [&str; 8] {
        [
            &self.uuid,
            &self.stream_id,
            &self.user_id,
            &self.event_type,
            &self.event_time,
            &self.position_start,
            &self.position_end,
            &self.event_id,
        ]
    }

    /// The `[source.dynamodb.mapping]` section the source needs for these items.
    pub fn toml(&self) -> String {
        let unit = match self.event_time_unit {
            EpochUnit::Milliseconds => "milliseconds",
            EpochUnit::Seconds => "seconds",
        };
        format!(
            "[source.dynamodb.mapping]\nuuid = \"{}\"\nstream_id = \"{}\"\nuser_id = \"{}\"\n\
             event_type = \"{}\"\nevent_time = \"{}\"\nevent_time_unit = \"{unit}\"\n\
             position_start = \"{}\"\nposition_end = \"{}\"\nevent_id = \"{}\"\n",
            self.uuid,
            self.stream_id,
            self.user_id,
            self.event_type,
            self.event_time,
            self.position_start,
            self.position_end,
            self.event_id
        )
    }

    /// The item of a valid event: every field in the attribute the mapping reads.
    pub fn event_item(&self, e: &PlaybackEvent) -> Item {
        let mut item = Item::with_capacity(8);
        item.insert(self.uuid.clone(), AttributeValue::S(e.uuid.clone()));
        item.insert(
            self.stream_id.clone(),
            AttributeValue::S(e.stream_id.clone()),
        );
        // An anonymous viewer has no attribute at all (the mapping reads absent or
        // NULL as no user_id).
        if let Some(user) = &e.user_id {
            item.insert(self.user_id.clone(), AttributeValue::S(user.clone()));
        }
        item.insert(
            self.event_type.clone(),
            AttributeValue::S(e.event_type.as_str().into()),
        );
        item.insert(self.event_time.clone(), self.time_value(e.event_time_ms()));
        item.insert(
            self.position_start.clone(),
            AttributeValue::N(number(e.position_start)),
        );
        item.insert(
            self.position_end.clone(),
            AttributeValue::N(number(e.position_end)),
        );
        item.insert(self.event_id.clone(), AttributeValue::S(e.event_id.clone()));
        item
    }

    /// An event time as the mapping reads it back exactly: epoch milliseconds as a
    /// number; with `event_time_unit = "seconds"` whole seconds as a number, else RFC
    /// 3339 text (a fractional number of seconds is rejected by the mapping).
    fn time_value(&self, ms: i64) -> AttributeValue {
        match self.event_time_unit {
            EpochUnit::Milliseconds => AttributeValue::N(ms.to_string()),
            EpochUnit::Seconds if ms % 1000 == 0 => AttributeValue::N((ms / 1000).to_string()),
            EpochUnit::Seconds => match TimestampMs(ms).to_datetime() {
                Ok(t) => AttributeValue::S(t.to_rfc3339()),
                // Unreachable for parsed events (their times are in range); a number
                // the mapping rejects is still better than a silently different time.
                Err(_) => AttributeValue::N(format!("{ms}.5")),
            },
        }
    }

    /// The item of a bad record: the event's item with one defect that the mapping
    /// (or the parser behind it) rejects with [`item_reason_code`]`(reason)`. Its
    /// event_id gets a `.bad` suffix so it never replaces the valid item of the same
    /// event and is found again in the DLQ. `keys` are the table's key attributes: a
    /// defect never removes or retypes one (DynamoDB would refuse the write).
    pub fn bad_item(&self, e: &PlaybackEvent, reason: BadReason, keys: &[String]) -> Item {
        let mut item = self.event_item(e);
        item.insert(
            self.event_id.clone(),
            AttributeValue::S(format!("{}{BAD_SUFFIX}", e.event_id)),
        );
        let is_key = |attr: &str| keys.iter().any(|k| k == attr);
        let time_ms = e.event_time_ms();
        match reason {
            // Bytes that are not JSON or not an object cannot be an item; the nearest
            // item-level defects are attributes of the wrong type.
            BadReason::NotJson => {
                item.insert(self.event_type.clone(), AttributeValue::N("7".into()));
            }
            BadReason::NotObject => {
                item.insert(
                    self.position_start.clone(),
                    AttributeValue::L(vec![AttributeValue::N(number(e.position_start))]),
                );
            }
            BadReason::MissingUuid => {
                // The uuid (or, when it is a key, the stream id, else the event time)
                // is left out.
                let attr = [&self.uuid, &self.stream_id, &self.event_time]
                    .into_iter()
                    .find(|a| !is_key(a.as_str()))
                    .unwrap_or(&self.event_time);
                item.remove(attr);
            }
            BadReason::MissingEventTime => {
                item.remove(&self.event_time);
            }
            BadReason::UnknownEventType => {
                const NAMES: [&str; 4] = ["play", "buffering", "Heartbeat", "resume"];
                let name = NAMES[(time_ms.rem_euclid(4)) as usize];
                item.insert(self.event_type.clone(), AttributeValue::S(name.into()));
            }
            BadReason::NegativePosition => {
                item.insert(
                    self.position_end.clone(),
                    AttributeValue::N(number(-(e.position_end + 0.5))),
                );
            }
            BadReason::PositionOrder => {
                let low = e.position_start.min(e.position_end);
                let high = e.position_start.max(e.position_end) + 1.5;
                item.insert(
                    self.event_type.clone(),
                    AttributeValue::S(EventType::Heartbeat.as_str().into()),
                );
                item.insert(self.position_start.clone(), AttributeValue::N(number(high)));
                item.insert(self.position_end.clone(), AttributeValue::N(number(low)));
            }
            BadReason::FloatEventTime => {
                let text = match self.event_time_unit {
                    EpochUnit::Milliseconds => format!("{time_ms}.5"),
                    EpochUnit::Seconds => format!(
                        "{}.{:03}5",
                        time_ms.div_euclid(1000),
                        time_ms.rem_euclid(1000)
                    ),
                };
                item.insert(self.event_time.clone(), AttributeValue::N(text));
            }
            BadReason::EventTimeTooOld => {
                // The same time of day on 1999-01-01: a player with a reset clock.
                let old = 915_148_800_000 + time_ms.rem_euclid(86_400_000);
                item.insert(self.event_time.clone(), self.time_value(old));
            }
            BadReason::InvalidTimestamp => {
                let text = match TimestampMs(time_ms).to_datetime() {
                    Ok(t) => t.format("%d/%m/%Y %H:%M:%S").to_string(),
                    Err(_) => "01/06/2025 00:00:00".into(),
                };
                item.insert(self.event_time.clone(), AttributeValue::S(text));
            }
            BadReason::UuidTooLong => {
                item.insert(self.uuid.clone(), AttributeValue::S(e.uuid.repeat(4)));
            }
            BadReason::InvalidUtf8 => {
                // DynamoDB strings are always UTF-8; a user id of the wrong type is
                // the nearest defect.
                item.insert(self.user_id.clone(), AttributeValue::Bool(true));
            }
        }
        item
    }
}

/// Suffix of a bad item's event_id (see [`ItemMapping::bad_item`]).
pub const BAD_SUFFIX: &str = ".bad";

/// The reason code (prefix of the DLQ's `playlake.error` header) the source's mapping
/// gives the item [`ItemMapping::bad_item`] makes for `reason`.
pub fn item_reason_code(reason: BadReason) -> &'static str {
    match reason {
        BadReason::NotJson | BadReason::NotObject => "wrong_type",
        BadReason::MissingUuid | BadReason::MissingEventTime => "missing_field",
        BadReason::FloatEventTime | BadReason::InvalidUtf8 => "wrong_type",
        other => other.expected_reason_code(),
    }
}

/// A DynamoDB number: Rust's shortest text that reads back as the same f64 (never an
/// exponent), so the mapping's number is exactly the generated one.
fn number(value: f64) -> String {
    // -0.0 would read back as 0 anyway; write it so.
    if value == 0.0 {
        return "0".into();
    }
    format!("{value}")
}

/// What produce needs to know about the table.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// Key attribute names (hash first).
    pub keys: Vec<String>,
    /// Whether a stream with new images is enabled (else the source sees nothing).
    pub stream_with_new_images: bool,
}

/// The `aws dynamodb create-table` command for a table these items fit.
pub fn create_table_hint(table: &str, mapping: &ItemMapping, endpoint: Option<&str>) -> String {
    let endpoint = endpoint
        .map(|e| format!(" --endpoint-url {e}"))
        .unwrap_or_default();
    format!(
        "aws dynamodb create-table{endpoint} --table-name {table} \
         --attribute-definitions AttributeName={u},AttributeType=S AttributeName={i},AttributeType=S \
         --key-schema AttributeName={u},KeyType=HASH AttributeName={i},KeyType=RANGE \
         --billing-mode PAY_PER_REQUEST \
         --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
        u = mapping.uuid,
        i = mapping.event_id
    )
}

/// Checks the table exists and its key is made of attributes every item has as
/// strings (uuid, stream_id, event_id), so no write is refused for its key.
pub async fn describe(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mapping: &ItemMapping,
    endpoint: Option<&str>,
) -> anyhow::Result<TableInfo> {
    let described = match client.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), DescribeTableError::ResourceNotFoundException(_)) =>
        {
            bail!(
                "DynamoDB table {table} does not exist\nhint: create it with a stream, e.g.\n  {}",
                create_table_hint(table, mapping, endpoint)
            );
        }
        Err(e) => {
            return Err(anyhow::anyhow!("{}", DisplayErrorContext(&e))).with_context(|| {
                format!(
                    "describing DynamoDB table {table} (endpoint, region and credentials come \
                     from --endpoint-url and the AWS variables)"
                )
            })
        }
    };
    let Some(desc) = described.table() else {
        bail!("DynamoDB did not describe table {table}");
    };
    let allowed = [&mapping.uuid, &mapping.stream_id, &mapping.event_id];
    let mut keys = Vec::new();
    for key in desc.key_schema() {
        let name = key.attribute_name().to_string();
        let typ = desc
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == name)
            .map(|d| d.attribute_type().clone());
        if !allowed.iter().any(|a| **a == name) || typ != Some(ScalarAttributeType::S) {
            bail!(
                "table {table}'s key attribute `{name}` is not one produce can fill: keys must be \
                 the string attributes of uuid (`{}`), stream_id (`{}`) or event_id (`{}`)\n\
                 hint: use a table keyed by uuid and event_id, e.g.\n  {}",
                mapping.uuid,
                mapping.stream_id,
                mapping.event_id,
                create_table_hint("<new-table>", mapping, endpoint)
            );
        }
        keys.push(name);
    }
    let stream_with_new_images = desc.stream_specification().is_some_and(|s| {
        s.stream_enabled()
            && matches!(
                s.stream_view_type(),
                Some(
                    aws_sdk_dynamodb::types::StreamViewType::NewImage
                        | aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages
                )
            )
    });
    Ok(TableInfo {
        keys,
        stream_with_new_images,
    })
}

/// Turns generated records into items: valid records and duplicates into the item
/// of their event, bad records into [`ItemMapping::bad_item`] of their original.
pub struct ItemWriter {
    pub mapping: ItemMapping,
    pub keys: Vec<String>,
    /// "Now" for parsing generated values: after the generated slice, so every valid
    /// event is accepted.
    pub now_ms: i64,
}

impl ItemWriter {
    /// The item for one generated record.
    pub fn item(&self, record: &GeneratedRecord) -> anyhow::Result<Item> {
        let (value, bad) = match record.kind {
            RecordKind::Valid | RecordKind::Duplicate => (&record.value, None),
            RecordKind::Bad(reason) => match &record.original {
                Some(original) => (original, Some(reason)),
                None => bail!("generator gave a bad record without its original event"),
            },
        };
        let event = parse_playback_event(value, self.now_ms)
            .map_err(|e| anyhow::anyhow!("generated event does not parse: {e}"))?;
        Ok(match bad {
            None => self.mapping.event_item(&event),
            Some(reason) => self.mapping.bad_item(&event, reason, &self.keys),
        })
    }

    /// The item's key as one string (for "no two writes of one key in a batch").
    pub fn key_of(&self, item: &Item) -> String {
        let mut key = String::new();
        for name in &self.keys {
            if let Some(AttributeValue::S(s)) = item.get(name) {
                key.push_str(s);
            }
            key.push('\u{0}');
        }
        key
    }
}

/// Options of the DynamoDB path.
pub struct DynamoOptions {
    pub table: String,
    pub endpoint_url: Option<String>,
    pub writers: usize,
}

/// What the DynamoDB path wrote.
pub struct Written {
    pub sent: Sent,
    /// BatchWriteItem calls repeated for UnprocessedItems.
    pub retries: u64,
    /// Bad items by the reason code the source's mapping will give them in the DLQ.
    pub dlq_reason_codes: BTreeMap<&'static str, u64>,
}

/// Writes the generator's records to the table; returns what was written.
pub async fn produce(
    generator: &mut Generator,
    options: &DynamoOptions,
    mapping: ItemMapping,
    pacer: &mut Pacer,
) -> anyhow::Result<Written> {
    let clients =
        playlake_dynamodb::aws::Clients::connect(options.endpoint_url.as_deref(), None).await;
    let client = clients.dynamodb;
    let table = options.table.as_str();
    let info = describe(&client, table, &mapping, options.endpoint_url.as_deref()).await?;
    if !info.stream_with_new_images {
        tracing::warn!(
            table,
            "the table has no stream with new images: items are written, but `playlake source \
             dynamodb` will not see them (aws dynamodb update-table --table-name {table} \
             --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES)"
        );
    }
    tracing::info!(
        table,
        writers = options.writers,
        "writing items; the source maps them back to the events with:\n{}",
        mapping.toml()
    );
    // The rate counts from the first write, not from connecting.
    pacer.restart();
    let writer = ItemWriter {
        mapping,
        keys: info.keys,
        now_ms: generator.config().settled_now_ms(),
    };
    let writers = options.writers.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(writers));
    let mut tasks: JoinSet<anyhow::Result<u64>> = JoinSet::new();
    let mut sent = Sent::default();
    let mut retries = 0u64;
    let mut dlq_reason_codes = BTreeMap::new();
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(BATCH_ITEMS);
    let mut batch_keys: HashSet<String> = HashSet::with_capacity(BATCH_ITEMS);
    let mut batch_count = Sent::default();
    loop {
        let record = if pacer.expired() {
            None
        } else {
            generator.next()
        };
        let done = record.is_none();
        if let Some(record) = &record {
            let item = writer.item(record)?;
            let key = writer.key_of(&item);
            // DynamoDB refuses a batch with two writes of one key (a duplicate and its
            // original, or two events of one row in a table keyed by stream and uuid):
            // the second one starts the next batch, so the order of writes holds.
            if batch_keys.contains(&key) || batch.len() == BATCH_ITEMS {
                spawn_batch(
                    &mut tasks,
                    &permits,
                    &client,
                    table,
                    std::mem::take(&mut batch),
                )
                .await?;
                batch_keys.clear();
                sent.add(&std::mem::take(&mut batch_count));
                retries += reap(&mut tasks)?;
                pacer.pace(sent.records).await;
            }
            batch_keys.insert(key);
            batch.push(
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .context("building a PutRequest")?,
                    )
                    .build(),
            );
            batch_count.count(record.kind);
            if let RecordKind::Bad(reason) = record.kind {
                *dlq_reason_codes
                    .entry(item_reason_code(reason))
                    .or_insert(0) += 1;
            }
        }
        if done {
            if !batch.is_empty() {
                spawn_batch(
                    &mut tasks,
                    &permits,
                    &client,
                    table,
                    std::mem::take(&mut batch),
                )
                .await?;
                sent.add(&std::mem::take(&mut batch_count));
            }
            break;
        }
    }
    sent.sending = pacer.elapsed();
    while let Some(result) = tasks.join_next().await {
        retries += result.context("a DynamoDB writer task failed")??;
    }
    Ok(Written {
        sent,
        retries,
        dlq_reason_codes,
    })
}

/// Collects the writers that finished; the first error stops produce.
fn reap(tasks: &mut JoinSet<anyhow::Result<u64>>) -> anyhow::Result<u64> {
    let mut retries = 0;
    while let Some(result) = tasks.try_join_next() {
        retries += result.context("a DynamoDB writer task failed")??;
    }
    Ok(retries)
}

/// Starts one BatchWriteItem once a writer is free.
async fn spawn_batch(
    tasks: &mut JoinSet<anyhow::Result<u64>>,
    permits: &Arc<tokio::sync::Semaphore>,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    batch: Vec<WriteRequest>,
) -> anyhow::Result<()> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .context("writer pool closed")?;
    let client = client.clone();
    let table = table.to_string();
    tasks.spawn(async move {
        let result = write_batch(&client, &table, batch).await;
        drop(permit);
        result
    });
    Ok(())
}

/// One BatchWriteItem, retrying UnprocessedItems (DynamoDB's answer to throttling)
/// with exponential backoff; returns how many retries it took. Request-level errors
/// are retried by the SDK's standard retry policy first.
async fn write_batch(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    mut requests: Vec<WriteRequest>,
) -> anyhow::Result<u64> {
    let mut backoff = FIRST_BACKOFF;
    let started = Instant::now();
    for attempt in 0..MAX_ATTEMPTS {
        let out = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))
            .with_context(|| format!("BatchWriteItem on table {table}"))?;
        requests = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if requests.is_empty() {
            return Ok(u64::from(attempt));
        }
        // Jitter (a quarter of the backoff, from the clock) so concurrent writers that
        // were throttled together do not come back together.
        let jitter = backoff.mul_f64(f64::from(started.elapsed().subsec_nanos() % 1000) / 4000.0);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    bail!(
        "table {table} left {} items unprocessed after {MAX_ATTEMPTS} attempts (throttled)\n\
         hint: lower --rate-per-second or --dynamodb-writers, or raise the table's write capacity",
        requests.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use playlake_dynamodb::mapping::{map_change, Mapped};
    use playlake_generator::GeneratorConfig;
    use playlake_schemas::{ChangeEvent, ChangeEventName};

    /// The item as the source sees it: the stream record's new image, through the
    /// connector's own conversion.
    fn change(item: &Item, n: usize) -> ChangeEvent {
        let image = playlake_dynamodb::aws::table_item_json(item).expect("item to json");
        ChangeEvent {
            table: "t".into(),
            event_id: format!("change-{n}"),
            event_name: ChangeEventName::Insert,
            sequence_number: Some(n.to_string()),
            shard_id: Some("shard".into()),
            approximate_creation_time: TimestampMs(1_750_000_000_000),
            keys: serde_json::json!({}),
            new_image: Some(image),
            old_image: None,
            ttl_expired: false,
            snapshot: false,
        }
    }

    fn source_mapping(m: &ItemMapping) -> MappingConfig {
        let text = m.toml().replace("[source.dynamodb.mapping]\n", "");
        toml::from_str(&text).expect("mapping toml")
    }

    fn round_trip(mapping: ItemMapping, keys: Vec<String>) {
        let config = GeneratorConfig {
            viewers: 60,
            max_events: Some(3_000),
            duration_ms: 3_600_000,
            duplicate_fraction: 0.05,
            bad_record_fraction: 0.05,
            ..GeneratorConfig::default()
        };
        let now_ms = config.settled_now_ms();
        let writer = ItemWriter {
            mapping: mapping.clone(),
            keys,
            now_ms,
        };
        let source = source_mapping(&mapping);
        let mut reasons = HashSet::new();
        for (n, record) in Generator::new(config).expect("config").enumerate() {
            let item = writer.item(&record).expect("item");
            let mapped = map_change(&change(&item, n), &source);
            match record.kind {
                RecordKind::Valid | RecordKind::Duplicate => {
                    let want = parse_playback_event(&record.value, now_ms).expect("valid");
                    assert_eq!(mapped, Mapped::Event(want), "{item:?}");
                }
                RecordKind::Bad(reason) => {
                    let Mapped::Invalid(why) = mapped else {
                        panic!("{reason:?} item was mapped: {item:?} -> {mapped:?}");
                    };
                    assert!(
                        why.starts_with(&format!("{}:", item_reason_code(reason))),
                        "{reason:?}: {why}"
                    );
                    reasons.insert(reason);
                    for key in &writer.keys {
                        assert!(
                            matches!(item.get(key), Some(AttributeValue::S(_))),
                            "{reason:?} item lost key {key}"
                        );
                    }
                }
            }
        }
        assert_eq!(reasons.len(), BadReason::ALL.len(), "{reasons:?}");
    }

    #[test]
    fn items_map_back_to_the_generated_events_and_bad_items_to_their_reason() {
        let m = ItemMapping::identity();
        round_trip(m.clone(), vec![m.uuid.clone(), m.event_id.clone()]);
    }

    #[test]
    fn seed_001_names_keyed_by_stream_and_uuid_with_seconds() {
        let m = ItemMapping {
            uuid: "SK".into(),
            stream_id: "PK".into(),
            user_id: "user".into(),
            event_type: "kind".into(),
            event_time: "at".into(),
            event_time_unit: EpochUnit::Seconds,
            position_start: "start".into(),
            position_end: "position".into(),
            event_id: "id".into(),
        };
        round_trip(m, vec!["PK".into(), "SK".into()]);
    }

    #[test]
    fn incomplete_mappings_say_what_is_missing() {
        let config: MappingConfig =
            toml::from_str("uuid = \"SK\"\nstream_id = \"PK\"\nposition_end = \"p\"\n").unwrap();
        let err = ItemMapping::from_config(Some(&config))
            .unwrap_err()
            .to_string();
        assert!(err.contains("event_time") && err.contains("hint:"), "{err}");
        assert_eq!(
            ItemMapping::from_config(None).unwrap(),
            ItemMapping::identity()
        );
        let hint = create_table_hint("plays", &ItemMapping::identity(), None);
        assert!(hint.contains("--table-name plays") && hint.contains("StreamEnabled=true"));
    }
}
