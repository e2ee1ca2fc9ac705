//! DynamoDB change events (SPEC sections 5 and 7).
//!
//! Data flow: the DynamoDB source reads stream records (or, with `--backfill`, scanned
//! items), unmarshals every DynamoDB attribute to plain JSON and publishes one
//! [`ChangeEvent`] per change to `playback.cdc.<table>`, keyed by the item's key. The
//! sink archives them in the lake's `cdc` table (`keys`, `new_image` and `old_image`
//! become JSON strings there, see [`ChangeEvent::image_json`]); a configurable
//! mapping may also turn them into playback events. The identity used for dedup is
//! `sequence_number` (stream records) or `event_id` (both kinds).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::TimestampMs;

/// The kind of change, as DynamoDB Streams names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeEventName {
    /// A new item (also used for snapshot records of a backfill).
    Insert,
    /// An existing item changed.
    Modify,
    /// An item was deleted (by a user, or by TTL: see `ttl_expired`).
    Remove,
}

impl ChangeEventName {
    /// The wire name: `INSERT`, `MODIFY` or `REMOVE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeEventName::Insert => "INSERT",
            ChangeEventName::Modify => "MODIFY",
            ChangeEventName::Remove => "REMOVE",
        }
    }
}

impl fmt::Display for ChangeEventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of one DynamoDB item, with every attribute as plain JSON.
///
/// Numbers inside `keys` and the images must keep their full precision: the source
/// should emit them as JSON numbers only when an `f64` or `i64` represents them
/// exactly, and as strings otherwise (DynamoDB numbers have 38 digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The DynamoDB table the change comes from (the lake's `table=` partition and
    /// the topic suffix).
    pub table: String,
    /// Unique id of the change: the stream record's `eventID`, or for a snapshot
    /// record an id derived by the source from the table and the item's key.
    pub event_id: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: ChangeEventName,
    /// Stream sequence number (a decimal string, ordered within a shard); `None` for
    /// snapshot records.
    pub sequence_number: Option<String>,
    /// Stream shard that held the record; `None` for snapshot records.
    pub shard_id: Option<String>,
    /// When the change happened (DynamoDB gives it to the second), or for a snapshot
    /// record when the item was read.
    pub approximate_creation_time: TimestampMs,
    /// The item's primary key attributes.
    pub keys: serde_json::Value,
    /// The item after the change (absent for REMOVE or a KEYS_ONLY stream).
    pub new_image: Option<serde_json::Value>,
    /// The item before the change (absent for INSERT or without OLD_IMAGE).
    pub old_image: Option<serde_json::Value>,
    /// The item was deleted by DynamoDB's TTL process, not by a user.
    #[serde(default)]
    pub ttl_expired: bool,
    /// The record comes from the backfill's Scan, not from the stream.
    #[serde(default)]
    pub snapshot: bool,
}

impl ChangeEvent {
    /// The Kafka key: the item's key as compact JSON with object keys sorted (whatever
    /// order the attributes came in), so every change of one item lands on one
    /// partition.
    pub fn kafka_key(&self) -> String {
        sorted(&self.keys).to_string()
    }

    /// An image or the keys as the JSON string the lake's `cdc` columns hold; `None`
    /// stays `None` (a null column value).
    pub fn image_json(image: Option<&serde_json::Value>) -> Option<String> {
        image.map(serde_json::Value::to_string)
    }
}

/// A copy of `value` whose objects list their keys in sorted order, also when
/// serde_json's `preserve_order` feature is enabled somewhere in the build.
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let c = ChangeEvent {
            table: "playback".into(),
            event_id: "e1".into(),
            event_name: ChangeEventName::Remove,
            sequence_number: Some("111000000000000001".into()),
            shard_id: Some("shardId-0001".into()),
            approximate_creation_time: TimestampMs(1_748_736_000_000),
            keys: json!({"stream_id": "s", "uuid": "u"}),
            new_image: None,
            old_image: Some(json!({"stream_id": "s", "uuid": "u", "n": 1})),
            ttl_expired: true,
            snapshot: false,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["event_name"], json!("REMOVE"));
        assert_eq!(
            v["approximate_creation_time"],
            json!("2025-06-01T00:00:00.000Z")
        );
        assert_eq!(v["new_image"], json!(null));
        assert_eq!(serde_json::from_value::<ChangeEvent>(v).unwrap(), c);
        assert_eq!(c.kafka_key(), r#"{"stream_id":"s","uuid":"u"}"#);
        assert_eq!(ChangeEvent::image_json(c.new_image.as_ref()), None);
        assert_eq!(
            ChangeEvent::image_json(Some(&c.keys)).as_deref(),
            Some(r#"{"stream_id":"s","uuid":"u"}"#)
        );
    }

    #[test]
    fn flags_default_to_false() {
        let c: ChangeEvent = serde_json::from_value(json!({
            "table": "t", "event_id": "e", "event_name": "INSERT", "sequence_number": null,
            "shard_id": null, "approximate_creation_time": "2025-06-01T00:00:00Z",
            "keys": {"k": 1}, "new_image": {"k": 1}, "old_image": null
        }))
        .unwrap();
        assert!(!c.ttl_expired && !c.snapshot);
        assert_eq!(c.event_name.to_string(), "INSERT");
    }
}
