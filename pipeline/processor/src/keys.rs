//! Keyed state containers for the per-event hot path.
//!
//! The operators look up state by `(uuid, stream_id)` or `(user_id, stream_id)` once
//! per event. Hash maps cost no string comparison chains, unlike ordered maps of owned
//! `(String, String)` tuples. Nothing iterates these maps to produce output without
//! sorting first, so their order never reaches a result or a checkpoint's meaning.
//!
//! ## Ids instead of strings on the hot path
//! A lookup by string key ends in a comparison with the key stored on the heap: one
//! cache miss per lookup on a state much larger than the cache. The hottest sets and
//! maps are therefore keyed by an [`Id`], the xxh3-128 hash of the string (a pair's id
//! hashes its parts' ids, so the split point is part of it), held inline in the table;
//! the string itself is stored once, in the value, for output. Two different keys
//! collide with probability about `n^2 / 2^129` (below 1e-20 for a billion keys), the
//! bound [`crate::dedup`] already relies on. Ids are never serialized: checkpoints hold
//! the strings, and a restore recomputes the ids.

pub use hashbrown::HashMap;

/// An owned two-part key.
pub type Pair = (String, String);

/// The 128-bit identity of a string key (see the module docs).
pub type Id = u128;

/// The [`Id`] of one string (given as its UTF-8 bytes or anything that derefs to
/// them).
pub fn id_of(s: impl AsRef<[u8]>) -> Id {
    twox_hash::XxHash3_128::oneshot(s.as_ref())
}

/// The [`Id`] of a pair of strings: the id of their two ids, so `(a, b)` and `(a', b')`
/// with `a + b == a' + b'` but another split differ.
pub fn pair_id(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> Id {
    combine(id_of(a), id_of(b))
}

/// The [`Id`] of a pair from the ids of its parts (what [`pair_id`] computes).
pub fn combine(a: Id, b: Id) -> Id {
    let mut buf = [0u8; 32];
    buf[..16].copy_from_slice(&a.to_le_bytes());
    buf[16..].copy_from_slice(&b.to_le_bytes());
    twox_hash::XxHash3_128::oneshot(&buf)
}

/// The ids of one event's keys, computed once per event and shared by the operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventIds {
    /// `uuid`.
    pub uuid: Id,
    /// `stream_id`.
    pub stream: Id,
    /// `user_id`, when present.
    pub user: Option<Id>,
    /// `(uuid, stream_id)`: the session key.
    pub session: Id,
}

impl EventIds {
    /// The ids of `event`'s keys.
    pub fn of(event: &playlake_schemas::PlaybackEvent) -> Self {
        let uuid = id_of(&event.uuid);
        let stream = id_of(&event.stream_id);
        Self {
            uuid,
            stream,
            user: event.user_id.as_deref().map(id_of),
            session: combine(uuid, stream),
        }
    }

    /// `(user_id, stream_id)`: the resume key, when the event has a user.
    pub fn resume(&self) -> Option<Id> {
        self.user.map(|user| combine(user, self.stream))
    }
}

/// Id-keyed tables hash an [`Id`] with one keyed fold of its halves: it is already a
/// uniformly distributed hash, and the per-table random keys keep ids crafted to
/// collide from sharing buckets (see [`playlake_schemas::id_hash`]).
pub use playlake_schemas::id_hash::IdBuild;

/// A map keyed by [`Id`].
pub type IdMap<V> = HashMap<Id, V, IdBuild>;

/// A set of strings stored by [`Id`]: membership tests compare ids held inline, and
/// the strings are kept (once) only to be emitted. Serializes as the sequence of its
/// strings, like the `HashSet<String>` it replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet(IdMap<String>);

impl IdSet {
    /// Adds `value`, whose id is `id`, unless present (no allocation when present).
    pub fn insert_with(&mut self, id: Id, value: &str) {
        self.0.entry(id).or_insert_with(|| value.to_owned());
    }

    /// Adds an owned value.
    pub fn insert(&mut self, value: String) {
        self.0.entry(id_of(&value)).or_insert(value);
    }

    /// The strings, sorted.
    pub fn sorted(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.values().cloned().collect();
        v.sort_unstable();
        v
    }

    /// The strings, sorted, consuming the set.
    pub fn into_sorted(self) -> Vec<String> {
        let mut v: Vec<String> = self.0.into_values().collect();
        v.sort_unstable();
        v
    }
}

impl serde::Serialize for IdSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.values())
    }
}

impl<'de> serde::Deserialize<'de> for IdSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = Vec::<String>::deserialize(deserializer)?;
        let mut set = IdSet::default();
        for v in values {
            set.insert(v);
        }
        Ok(set)
    }
}

/// A map keyed by strings, stored by [`Id`] with the string kept once beside the
/// value. Serializes as a map from the strings, like the `HashMap<String, V>` it
/// replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct IdKeyed<V>(IdMap<(String, V)>);

impl<V> Default for IdKeyed<V> {
    fn default() -> Self {
        Self(IdMap::default())
    }
}

impl<V: Default> IdKeyed<V> {
    /// The value of `key` (whose id is `id`), inserted as the default if absent.
    pub fn get_or_default(&mut self, id: Id, key: &str) -> &mut V {
        &mut self
            .0
            .entry(id)
            .or_insert_with(|| (key.to_owned(), V::default()))
            .1
    }
}

impl<V> IdKeyed<V> {
    /// `(key, value)` pairs in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.values().map(|(k, v)| (k, v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<V> IntoIterator for IdKeyed<V> {
    type Item = (String, V);
    type IntoIter = hashbrown::hash_map::IntoValues<Id, (String, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_values()
    }
}

impl<V: serde::Serialize> serde::Serialize for IdKeyed<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.values().map(|(k, v)| (k, v)))
    }
}

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for IdKeyed<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = HashMap::<String, V>::deserialize(deserializer)?;
        let mut keyed = IdKeyed::default();
        for (k, v) in map {
            keyed.0.insert(id_of(&k), (k, v));
        }
        Ok(keyed)
    }
}

#[cfg(test)]
mod tests {
    use hashbrown::HashSet;

    use super::*;

    #[test]
    fn pair_ids_depend_on_the_split() {
        assert_eq!(pair_id("ab", "c"), pair_id("ab", "c"));
        assert_ne!(pair_id("ab", "c"), pair_id("a", "bc"));
        assert_ne!(pair_id("", "abc"), pair_id("abc", ""));
        assert_ne!(id_of("a"), id_of("b"));
    }

    #[test]
    fn id_collections_serialize_like_string_collections() {
        let mut set = IdSet::default();
        set.insert_with(id_of("b"), "b");
        set.insert_with(id_of("a"), "a");
        set.insert_with(id_of("a"), "a");
        let json = serde_json::to_string(&set).unwrap_or_default();
        let back: HashSet<String> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, HashSet::from_iter(["a".to_owned(), "b".to_owned()]));
        let again: IdSet = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(again, set);
        assert_eq!(set.sorted(), vec!["a".to_owned(), "b".to_owned()]);

        let mut map: IdKeyed<u32> = IdKeyed::default();
        *map.get_or_default(id_of("s1"), "s1") += 2;
        *map.get_or_default(id_of("s1"), "s1") += 1;
        let json = serde_json::to_string(&map).unwrap_or_default();
        let plain: HashMap<String, u32> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(plain.get("s1"), Some(&3));
        let again: IdKeyed<u32> = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(again, map);
    }
}
