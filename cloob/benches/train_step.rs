//! One training step of the tiny two-tower preset at batch 128 (f32, CPU backend), for CLOOB's loss and
//! CLIP's: forward both towers, loss, backward, clipping and AdamW. Steps/s = 1 / the time per iteration.
//!
//! `cloob_peer_b128` / `clip_peer_b128`: exactly the model of the PyTorch peer `cloob_step_peer.py`
//! (`../shared/bench/README.md`): ViT 32×32, patch 4, width 128, 4 pre-LN blocks of 4 heads, exact-erf GELU,
//! class token; causal text transformer, context 32, vocabulary 49408, width 128, 4 blocks of 4 heads;
//! 128-d embeddings, τ⁻¹ 30 fixed, β 14.3; AdamW lr 1e-3, weight decay 0.1 on every parameter, no clipping,
//! as the peer's step. Compare with the peer in one run on one machine (issue 11's side-by-side table).
//!
//! Built with `--features cuda`, the same cases also run on CUDA device 0 as `cuda/<case>` (a step reads
//! the loss, gradient norm and τ⁻¹ back, so each timed step includes the device's whole work). Without a
//! device the CUDA cases say so and are skipped.

use cloob::loss::{LossConfig, LossKind};
use cloob::model::ClipConfig;
use cloob::shapes::ShapesBatch;
use cloob::text::TextConfig;
use cloob::tokenizer::{ClipTokenizer, TokenBatch};
use cloob::train::{TrainConfig, Trainer};
use cloob::vit::VisionConfig;
use criterion::{criterion_group, criterion_main, Criterion};
use hopfield::optim::{AdamConfig, DecayFilter, LrSchedule};
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, SeedableRng};

/// 128 generated scenes for `config`: images and token ids.
fn batch<B: Backend>(backend: &B, config: &ClipConfig) -> (B::Tensor, TokenBatch) {
    let data = ShapesBatch::generate(&mut StdRng::seed_from_u64(0), 128, config.vision.image_size());
    let tokens = ClipTokenizer::with_context_length(config.text.context_length).unwrap().tokenize(&data.captions);
    (data.images(backend), tokens)
}

fn train_step(c: &mut Criterion) {
    let cpu = Cpu::<f32>::with_tuned_allocator();
    let config = ClipConfig::tiny();
    let (images, tokens) = batch(&cpu, &config);
    for (name, kind) in [("cloob_tiny_b128", LossKind::Cloob), ("clip_tiny_b128", LossKind::Clip)] {
        let model = config.init(&cpu, &mut StdRng::seed_from_u64(1)).unwrap();
        let schedule = LrSchedule::WarmupCosine { base: 1e-3, warmup: 10, total: 10_000, floor: 0.0 };
        let mut trainer =
            Trainer::new(model, TrainConfig::new(LossConfig::new(kind), schedule).grad_clip_norm(1.0)).unwrap();
        c.bench_function(name, |b| b.iter(|| trainer.step(&cpu, &images, &tokens).unwrap()));
    }
}

/// The peer's two-tower model (see the module doc).
fn peer_config() -> ClipConfig {
    let vision = VisionConfig {
        image_size: 32,
        patch_size: 4,
        width: 128,
        layers: 4,
        heads: 4,
        activation: "gelu".into(),
        output_dim: 128,
        ..VisionConfig::tiny()
    };
    let text = TextConfig {
        width: 128,
        layers: 4,
        heads: 4,
        activation: "gelu".into(),
        output_dim: 128,
        ..TextConfig::tiny()
    };
    ClipConfig { embed_dim: 128, vision: vision.into(), text, init_inv_tau: 30.0, ..ClipConfig::tiny() }
}

fn peer_step(c: &mut Criterion) {
    peer_cases(c, &Cpu::<f32>::with_tuned_allocator(), "");
}

fn peer_cases<B: Backend<Elem = f32>>(c: &mut Criterion, backend: &B, prefix: &str) {
    let config = peer_config();
    let (images, tokens) = batch(backend, &config);
    for (name, kind) in [("cloob_peer_b128", LossKind::Cloob), ("clip_peer_b128", LossKind::Clip)] {
        let name = format!("{prefix}{name}");
        let model = config.init(backend, &mut StdRng::seed_from_u64(1)).unwrap();
        let params: usize = hopfield::params::named_tensors(&model)
            .iter()
            .map(|(_, t)| backend.shape(t).iter().product::<usize>())
            .sum();
        eprintln!("{name}: {:.2} M parameters (the peer: 7.96 M)", params as f64 / 1e6);
        let schedule = LrSchedule::WarmupCosine { base: 1e-3, warmup: 0, total: 10_000, floor: 0.0 };
        let mut train = TrainConfig::new(LossConfig::new(kind), schedule);
        train.adam = AdamConfig::default().weight_decay(0.1, DecayFilter::All);
        train.grad_clip_norm = None;
        let mut trainer = Trainer::new(model, train).unwrap();
        c.bench_function(&name, |b| b.iter(|| trainer.step(backend, &images, &tokens).unwrap()));
    }
}

/// The peer's cases on CUDA device 0 (`--features cuda`).
#[cfg(feature = "cuda")]
fn cuda_step(c: &mut Criterion) {
    match hopfield::backend::cube::Cuda::cuda(0) {
        Ok(gpu) => peer_cases(c, &gpu, "cuda/"),
        Err(e) => eprintln!("cuda/*: skipped, {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_step(_: &mut Criterion) {}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(15));
    targets = train_step, peer_step, cuda_step
}
criterion_main!(group);
