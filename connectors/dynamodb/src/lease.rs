//! Leases: which `source` process reads which shard, and where each shard's reading
//! stands. The pure state machine; `lease_table.rs` stores it in DynamoDB.
//!
//! As in the Kinesis Client Library, one lease per shard lives in a DynamoDB table
//! (`lease_key` = shard id) with its owner, a counter and the checkpoint:
//! - the owner **renews** its leases by incrementing the counter with a conditional
//!   write (owner and counter unchanged);
//! - another process considers a lease **expired** when it has seen the same counter
//!   for longer than the lease duration on its *own* monotonic clock, so no clocks
//!   are compared across machines;
//! - taking a free or expired lease, or stealing one for balance, is a conditional
//!   write on the counter it observed, so of two takers exactly one wins;
//! - the **checkpoint** is written only by the owner (condition: owner = me) and only
//!   after Kafka acknowledged every record up to it, so a lost lease can never move a
//!   checkpoint, and a new owner resumes right after the last acknowledged record.
//!
//! Data flow: lease_table scans the table -> [`LeaseObserver::observe`] ->
//! [`plan`] decides what to take or steal -> lease_table performs the conditional
//! writes -> the reader reads the shards it owns from their checkpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

/// Where a shard's reading stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing read yet: start at the oldest record still in the stream.
    TrimHorizon,
    /// Every record up to and including this sequence number is acknowledged by Kafka.
    After(String),
    /// The shard is closed and read to its end; its children may be read.
    ShardEnd,
}

impl Checkpoint {
    pub const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    pub const SHARD_END: &'static str = "SHARD_END";

    /// The stored text: `TRIM_HORIZON`, `SHARD_END` or the sequence number.
    pub fn as_stored(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => Self::TRIM_HORIZON,
            Checkpoint::ShardEnd => Self::SHARD_END,
            Checkpoint::After(seq) => seq,
        }
    }

    pub fn from_stored(text: &str) -> Self {
        match text {
            Self::TRIM_HORIZON => Checkpoint::TrimHorizon,
            Self::SHARD_END => Checkpoint::ShardEnd,
            seq => Checkpoint::After(seq.to_string()),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_stored())
    }
}

/// One shard's lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The shard id.
    pub key: String,
    /// The process reading the shard; `None` when free.
    pub owner: Option<String>,
    /// Incremented by every renewal, take and steal.
    pub counter: u64,
    pub checkpoint: Checkpoint,
    pub parent_shard_id: Option<String>,
}

/// Remembers when this process last saw each lease's counter change, to tell
/// expired leases (owner gone) from live ones without trusting other clocks.
#[derive(Debug, Default)]
pub struct LeaseObserver {
    seen: HashMap<String, (u64, Instant)>,
}

impl LeaseObserver {
    pub fn observe(&mut self, leases: &[Lease], now: Instant) {
        for lease in leases {
            match self.seen.get(&lease.key) {
                Some((counter, _)) if *counter == lease.counter => {}
                _ => {
                    self.seen.insert(lease.key.clone(), (lease.counter, now));
                }
            }
        }
    }

    /// Free (no owner), or its counter has not moved for `duration` as seen here.
    /// A lease first seen now is not expired: a restarted process waits a full
    /// lease duration before it takes over another owner's shard.
    pub fn is_available(&self, lease: &Lease, now: Instant, duration: Duration) -> bool {
        if lease.owner.is_none() {
            return true;
        }
        match self.seen.get(&lease.key) {
            Some((counter, since)) if *counter == lease.counter => {
                now.saturating_duration_since(*since) >= duration
            }
            _ => false,
        }
    }
}

/// What a process should do with the leases this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Free or expired leases to take (conditional on their observed counter).
    pub take: Vec<String>,
    /// One lease to steal from an owner holding more than its share.
    pub steal: Option<String>,
}

