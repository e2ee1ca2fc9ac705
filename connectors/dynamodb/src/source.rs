//! The run loop of `playlake source dynamodb`: leases, shard discovery, reading,
//! publishing, checkpoints.
//!
//! Each round:
//! 1. every `shard_sync_interval_ms`, DescribeStream (all pages) and create a free
//!    lease for each new shard, parents first;
//! 2. every third of `lease_duration_ms`, read the lease table, renew the leases
//!    this process holds (a failed renewal means another process took the shard:
//!    stop reading it) and take free, expired or surplus leases (`lease::plan`);
//! 3. read one GetRecords batch from every owned shard whose parent is finished, in
//!    parallel; publish it (`publish.rs`: acknowledged by Kafka) and only then move
//!    the shard's checkpoint in the lease table; a closed shard read to its end gets
//!    the checkpoint `SHARD_END`, which releases its children.
//!
//! Failures: throttling and transient errors back off per shard (exponential, up to
//! `max_backoff_ms`; the SDK does not retry these reads first, see
//! `stream::Retries`); an expired iterator is re-acquired right after the last
//! acknowledged sequence number; TrimmedDataAccess is logged as an error, counted,
//! and stops the source unless `on_trimmed_data = "continue"`. With "continue" the
//! loss is reported once per shard (error log, `trimmed_data_total`, the report's
//! `trimmed`), the shard's checkpoint moves to TRIM_HORIZON in the lease table (so a
//! restart does not meet, and report, the same loss again) and reading goes on from
//! the oldest record still kept; a shard trimmed again while read from there backs
//! off like a throttled one (`retries_total{reason="trimmed"}`) instead of spinning.
//!
//! Shutdown (the `shutdown` future, e.g. SIGTERM) is checked between rounds, so the
//! batch in flight is published and checkpointed first; the leases are then released
//! so another process takes over at once. A SIGKILL instead leaves the leases to
//! expire; the batch that was in flight is read again by the next owner and
//! republished as identical records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use playlake_transport::Producer;

use crate::aws::{change_event, Clients};
use crate::backfill;
use crate::config::{SourceConfig, TrimmedDataPolicy};
use crate::error::SourceError;
use crate::lease::{plan, Checkpoint, Lease, LeaseObserver};
use crate::lease_table::{Conditional, LeaseTable};
use crate::metrics::SourceMetrics;
use crate::publish::publish;
use crate::shards::{ready_shards, ShardProgress};
use crate::stream;

/// What a run did (printed by the binary, asserted by tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Stream records read and published to the cdc topic.
    pub stream_records: u64,
    /// Items snapshotted by the backfill.
    pub snapshot_items: u64,
    /// Playback events published by the mapping.
    pub events: u64,
    /// Unmappable items sent to the DLQ.
    pub dlq: u64,
    /// Shards read to their end (`SHARD_END`).
    pub shards_finished: u64,
    /// Shards whose records were lost to the stream's retention (TrimmedDataAccess),
    /// each counted once; only non-zero with `on_trimmed_data = "continue"`.
    pub trimmed: u64,
}

impl Report {
    fn add(&mut self, batch: Batch) {
        self.stream_records += batch.records;
        self.events += batch.events;
        self.dlq += batch.dlq;
    }
}

/// Reading state of one owned shard.
#[derive(Debug)]
struct Cursor {
    /// The last acknowledged position (what the lease table holds).
    position: Checkpoint,
    iterator: Option<String>,
    /// The last GetRecords returned no record.
    idle: bool,
    backoff: Duration,
    not_before: Option<Instant>,
    /// This process has reported (logged, counted) records of this shard lost to the
    /// stream's retention; later TrimmedDataAccess answers only back off.
    trimmed_reported: bool,
}

impl Cursor {
    fn at(position: Checkpoint) -> Self {
        Cursor {
            position,
            iterator: None,
            idle: false,
            backoff: Duration::ZERO,
            not_before: None,
            trimmed_reported: false,
        }
    }
}

/// What one GetRecords batch added to the cdc topic (and the mapping's outputs).
#[derive(Clone, Copy, Debug, Default)]
struct Batch {
    records: u64,
    events: u64,
    dlq: u64,
}

enum Step {
    Read(Batch),
    /// The shard is read to its end. Carries the batch that reached the end: a
    /// closed shard's last GetRecords returns its final records together with no
    /// next iterator, and they are published like any other batch.
    Finished(Batch),
    Lost,
    Trimmed,
    Wait,
    /// The shard no longer exists (aged out): finish it.
    Gone,
}

