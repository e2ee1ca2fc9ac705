//! The pipeline's topic names (SPEC section 6), derived from the configured prefix,
//! and the specs they are created with when missing.

use playlake_transport::TopicSpec;

/// Names of every topic the pipeline reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    pub fn events(&self) -> String {
        self.name("events")
    }
    pub fn sessions(&self) -> String {
        self.name("sessions")
    }
    pub fn viewers(&self) -> String {
        self.name("viewers")
    }
    pub fn daily(&self) -> String {
        self.name("daily")
    }
    pub fn resume(&self) -> String {
        self.name("resume")
    }
    pub fn late(&self) -> String {
        self.name("late")
    }
    pub fn dlq(&self) -> String {
        self.name("dlq")
    }

    /// Specs of the pipeline's own topics (the cdc topics are created by their
    /// source); `playback.resume` is compacted, keyed `user_id/stream_id`.
    pub fn specs(&self, partitions: i32, replication_factor: i32) -> Vec<TopicSpec> {
        let spec = |name: String| TopicSpec {
            replication_factor,
            ..TopicSpec::new(name, partitions)
        };
        vec![
            spec(self.events()),
            spec(self.sessions()),
            spec(self.viewers()),
            spec(self.daily()),
            spec(self.resume()).compacted(),
            spec(self.late()),
            spec(self.dlq()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use playlake_transport::CleanupPolicy;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topics::new("prod.playback");
        assert_eq!(t.events(), "prod.playback.events");
        let specs = t.specs(4, 1);
        assert_eq!(specs.len(), 7);
        let resume = specs.iter().find(|s| s.name == t.resume()).unwrap();
        assert_eq!(resume.cleanup_policy, CleanupPolicy::Compact);
        assert!(specs
            .iter()
            .filter(|s| s.name != t.resume())
            .all(|s| s.cleanup_policy == CleanupPolicy::Delete && s.partitions == 4));
    }
}
