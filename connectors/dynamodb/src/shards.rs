//! The shard graph of a DynamoDB stream: which shards exist, which came from which,
//! and which may be read now.
//!
//! Data flow: the I/O layer pages through DescribeStream and hands the shards to
//! [`ShardGraph::from_describe`]; the lease layer creates one lease per shard in
//! [`ShardGraph::parents_first`] order; the reader asks [`ready_shards`] which of its
//! leased shards it may read. A shard is read only after its parent is finished
//! (its lease checkpoint is `SHARD_END`), because DynamoDB writes the changes of one
//! item to the parent first and to a child after a split, so reading a child early
//! would reorder that item's changes. A parent that is no longer in the stream
//! description and has no lease was trimmed (older than the 24 h retention): its
//! children are readable.
//!
//! Pure code: tested with constructed DescribeStream pages (moto has one shard per
//! table and never splits or closes it).

use std::collections::{BTreeMap, BTreeSet};

/// One shard as DescribeStream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub starting_sequence_number: Option<String>,
    /// Set once the shard is closed: no record will be added after this one.
    pub ending_sequence_number: Option<String>,
}

impl ShardInfo {
    pub fn is_closed(&self) -> bool {
        self.ending_sequence_number.is_some()
    }
}

/// Every shard of a stream, by id, with its lineage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardGraph {
    shards: BTreeMap<String, ShardInfo>,
}

impl ShardGraph {
    /// Merges DescribeStream pages (a shard may appear in two pages when the stream
    /// changed between calls; the later description wins, since shards only close).
    pub fn from_describe<I>(pages: I) -> Self
    where
        I: IntoIterator<Item = Vec<ShardInfo>>,
    {
        let mut shards = BTreeMap::new();
        for page in pages {
            for shard in page {
                shards.insert(shard.shard_id.clone(), shard);
            }
        }
        Self { shards }
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    pub fn get(&self, shard_id: &str) -> Option<&ShardInfo> {
        self.shards.get(shard_id)
    }

    /// Every shard, each after its parent (when the parent is known). Among shards
    /// of one generation the order is by id, so it is deterministic.
    pub fn parents_first(&self) -> Vec<&ShardInfo> {
        let mut out = Vec::with_capacity(self.shards.len());
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        // Repeated passes: a shard is placed once its parent is placed or unknown.
        // Lineage is a forest, so each pass places at least one shard; the guard
        // below only protects against a malformed (cyclic) description.
        while out.len() < self.shards.len() {
            let before = out.len();
            for shard in self.shards.values() {
                if placed.contains(shard.shard_id.as_str()) {
                    continue;
                }
                let parent_done = match &shard.parent_shard_id {
                    Some(parent) if self.shards.contains_key(parent) => {
                        placed.contains(parent.as_str())
                    }
                    _ => true,
                };
                if parent_done {
                    placed.insert(shard.shard_id.as_str());
                    out.push(shard);
                }
            }
            if out.len() == before {
                for shard in self.shards.values() {
                    if !placed.contains(shard.shard_id.as_str()) {
                        placed.insert(shard.shard_id.as_str());
                        out.push(shard);
                    }
                }
            }
        }
        out
    }

    /// The shards no other shard names as parent: the stream's current generation.
    pub fn leaves(&self) -> Vec<&ShardInfo> {
        let parents: BTreeSet<&str> = self
            .shards
            .values()
            .filter_map(|s| s.parent_shard_id.as_deref())
            .collect();
        self.shards
            .values()
            .filter(|s| !parents.contains(s.shard_id.as_str()))
            .collect()
    }
}

/// What the reader knows about a shard from its lease: its parent and whether it is
/// finished (checkpoint `SHARD_END`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardProgress {
    pub parent_shard_id: Option<String>,
    pub finished: bool,
}

/// The shards among `candidates` that may be read now: not finished, and whose
/// parent is finished or unknown (no lease: never existed here, or trimmed).
pub fn ready_shards<'a>(
    progress: &BTreeMap<String, ShardProgress>,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    candidates
        .into_iter()
        .filter(|id| match progress.get(*id) {
            None => false,
            Some(p) if p.finished => false,
            Some(p) => match &p.parent_shard_id {
                None => true,
                Some(parent) => progress.get(parent).is_none_or(|pp| pp.finished),
            },
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parent.map(str::to_string),
            starting_sequence_number: Some("100".into()),
            ending_sequence_number: closed.then(|| "200".to_string()),
        }
    }

    fn progress(entries: &[(&str, Option<&str>, bool)]) -> BTreeMap<String, ShardProgress> {
        entries
            .iter()
            .map(|(id, parent, finished)| {
                (
                    id.to_string(),
                    ShardProgress {
                        parent_shard_id: parent.map(str::to_string),
                        finished: *finished,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn pages_merge_and_parents_come_first() {
        // A split: "a" closed into "c" and "b" (ids sort before their parent on
        // purpose), then "c" closed into "d"; "x" is an unrelated open shard whose
        // parent was trimmed. Two pages, the second repeating "c" as now closed.
        let graph = ShardGraph::from_describe(vec![
            vec![shard("d", Some("c"), false), shard("c", Some("a"), false)],
            vec![
                shard("b", Some("a"), false),
                shard("a", None, true),
                shard("c", Some("a"), true),
                shard("x", Some("gone"), false),
            ],
        ]);
        assert_eq!(graph.len(), 5);
        assert!(graph.get("c").unwrap().is_closed());
        let order: Vec<&str> = graph
            .parents_first()
            .iter()
            .map(|s| s.shard_id.as_str())
            .collect();
        let pos = |id: &str| order.iter().position(|s| *s == id).unwrap();
        assert!(pos("a") < pos("b") && pos("a") < pos("c") && pos("c") < pos("d"));
        assert_eq!(order.len(), 5);
        let leaves: Vec<&str> = graph.leaves().iter().map(|s| s.shard_id.as_str()).collect();
        assert_eq!(leaves, vec!["b", "d", "x"]);
    }

    #[test]
    fn cyclic_description_still_lists_every_shard() {
        let graph = ShardGraph::from_describe(vec![vec![
            shard("a", Some("b"), false),
            shard("b", Some("a"), false),
        ]]);
        assert_eq!(graph.parents_first().len(), 2);
    }

    #[test]
    fn children_wait_for_their_parent() {
        let p = progress(&[
            ("a", None, false),
            ("b", Some("a"), false),
            ("c", Some("a"), false),
            ("x", Some("trimmed"), false),
        ]);
        assert_eq!(ready_shards(&p, ["a", "b", "c", "x"]), vec!["a", "x"]);
        let p = progress(&[
            ("a", None, true),
            ("b", Some("a"), false),
            ("c", Some("a"), false),
            ("d", Some("c"), false),
        ]);
        assert_eq!(ready_shards(&p, ["a", "b", "c", "d"]), vec!["b", "c"]);
        // Only leased candidates are returned, and unknown candidates never.
        assert_eq!(ready_shards(&p, ["c", "zzz"]), vec!["c"]);
    }
}
