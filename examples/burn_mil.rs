//! The paper's MIL model (Ramsauer et al. 2020, §4 and Table 1; appendix A.5.2) as a burn model: burn
//! `Linear` layers, `hopfield_burn::HopfieldPooling` and burn's AdamW, with every gradient from burn's
//! autodiff, run on the `mil` example's protocol. Everything but the model and its training step is
//! `hopfield_mil`'s: the data set, the repeated stratified folds and their seeds, the standardisation fitted on
//! each training fold, the batches of bags of similar length, the learning-rate schedule and the ROC-AUC.
//! Initialised from the same draws as `hopfield_mil`'s model, it trains to the same logits up to float
//! rounding, so its folds' AUCs are the `mil` example's with `--grid none` where rounding does not reorder a
//! fold's test bags (musk1: all 10 folds of one repetition, 48 of 5 × 10):
//!
//! ```text
//! cargo run --release --example burn_mil -- --data data/mil/musk1.csv.gz --repeats 1 [--device wgpu]
//! cargo run --release --example mil -- --data data/mil/musk1.csv.gz --repeats 1 --grid none
//! ```
//! The settings are `hopfield_mil::train::MilConfig`'s defaults (the `mil` example's base settings, no grid
//! selection); `--epochs 1` makes a quick smoke run. Each fold's AUC goes to stderr as it finishes, the
//! folds in order and the summary table to stdout.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use clap::builder::RangedU64ValueParser;
use clap::{Parser, ValueEnum};
use hopfield::layers::linear::LinearParams;
use hopfield::optim::{AdamConfig, DecayFilter, LrSchedule};
use hopfield::{Backend as _, Cpu, HopfieldError};
use hopfield_burn::HopfieldPooling;
use hopfield_mil::cv::{cross_validate_with, CvSettings, Trainer};
use hopfield_mil::metrics::roc_auc;
use hopfield_mil::model::{predict_by_length, BagBatch, MilModel};
use hopfield_mil::report::{format_seconds, table, FoldRecord, Summary};
use hopfield_mil::train::{length_bucketed_batches, MilConfig, PreparedBags};
use hopfield_mil::{MilDataset, MilError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

/// `hopfield_mil`'s MIL model as a burn module: instance embedding (burn `Linear` + ReLU) → `HopfieldPooling`
/// of each bag (one learned state pattern) → ReLU → `Linear` → one logit.
///
/// # Shapes
/// A batch of `B` bags with `N` instances in all: instances `[N, features]` → logits `[B, 1]`. Only the
/// pooling sees the bags padded to `[B, L_max, width]`, with a padding mask.
#[derive(Module, Debug)]
pub struct BurnMil {
    /// `embed.{i}`: the embedding layers (burn's layout, `weight [in, out]`).
    pub embed: Vec<Linear>,
    /// `pooling`: the bag pooling, hflayers' parameter names.
    pub pooling: HopfieldPooling,
    /// `head`: pooled bag → logit.
    pub head: Linear,
}

impl BurnMil {
    /// The burn module holding the parameters of `hopfield_mil`'s model: from the same seed, the two start
    /// equal.
    ///
    /// # Errors
    /// The pooling's configuration error, if any.
    pub fn from_host(host: &MilModel<Cpu<f32>>, device: &Device) -> hopfield::Result<Self> {
        Ok(BurnMil {
            embed: host.embed.iter().map(|l| linear(&l.params, device)).collect(),
            pooling: HopfieldPooling::from_host(host.pooling.config.clone(), &host.pooling.params, device)?,
            head: linear(&host.head.params, device),
        })
    }

    /// Logits `[B, 1]` of a batch of bags with `features` features per instance, on `device` (the module's).
    ///
    /// # Errors
    /// [`HopfieldError::Shape`] for an empty batch, an empty bag or a wrong number of values.
    pub fn forward(&self, batch: &BagBatch<f32>, features: usize, device: &Device) -> hopfield::Result<Tensor<2>> {
        let n: usize = batch.lens.iter().sum();
        if batch.lens.is_empty() || batch.lens.contains(&0) || batch.instances.len() != n * features {
            return Err(HopfieldError::shape(
                "burn_mil.forward(batch)",
                format!("{n} · {features} values in bags of length ≥ 1"),
                &[batch.lens.len(), batch.instances.len()],
            ));
        }
        let mut h = Tensor::<2>::from_data(TensorData::new(batch.instances.clone(), [n, features]), device);
        for layer in &self.embed {
            h = relu(layer.forward(h));
        }
        let (padded, mask) = pad(h, &batch.lens, device);
        Ok(self.head.forward(relu(self.pooling.forward(padded, Some(mask))?)))
    }
}

/// A burn `Linear` holding a `hopfield` linear layer's parameters: PyTorch's `weight [out, in]` is stored
/// transposed, as burn's `[in, out]`.
fn linear(p: &LinearParams<Cpu<f32>>, device: &Device) -> Linear {
    let cpu = Cpu::<f32>::new();
    let (w, shape) = (cpu.to_vec(&p.weight), cpu.shape(&p.weight));
    let (out, inputs) = (shape[0], shape[1]);
    let transposed: Vec<f32> = (0..inputs * out).map(|k| w[(k % out) * inputs + k / out]).collect();
    Linear {
        weight: param(transposed, [inputs, out], device),
        bias: p.bias.as_ref().map(|b| param(cpu.to_vec(b), [out], device)),
    }
}

/// A parameter holding `values` of `shape` on `device`.
fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// Scatter packed rows `[N, w]` into `[B, L_max, w]` (zero rows after each bag's end) and the padding mask
/// `[B, L_max]` (`true` = padded), as `hopfield_mil`'s model pads: one row gather from the packed rows and a
/// zero row, whose backward adds each padded position's gradient back to its instance.
fn pad(packed: Tensor<2>, lens: &[usize], device: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
    let [n, w] = packed.dims();
    let (b, max_len) = (lens.len(), lens.iter().copied().max().unwrap_or(0));
    let mut ids = vec![n as i64; b * max_len];
    let mut mask = vec![true; b * max_len];
    let mut src = 0;
    for (bag, &len) in lens.iter().enumerate() {
        for j in 0..len {
            ids[bag * max_len + j] = (src + j) as i64;
            mask[bag * max_len + j] = false;
        }
        src += len;
    }
    let table = Tensor::cat(vec![packed, Tensor::zeros([1, w], device)], 0);
    let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * max_len]), device);
    (table.select(0, ids).reshape([b, max_len, w]), Tensor::from_data(TensorData::new(mask, [b, max_len]), device))
}

