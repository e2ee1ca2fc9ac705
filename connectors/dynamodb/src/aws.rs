//! The thin AWS layer: clients, and conversions from the SDKs' types to the pure
//! ones ([`Attribute`], [`ShardInfo`], [`ChangeEvent`]).
//!
//! The clients share one HTTPS stack (hyper 1 + rustls + ring, the one object_store
//! already brings) instead of the SDK default, which would add aws-lc. Endpoint,
//! region and credentials come from the standard AWS variables and files
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...), or from `endpoint_url` in the config.

use std::collections::HashMap;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodbstreams::types as st;
use aws_smithy_http_client::tls;
use playlake_schemas::{ChangeEvent, ChangeEventName, TimestampMs};

use crate::attribute::{item_to_json, Attribute};
use crate::error::SourceError;
use crate::shards::ShardInfo;

/// DynamoDB (leases, backfill Scan) and DynamoDB Streams clients.
#[derive(Clone, Debug)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
}

impl Clients {
    pub async fn connect(endpoint_url: Option<&str>, region: Option<&str>) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let shared = loader.load().await;
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&shared),
            streams: aws_sdk_dynamodbstreams::Client::new(&shared),
        }
    }
}

/// A DynamoDB Streams attribute as the pure type; `None` for a type this SDK
/// version does not know (the source stops rather than drop data).
pub fn stream_attribute(value: &st::AttributeValue) -> Option<Attribute> {
    Some(match value {
        st::AttributeValue::S(s) => Attribute::S(s.clone()),
        st::AttributeValue::N(n) => Attribute::N(n.clone()),
        st::AttributeValue::B(b) => Attribute::B(b.as_ref().to_vec()),
        st::AttributeValue::Bool(b) => Attribute::Bool(*b),
        st::AttributeValue::Null(_) => Attribute::Null,
        st::AttributeValue::M(m) => Attribute::M(
            m.iter()
                .map(|(k, v)| stream_attribute(v).map(|a| (k.clone(), a)))
                .collect::<Option<Vec<_>>>()?,
        ),
        st::AttributeValue::L(l) => {
            Attribute::L(l.iter().map(stream_attribute).collect::<Option<Vec<_>>>()?)
        }
        st::AttributeValue::Ss(v) => Attribute::Ss(v.clone()),
        st::AttributeValue::Ns(v) => Attribute::Ns(v.clone()),
        st::AttributeValue::Bs(v) => Attribute::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        _ => return None,
    })
}

/// A DynamoDB (Scan) attribute as the pure type.
pub fn table_attribute(value: &aws_sdk_dynamodb::types::AttributeValue) -> Option<Attribute> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    Some(match value {
        A::S(s) => Attribute::S(s.clone()),
        A::N(n) => Attribute::N(n.clone()),
        A::B(b) => Attribute::B(b.as_ref().to_vec()),
        A::Bool(b) => Attribute::Bool(*b),
        A::Null(_) => Attribute::Null,
        A::M(m) => Attribute::M(
            m.iter()
                .map(|(k, v)| table_attribute(v).map(|a| (k.clone(), a)))
                .collect::<Option<Vec<_>>>()?,
        ),
        A::L(l) => Attribute::L(l.iter().map(table_attribute).collect::<Option<Vec<_>>>()?),
        A::Ss(v) => Attribute::Ss(v.clone()),
        A::Ns(v) => Attribute::Ns(v.clone()),
        A::Bs(v) => Attribute::Bs(v.iter().map(|b| b.as_ref().to_vec()).collect()),
        _ => return None,
    })
}

