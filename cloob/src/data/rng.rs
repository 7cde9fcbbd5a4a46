//! Counter-based randomness: every random choice of the data pipeline is drawn from a generator seeded
//! by a hash of `(seed, what, epoch, index)`, so any example can be regenerated without replaying the
//! ones before it (resume, random access, several threads).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// SplitMix64's finaliser, a good 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several words.
pub fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243F_6A88_85A3_08D3, |h, &p| mix64(h ^ mix64(p)))
}

/// A generator for the stream named by `parts`.
pub fn rng_for(parts: &[u64]) -> StdRng {
    StdRng::seed_from_u64(hash(parts))
}

/// A permutation of `0..n` for `(seed, tag, epoch)`.
pub fn permutation(n: usize, seed: u64, tag: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng_for(&[seed, tag, epoch]));
    order
}

/// [`permutation`] as `u32` indices (half the memory for a CSV's millions of rows; the same order, since
/// the shuffle's draws depend only on the length).
pub fn permutation_u32(n: usize, seed: u64, tag: u64, epoch: u64) -> Vec<u32> {
    assert!(n <= u32::MAX as usize, "permutation_u32 of {n} items");
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut rng_for(&[seed, tag, epoch]));
    order
}

/// A 64-bit hash of a string (FNV-1a, stable across builds and platforms), to seed per-name streams.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Tags that keep the streams of different purposes apart.
pub mod tag {
    /// Scene parameters of the generated set.
    pub const SCENE: u64 = 1;
    /// Caption choices.
    pub const CAPTION: u64 = 2;
    /// Epoch orders.
    pub const ORDER: u64 = 3;
    /// Augmentation (crops).
    pub const AUGMENT: u64 = 4;
    /// Evaluation sets.
    pub const EVAL: u64 = 5;
    /// Shard orders of a WebDataset epoch.
    pub const SHARDS: u64 = 6;
    /// Stand-ins for unreadable CSV rows.
    pub const STAND_IN: u64 = 7;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_permutations_are_the_usize_ones() {
        for n in [0, 1, 7, 1000] {
            let a: Vec<usize> = permutation_u32(n, 3, tag::ORDER, 2).into_iter().map(|i| i as usize).collect();
            assert_eq!(a, permutation(n, 3, tag::ORDER, 2));
        }
    }
}
