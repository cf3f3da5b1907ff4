//! Stable, portable hashes.
//!
//! Everything that leaves a process or must agree between nodes (node tags for the clock,
//! rendezvous scores, later RPC method ids) hashes with these functions. They are fixed
//! algorithms with fixed constants, so every build of cohort on every platform computes the
//! same values. `std`'s `DefaultHasher` must never be used for such values: its algorithm may
//! change between Rust releases.

/// The hasher of cohort's in-memory maps keyed by data from the network: foldhash, seeded
/// by the caller (from the machine's configured seed), so that runs are reproducible and a
/// peer cannot precompute colliding keys without knowing the seed.
pub(crate) type MapHasher = foldhash::fast::FixedState;

/// A [`MapHasher`] from a seed.
pub(crate) fn map_hasher(seed: u64) -> MapHasher {
    foldhash::fast::FixedState::with_seed(seed)
}

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a (64-bit) hasher.
///
/// ```
/// use cohort_core::hash::Fnv1a64;
/// // The published FNV-1a 64 test vector for "a".
/// assert_eq!(Fnv1a64::new().write(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    /// A hasher in its initial state.
    #[must_use]
    pub const fn new() -> Self {
        Self(FNV_OFFSET)
    }

    /// Feeds `bytes` into the hash.
    #[must_use]
    pub const fn write(mut self, bytes: &[u8]) -> Self {
        let mut i = 0;
        while i < bytes.len() {
            self.0 ^= bytes[i] as u64;
            self.0 = self.0.wrapping_mul(FNV_PRIME);
            i += 1;
        }
        self
    }

    /// The hash of everything written so far.
    #[must_use]
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a (64-bit) of `bytes`.
#[must_use]
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    Fnv1a64::new().write(bytes).finish()
}

/// A bijective 64-bit finalizer (MurmurHash3's `fmix64`).
///
/// Spreads every input bit over every output bit; used to turn structured values (a key hash
/// combined with a member hash) into well-distributed scores.
#[must_use]
#[inline]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// SplitMix64's output function applied to `x` (Steele, Lea and Flood): a well-spread 64-bit
/// value from a structured one. Seeds derived from other seeds (a node's generator from its
/// identity, a simulated node's from the run's seed) go through it.
#[must_use]
#[inline]
pub const fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let split = Fnv1a64::new().write(b"foo").write(b"bar").finish();
        assert_eq!(split, fnv1a64(b"foobar"));
    }

    #[test]
    fn mix64_is_stable_and_spreads() {
        assert_eq!(mix64(0), 0);
        // Fixed values: a change here would change every rendezvous placement.
        assert_eq!(mix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_ne!(mix64(2) >> 32, mix64(3) >> 32);
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of the reference SplitMix64 generator seeded with 0 (each call
        // adds the golden gamma to the state, then mixes).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }
}
