//! The paper's evaluation: stratified K-fold cross-validation repeated with seeds; inside each training fold a
//! stratified hold-out (or, with [`CvSettings::inner_folds`], an inner stratified K-fold) picks the grid point
//! with the best validation AUC, which is then retrained on the whole training fold and scored on the test
//! fold. Folds run in parallel (rayon); each fold's result
//! depends only on its seed, so a run is reproducible whatever the scheduling. The model and its training are
//! a [`Trainer`]: `hopfield`'s by default, another framework's through [`cross_validate_with`].

use super::data::{MilDataset, Standardizer};
use super::error::{MilError, Result};
use super::folds::{derive_seed, repeated_stratified_splits, stratified_holdout, stratified_inner_folds, Split};
use super::report::FoldRecord;
use super::train::{train_and_score, MilConfig, PreparedBags};
use hopfield::{Backend, Element};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;
use std::time::Instant;

/// The values of the paper's Table A.2 (hyper-parameter search space for the MIL benchmarks).
pub mod table_a2 {
    /// Learning rates.
    pub const LR: &[f64] = &[1e-3, 1e-5];
    /// Learning-rate decay per epoch.
    pub const LR_DECAY: &[f64] = &[0.98, 0.96, 0.94];
    /// Embedding layers.
    pub const EMBEDDING_LAYERS: &[usize] = &[1, 2, 3];
    /// Layer widths.
    pub const WIDTH: &[usize] = &[32, 64, 256, 1024];
    /// Heads.
    pub const HEADS: &[usize] = &[8, 12, 16, 32];
    /// Head dimensions.
    pub const HEAD_DIM: &[usize] = &[16, 32, 64];
    /// Scaling factors β.
    pub const BETA: &[f64] = &[0.1, 1.0, 10.0];
    /// Bag dropout.
    pub const BAG_DROPOUT: &[f64] = &[0.0, 0.75];
}

/// The small grid: 4 points of Table A.2 on top of `base` (which sets everything else): β ∈ {0.1, 1} ×
/// (heads, head dim) ∈ {(8, 16), (16, 64)}. In single-repeat runs on elephant the size of the association
/// space and β moved the AUC most; width, depth, bag dropout and epochs moved it less than the fold noise.
pub fn small_grid(base: &MilConfig) -> Vec<MilConfig> {
    let mut grid = Vec::new();
    for &(heads, head_dim) in &[(8, 16), (16, 64)] {
        for &beta in &[0.1, 1.0] {
            grid.push(MilConfig { beta, heads, head_dim, ..base.clone() });
        }
    }
    grid
}

/// `samples` distinct points drawn uniformly from the full product of Table A.2 (5184 points), keeping
/// `base`'s epochs, batch size, weight decay and clipping. The paper searched this space by hand.
pub fn paper_grid(base: &MilConfig, samples: usize, seed: u64) -> Vec<MilConfig> {
    use table_a2::*;
    let axes = [
        LR.len(),
        LR_DECAY.len(),
        EMBEDDING_LAYERS.len(),
        WIDTH.len(),
        HEADS.len(),
        HEAD_DIM.len(),
        BETA.len(),
        BAG_DROPOUT.len(),
    ];
    let total: usize = axes.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picks = sample(&mut rng, total, samples.min(total)).into_vec();
    picks.sort_unstable();
    picks
        .into_iter()
        .map(|mut k| {
            let mut digit = |n: usize| {
                let d = k % n;
                k /= n;
                d
            };
            MilConfig {
                lr: LR[digit(axes[0])],
                lr_decay: LR_DECAY[digit(axes[1])],
                embedding_layers: EMBEDDING_LAYERS[digit(axes[2])],
                width: WIDTH[digit(axes[3])],
                heads: HEADS[digit(axes[4])],
                head_dim: HEAD_DIM[digit(axes[5])],
                beta: BETA[digit(axes[6])],
                bag_dropout: BAG_DROPOUT[digit(axes[7])],
                ..base.clone()
            }
        })
        .collect()
}