/// Runs the source until `shutdown` resolves, or, with `until_caught_up`, until every
/// shard is read to its current end. Publishes through `producer` (the binary passes
/// the Kafka producer; `playlake run` shares one).
pub async fn run<F>(
    config: SourceConfig,
    producer: Arc<dyn Producer>,
    metrics: SourceMetrics,
    shutdown: F,
) -> Result<Report, SourceError>
where
    F: Future<Output = ()> + Send,
{
    config.validate()?;
    let clients = Clients::connect(config.endpoint_url.as_deref(), config.region.as_deref()).await;
    let table_stream = stream::describe_table(&clients, &config.table).await?;
    let leases = LeaseTable::new(clients.dynamodb.clone(), config.lease_table.clone());
    leases.ensure_table().await?;
    tracing::info!(
        table = %config.table, stream = %table_stream.stream_arn, lease_table = %config.lease_table,
        worker = %config.worker_id, topic = %config.cdc_topic(), "DynamoDB source starting"
    );
    let mut report = Report::default();
    tokio::pin!(shutdown);
    if config.backfill {
        let backfill = backfill::run(
            &config,
            &clients,
            &leases,
            &table_stream,
            &producer,
            &metrics,
        );
        tokio::select! {
            biased;
            _ = &mut shutdown => return Ok(report),
            done = backfill => {
                let done = done?;
                report.snapshot_items = done.items;
                report.events += done.published.events;
                report.dlq += done.published.dlq;
            }
        }
    }
    let mut reader = Reader {
        config: &config,
        clients: &clients,
        leases: &leases,
        producer: &producer,
        metrics: &metrics,
        stream_arn: table_stream.stream_arn.clone(),
        cursors: BTreeMap::new(),
        observer: LeaseObserver::default(),
        table_leases: Vec::new(),
        known_shards: BTreeSet::new(),
        next_sync: Instant::now(),
        next_lease_round: Instant::now(),
        lease_rounds: 0,
    };
    let outcome = loop {
        let round = reader.round(&mut report).await;
        let caught_up = match round {
            Ok(c) => c,
            Err(err) => break Err(err),
        };
        if config.until_caught_up && caught_up {
            tracing::info!(table = %config.table, "caught up: every owned shard is read to its end");
            break Ok(());
        }
        let wait = if reader.all_idle() {
            config.poll_interval()
        } else {
            Duration::ZERO
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    };
    reader.release_all().await;
    outcome.map(|()| report)
}

struct Reader<'a> {
    config: &'a SourceConfig,
    clients: &'a Clients,
    leases: &'a LeaseTable,
    producer: &'a Arc<dyn Producer>,
    metrics: &'a SourceMetrics,
    stream_arn: String,
    cursors: BTreeMap<String, Cursor>,
    observer: LeaseObserver,
    /// The lease table as last read (with this process's own checkpoints applied).
    table_leases: Vec<Lease>,
    known_shards: BTreeSet<String>,
    next_sync: Instant,
    next_lease_round: Instant,
    lease_rounds: u64,
}