/// The ids of the parameters `filter` decays, judged by their paths in the module (`embed.0.weight`,
/// `pooling.hopfield.association_core.in_proj_weight`, …), which carry `hopfield`'s name fragments.
struct DecayedParams {
    filter: DecayFilter,
    path: Vec<String>,
    ids: Vec<ParamId>,
}

impl ModuleVisitor for DecayedParams {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.filter.decays(&self.path.join("."), &param.val().dims()) {
            self.ids.push(param.id);
        }
    }
}

/// burn's AdamW with the constants of `hopfield_mil`'s optimiser (`hopfield`'s `AdamConfig::default()`), its
/// decoupled weight decay only on the tensors that optimiser decays (weight matrices; not biases, norms or
/// the state pattern): a second parameter group.
fn adamw(model: &BurnMil, weight_decay: f64) -> ModuleOptimizer {
    let host = AdamConfig::default().weight_decay(weight_decay, DecayFilter::OpenClip);
    let config = |decay: f64| {
        AdamWConfig::new()
            .with_beta_1(host.beta1 as f32)
            .with_beta_2(host.beta2 as f32)
            .with_epsilon(host.eps as f32)
            .with_weight_decay(decay as f32)
    };
    let mut decayed = DecayedParams { filter: host.decay_filter, path: Vec::new(), ids: Vec::new() };
    model.visit(&mut decayed);
    config(0.0).init().with_group(ParamGroup::from_ids(decayed.ids), config(weight_decay).build(), None)
}

/// Collects each gradient's sum of squares, or (with `scale`) multiplies every gradient by it.
struct GradNorm<'a> {
    grads: &'a mut GradientsParams,
    squares: Vec<Tensor<1>>,
    scale: Option<f64>,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.scale {
            None => self.squares.extend(self.grads.get::<D>(param.id).map(|g| g.square().sum())),
            Some(c) => {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    self.grads.register(param.id, g.mul_scalar(c));
                }
            }
        }
    }
}