/// Settings of a cross-validation run.
#[derive(Clone, Debug)]
pub struct CvSettings {
    /// Folds per repetition.
    pub folds: usize,
    /// Repetitions.
    pub repeats: usize,
    /// Seed of the splits, the hold-outs and the training runs.
    pub seed: u64,
    /// Share of each training fold held out to select the grid point (when `inner_folds` is 0).
    pub val_fraction: f64,
    /// 0: select on one stratified hold-out of `val_fraction`. k ≥ 2: select on the mean validation AUC of
    /// an inner stratified k-fold split of the training fold (k + 1 trainings per grid point and fold
    /// instead of 1 + 1/points, much less selection noise on small data sets such as UCSB's 58 bags).
    pub inner_folds: usize,
    /// The grid points; with one point there is no selection (and no hold-out).
    pub grid: Vec<MilConfig>,
}

/// The one step of the protocol that depends on the model's framework: train a model on some bags, score it
/// on others. [`cross_validate`] trains `hopfield`'s model ([`HopfieldTrainer`]); another framework's model
/// (the workspace's `burn_mil` example) implements this and runs through [`cross_validate_with`], under the
/// same splits, seeds, standardisation and selection.
pub trait Trainer: Sync {
    /// The element type the bags are prepared in.
    type Elem: Element;

    /// Train with `cfg` on `train`, everything random drawn from `seed`; return the ROC-AUC on `test`
    /// (`None` if `test` lacks a class).
    fn train_and_score(
        &self,
        cfg: &MilConfig,
        train: &PreparedBags<Self::Elem>,
        test: &PreparedBags<Self::Elem>,
        seed: u64,
    ) -> Result<Option<f64>>;
}

/// `hopfield`'s model ([`crate::model::MilModel`]) on a backend, trained by [`train_and_score`].
#[derive(Clone, Copy, Debug)]
pub struct HopfieldTrainer<'a, B>(pub &'a B);

impl<B: Backend> Trainer for HopfieldTrainer<'_, B> {
    type Elem = B::Elem;
    fn train_and_score(
        &self,
        cfg: &MilConfig,
        train: &PreparedBags<B::Elem>,
        test: &PreparedBags<B::Elem>,
        seed: u64,
    ) -> Result<Option<f64>> {
        train_and_score(self.0, cfg, train, test, seed)
    }
}

