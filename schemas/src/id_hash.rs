//! Hash tables keyed by 128-bit digests that are already uniformly distributed
//! (the processor's xxh3 ids, the sink's natural-key digests): hashing them again
//! per lookup, as the std SipHash does, only costs time.
//!
//! The digests themselves are no secret, though: xxh3 and SHA-256 are public
//! functions of ids that producers choose, so anyone able to write events could
//! search for ids whose digests share their low bits and pile them into one probe
//! chain of the table (a hash-flooding attack on the processor or the sink). The
//! bucket of a digest is therefore a keyed fold of both halves (one 64 x 64 -> 128-bit
//! multiply, as foldhash does) with keys drawn per table from std's random source:
//! which digests collide differs from process to process and cannot be aimed at.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Multiplies and folds the 128-bit product: the mixing step of foldhash.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Hashes a `u128` key by a keyed fold of its halves; other keys are folded byte by
/// byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdHasher {
    state: u64,
    keys: [u64; 2],
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `u128`; fold them in so it stays a hash.
        for &b in bytes {
            self.state = folded_multiply(self.state ^ u64::from(b), self.keys[1] | 1);
        }
    }

    fn write_u128(&mut self, i: u128) {
        let [k0, k1] = self.keys;
        self.state ^= folded_multiply(i as u64 ^ k0, (i >> 64) as u64 ^ k1);
    }
}

/// The [`BuildHasher`] of digest-keyed tables: random keys per table (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBuild {
    keys: [u64; 2],
}

impl Default for IdBuild {
    fn default() -> Self {
        // std's RandomState is seeded from the OS once per thread and varied per
        // instance: two draws give two independent-looking keys.
        let random = RandomState::new();
        Self {
            keys: [random.hash_one(0x5eed_u64), random.hash_one(0xfeed_u64)],
        }
    }
}

impl BuildHasher for IdBuild {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: 0,
            keys: self.keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_table_hashes_a_digest_the_same_every_time_and_other_keys_still_spread() {
        let build = IdBuild::default();
        let id = 0xdead_beef_u128 << 64 | 42;
        assert_eq!(build.hash_one(id), build.hash_one(id));
        assert_ne!(build.hash_one(id), build.hash_one(id + 1));
        assert_ne!(build.hash_one("a"), build.hash_one("b"));
    }

    #[test]
    fn digests_crafted_to_share_their_low_bits_do_not_share_buckets() {
        // 4,096 digests equal in their low 64 bits (what an attacker searching for
        // low-bit collisions of a public digest would produce): their buckets in a
        // table of 2^16 must spread like random ones, not pile up in one.
        let build = IdBuild::default();
        let buckets: HashSet<u64> = (0..4_096u128)
            .map(|i| build.hash_one((i << 64) | 0x1234) & 0xffff)
            .collect();
        assert!(buckets.len() > 3_500, "{} distinct buckets", buckets.len());
        // And the keys differ between tables, so no fixed set of ids collides
        // everywhere.
        let other = IdBuild::default();
        let id = 7u128 << 64 | 0x1234;
        assert_ne!(build.hash_one(id), other.hash_one(id));
    }
}
