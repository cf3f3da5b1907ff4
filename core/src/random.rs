//! Small helpers over a caller's random number generator, shared by the machines and the
//! selectors: uniform indexes, samples and shuffles.
//!
//! Owns nothing but these functions. It never draws OS randomness: every generator is passed
//! in, seeded by its owner.

use rand_core::Rng;

/// A uniformly distributed index in `0..n` (Lemire's multiply-shift; the bias is below 2^-32
/// for any `n` a cluster can have). `n` must be non-zero.
pub(crate) fn index_below<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    debug_assert!(n > 0);
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Up to `count` distinct positions of `from`, uniformly, as their elements.
pub(crate) fn sample<T: Copy, R: Rng + ?Sized>(rng: &mut R, from: &[T], count: usize) -> Vec<T> {
    let count = count.min(from.len());
    if count * 4 <= from.len() {
        // Few picks from many: draw positions until `count` distinct ones (expected
        // `count × 4/3` draws at most), without copying the pool.
        let mut picked: Vec<usize> = Vec::with_capacity(count);
        while picked.len() < count {
            let i = index_below(rng, from.len());
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        return picked.into_iter().map(|i| from[i]).collect();
    }
    let mut pool = from.to_vec();
    for i in 0..count {
        let j = i + index_below(rng, pool.len() - i);
        pool.swap(i, j);
    }
    pool.truncate(count);
    pool
}

/// Shuffles `items` uniformly (Fisher-Yates).
pub(crate) fn shuffle<T, R: Rng + ?Sized>(rng: &mut R, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = index_below(rng, i + 1);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    use super::*;

    #[test]
    fn samples_are_distinct_and_within_bounds() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let from: Vec<u32> = (0..40).collect();
        for count in [0, 1, 3, 10, 39, 40, 41] {
            let mut picked = sample(&mut rng, &from, count);
            assert_eq!(picked.len(), count.min(from.len()));
            picked.sort_unstable();
            picked.dedup();
            assert_eq!(picked.len(), count.min(from.len()), "distinct");
        }
        for _ in 0..1_000 {
            assert!(index_below(&mut rng, 7) < 7);
        }
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let mut items: Vec<u32> = (0..50).collect();
        shuffle(&mut rng, &mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>(), "moved something");
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