/// Clip the gradients' global L2 norm to `max_norm` as `hopfield::optim::clip_grad_norm` does (burn's own
/// clipping is per parameter): scale by `min(1, max_norm / (‖g‖ + 1e-6))`; a non-finite norm changes nothing.
fn clip_grad_norm(model: &BurnMil, grads: &mut GradientsParams, max_norm: f64) {
    let mut norm = GradNorm { grads, squares: Vec::new(), scale: None };
    model.visit(&mut norm);
    if norm.squares.is_empty() {
        return;
    }
    let squares = Tensor::cat(std::mem::take(&mut norm.squares), 0).into_data();
    let total = squares.iter::<f64>().sum::<f64>().sqrt();
    let coef = max_norm / (total + 1e-6);
    if total.is_finite() && coef < 1.0 {
        norm.scale = Some(coef);
        model.visit(&mut norm);
    }
}

/// Trains [`BurnMil`] on an autodiff device: the [`Trainer`] through which `hopfield_mil` runs its protocol.
struct BurnTrainer {
    device: Device,
}

impl BurnTrainer {
    /// Train on `bags` for `cfg.epochs` epochs, as `hopfield_mil::train::train` trains its model: the same
    /// initialisation, bag order, batches, loss, clipping and learning rate per step from `seed`.
    fn train(&self, cfg: &MilConfig, bags: &PreparedBags<f32>, seed: u64) -> hopfield_mil::Result<BurnMil> {
        if bags.is_empty() || cfg.batch_size == 0 {
            return Err(MilError::setting(
                "batch_size",
                format!("{} bags in batches of {}", bags.len(), cfg.batch_size),
            ));
        }
        let device = &self.device;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = BurnMil::from_host(&cfg.model(bags.features).init(&Cpu::<f32>::new(), &mut rng)?, device)?;
        let mut opt = adamw(&model, cfg.weight_decay);
        let steps_per_epoch = bags.len().div_ceil(cfg.batch_size) as u64;
        let schedule = LrSchedule::Exponential { base: cfg.lr, gamma: cfg.lr_decay, every: steps_per_epoch };
        schedule.validate()?;
        let bce = BinaryCrossEntropyLossConfig::new().with_logits(true).init(device);
        let mut order: Vec<usize> = (0..bags.len()).collect();
        let mut step = 0u64;
        for _ in 0..cfg.epochs {
            order.shuffle(&mut rng);
            for chunk in length_bucketed_batches(&order, &bags.lens, cfg.batch_size, &mut rng) {
                let batch = BagBatch::pack(chunk.iter().map(|&i| bags.bag(i)));
                let logits = model.forward(&batch, bags.features, device)?;
                let labels: Vec<i64> = chunk.iter().map(|&i| bags.labels[i] as i64).collect();
                let targets = Tensor::<2, Int>::from_data(TensorData::new(labels, [chunk.len(), 1]), device);
                let loss = bce.forward(logits, targets);
                let value = f64::from(loss.clone().into_scalar::<f32>());
                if !value.is_finite() {
                    return Err(MilError::Model(HopfieldError::NonFinite {
                        op: "burn_mil.train",
                        detail: format!("loss {value} at step {step}"),
                    }));
                }
                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                if let Some(max) = cfg.grad_clip {
                    clip_grad_norm(&model, &mut grads, max);
                }
                model = opt.step(schedule.lr_at(step), model, grads);
                step += 1;
            }
        }
        Ok(model)
    }

    /// Logits of every bag of `bags` (evaluation: no autodiff), 32 bags of similar length at a time as
    /// `hopfield_mil::train::predict`.
    fn predict(&self, model: &BurnMil, bags: &PreparedBags<f32>) -> hopfield_mil::Result<Vec<f64>> {
        let (model, device) = (model.valid(), self.device.clone().inner());
        let all: Vec<(&[f32], usize)> = (0..bags.len()).map(|i| bags.bag(i)).collect();
        predict_by_length(&all, 32, |batch| {
            Ok(model.forward(batch, bags.features, &device)?.into_data().iter::<f64>().collect())
        })
    }
}

