//! `--backfill`: snapshot the existing table, then stream from a position taken
//! before the snapshot began, so no change falls in between (SPEC section 7).
//!
//! 1. **Positions first.** For every shard in the stream: a closed shard gets the
//!    checkpoint `SHARD_END` (its changes precede the scan); an open shard is read
//!    to its current end and gets `After(last sequence number)` (or `TRIM_HORIZON`
//!    when it is empty). Existing leases keep their older checkpoints. The
//!    `__backfill__` item is set to `SCANNING`.
//! 2. **Parallel Scan.** `backfill_segments` segments, each paginated with
//!    `LastEvaluatedKey`; each page's items become snapshot change events
//!    (`snapshot = true`, INSERT, no sequence number) published through
//!    `publish.rs`. A shared budget of `backfill_read_capacity_units_per_second`
//!    (consumed capacity as reported, or estimated from item sizes) paces the pages
//!    so the live table is not throttled. Progress is logged every few seconds with
//!    an ETA, and a warning when the ETA exceeds the stream's 24 h retention (the
//!    positions from step 1 would be trimmed before streaming starts).
//! 3. `__backfill__` is set to `DONE`; the run loop streams from the positions.
//!
//! Changes made during the scan are both possibly in the snapshot and in the
//! stream after the position: consumers see the snapshot row, then every later
//! change in order, so the final state per key is right. A crash during the scan
//! leaves `SCANNING`: the next `--backfill` run scans again (snapshot records carry
//! a deterministic event id per item key, but the scan time differs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use playlake_schemas::{ChangeEvent, ChangeEventName, TimestampMs};
use playlake_transport::Producer;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::aws::{table_item_json, Clients};
use crate::config::SourceConfig;
use crate::error::SourceError;
use crate::lease::Checkpoint;
use crate::lease_table::{BackfillStatus, LeaseTable};
use crate::metrics::SourceMetrics;
use crate::publish::{publish, Published};
use crate::source::now_ms;
use crate::stream::{self, TableStream};

/// The stream's retention: a scan longer than this loses the stream position.
const STREAM_RETENTION: Duration = Duration::from_secs(24 * 3600);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What the backfill did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    pub items: u64,
    pub published: Published,
}

/// Paces Scan pages to a read-capacity budget shared by every segment.
#[derive(Debug)]
pub struct CapacityBudget {
    units_per_second: f64,
    start: Instant,
    used: f64,
}

impl CapacityBudget {
    pub fn new(units_per_second: f64, start: Instant) -> Self {
        Self {
            units_per_second,
            start,
            used: 0.0,
        }
    }

    /// Records `units` consumed and returns how long to wait so that the total stays
    /// within the budget since `start`.
    pub fn consume(&mut self, units: f64, now: Instant) -> Duration {
        self.used += units.max(0.0);
        let due = self.start + Duration::from_secs_f64(self.used / self.units_per_second);
        due.saturating_duration_since(now)
    }
}

/// Read capacity of a Scan page when DynamoDB did not report it: eventually
/// consistent reads cost half a unit per 4 KiB, summed over the page.
pub fn estimated_units(page_bytes: usize) -> f64 {
    (page_bytes as f64 / 4096.0).ceil() * 0.5
}

/// Estimated seconds to finish, from the items done so far.
pub fn eta_seconds(done: u64, total: u64, elapsed: Duration) -> Option<f64> {
    if done == 0 || total <= done {
        return None;
    }
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    Some((total - done) as f64 / rate)
}

