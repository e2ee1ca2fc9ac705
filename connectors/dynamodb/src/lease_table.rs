//! The lease table in DynamoDB: one item per shard (`lease_key` = shard id) with
//! `lease_owner`, `lease_counter`, `checkpoint` and `parent_shard_id`, plus one
//! `__backfill__` item recording the backfill's state. The rules are in `lease.rs`;
//! this module performs them with conditional writes, so two processes can never
//! both take a lease, and a process that lost a lease can never move its checkpoint.
//!
//! Created on first use (on-demand billing). The table is this source's only state:
//! a process can restart anywhere and resume from it.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;

use crate::error::SourceError;
use crate::lease::{Checkpoint, Lease};

const KEY: &str = "lease_key";
const OWNER: &str = "lease_owner";
const COUNTER: &str = "lease_counter";
const CHECKPOINT: &str = "checkpoint";
const PARENT: &str = "parent_shard_id";
const BACKFILL_KEY: &str = "__backfill__";
const BACKFILL_STATUS: &str = "backfill_status";

/// Where the backfill stands (the `__backfill__` item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfillStatus {
    /// Stream positions are taken, the Scan is running (or died): scan again.
    Scanning,
    /// Snapshot published; stream from the positions.
    Done,
}

/// Outcome of a conditional write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditional {
    Done,
    /// Someone else changed the item first.
    Lost,
}

#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn is_condition_failure<E: ProvideErrorMetadata>(err: &E) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

