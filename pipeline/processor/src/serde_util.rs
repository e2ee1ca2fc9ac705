//! Serde helpers for checkpointed state.
//!
//! Operator state uses maps keyed by tuples (`(uuid, stream_id)`, `(stream_id,
//! window_start)`), which JSON cannot use as object keys. [`map_as_vec`] writes such a
//! map as a list of `[key, value]` pairs instead, so every state serializes in any
//! serde format, JSON included.

/// `#[serde(with = "map_as_vec")]` for a `BTreeMap<K, V>`.
pub mod map_as_vec {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the map as a sequence of `(key, value)` pairs, in key order.
    pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, serializer: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        serializer.collect_seq(map.iter())
    }

    /// Reads a sequence of `(key, value)` pairs back into a map.
    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs = Vec::<(K, V)>::deserialize(deserializer)?;
        Ok(pairs.into_iter().collect())
    }
}