/// The snapshot record's id: deterministic per table and item key.
pub fn snapshot_event_id(table: &str, kafka_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(table.as_bytes());
    h.update([0]);
    h.update(kafka_key.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("snapshot-{hex}")
}

pub async fn run(
    config: &SourceConfig,
    clients: &Clients,
    leases: &LeaseTable,
    table: &TableStream,
    producer: &Arc<dyn Producer>,
    metrics: &SourceMetrics,
) -> Result<BackfillReport, SourceError> {
    match leases.backfill_status().await? {
        Some(BackfillStatus::Done) => {
            tracing::info!(table = %config.table, "backfill already done (lease table says DONE); streaming");
            return Ok(BackfillReport::default());
        }
        Some(BackfillStatus::Scanning) => {
            tracing::warn!(table = %config.table, "an earlier backfill did not finish; scanning again from the positions it took");
        }
        None => {
            take_positions(config, clients, leases, &table.stream_arn).await?;
            leases.set_backfill_status(BackfillStatus::Scanning).await?;
        }
    }
    let report = scan(config, clients, table, producer, metrics).await?;
    leases.set_backfill_status(BackfillStatus::Done).await?;
    tracing::info!(table = %config.table, items = report.items, "backfill done; streaming from the position taken before the scan");
    Ok(report)
}

async fn take_positions(
    config: &SourceConfig,
    clients: &Clients,
    leases: &LeaseTable,
    stream_arn: &str,
) -> Result<(), SourceError> {
    let graph = stream::describe_stream(clients, stream_arn).await?;
    for shard in graph.parents_first() {
        let checkpoint = if shard.is_closed() {
            Checkpoint::ShardEnd
        } else {
            match stream::tip(clients, stream_arn, shard, config.max_records_per_get).await? {
                Some(seq) => Checkpoint::After(seq),
                None => Checkpoint::TrimHorizon,
            }
        };
        tracing::info!(shard = %shard.shard_id, position = %checkpoint, "backfill: stream position before the scan");
        leases
            .create_if_missing(
                &shard.shard_id,
                shard.parent_shard_id.as_deref(),
                &checkpoint,
            )
            .await?;
    }
    Ok(())
}

async fn scan(
    config: &SourceConfig,
    clients: &Clients,
    table: &TableStream,
    producer: &Arc<dyn Producer>,
    metrics: &SourceMetrics,
) -> Result<BackfillReport, SourceError> {
    let start = Instant::now();
    let budget = Arc::new(Mutex::new(CapacityBudget::new(
        config.backfill_read_capacity_units_per_second,
        start,
    )));
    let done = Arc::new(AtomicU64::new(0));
    let total = u64::try_from(table.approximate_item_count).unwrap_or(0);
    tracing::info!(
        table = %config.table, segments = config.backfill_segments, approximate_items = total,
        read_capacity_units_per_second = config.backfill_read_capacity_units_per_second,
        "backfill: scanning"
    );
    let segments = (0..config.backfill_segments).map(|segment| {
        let budget = budget.clone();
        let done = done.clone();
        async move {
            scan_segment(
                config, clients, table, producer, metrics, segment, &budget, &done,
            )
            .await
        }
    });
    let progress = async {
        let mut warned = false;
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let n = done.load(Ordering::Relaxed);
            log_progress(config, n, total, start.elapsed(), &mut warned, metrics);
        }
    };
    let results = tokio::select! {
        r = futures::future::join_all(segments) => r,
        _ = progress => unreachable_progress(),
    };
    let mut report = BackfillReport::default();
    for r in results {
        let (items, published) = r?;
        report.items += items;
        report.published.cdc += published.cdc;
        report.published.events += published.events;
        report.published.dlq += published.dlq;
    }
    let mut warned = true;
    log_progress(
        config,
        report.items,
        total.max(report.items),
        start.elapsed(),
        &mut warned,
        metrics,
    );
    Ok(report)
}

fn unreachable_progress() -> Vec<Result<(u64, Published), SourceError>> {
    // The progress loop never ends; select! needs a value of the segments' type.
    Vec::new()
}

