//! Consumer groups of the in-process log: membership and a deterministic range
//! assignor.
//!
//! Joining, changing a subscription or leaving (close or drop) recomputes every
//! member's partitions and bumps the group's generation; each member notices the new
//! generation on its next `poll` and turns the difference into `Revoked` and
//! `Assigned` events (an incremental rebalance: partitions a member keeps are neither
//! revoked nor re-assigned).

use std::collections::{BTreeMap, BTreeSet};

use super::{lock, Inner};
use crate::{Result, TopicPartition};

/// Identifies a member within the transport; ids grow in join order.
pub(crate) type MemberId = u64;

#[derive(Default)]
pub(crate) struct Group {
    /// Bumped on every rebalance.
    generation: u64,
    members: BTreeMap<MemberId, Member>,
}

struct Member {
    topics: Vec<String>,
    assignment: Vec<TopicPartition>,
}

impl Group {
    /// Every member's partitions, in member-id order.
    pub(crate) fn assignments(&self) -> Vec<Vec<TopicPartition>> {
        self.members
            .values()
            .map(|m| m.assignment.clone())
            .collect()
    }

    /// Kafka's range assignor, topic by topic: members subscribed to a topic, in id
    /// order, get consecutive ranges of its partitions, the first ones one extra.
    fn rebalance(&mut self, partition_count: impl Fn(&str) -> Option<i32>) {
        self.generation = self.generation.wrapping_add(1);
        let topics: BTreeSet<String> = self
            .members
            .values()
            .flat_map(|m| m.topics.iter().cloned())
            .collect();
        for member in self.members.values_mut() {
            member.assignment.clear();
        }
        for topic in topics {
            let Some(partitions) = partition_count(&topic) else {
                continue;
            };
            let subscribers: Vec<&mut Member> = self
                .members
                .values_mut()
                .filter(|m| m.topics.contains(&topic))
                .collect();
            let count = subscribers.len() as i32;
            if count == 0 {
                continue;
            }
            let (per_member, extra) = (partitions / count, partitions % count);
            let mut next = 0;
            for (i, member) in subscribers.into_iter().enumerate() {
                let take = per_member + i32::from((i as i32) < extra);
                member
                    .assignment
                    .extend((next..next + take).map(|p| TopicPartition::new(topic.clone(), p)));
                next += take;
            }
        }
        for member in self.members.values_mut() {
            member.assignment.sort();
        }
    }
}

/// What a member learns from the group on `poll`.
pub(crate) struct MemberView {
    pub(crate) generation: u64,
    /// `None` when the member is no longer in the group.
    pub(crate) assignment: Option<Vec<TopicPartition>>,
}

impl Inner {
    /// Adds a member (or changes its subscription) and rebalances the group. Every
    /// topic must exist.
    pub(crate) fn join_group(
        &self,
        group: &str,
        member: Option<MemberId>,
        topics: &[String],
    ) -> Result<MemberId> {
        for topic in topics {
            self.topic(topic)?;
        }
        let id = member.unwrap_or_else(|| {
            self.next_member_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        });
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        {
            let mut groups = lock(&self.groups);
            let state = groups.entry(group.to_owned()).or_default();
            state.members.insert(
                id,
                Member {
                    topics,
                    assignment: Vec::new(),
                },
            );
            state.rebalance(|t| self.topic(t).ok().map(|t| t.partition_count()));
        }
        self.notify_change();
        Ok(id)
    }

    /// Removes a member and hands its partitions to the others.
    pub(crate) fn leave_group(&self, group: &str, member: MemberId) {
        {
            let mut groups = lock(&self.groups);
            let Some(state) = groups.get_mut(group) else {
                return;
            };
            if state.members.remove(&member).is_none() {
                return;
            }
            if state.members.is_empty() {
                groups.remove(group);
            } else {
                state.rebalance(|t| self.topic(t).ok().map(|t| t.partition_count()));
            }
        }
        self.notify_change();
    }

    /// The group's generation and this member's partitions in it, when the
    /// generation differs from `seen` (what the member last acted on).
    pub(crate) fn member_view(
        &self,
        group: &str,
        member: MemberId,
        seen: Option<u64>,
    ) -> Option<MemberView> {
        let groups = lock(&self.groups);
        let state = groups.get(group);
        let generation = state.map_or(0, |s| s.generation);
        if seen == Some(generation) {
            return None;
        }
        Some(MemberView {
            generation,
            assignment: state
                .and_then(|s| s.members.get(&member))
                .map(|m| m.assignment.clone()),
        })
    }
}
