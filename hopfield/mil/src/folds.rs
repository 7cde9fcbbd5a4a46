//! Stratified K-fold cross-validation, repeated with seeds, and a stratified hold-out split for model
//! selection inside a training fold. Every split is a pure function of its seed.

use super::error::{MilError, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// One outer split of a repeated cross-validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Repetition, from 0.
    pub repeat: usize,
    /// Fold within the repetition, from 0.
    pub fold: usize,
    /// Bag indices to train on (sorted).
    pub train: Vec<usize>,
    /// Bag indices to test on (sorted).
    pub test: Vec<usize>,
}

/// A seed for a sub-task, decorrelated from its neighbours (splitmix64 of `seed` and `stream`).
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Partition `0..labels.len()` into `k` test folds with (as nearly as possible) the same share of positives.
///
/// Each class is shuffled and dealt round-robin; the negatives continue where the positives stopped, so fold
/// sizes differ by at most one. Every fold gets at least one bag of each class, which a fold's AUC needs,
/// so `k` may not exceed the size of the smaller class.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    let (mut pos, mut neg): (Vec<usize>, Vec<usize>) = (0..labels.len()).partition(|&i| labels[i]);
    let smaller = pos.len().min(neg.len());
    if k < 2 || k > smaller {
        return Err(MilError::setting(
            "folds",
            format!(
                "need 2 <= folds <= bags of the smaller class ({smaller}: {} positive, {} negative), got {k}",
                pos.len(),
                neg.len()
            ),
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    pos.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    let mut folds = vec![Vec::new(); k];
    for (j, &i) in pos.iter().chain(&neg).enumerate() {
        folds[j % k].push(i);
    }
    folds.iter_mut().for_each(|f| f.sort_unstable());
    Ok(folds)
}

/// `repeats` independent stratified `k`-fold partitions, repetition `r` seeded by `derive_seed(seed, r)`.
pub fn repeated_stratified_splits(labels: &[bool], k: usize, repeats: usize, seed: u64) -> Result<Vec<Split>> {
    if repeats == 0 {
        return Err(MilError::setting("repeats", "must be at least 1"));
    }
    let mut out = Vec::with_capacity(k * repeats);
    for repeat in 0..repeats {
        let folds = stratified_folds(labels, k, derive_seed(seed, repeat as u64))?;
        for (fold, test) in folds.iter().enumerate() {
            let train = folds.iter().enumerate().filter(|&(f, _)| f != fold).flat_map(|(_, v)| v.iter().copied());
            let mut train: Vec<usize> = train.collect();
            train.sort_unstable();
            out.push(Split { repeat, fold, train, test: test.clone() });
        }
    }
    Ok(out)
}

/// Stratified `k`-fold partition of the bags `indices` (a training fold) into (train, validation) pairs, for
/// model selection by inner cross-validation. Same dealing as [`stratified_folds`]; indices stay sorted.
pub fn stratified_inner_folds(
    indices: &[usize],
    labels: &[bool],
    k: usize,
    seed: u64,
) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
    let sub_labels: Vec<bool> = indices.iter().map(|&i| labels[i]).collect();
    let folds = stratified_folds(&sub_labels, k, seed)?;
    Ok((0..k)
        .map(|v| {
            let mut train: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|&(f, _)| f != v)
                .flat_map(|(_, f)| f.iter().map(|&j| indices[j]))
                .collect();
            let mut val: Vec<usize> = folds[v].iter().map(|&j| indices[j]).collect();
            train.sort_unstable();
            val.sort_unstable();
            (train, val)
        })
        .collect())
}

/// Split the bags `indices` into (train, validation), holding out `fraction` of each class for validation
/// (rounded, at least one bag of each class, and at least one of each class left to train on).
pub fn stratified_holdout(
    indices: &[usize],
    labels: &[bool],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(MilError::setting("validation fraction", format!("must lie in (0, 1), got {fraction}")));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for class in [true, false] {
        let mut members: Vec<usize> = indices.iter().copied().filter(|&i| labels[i] == class).collect();
        if members.len() < 2 {
            return Err(MilError::setting(
                "validation fraction",
                format!(
                    "a hold-out needs two bags of each class, the training part has {} with label {}",
                    members.len(),
                    class as u8
                ),
            ));
        }
        members.shuffle(&mut rng);
        let n_val = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len() - 1);
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}