impl LeaseTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    /// Creates the table when missing and waits until it is active.
    pub async fn ensure_table(&self) -> Result<(), SourceError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(out) => {
                if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                    return Ok(());
                }
            }
            Err(err) if err.code() == Some("ResourceNotFoundException") => {
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(KEY)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|e| SourceError::request("CreateTable", e))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(KEY)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|e| SourceError::request("CreateTable", e))?,
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => tracing::info!(table = %self.table, "created the lease table"),
                    // Another process created it at the same moment.
                    Err(err) if err.code() == Some("ResourceInUseException") => {}
                    Err(err) => return Err(SourceError::aws("CreateTable", err)),
                }
            }
            Err(err) => return Err(SourceError::aws("DescribeTable", err)),
        }
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| SourceError::aws("DescribeTable", e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(SourceError::Malformed {
            what: "lease table",
            detail: format!("{} did not become ACTIVE within 60 s", self.table),
        })
    }

    /// Every shard lease (consistent read, all pages).
    pub async fn list(&self) -> Result<Vec<Lease>, SourceError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| SourceError::aws("Scan (leases)", e))?;
            for item in out.items() {
                if let Some(lease) = parse_lease(item) {
                    leases.push(lease);
                }
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Creates a free lease for a shard unless one exists (then nothing changes).
    pub async fn create_if_missing(
        &self,
        shard_id: &str,
        parent_shard_id: Option<&str>,
        checkpoint: &Checkpoint,
    ) -> Result<Conditional, SourceError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(shard_id))
            .item(COUNTER, n(0))
            .item(CHECKPOINT, s(checkpoint.as_stored()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY);
        if let Some(parent) = parent_shard_id {
            put = put.item(PARENT, s(parent));
        }
        match put.send().await {
            Ok(_) => Ok(Conditional::Done),
            Err(err) if is_condition_failure(&err) => Ok(Conditional::Lost),
            Err(err) => Err(SourceError::aws("PutItem (lease)", err)),
        }
    }

    /// Takes (or steals) a lease whose counter is still `observed_counter`. Returns
    /// the new counter, or `None` when someone else moved it first.
    pub async fn take(
        &self,
        key: &str,
        observed_counter: u64,
        me: &str,
    ) -> Result<Option<u64>, SourceError> {
        self.bump(
            key,
            "SET #o = :me, #c = #c + :one",
            "#c = :seen",
            observed_counter,
            me,
            "UpdateItem (take lease)",
        )
        .await
    }

    /// Renews a lease `me` holds with counter `counter`. `None`: it was taken over.
    pub async fn renew(
        &self,
        key: &str,
        counter: u64,
        me: &str,
    ) -> Result<Option<u64>, SourceError> {
        self.bump(
            key,
            "SET #c = #c + :one",
            "#o = :me AND #c = :seen",
            counter,
            me,
            "UpdateItem (renew lease)",
        )
        .await
    }

    /// Frees a lease on a clean shutdown so another process takes it at once.
    pub async fn release(&self, key: &str, me: &str) -> Result<Conditional, SourceError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .update_expression("REMOVE #o SET #c = #c + :one")
            .condition_expression("#o = :me")
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Conditional::Done),
            Err(err) if is_condition_failure(&err) => Ok(Conditional::Lost),
            Err(err) => Err(SourceError::aws("UpdateItem (release lease)", err)),
        }
    }

    async fn bump(
        &self,
        key: &str,
        update: &str,
        condition: &str,
        seen: u64,
        me: &str,
        operation: &'static str,
    ) -> Result<Option<u64>, SourceError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .update_expression(update)
            .condition_expression(format!("attribute_exists(#k) AND {condition}"))
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_names("#c", COUNTER)
            .expression_attribute_values(":me", s(me))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":seen", n(seen))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(
                out.attributes()
                    .and_then(|a| a.get(COUNTER))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(seen + 1),
            )),
            Err(err) if is_condition_failure(&err) => Ok(None),
            Err(err) => Err(SourceError::aws(operation, err)),
        }
    }

    /// Moves a shard's checkpoint, only while `me` owns the lease.
    pub async fn checkpoint(
        &self,
        key: &str,
        me: &str,
        checkpoint: &Checkpoint,
    ) -> Result<Conditional, SourceError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .update_expression("SET #cp = :cp")
            .condition_expression("#o = :me")
            .expression_attribute_names("#cp", CHECKPOINT)
            .expression_attribute_names("#o", OWNER)
            .expression_attribute_values(":cp", s(checkpoint.as_stored()))
            .expression_attribute_values(":me", s(me))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Conditional::Done),
            Err(err) if is_condition_failure(&err) => Ok(Conditional::Lost),
            Err(err) => Err(SourceError::aws("UpdateItem (checkpoint)", err)),
        }
    }

    pub async fn backfill_status(&self) -> Result<Option<BackfillStatus>, SourceError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(BACKFILL_KEY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| SourceError::aws("GetItem (backfill)", e))?;
        Ok(
            match out
                .item()
                .and_then(|i| i.get(BACKFILL_STATUS))
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some("DONE") => Some(BackfillStatus::Done),
                Some(_) => Some(BackfillStatus::Scanning),
                None => None,
            },
        )
    }

    pub async fn set_backfill_status(&self, status: BackfillStatus) -> Result<(), SourceError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(KEY, s(BACKFILL_KEY))
            .item(
                BACKFILL_STATUS,
                s(match status {
                    BackfillStatus::Scanning => "SCANNING",
                    BackfillStatus::Done => "DONE",
                }),
            )
            .send()
            .await
            .map_err(|e| SourceError::aws("PutItem (backfill)", e))?;
        Ok(())
    }
}

fn parse_lease(item: &HashMap<String, AttributeValue>) -> Option<Lease> {
    let key = item.get(KEY)?.as_s().ok()?.clone();
    if key == BACKFILL_KEY {
        return None;
    }
    Some(Lease {
        key,
        owner: item.get(OWNER).and_then(|v| v.as_s().ok()).cloned(),
        counter: item
            .get(COUNTER)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        checkpoint: item
            .get(CHECKPOINT)
            .and_then(|v| v.as_s().ok())
            .map(|c| Checkpoint::from_stored(c))
            .unwrap_or(Checkpoint::TrimHorizon),
        parent_shard_id: item.get(PARENT).and_then(|v| v.as_s().ok()).cloned(),
    })
}