impl Reader<'_> {
    /// One round; returns whether this process is caught up (see `run`).
    async fn round(&mut self, report: &mut Report) -> Result<bool, SourceError> {
        let now = Instant::now();
        if now >= self.next_sync {
            self.sync_shards().await?;
            self.next_sync = now + Duration::from_millis(self.config.shard_sync_interval_ms);
        }
        if now >= self.next_lease_round {
            self.lease_round().await?;
            self.next_lease_round = now + self.config.lease_duration() / 3;
        }
        let progress: BTreeMap<String, ShardProgress> = self
            .table_leases
            .iter()
            .map(|l| {
                let finished = match self.cursors.get(&l.key) {
                    Some(c) => c.position.is_finished(),
                    None => l.checkpoint.is_finished(),
                };
                (
                    l.key.clone(),
                    ShardProgress {
                        parent_shard_id: l.parent_shard_id.clone(),
                        finished,
                    },
                )
            })
            .collect();
        let ready: BTreeSet<String> =
            ready_shards(&progress, self.cursors.keys().map(String::as_str))
                .into_iter()
                .collect();

        let config = self.config;
        let clients = self.clients;
        let leases = self.leases;
        let producer = self.producer;
        let metrics = self.metrics;
        let stream_arn = self.stream_arn.as_str();
        let steps = {
            let futures = self
                .cursors
                .iter_mut()
                .filter(|(id, _)| ready.contains(*id))
                .map(|(id, cursor)| async move {
                    let step = read_shard(
                        config, clients, leases, producer, metrics, stream_arn, id, cursor,
                    )
                    .await;
                    (id.clone(), step)
                });
            futures::future::join_all(futures).await
        };
        let mut finished_now = false;
        for (id, step) in steps {
            match step? {
                Step::Read(batch) => report.add(batch),
                Step::Finished(batch) => {
                    report.add(batch);
                    report.shards_finished += 1;
                    finished_now = true;
                    for l in self.table_leases.iter_mut().filter(|l| l.key == id) {
                        l.checkpoint = Checkpoint::ShardEnd;
                    }
                    tracing::info!(shard = %id, "shard read to its end; its children may be read");
                }
                Step::Lost => {
                    tracing::warn!(shard = %id, "lease taken over by another process; stopped reading the shard");
                    self.cursors.remove(&id);
                }
                Step::Trimmed => report.trimmed += 1,
                Step::Wait | Step::Gone => {}
            }
        }
        if finished_now {
            // A shard closes when it splits or rotates: its children may exist only
            // in DescribeStream so far. Look again at once, and do not call this
            // round caught up, or `--until-caught-up` would stop before them.
            self.next_sync = Instant::now();
            self.next_lease_round = Instant::now();
        }
        self.cursors.retain(|_, c| !c.position.is_finished());
        self.metrics
            .shards_owned
            .with_label_values(&[&self.config.table])
            .set(self.cursors.len() as i64);

        // Caught up: the lease table was read at least once, every unfinished shard is
        // ours, and each one we can read returned nothing new.
        let unfinished_all_mine = self
            .table_leases
            .iter()
            .filter(|l| !l.checkpoint.is_finished())
            .all(|l| self.cursors.contains_key(&l.key));
        let caught_up = self.lease_rounds > 0
            && !finished_now
            && unfinished_all_mine
            && self
                .cursors
                .iter()
                .all(|(id, c)| ready.contains(id) && c.idle && c.not_before.is_none());
        Ok(caught_up)
    }

    fn all_idle(&self) -> bool {
        self.cursors
            .values()
            .all(|c| c.idle || c.not_before.is_some())
    }

    async fn sync_shards(&mut self) -> Result<(), SourceError> {
        let graph = stream::describe_stream(self.clients, &self.stream_arn).await?;
        for shard in graph.parents_first() {
            if self.known_shards.contains(&shard.shard_id) {
                continue;
            }
            if self
                .leases
                .create_if_missing(
                    &shard.shard_id,
                    shard.parent_shard_id.as_deref(),
                    &Checkpoint::TrimHorizon,
                )
                .await?
                == Conditional::Done
            {
                tracing::info!(shard = %shard.shard_id, parent = ?shard.parent_shard_id, "new shard");
                // Read the table again at once so the new lease is taken this round.
                self.next_lease_round = Instant::now();
            }
            self.known_shards.insert(shard.shard_id.clone());
        }
        Ok(())
    }

    async fn lease_round(&mut self) -> Result<(), SourceError> {
        let me = self.config.worker_id.as_str();
        let mut leases = self.leases.list().await?;
        let now = Instant::now();
        self.observer.observe(&leases, now);

        // Renew what we hold; adopt leases the table says are ours (a restart with
        // the same worker id); drop what someone else took.
        let mut lost = Vec::new();
        for lease in leases.iter_mut() {
            if lease.owner.as_deref() != Some(me) {
                if self.cursors.contains_key(&lease.key) {
                    lost.push(lease.key.clone());
                }
                continue;
            }
            let counter = lease.counter;
            match self.leases.renew(&lease.key, counter, me).await? {
                Some(new_counter) => {
                    lease.counter = new_counter;
                    self.cursors
                        .entry(lease.key.clone())
                        .or_insert_with(|| Cursor::at(lease.checkpoint.clone()));
                }
                None => lost.push(lease.key.clone()),
            }
        }
        for key in lost {
            if self.cursors.remove(&key).is_some() {
                tracing::warn!(shard = %key, "lease lost to another process");
            }
        }
        self.observer.observe(&leases, now);

        let available: BTreeSet<String> = leases
            .iter()
            .filter(|l| {
                l.owner.as_deref() != Some(me)
                    && self
                        .observer
                        .is_available(l, now, self.config.lease_duration())
            })
            .map(|l| l.key.clone())
            .collect();
        let decision = plan(me, &leases, &available);
        let by_key: HashMap<String, Lease> =
            leases.iter().map(|l| (l.key.clone(), l.clone())).collect();
        for key in decision.take.iter().chain(decision.steal.iter()) {
            let Some(lease) = by_key.get(key) else {
                continue;
            };
            if let Some(counter) = self.leases.take(key, lease.counter, me).await? {
                tracing::info!(
                    shard = %key, previous_owner = ?lease.owner, checkpoint = %lease.checkpoint,
                    stolen = decision.steal.as_deref() == Some(key.as_str()), "took lease"
                );
                self.cursors
                    .insert(key.clone(), Cursor::at(lease.checkpoint.clone()));
                for l in leases.iter_mut().filter(|l| &l.key == key) {
                    l.owner = Some(me.to_string());
                    l.counter = counter;
                }
            }
        }
        self.table_leases = leases;
        self.lease_rounds += 1;
        Ok(())
    }

    async fn release_all(&mut self) {
        let me = self.config.worker_id.clone();
        for key in self.cursors.keys() {
            if let Err(err) = self.leases.release(key, &me).await {
                tracing::warn!(shard = %key, error = %err, "could not release lease; it will expire");
            }
        }
        self.cursors.clear();
    }
}

