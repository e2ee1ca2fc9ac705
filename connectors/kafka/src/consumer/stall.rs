//! When a group member is stuck and must leave and join again as a new member.
//!
//! Two states end in a rejoin (see `KafkaConsumer::rejoin_if_stalled`):
//!
//! - **joining**: subscribed, or revoked in a rebalance, and no assignment since.
//!   Tansu 0.6.0's coordinator can stay forming forever when the leader it picked
//!   dies mid-rebalance.
//! - **idle**: the join completed with an *empty* assignment. Tansu 0.6.0 forms a
//!   group with no assignment at all when the leader expires while a follower's
//!   JoinGroup waits out the coordinator's 3 s follower pause: the follower's
//!   SyncGroup then finds no leader, the group becomes stable with an empty
//!   assignment map, and every member gets nothing while heartbeats succeed. A
//!   restarted member joining just after its previous instance vanished without
//!   leaving (SIGKILL, LeaveGroup timed out) hits exactly that window: in the
//!   chaos run `process --drain` sat with no partitions for 4.5 minutes. A new
//!   member joining makes the coordinator rebalance again.
//!
//! An empty assignment is also what a healthy group gives a member when it has
//! more members than partitions, and the consumer cannot tell the two apart on
//! Tansu (its DescribeGroups fails on sqlite storage, and librdkafka does not
//! expose the member count). So the wait before an idle member rejoins doubles with
//! every idle rejoin of that consumer, up to [`MAX_IDLE_DOUBLINGS`]: a stuck member
//! recovers after the join stall timeout, while an over-provisioned group sees at
//! most an occasional rebalance, each with a warning in the log.

use std::time::{Duration, Instant};

use crate::config::KafkaConfig;

/// The wait before an idle member rejoins doubles at most this many times: 16x the
/// join stall timeout (8 minutes with the 30 s floor) between idle rejoins of an
/// over-provisioned group's member.
pub(super) const MAX_IDLE_DOUBLINGS: u32 = 4;

/// Why a member leaves and joins again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stall {
    /// Waited longer than the join stall timeout for an assignment.
    Joining { waited: Duration },
    /// Held an empty assignment longer than [`idle_timeout`].
    Idle { waited: Duration },
}

/// Whether the member is stuck at `now`: waiting for an assignment since
/// `joining_since`, or holding an empty one since `idle_since` (at most one of them
/// is set), given how many idle rejoins this consumer already made.
pub(super) fn stall(
    joining_since: Option<Instant>,
    idle_since: Option<Instant>,
    now: Instant,
    join_stall_timeout: Duration,
    idle_rejoins: u32,
) -> Option<Stall> {
    if let Some(since) = joining_since {
        let waited = now.saturating_duration_since(since);
        return (waited >= join_stall_timeout).then_some(Stall::Joining { waited });
    }
    let waited = now.saturating_duration_since(idle_since?);
    (waited >= idle_timeout(join_stall_timeout, idle_rejoins)).then_some(Stall::Idle { waited })
}

/// How long an empty assignment is held before rejoining: the join stall timeout,
/// doubled for each idle rejoin this consumer already made, at most
/// [`MAX_IDLE_DOUBLINGS`] times.
pub(super) fn idle_timeout(join_stall_timeout: Duration, idle_rejoins: u32) -> Duration {
    join_stall_timeout.saturating_mul(1 << idle_rejoins.min(MAX_IDLE_DOUBLINGS))
}

/// How long a member waits for an assignment before rejoining: twice the session
/// timeout (librdkafka's default 45 s unless set), so that a dead member's expiry
/// fits, and at least 30 s.
pub(super) fn join_stall_timeout(config: &KafkaConfig) -> Duration {
    let session_ms = config
        .options
        .iter()
        .rev()
        .find(|o| o.key == "session.timeout.ms")
        .and_then(|o| o.value.parse::<u64>().ok())
        .unwrap_or(45_000);
    Duration::from_millis(session_ms.saturating_mul(2)).max(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_join_stalls_after_the_timeout() {
        let t0 = Instant::now();
        assert_eq!(stall(Some(t0), None, at(t0, 29), TIMEOUT, 0), None);
        assert_eq!(
            stall(Some(t0), None, at(t0, 30), TIMEOUT, 0),
            Some(Stall::Joining {
                waited: Duration::from_secs(30)
            })
        );
        // Idle rejoins do not lengthen the wait for an assignment.
        assert!(stall(Some(t0), None, at(t0, 30), TIMEOUT, 9).is_some());
    }

    #[test]
    fn an_empty_assignment_is_not_kept_forever() {
        let t0 = Instant::now();
        assert_eq!(stall(None, Some(t0), at(t0, 29), TIMEOUT, 0), None);
        assert_eq!(
            stall(None, Some(t0), at(t0, 30), TIMEOUT, 0),
            Some(Stall::Idle {
                waited: Duration::from_secs(30)
            })
        );
    }

    #[test]
    fn a_member_with_partitions_never_stalls() {
        let t0 = Instant::now();
        assert_eq!(stall(None, None, at(t0, 100_000), TIMEOUT, 0), None);
    }

    #[test]
    fn idle_rejoins_back_off_to_a_bound() {
        let waits: Vec<u64> = (0..8).map(|n| idle_timeout(TIMEOUT, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 480, 480, 480]);
        let t0 = Instant::now();
        assert_eq!(stall(None, Some(t0), at(t0, 479), TIMEOUT, 4), None);
        assert!(stall(None, Some(t0), at(t0, 480), TIMEOUT, 100).is_some());
    }

    #[test]
    fn the_join_stall_timeout_follows_the_session_timeout() {
        let config = |options: &[&str]| {
            KafkaConfig::new("localhost:9092")
                .with_options(options.iter().copied())
                .unwrap()
        };
        assert_eq!(join_stall_timeout(&config(&[])), Duration::from_secs(90));
        assert_eq!(
            join_stall_timeout(&config(&["session.timeout.ms=6000"])),
            Duration::from_secs(30)
        );
        assert_eq!(
            join_stall_timeout(&config(&[
                "session.timeout.ms=6000",
                "session.timeout.ms=20000"
            ])),
            Duration::from_secs(40)
        );
    }
}
