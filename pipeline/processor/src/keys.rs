//! Keyed state containers for the per-event hot path.
//!
//! The operators look up state by `(uuid, stream_id)` or `(user_id, stream_id)` once
//! or twice per event. Hash maps (foldhash) with lookups by borrowed [`PairRef`] cost
//! no allocation and no string comparison chains, unlike ordered maps of owned
//! `(String, String)` tuples. Nothing iterates these maps to produce output without
//! sorting first, so their order never reaches a result or a checkpoint's meaning.

use std::hash::{Hash, Hasher};

pub use hashbrown::{HashMap, HashSet};

/// An owned two-part key.
pub type Pair = (String, String);

/// A borrowed two-part key that hashes and compares like [`Pair`].
#[derive(Debug, Clone, Copy)]
pub struct PairRef<'a>(pub &'a str, pub &'a str);

impl Hash for PairRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly what `(String, String)`'s derived `Hash` writes.
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl hashbrown::Equivalent<Pair> for PairRef<'_> {
    fn equivalent(&self, key: &Pair) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl PairRef<'_> {
    /// The owned key.
    pub fn to_owned_pair(self) -> Pair {
        (self.0.to_owned(), self.1.to_owned())
    }
}

/// The values of a set, sorted (for deterministic output).
pub fn sorted<T: Ord + Clone>(set: HashSet<T>) -> Vec<T> {
    let mut v: Vec<T> = set.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_lookup_finds_owned_key() {
        let mut map: HashMap<Pair, u32> = HashMap::new();
        map.insert(("u1".into(), "s1".into()), 7);
        assert_eq!(map.get(&PairRef("u1", "s1")), Some(&7));
        assert_eq!(map.get(&PairRef("u1", "s2")), None);
        // The split point matters: ("u1s", "1") is a different key.
        assert_eq!(map.get(&PairRef("u1s", "1")), None);
    }
}