/// The reader retries failed reads itself (`handle_read_error`: per-shard backoff,
/// counted by reason), so the SDK must not retry them first.
const RETRIES: stream::Retries = stream::Retries::Caller;

/// Reads and publishes one batch of one shard, then checkpoints it.
#[allow(clippy::too_many_arguments)]
async fn read_shard(
    config: &SourceConfig,
    clients: &Clients,
    leases: &LeaseTable,
    producer: &Arc<dyn Producer>,
    metrics: &SourceMetrics,
    stream_arn: &str,
    shard_id: &str,
    cursor: &mut Cursor,
) -> Result<Step, SourceError> {
    let table = config.table.as_str();
    if let Some(at) = cursor.not_before {
        if Instant::now() < at {
            return Ok(Step::Wait);
        }
        cursor.not_before = None;
    }
    let result = async {
        if cursor.iterator.is_none() {
            cursor.iterator =
                stream::iterator_after(clients, stream_arn, shard_id, &cursor.position, RETRIES)
                    .await?;
        }
        match cursor.iterator.as_deref() {
            Some(it) => stream::get_records(clients, it, config.max_records_per_get, RETRIES)
                .await
                .map(Some),
            None => Ok(None),
        }
    }
    .await;
    let (records, next) = match result {
        Ok(Some(batch)) => batch,
        // No iterator for the shard at all: it is closed and empty past our position.
        Ok(None) => (Vec::new(), None),
        Err(err) => {
            return match handle_read_error(config, metrics, shard_id, cursor, err)? {
                Step::Gone => finish(config, leases, shard_id, cursor, Batch::default()).await,
                // The loss is reported: start the shard over from its oldest kept
                // record, durably, so no restart reports it again.
                Step::Trimmed => {
                    if leases
                        .checkpoint(shard_id, &config.worker_id, &Checkpoint::TrimHorizon)
                        .await?
                        == Conditional::Lost
                    {
                        return Ok(Step::Lost);
                    }
                    Ok(Step::Trimmed)
                }
                step => Ok(step),
            };
        }
    };
    cursor.backoff = Duration::ZERO;
    metrics
        .records_in
        .with_label_values(&[table])
        .inc_by(records.len() as u64);
    let changes = records
        .iter()
        .map(|r| change_event(table, shard_id, r))
        .collect::<Result<Vec<_>, _>>()?;
    let published = publish(config, producer, metrics, &changes).await?;
    if let Some(last) = changes.last() {
        let age_ms = now_ms().saturating_sub(last.approximate_creation_time.as_millis());
        metrics
            .iterator_age_seconds
            .with_label_values(&[table])
            .set(age_ms / 1000);
        if let Some(seq) = &last.sequence_number {
            let checkpoint = Checkpoint::After(seq.clone());
            if leases
                .checkpoint(shard_id, &config.worker_id, &checkpoint)
                .await?
                == Conditional::Lost
            {
                return Ok(Step::Lost);
            }
            cursor.position = checkpoint;
        }
    } else {
        metrics
            .iterator_age_seconds
            .with_label_values(&[table])
            .set(0);
    }
    cursor.idle = changes.is_empty();
    let batch = Batch {
        records: published.cdc,
        events: published.events,
        dlq: published.dlq,
    };
    match next {
        Some(it) => {
            cursor.iterator = Some(it);
            Ok(Step::Read(batch))
        }
        None => finish(config, leases, shard_id, cursor, batch).await,
    }
}