/// Run one outer split: select on a hold-out of its training bags, retrain, score the test bags.
pub fn run_split<T: Trainer + ?Sized>(
    trainer: &T,
    data: &MilDataset,
    split: &Split,
    settings: &CvSettings,
) -> Result<FoldRecord> {
    let start = Instant::now();
    let labels = data.labels();
    let seed = derive_seed(settings.seed, (1 << 32) + (split.repeat * settings.folds + split.fold) as u64);
    let (grid_index, val_auc) = if settings.grid.len() == 1 {
        (0, None)
    } else {
        let inner = if settings.inner_folds == 0 {
            vec![stratified_holdout(&split.train, &labels, settings.val_fraction, derive_seed(seed, 1))?]
        } else {
            stratified_inner_folds(&split.train, &labels, settings.inner_folds, derive_seed(seed, 1))?
        };
        let prepared: Vec<_> = inner
            .iter()
            .map(|(inner_train, val)| {
                // Each inner split is standardised with statistics of its own training part.
                let scaler = Standardizer::fit(data, inner_train);
                (
                    PreparedBags::<T::Elem>::new(data, inner_train, &scaler),
                    PreparedBags::<T::Elem>::new(data, val, &scaler),
                )
            })
            .collect();
        let mut best = (0, f64::NEG_INFINITY);
        for (g, cfg) in settings.grid.iter().enumerate() {
            // Every grid point sees the same initialisation seeds: the comparison is between settings.
            let mut sum = 0.0;
            for (v, (train_bags, val_bags)) in prepared.iter().enumerate() {
                let init = if v == 0 { derive_seed(seed, 2) } else { derive_seed(seed, 16 + v as u64) };
                sum += trainer.train_and_score(cfg, train_bags, val_bags, init)?.unwrap_or(f64::NAN);
            }
            let auc = sum / prepared.len() as f64;
            if auc > best.1 {
                best = (g, auc);
            }
        }
        (best.0, Some(best.1))
    };
    let cfg = &settings.grid[grid_index];
    let scaler = Standardizer::fit(data, &split.train);
    let train_bags = PreparedBags::<T::Elem>::new(data, &split.train, &scaler);
    let test_bags = PreparedBags::<T::Elem>::new(data, &split.test, &scaler);
    let test_auc = trainer
        .train_and_score(cfg, &train_bags, &test_bags, derive_seed(seed, 3))?
        .ok_or_else(|| MilError::setting("folds", "a test fold lacks one of the classes"))?;
    Ok(FoldRecord {
        dataset: data.name.clone(),
        repeat: split.repeat,
        fold: split.fold,
        seed,
        n_train: split.train.len(),
        n_test: split.test.len(),
        test_auc,
        val_auc,
        grid_index,
        config: serde_json::to_value(cfg).expect("MilConfig serialises"),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Run every split of the repeated cross-validation in parallel with `hopfield`'s model on `backend`;
/// `on_fold` sees each record as it finishes. Records come back ordered by (repeat, fold).
pub fn cross_validate<B: Backend>(
    backend: &B,
    data: &MilDataset,
    settings: &CvSettings,
    on_fold: &(dyn Fn(&FoldRecord) + Sync),
) -> Result<Vec<FoldRecord>> {
    cross_validate_with(&HopfieldTrainer(backend), data, settings, on_fold)
}

/// [`cross_validate`] with any [`Trainer`].
pub fn cross_validate_with<T: Trainer + ?Sized>(
    trainer: &T,
    data: &MilDataset,
    settings: &CvSettings,
    on_fold: &(dyn Fn(&FoldRecord) + Sync),
) -> Result<Vec<FoldRecord>> {
    cross_validate_resuming(trainer, data, settings, &[], &|record| {
        on_fold(record);
        Ok(())
    })
}

/// [`cross_validate_with`] continuing an interrupted run: the splits whose (repeat, fold) is among
/// `finished` (records of an earlier run with the same data and settings, e.g. from a
/// [`crate::resume::FoldLog`]) are not run again, and their records come back unchanged among the new ones,
/// ordered by (repeat, fold). `on_fold` sees each new record as it finishes; an error from it (a record that
/// could not be saved) stops the run: no further split starts, and the error is returned.
pub fn cross_validate_resuming<T: Trainer + ?Sized>(
    trainer: &T,
    data: &MilDataset,
    settings: &CvSettings,
    finished: &[FoldRecord],
    on_fold: &(dyn Fn(&FoldRecord) -> Result<()> + Sync),
) -> Result<Vec<FoldRecord>> {
    if settings.grid.is_empty() {
        return Err(MilError::setting("grid", "no grid points"));
    }
    if let Some(r) =
        finished.iter().find(|r| r.dataset != data.name || r.repeat >= settings.repeats || r.fold >= settings.folds)
    {
        return Err(MilError::setting(
            "finished",
            format!(
                "a record of {} repeat {} fold {} is not a fold of {} in {}×{} folds",
                r.dataset, r.repeat, r.fold, data.name, settings.repeats, settings.folds
            ),
        ));
    }
    let splits = repeated_stratified_splits(&data.labels(), settings.folds, settings.repeats, settings.seed)?;
    splits
        .par_iter()
        .map(|split| {
            if let Some(done) = finished.iter().find(|r| (r.repeat, r.fold) == (split.repeat, split.fold)) {
                return Ok(done.clone());
            }
            let record = run_split(trainer, data, split, settings)?;
            on_fold(&record)?;
            Ok(record)
        })
        .collect()
}
