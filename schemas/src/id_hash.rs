//! Hash tables keyed by 128-bit digests that are already uniformly distributed
//! (the processor's xxh3 ids, the sink's natural-key digests): hashing them again
//! per lookup, as the std SipHash does, only costs time.

use std::hash::Hasher;

/// Hashes a `u128` key as its low 64 bits; other keys are folded byte by byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than `u128`; fold them in so it stays a hash.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 ^= i as u64;
    }
}

/// The [`std::hash::BuildHasher`] of digest-keyed tables.
pub type IdBuild = std::hash::BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_digest_hashes_to_its_low_bits_and_other_keys_still_spread() {
        let build = IdBuild::default();
        assert_eq!(build.hash_one(0xdead_beef_u128 << 64 | 42), 42);
        assert_ne!(build.hash_one("a"), build.hash_one("b"));
    }
}