fn log_progress(
    config: &SourceConfig,
    done: u64,
    total: u64,
    elapsed: Duration,
    warned: &mut bool,
    metrics: &SourceMetrics,
) {
    let permille = done
        .saturating_mul(1000)
        .checked_div(total)
        .map_or(1000, |p| p.min(1000));
    metrics
        .backfill_progress_permille
        .with_label_values(&[&config.table])
        .set(permille as i64);
    let width = 30usize;
    let filled = (permille as usize * width) / 1000;
    let bar = format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled));
    let eta = eta_seconds(done, total, elapsed);
    tracing::info!(
        table = %config.table, items = done, approximate_total = total,
        eta_seconds = eta.map(|s| s.round() as u64), "backfill {bar} {:.1}%", permille as f64 / 10.0
    );
    if let Some(eta) = eta {
        if !*warned && elapsed.as_secs_f64() + eta > STREAM_RETENTION.as_secs_f64() {
            *warned = true;
            tracing::warn!(
                table = %config.table, eta_seconds = eta.round() as u64,
                "backfill will not finish within the stream's 24 h retention: the stream position taken before the scan will be trimmed; raise backfill_read_capacity_units_per_second or backfill_segments"
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn scan_segment(
    config: &SourceConfig,
    clients: &Clients,
    table: &TableStream,
    producer: &Arc<dyn Producer>,
    metrics: &SourceMetrics,
    segment: i32,
    budget: &Mutex<CapacityBudget>,
    done: &AtomicU64,
) -> Result<(u64, Published), SourceError> {
    let mut start_key: Option<HashMap<String, AttributeValue>> = None;
    let mut items_total = 0u64;
    let mut published_total = Published::default();
    let mut backoff = Duration::ZERO;
    loop {
        let page = clients
            .dynamodb
            .scan()
            .table_name(&config.table)
            .segment(segment)
            .total_segments(config.backfill_segments)
            .limit(config.backfill_page_size_items)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .set_exclusive_start_key(start_key.clone())
            .send()
            .await
            .map_err(|e| SourceError::aws("Scan (backfill)", e));
        let page = match page {
            Ok(page) => page,
            Err(err) if err.is_throttle() || err.is_transient() => {
                metrics
                    .retries
                    .with_label_values(&[
                        config.table.as_str(),
                        if err.is_throttle() {
                            "throttle"
                        } else {
                            "transient"
                        },
                    ])
                    .inc();
                backoff = (backoff * 2)
                    .max(Duration::from_millis(100))
                    .min(Duration::from_millis(config.max_backoff_ms));
                tracing::warn!(segment, error = %err, backoff_ms = backoff.as_millis() as u64, "backfill scan retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(err) => return Err(err),
        };
        backoff = Duration::ZERO;
        let read_at = TimestampMs(now_ms());
        let mut changes = Vec::with_capacity(page.items().len());
        let mut page_bytes = 0usize;
        for item in page.items() {
            let image = table_item_json(item)?;
            page_bytes += image.to_string().len();
            let keys: serde_json::Map<String, serde_json::Value> = table
                .key_attributes
                .iter()
                .filter_map(|k| image.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            let mut change = ChangeEvent {
                table: config.table.clone(),
                event_id: String::new(),
                event_name: ChangeEventName::Insert,
                sequence_number: None,
                shard_id: None,
                approximate_creation_time: read_at,
                keys: serde_json::Value::Object(keys),
                new_image: Some(image),
                old_image: None,
                ttl_expired: false,
                snapshot: true,
            };
            change.event_id = snapshot_event_id(&config.table, &change.kafka_key());
            changes.push(change);
        }
        metrics
            .records_in
            .with_label_values(&[&config.table])
            .inc_by(changes.len() as u64);
        let published = publish(config, producer, metrics, &changes).await?;
        items_total += changes.len() as u64;
        published_total.cdc += published.cdc;
        published_total.events += published.events;
        published_total.dlq += published.dlq;
        done.fetch_add(changes.len() as u64, Ordering::Relaxed);
        metrics
            .backfill_items
            .with_label_values(&[&config.table])
            .inc_by(changes.len() as u64);
        let units = page
            .consumed_capacity()
            .and_then(|c| c.capacity_units())
            .unwrap_or_else(|| estimated_units(page_bytes));
        let wait = budget.lock().await.consume(units, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start_key = Some(key.clone()),
            _ => break,
        }
    }
    Ok((items_total, published_total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_paces_to_the_rate() {
        let t0 = Instant::now();
        let mut b = CapacityBudget::new(10.0, t0);
        assert_eq!(b.consume(5.0, t0), Duration::from_millis(500));
        // One second later 15 units are used: due at 1.5 s.
        assert_eq!(
            b.consume(10.0, t0 + Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        // Far behind schedule: no wait.
        assert_eq!(b.consume(1.0, t0 + Duration::from_secs(10)), Duration::ZERO);
    }

    #[test]
    fn estimates_and_eta() {
        assert_eq!(estimated_units(0), 0.0);
        assert_eq!(estimated_units(1), 0.5);
        assert_eq!(estimated_units(8193), 1.5);
        assert_eq!(eta_seconds(0, 100, Duration::from_secs(1)), None);
        assert_eq!(eta_seconds(50, 100, Duration::from_secs(10)), Some(10.0));
        assert_eq!(eta_seconds(100, 100, Duration::from_secs(10)), None);
    }

    #[test]
    fn snapshot_ids_are_deterministic_per_key() {
        let a = snapshot_event_id("t", r#"{"id":1}"#);
        assert_eq!(a, snapshot_event_id("t", r#"{"id":1}"#));
        assert_ne!(a, snapshot_event_id("t", r#"{"id":2}"#));
        assert_ne!(a, snapshot_event_id("u", r#"{"id":1}"#));
        assert!(a.starts_with("snapshot-") && a.len() == 9 + 32);
    }
}