impl Trainer for BurnTrainer {
    type Elem = f32;
    fn train_and_score(
        &self,
        cfg: &MilConfig,
        train: &PreparedBags<f32>,
        test: &PreparedBags<f32>,
        seed: u64,
    ) -> hopfield_mil::Result<Option<f64>> {
        let model = self.train(cfg, train, seed)?;
        Ok(roc_auc(&self.predict(&model, test)?, &test.labels))
    }
}

/// Where burn runs.
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum BurnDevice {
    /// burn's NdArray backend (CPU).
    Ndarray,
    /// burn's Wgpu backend: a Vulkan, Metal or DX12 GPU; without one, Mesa's lavapipe (apt install
    /// mesa-vulkan-drivers).
    Wgpu,
}

impl BurnDevice {
    /// The device with autodiff, or why it cannot be opened.
    #[allow(deprecated)] // NdArray: burn deprecates it for Flex, but it is the CPU backend hopfield-burn supports.
    fn open(self) -> Result<Device, String> {
        let device = match self {
            BurnDevice::Ndarray => Device::ndarray(),
            BurnDevice::Wgpu => Device::wgpu_options().init().map_err(|e| format!("--device wgpu: {e}"))?,
        };
        Ok(device.autodiff())
    }
}

#[derive(Parser, Debug)]
#[command(about = "The MIL model as a burn model on the `mil` example's protocol: repeated stratified CV, ROC-AUC")]
struct Args {
    /// Data set (CSV or CSV.gz in the `mil` package layout: label, bag id, features; no header).
    #[arg(long)]
    data: PathBuf,
    /// Folds per repetition (at least 2).
    #[arg(long, default_value_t = 10, value_parser = RangedU64ValueParser::<usize>::new().range(2..))]
    folds: usize,
    /// Repetitions of the K-fold split.
    #[arg(long, default_value_t = 5, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    repeats: usize,
    /// Seed of the splits, initialisation and bag order (the `mil` example's `--seed`).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where burn trains.
    #[arg(long, value_enum, default_value_t = BurnDevice::Ndarray)]
    device: BurnDevice,
    /// Passes over the training bags (1 for a quick smoke run).
    #[arg(long, default_value_t = MilConfig::default().epochs, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    epochs: usize,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Cross-validate, print the folds and the summary; the summary is returned for tests.
fn run(args: Args) -> Result<Summary, Box<dyn std::error::Error>> {
    let trainer = BurnTrainer { device: args.device.open()? };
    let data = MilDataset::read(&args.data)?;
    let settings = CvSettings {
        folds: args.folds,
        repeats: args.repeats,
        seed: args.seed,
        // One grid point: no selection, so no hold-out (the `mil` example's `--grid none`).
        val_fraction: 0.2,
        inner_folds: 0,
        grid: vec![MilConfig { epochs: args.epochs, ..MilConfig::default() }],
    };
    eprintln!(
        "{}: {} bags ({} positive), {} instances, {} features; {}×{}-fold CV, burn on {:?}, {} threads",
        data.name,
        data.bags.len(),
        data.num_positive(),
        data.num_instances(),
        data.n_features,
        args.repeats,
        args.folds,
        args.device,
        rayon::current_num_threads(),
    );
    let start = Instant::now();
    let on_fold = |r: &FoldRecord| {
        eprintln!("repeat {} fold {}: test AUC {:.3} ({:.1} s)", r.repeat, r.fold, r.test_auc, r.seconds);
    };
    let records = cross_validate_with(&trainer, &data, &settings, &on_fold)?;
    let wall = start.elapsed().as_secs_f64();
    for repeat in 0..args.repeats {
        let aucs: Vec<String> =
            records.iter().filter(|r| r.repeat == repeat).map(|r| format!("{:.3}", r.test_auc)).collect();
        println!("repeat {repeat} test AUC per fold: {}", aucs.join(" "));
    }
    let summary = Summary::from_records(&data.name, data.bags.len(), &records, wall);
    println!("mean AUC {:.3} in {}", summary.auc_mean, format_seconds(wall));
    print!("{}", table(std::slice::from_ref(&summary)));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield_mil::synthetic::{planted_cluster, PlantedCluster};
    use hopfield_mil::Standardizer;

    fn ndarray() -> BurnTrainer {
        BurnTrainer { device: BurnDevice::Ndarray.open().unwrap() }
    }

    /// The check behind "the same folds' AUCs": from one seed, the burn model and `hopfield_mil`'s trained
    /// model give the same logits. Padding (bags of 4–12 instances in batches of 8), the learning-rate decay,
    /// weight decay and clipping all take part; the last two are set strong enough to matter (measured: the
    /// logits agree to 8e-6; without clipping in the burn model they move by 0.08, without weight decay by
    /// 3e-3).
    #[test]
    fn trains_to_the_logits_of_hopfield_mil() {
        let data = planted_cluster(&PlantedCluster { bags: 40, ..Default::default() }, 3);
        let all: Vec<usize> = (0..data.bags.len()).collect();
        let bags = PreparedBags::<f32>::new(&data, &all, &Standardizer::fit(&data, &all));
        let cfg = MilConfig {
            width: 16,
            heads: 2,
            head_dim: 8,
            epochs: 4,
            lr: 3e-3,
            weight_decay: 0.1,
            grad_clip: Some(0.1),
            ..MilConfig::default()
        };
        let cpu = Cpu::<f32>::new();
        let host = hopfield_mil::train::train(&cpu, &cfg, &bags, 7).unwrap();
        let expected = hopfield_mil::train::predict(&cpu, &host, &bags).unwrap();
        let initial = {
            let untrained = MilConfig { epochs: 0, ..cfg.clone() };
            hopfield_mil::train::predict(&cpu, &hopfield_mil::train::train(&cpu, &untrained, &bags, 7).unwrap(), &bags)
                .unwrap()
        };
        let trainer = ndarray();
        let got = trainer.predict(&trainer.train(&cfg, &bags, 7).unwrap(), &bags).unwrap();
        let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert_eq!(got.len(), expected.len());
        assert!(diff(&got, &expected) < 1e-4, "burn {got:?}\nhopfield {expected:?}");
        // Training moved the logits far more than the tolerance, and towards the labels.
        assert!(diff(&expected, &initial) > 0.05, "training barely moved the logits: {expected:?}");
        assert!(roc_auc(&got, &bags.labels).unwrap() > 0.8);
    }

    #[test]
    fn the_decayed_tensors_are_hopfields() {
        let cfg = MilConfig::default();
        let host = cfg.model(5).init(&Cpu::<f32>::new(), &mut StdRng::seed_from_u64(0)).unwrap();
        let model = BurnMil::from_host(&host, &BurnDevice::Ndarray.open().unwrap()).unwrap();
        let mut decayed = DecayedParams { filter: DecayFilter::OpenClip, path: Vec::new(), ids: Vec::new() };
        model.visit(&mut decayed);
        let mut host_decayed = 0;
        hopfield::Parameters::visit(&host, &mut |name, t, _| {
            host_decayed += DecayFilter::OpenClip.decays(name, &Cpu::<f32>::new().shape(t)) as usize;
        });
        // Two embedding layers, the packed q/k/v projection, the output projection and the head.
        assert_eq!((decayed.ids.len(), host_decayed), (5, 5));
    }

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(["burn_mil", "--data", "x.csv"].iter().chain(flags))
    }

    #[test]
    fn flags_out_of_range_are_refused_naming_the_flag() {
        for (flag, value) in [("--folds", "1"), ("--repeats", "0"), ("--epochs", "0"), ("--device", "gpu")] {
            let err = parse(&[&format!("{flag}={value}")]).expect_err(&format!("{flag} {value} accepted")).to_string();
            assert!(err.contains(flag) && err.contains(&format!("'{value}'")), "{flag} {value}: {err}");
        }
        let args = parse(&["--folds", "2", "--device", "wgpu"]).unwrap();
        assert_eq!((args.folds, args.repeats, args.epochs, args.device), (2, 5, 30, BurnDevice::Wgpu));
    }

    #[test]
    fn a_missing_data_set_is_an_error_naming_it() {
        let args = Args::try_parse_from(["burn_mil", "--data", "no/such/bags.csv"]).unwrap();
        let err = run(args).unwrap_err().to_string();
        assert!(err.contains("no/such/bags.csv"), "{err}");
    }
}