/// Decides which leases `me` takes so that the unfinished shards spread evenly over
/// the live processes (those owning a non-expired unfinished lease, plus `me`).
/// Parents are preferred (they are listed first by key order within a generation is
/// not known here, so leases whose parent is finished or absent come first).
pub fn plan(me: &str, leases: &[Lease], available: &BTreeSet<String>) -> Plan {
    let unfinished: Vec<&Lease> = leases
        .iter()
        .filter(|l| !l.checkpoint.is_finished())
        .collect();
    if unfinished.is_empty() {
        return Plan::default();
    }
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    load.insert(me, 0);
    for lease in &unfinished {
        if let Some(owner) = lease.owner.as_deref() {
            if owner == me || !available.contains(&lease.key) {
                *load.entry(owner).or_insert(0) += 1;
            }
        }
    }
    let workers = load.len();
    let target = unfinished.len().div_ceil(workers);
    let mine = load.get(me).copied().unwrap_or(0);
    if mine >= target {
        return Plan::default();
    }
    let finished: BTreeSet<&str> = leases
        .iter()
        .filter(|l| l.checkpoint.is_finished())
        .map(|l| l.key.as_str())
        .collect();
    let by_key: BTreeSet<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    let mut free: Vec<&Lease> = unfinished
        .iter()
        .copied()
        .filter(|l| l.owner.as_deref() != Some(me) && available.contains(&l.key))
        .collect();
    // Readable shards first (parent finished or gone), so a new process does not sit
    // on children it cannot read yet while their parent is free.
    free.sort_by_key(|l| {
        let readable = l
            .parent_shard_id
            .as_deref()
            .is_none_or(|p| finished.contains(p) || !by_key.contains(p));
        (!readable, l.key.clone())
    });
    let take: Vec<String> = free
        .iter()
        .take(target - mine)
        .map(|l| l.key.clone())
        .collect();
    if !take.is_empty() {
        return Plan { take, steal: None };
    }
    // Nothing free: steal one lease from the most loaded owner, if it holds more
    // than its share. One per round keeps the hand-over gradual.
    let victim = load
        .iter()
        .filter(|(owner, n)| **owner != me && **n > target)
        .max_by_key(|(owner, n)| (**n, std::cmp::Reverse(**owner)))
        .map(|(owner, _)| *owner);
    let steal = victim.and_then(|victim| {
        unfinished
            .iter()
            .filter(|l| l.owner.as_deref() == Some(victim))
            .map(|l| l.key.clone())
            .max()
    });
    Plan {
        take: Vec::new(),
        steal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(key: &str, owner: Option<&str>, counter: u64, cp: Checkpoint) -> Lease {
        Lease {
            key: key.into(),
            owner: owner.map(str::to_string),
            counter,
            checkpoint: cp,
            parent_shard_id: None,
        }
    }

    #[test]
    fn checkpoint_text_round_trips() {
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::ShardEnd,
            Checkpoint::After("1100000000017454423009".into()),
        ] {
            assert_eq!(Checkpoint::from_stored(cp.as_stored()), cp);
        }
    }

    #[test]
    fn expiry_is_judged_on_the_local_clock() {
        let start = Instant::now();
        let d = Duration::from_secs(10);
        let mut obs = LeaseObserver::default();
        let l = lease("s1", Some("a"), 5, Checkpoint::TrimHorizon);
        obs.observe(std::slice::from_ref(&l), start);
        assert!(!obs.is_available(&l, start + Duration::from_secs(9), d));
        assert!(obs.is_available(&l, start + d, d));
        // The owner renewed: the clock starts again.
        let renewed = Lease {
            counter: 6,
            ..l.clone()
        };
        obs.observe(
            std::slice::from_ref(&renewed),
            start + Duration::from_secs(9),
        );
        assert!(!obs.is_available(&renewed, start + Duration::from_secs(18), d));
        assert!(obs.is_available(&renewed, start + Duration::from_secs(19), d));
        // Free leases are available at once; unseen owned leases are not.
        let free = lease("s2", None, 0, Checkpoint::TrimHorizon);
        assert!(obs.is_available(&free, start, d));
        let unseen = lease("s3", Some("b"), 1, Checkpoint::TrimHorizon);
        assert!(!obs.is_available(&unseen, start + Duration::from_secs(100), d));
    }

    fn keys(n: usize, owner: Option<&str>) -> Vec<Lease> {
        (0..n)
            .map(|i| lease(&format!("s{i}"), owner, 1, Checkpoint::TrimHorizon))
            .collect()
    }

    #[test]
    fn first_process_takes_every_free_lease() {
        let leases = keys(4, None);
        let avail = leases.iter().map(|l| l.key.clone()).collect();
        let p = plan("a", &leases, &avail);
        assert_eq!(p.take.len(), 4);
        assert_eq!(p.steal, None);
    }

    #[test]
    fn second_process_steals_until_balanced() {
        let mut leases = keys(4, Some("a"));
        let none = BTreeSet::new();
        let p = plan("b", &leases, &none);
        assert!(p.take.is_empty());
        let stolen = p.steal.clone().unwrap();
        for l in leases.iter_mut().filter(|l| l.key == stolen) {
            l.owner = Some("b".into());
        }
        let p = plan("b", &leases, &none);
        let stolen = p.steal.clone().unwrap();
        for l in leases.iter_mut().filter(|l| l.key == stolen) {
            l.owner = Some("b".into());
        }
        // 2 and 2: balanced, nobody moves.
        assert_eq!(plan("b", &leases, &none), Plan::default());
        assert_eq!(plan("a", &leases, &none), Plan::default());
    }

    #[test]
    fn one_shard_two_processes_no_ping_pong() {
        let leases = keys(1, Some("a"));
        assert_eq!(plan("b", &leases, &BTreeSet::new()), Plan::default());
    }

    #[test]
    fn dead_owner_leases_are_taken_and_finished_ones_ignored() {
        let mut leases = keys(2, Some("dead"));
        leases.push(lease("old", Some("dead"), 9, Checkpoint::ShardEnd));
        let avail: BTreeSet<String> = ["s0", "s1", "old"].iter().map(|s| s.to_string()).collect();
        let p = plan("b", &leases, &avail);
        assert_eq!(p.take, vec!["s0".to_string(), "s1".to_string()]);
    }

    #[test]
    fn readable_children_are_taken_before_waiting_ones() {
        let mut leases = vec![
            lease("a-child", None, 0, Checkpoint::TrimHorizon),
            lease("b-root", None, 0, Checkpoint::TrimHorizon),
            lease("c-root", Some("x"), 3, Checkpoint::TrimHorizon),
        ];
        leases[0].parent_shard_id = Some("c-root".into());
        let avail: BTreeSet<String> = ["a-child", "b-root"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Two workers (x and me), three unfinished: target 2, I take 2, root first.
        let p = plan("me", &leases, &avail);
        assert_eq!(p.take, vec!["b-root".to_string(), "a-child".to_string()]);
    }
}