fn stream_item_json(
    item: &HashMap<String, st::AttributeValue>,
) -> Result<serde_json::Value, SourceError> {
    let converted = item
        .iter()
        .map(|(k, v)| {
            stream_attribute(v)
                .map(|a| (k.clone(), a))
                .ok_or_else(|| SourceError::Malformed {
                    what: "stream record",
                    detail: format!(
                        "attribute `{k}` has a type this build does not know; upgrade playlake"
                    ),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(item_to_json(converted.iter().map(|(k, v)| (k, v))))
}

/// A scanned item (or its key) as JSON.
pub fn table_item_json(
    item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> Result<serde_json::Value, SourceError> {
    let converted = item
        .iter()
        .map(|(k, v)| {
            table_attribute(v)
                .map(|a| (k.clone(), a))
                .ok_or_else(|| SourceError::Malformed {
                    what: "scanned item",
                    detail: format!(
                        "attribute `{k}` has a type this build does not know; upgrade playlake"
                    ),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(item_to_json(converted.iter().map(|(k, v)| (k, v))))
}

/// One shard of a DescribeStream page.
pub fn shard_info(shard: &st::Shard) -> Option<ShardInfo> {
    let range = shard.sequence_number_range();
    Some(ShardInfo {
        shard_id: shard.shard_id()?.to_string(),
        parent_shard_id: shard.parent_shard_id().map(str::to_string),
        starting_sequence_number: range
            .and_then(|r| r.starting_sequence_number())
            .map(str::to_string),
        ending_sequence_number: range
            .and_then(|r| r.ending_sequence_number())
            .map(str::to_string),
    })
}

/// A stream record as the change event published on `<prefix>.cdc.<table>`.
pub fn change_event(
    table: &str,
    shard_id: &str,
    record: &st::Record,
) -> Result<ChangeEvent, SourceError> {
    let malformed = |detail: &str| SourceError::Malformed {
        what: "stream record",
        detail: detail.to_string(),
    };
    let event_id = record.event_id().ok_or_else(|| malformed("no eventID"))?;
    let event_name = match record.event_name() {
        Some(st::OperationType::Insert) => ChangeEventName::Insert,
        Some(st::OperationType::Modify) => ChangeEventName::Modify,
        Some(st::OperationType::Remove) => ChangeEventName::Remove,
        other => return Err(malformed(&format!("unknown eventName {other:?}"))),
    };
    let data = record
        .dynamodb()
        .ok_or_else(|| malformed("no dynamodb body"))?;
    let sequence_number = data
        .sequence_number()
        .ok_or_else(|| malformed("no SequenceNumber"))?;
    let time_ms = data
        .approximate_creation_date_time()
        .map(|t| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000))
        .ok_or_else(|| malformed("no ApproximateCreationDateTime"))?;
    let keys = match data.keys() {
        Some(keys) => stream_item_json(keys)?,
        None => return Err(malformed("no Keys")),
    };
    let new_image = data.new_image().map(stream_item_json).transpose()?;
    let old_image = data.old_image().map(stream_item_json).transpose()?;
    // TTL deletions are REMOVEs by the DynamoDB service principal (AWS docs: "Time to
    // Live: How It Works", userIdentity type Service, principalId dynamodb.amazonaws.com).
    let ttl_expired = event_name == ChangeEventName::Remove
        && record.user_identity().is_some_and(|id| {
            id.principal_id() == Some("dynamodb.amazonaws.com") && id.r#type() == Some("Service")
        });
    Ok(ChangeEvent {
        table: table.to_string(),
        event_id: event_id.to_string(),
        event_name,
        sequence_number: Some(sequence_number.to_string()),
        shard_id: Some(shard_id.to_string()),
        approximate_creation_time: TimestampMs(time_ms),
        keys,
        new_image,
        old_image,
        ttl_expired,
        snapshot: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::{Blob, DateTime};

    fn record(name: st::OperationType, identity: Option<st::Identity>) -> st::Record {
        let mut keys = HashMap::new();
        keys.insert(
            "id".to_string(),
            st::AttributeValue::N("12345678901234567890123".into()),
        );
        let mut old = keys.clone();
        old.insert(
            "blob".to_string(),
            st::AttributeValue::B(Blob::new(vec![1u8, 2])),
        );
        st::Record::builder()
            .event_id("e-1")
            .event_name(name)
            .set_user_identity(identity)
            .dynamodb(
                st::StreamRecord::builder()
                    .sequence_number("300000000000000000001")
                    .approximate_creation_date_time(DateTime::from_secs(1_748_736_000))
                    .set_keys(Some(keys))
                    .set_old_image(Some(old))
                    .build(),
            )
            .build()
    }

    #[test]
    fn ttl_removes_are_flagged_and_user_removes_are_not() {
        let ttl = st::Identity::builder()
            .principal_id("dynamodb.amazonaws.com")
            .r#type("Service")
            .build();
        let c = change_event(
            "t",
            "shard-1",
            &record(st::OperationType::Remove, Some(ttl)),
        )
        .unwrap();
        assert!(c.ttl_expired);
        assert_eq!(c.keys, serde_json::json!({"id": "12345678901234567890123"}));
        assert_eq!(c.old_image.as_ref().unwrap()["blob"], "AQI=");
        assert_eq!(c.new_image, None);
        assert_eq!(c.approximate_creation_time, TimestampMs(1_748_736_000_000));
        assert_eq!(c.sequence_number.as_deref(), Some("300000000000000000001"));
        let user = change_event("t", "shard-1", &record(st::OperationType::Remove, None)).unwrap();
        assert!(!user.ttl_expired);
    }
}