/// Marks a shard read to its end, which releases its children. `last` is the batch
/// published just before (empty when the end was found without records), so the
/// run's report counts it.
async fn finish(
    config: &SourceConfig,
    leases: &LeaseTable,
    shard_id: &str,
    cursor: &mut Cursor,
    last: Batch,
) -> Result<Step, SourceError> {
    if leases
        .checkpoint(shard_id, &config.worker_id, &Checkpoint::ShardEnd)
        .await?
        == Conditional::Lost
    {
        return Ok(Step::Lost);
    }
    cursor.position = Checkpoint::ShardEnd;
    cursor.iterator = None;
    Ok(Step::Finished(last))
}

fn handle_read_error(
    config: &SourceConfig,
    metrics: &SourceMetrics,
    shard_id: &str,
    cursor: &mut Cursor,
    err: SourceError,
) -> Result<Step, SourceError> {
    let table = config.table.as_str();
    match err.aws_code() {
        Some("ExpiredIteratorException") => {
            metrics
                .retries
                .with_label_values(&[table, "expired_iterator"])
                .inc();
            tracing::info!(shard = %shard_id, position = %cursor.position, "iterator expired; re-acquiring after the last acknowledged record");
            cursor.iterator = None;
            // Nothing was read: the shard may hold records past the expired iterator.
            cursor.idle = false;
            Ok(Step::Wait)
        }
        Some("TrimmedDataAccessException") => {
            if cursor.trimmed_reported {
                // Already reported for this shard and read from TRIM_HORIZON since:
                // the horizon moved under the iterator. Back off and start again
                // from the oldest record, without counting the same loss twice.
                metrics.retries.with_label_values(&[table, "trimmed"]).inc();
                backoff(config, cursor);
                cursor.position = Checkpoint::TrimHorizon;
                cursor.iterator = None;
                tracing::warn!(
                    shard = %shard_id, backoff_ms = cursor.backoff.as_millis() as u64,
                    "TrimmedDataAccess again while reading from the oldest record; retrying"
                );
                return Ok(Step::Wait);
            }
            metrics.trimmed_data.with_label_values(&[table]).inc();
            tracing::error!(
                table, shard = %shard_id, position = %cursor.position,
                policy = ?config.on_trimmed_data,
                "TrimmedDataAccess: records were removed by the stream's 24 h retention before they were read; changes are LOST"
            );
            match config.on_trimmed_data {
                TrimmedDataPolicy::Fail => Err(SourceError::TrimmedData {
                    shard_id: shard_id.to_string(),
                }),
                TrimmedDataPolicy::Continue => {
                    cursor.trimmed_reported = true;
                    cursor.position = Checkpoint::TrimHorizon;
                    cursor.iterator = None;
                    cursor.idle = false;
                    Ok(Step::Trimmed)
                }
            }
        }
        Some("ResourceNotFoundException") => {
            // The shard aged out of the stream (24 h after it closed) while we held it.
            tracing::warn!(shard = %shard_id, "shard no longer exists; treating it as finished");
            Ok(Step::Gone)
        }
        _ if err.is_throttle() || err.is_transient() => {
            let reason = if err.is_throttle() {
                "throttle"
            } else {
                "transient"
            };
            metrics.retries.with_label_values(&[table, reason]).inc();
            backoff(config, cursor);
            // An iterator may have gone stale during an outage; re-acquire from the
            // acknowledged position.
            if !err.is_throttle() {
                cursor.iterator = None;
            }
            tracing::warn!(shard = %shard_id, error = %err, backoff_ms = cursor.backoff.as_millis() as u64, "retrying");
            Ok(Step::Wait)
        }
        _ => Err(err),
    }
}

/// Doubles the shard's pause (100 ms first, at most `max_backoff_ms`) and holds
/// its reads until it has passed.
fn backoff(config: &SourceConfig, cursor: &mut Cursor) {
    cursor.backoff = (cursor.backoff * 2)
        .max(Duration::from_millis(100))
        .min(Duration::from_millis(config.max_backoff_ms));
    cursor.not_before = Some(Instant::now() + cursor.backoff);
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
