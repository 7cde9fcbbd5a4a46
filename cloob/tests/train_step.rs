//! The training step: gradient accumulation equals the full batch, non-finite values stop with the step
//! named, the temperature is clamped, and the tiny preset learns a generated image–caption set to a
//! zero-shot accuracy well above chance with both CLOOB's and CLIP's loss; and a step keeps its tensors on the
//! device (host transfers counted by a wrapper backend, below).

use cloob::loss::{LossConfig, LossKind};
use cloob::model::{ClipConfig, ClipModel, MAX_LOGIT_SCALE};
use cloob::shapes::{self, ShapesBatch};
use cloob::text::TextConfig;
use cloob::tokenizer::ClipTokenizer;
use cloob::train::{TrainConfig, Trainer};
use cloob::vit::VisionConfig;
use hopfield::optim::LrSchedule;
use hopfield::params::Parameters;
use hopfield::testing::counting::Counting;
use hopfield::{Backend, Cpu, HopfieldError};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::HashMap;
use std::time::Instant;

/// A two-tower model small enough for f64 gradient comparisons.
fn micro_config() -> ClipConfig {
    let vision = VisionConfig {
        image_size: 16,
        patch_size: 8,
        width: 16,
        layers: 1,
        heads: 2,
        output_dim: 8,
        ..VisionConfig::tiny()
    };
    let text = TextConfig { context_length: 16, width: 16, layers: 1, heads: 2, output_dim: 8, ..TextConfig::tiny() };
    ClipConfig { embed_dim: 8, vision: vision.into(), text, ..ClipConfig::tiny() }
}

fn tensors<B: Backend, P: Parameters<B>>(p: &P) -> HashMap<String, B::Tensor> {
    let mut out = HashMap::new();
    p.visit(&mut |n, t, _| {
        out.insert(n.to_string(), t.clone());
    });
    out
}

#[test]
fn accumulated_gradients_equal_the_full_batch() {
    let cpu = Cpu::<f64>::new();
    let mut rng = StdRng::seed_from_u64(5);
    let data = ShapesBatch::generate(&mut rng, 8, 16);
    let images = data.images(&cpu);
    let tokens = ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions);
    for kind in [LossKind::Cloob, LossKind::Clip] {
        let model = micro_config().learnable_inv_tau(true).init(&cpu, &mut StdRng::seed_from_u64(6)).unwrap();
        let grads = |k: usize| {
            let config = TrainConfig::new(LossConfig::new(kind), LrSchedule::Constant { lr: 1e-3 }).accum_freq(k);
            Trainer::new(model.clone(), config).unwrap().gradients(&cpu, &images, &tokens).unwrap()
        };
        let (loss1, g1) = grads(1);
        let reference = tensors::<Cpu<f64>, _>(&g1);
        for k in [2, 4] {
            let (loss_k, gk) = grads(k);
            assert!(
                (loss_k - loss1).abs() < 1e-12 * loss1.abs().max(1.0),
                "{kind:?} accum {k}: loss {loss_k} vs {loss1}"
            );
            gk.visit(&mut |n, t, _| {
                let r = &reference[n];
                let scale = r.iter().fold(1e-8f64, |m, v| m.max(v.abs()));
                let diff = r.iter().zip(t.iter()).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    diff <= 1e-10 * scale,
                    "{kind:?} accum {k}: gradient of {n} differs by {diff:e} (scale {scale:e})"
                );
            });
        }
        assert!(reference["logit_scale"].iter().all(|&v| v != 0.0), "the temperature gets a gradient");
    }
}

#[test]
fn non_finite_values_stop_with_the_step_named_and_leave_the_model() {
    let cpu = Cpu::<f32>::new();
    let mut rng = StdRng::seed_from_u64(7);
    let data = ShapesBatch::generate(&mut rng, 4, 16);
    let tokens = ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions);
    let model = micro_config().init(&cpu, &mut rng).unwrap();
    let config = TrainConfig::new(LossConfig::default(), LrSchedule::Constant { lr: 1e-3 }).grad_clip_norm(1.0);
    let mut trainer = Trainer::new(model, config).unwrap();
    let images = data.images(&cpu);
    trainer.step(&cpu, &images, &tokens).unwrap();
    let before = tensors::<Cpu<f32>, _>(&trainer.model);
    let mut poisoned = images.clone();
    poisoned[[1, 0, 3, 3]] = f32::NAN;
    let err = trainer.step(&cpu, &poisoned, &tokens).unwrap_err();
    assert!(matches!(err, HopfieldError::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("step 1"), "{err}");
    // A non-finite weight: the gradient check names the step and a tensor.
    let mut broken = trainer.clone();
    let cloob::image_tower::ImageTower::Vit(vit) = &mut broken.model.visual else { panic!("a vision transformer") };
    vit.proj[[0, 0]] = f32::INFINITY;
    let err = broken.step(&cpu, &images, &tokens).unwrap_err();
    assert!(err.to_string().contains("step 1"), "{err}");
    // Nothing moved, and the step count did not advance.
    assert_eq!(trainer.step, 1);
    for (n, t) in tensors::<Cpu<f32>, _>(&trainer.model) {
        assert_eq!(t, before[&n], "{n} changed by a failed step");
    }
    // Batch shape errors.
    assert!(trainer.step(&cpu, &images, &tokens.rows(0, 3)).is_err());
}

#[test]
fn learnable_temperature_is_clamped_to_ln_100() {
    let cpu = Cpu::<f32>::new();
    let mut rng = StdRng::seed_from_u64(8);
    let data = ShapesBatch::generate(&mut rng, 4, 16);
    let tokens = ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions);
    let mut config = micro_config().learnable_inv_tau(true);
    config.init_inv_tau = 99.0;
    let model = config.init(&cpu, &mut rng).unwrap();
    // CLIP's loss pushes τ⁻¹ up on separable pairs; a huge rate overshoots, the clamp holds it at 100.
    let mut trainer =
        Trainer::new(model, TrainConfig::new(LossConfig::new(LossKind::Clip), LrSchedule::Constant { lr: 0.5 }))
            .unwrap();
    let fixed = {
        let model = micro_config().init(&cpu, &mut rng).unwrap();
        Trainer::new(model, TrainConfig::new(LossConfig::new(LossKind::Clip), LrSchedule::Constant { lr: 0.5 }))
            .unwrap()
    };
    let mut fixed = fixed;
    for _ in 0..3 {
        let s = trainer.step(&cpu, &data.images(&cpu), &tokens).unwrap();
        assert!(s.inv_tau <= 100.0 + 1e-3 && s.inv_tau >= 1.0, "τ⁻¹ = {}", s.inv_tau);
        let f = fixed.step(&cpu, &data.images(&cpu), &tokens).unwrap();
        assert!((f.inv_tau - 14.3).abs() < 1e-4, "a fixed τ⁻¹ stays: {}", f.inv_tau);
    }
    let logit = cpu.to_vec(&trainer.model.logit_scale)[0] as f64;
    assert!((0.0..=MAX_LOGIT_SCALE + 1e-6).contains(&logit));
}

/// Zero-shot top-1 accuracy: each image is assigned the class whose prompt embedding (normalised, averaged
/// over templates, normalised again) is most similar.
fn zero_shot_accuracy(cpu: &Cpu<f32>, model: &ClipModel<Cpu<f32>>, data: &ShapesBatch, tok: &ClipTokenizer) -> f64 {
    let templates = ["a photo of a {}", "a {}", "a drawing of a {}"];
    let names = shapes::class_names();
    let d = model.config.embed_dim;
    let mut classifier = vec![0.0f32; names.len() * d];
    for t in templates {
        let prompts: Vec<String> = names.iter().map(|n| t.replace("{}", n)).collect();
        let e = model.encode_text(cpu, &tok.tokenize(&prompts)).unwrap();
        for (acc, v) in classifier.iter_mut().zip(e.iter()) {
            *acc += v;
        }
    }
    for row in classifier.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let img = model.encode_image(cpu, &data.images(cpu)).unwrap();
    let img = img.as_slice().unwrap();
    let correct = (0..data.n)
        .filter(|&i| {
            let score = |c: usize| (0..d).map(|k| img[i * d + k] * classifier[c * d + k]).sum::<f32>();
            let best = (0..names.len()).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap();
            best == data.classes[i]
        })
        .count();
    correct as f64 / data.n as f64
}

/// Train the tiny preset for 200 steps of 32 generated pairs and check the zero-shot accuracy and the loss.
fn tiny_preset_learns_generated_captions(kind: LossKind, inv_tau: f64) {
    let cpu = Cpu::<f32>::new();
    let tok = ClipTokenizer::with_context_length(16).unwrap();
    let (steps, batch) = (200, 32);
    let chance = 1.0 / shapes::num_classes() as f64;
    let test = ShapesBatch::generate(&mut StdRng::seed_from_u64(99), 240, 32);
    let mut rng = StdRng::seed_from_u64(10);
    let model = ClipConfig { init_inv_tau: inv_tau, ..ClipConfig::tiny() }.init(&cpu, &mut rng).unwrap();
    let before = zero_shot_accuracy(&cpu, &model, &test, &tok);
    let schedule = LrSchedule::WarmupCosine { base: 2e-3, warmup: 20, total: steps, floor: 1e-4 };
    let mut trainer =
        Trainer::new(model, TrainConfig::new(LossConfig::new(kind), schedule).grad_clip_norm(1.0)).unwrap();
    let start = Instant::now();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let data = ShapesBatch::generate(&mut rng, batch, 32);
        losses.push(trainer.step(&cpu, &data.images(&cpu), &tok.tokenize(&data.captions)).unwrap().loss);
    }
    let after = zero_shot_accuracy(&cpu, &trainer.model, &test, &tok);
    let mean = |l: &[f64]| l.iter().sum::<f64>() / l.len() as f64;
    let (early, late) = (mean(&losses[..10]), mean(&losses[steps as usize - 10..]));
    eprintln!(
        "{kind:?}: {steps} steps of {batch} in {:.1?}, loss {early:.3} → {late:.3}, \
         zero-shot top-1 {before:.3} → {after:.3} (chance {chance:.3})",
        start.elapsed()
    );
    assert!(after > 3.0 * chance, "{kind:?}: zero-shot accuracy {after:.3} (chance {chance:.3})");
    assert!(late < early, "{kind:?}: the loss did not fall ({early} → {late})");
}

/// CLOOB with the τ⁻¹ of cloob's README (30: at 14.3 it stays on its initial plateau for longer than this
/// test runs) and the retrieval's default β = 14.3.
#[test]
fn tiny_preset_learns_generated_captions_with_cloob_loss() {
    tiny_preset_learns_generated_captions(LossKind::Cloob, 30.0);
}

/// CLIP with CLIP's τ⁻¹ = 14.3.
#[test]
fn tiny_preset_learns_generated_captions_with_clip_loss() {
    tiny_preset_learns_generated_captions(LossKind::Clip, 14.3);
}

// The training step keeps its tensors on the device: a backend that counts host transfers pins how many one
// step makes. Reads back: τ⁻¹ for the forward pass, the loss with ∂L/∂τ⁻¹ (one transfer), the gradient norm
// (one transfer for all tensors), τ⁻¹ after the clamp: four, whatever the batch size, the loss or the
// gradient clipping. Uploads: the batch and the constants the step builds (masks, the identity of the
// objectives), the same number at every step and batch size of a loss. A new round trip fails here.

/// `(downloads, uploads)` of each of three steps at batch size `n`.
fn transfers_per_step<B: Backend<Elem = f32>>(
    inner: B,
    kind: LossKind,
    clip: bool,
    learnable: bool,
    n: usize,
) -> Vec<(usize, usize)> {
    let backend = Counting::new(inner);
    let mut rng = StdRng::seed_from_u64(3);
    let data = ShapesBatch::generate(&mut rng, n, 16);
    let tokens = ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions);
    let model = micro_config().learnable_inv_tau(learnable).init(&backend, &mut rng).unwrap();
    let mut config = TrainConfig::new(LossConfig::new(kind), LrSchedule::Constant { lr: 1e-3 });
    if clip {
        config = config.grad_clip_norm(1.0);
    }
    let mut trainer = Trainer::new(model, config).unwrap();
    (0..3)
        .map(|_| {
            let images = data.images(&backend);
            backend.transfers.reset();
            let stats = trainer.step(&backend, &images, &tokens).unwrap();
            assert!(stats.loss.is_finite() && stats.grad_norm > 0.0);
            backend.transfers.get()
        })
        .collect()
}

#[test]
fn a_training_step_reads_back_four_scalars_and_uploads_a_fixed_set() {
    for kind in [LossKind::Cloob, LossKind::Clip, LossKind::InfoLoob, LossKind::ClipHopfield] {
        let mut uploads = None;
        for (clip, learnable) in [(false, false), (true, true)] {
            for n in [4, 8] {
                let counts = transfers_per_step(Cpu::<f32>::new(), kind, clip, learnable, n);
                for (step, &(down, up)) in counts.iter().enumerate() {
                    assert_eq!(
                        down, 4,
                        "{kind:?} clip {clip} learnable τ {learnable} batch {n} step {step}: reads back"
                    );
                    let want = *uploads.get_or_insert(up);
                    assert_eq!(up, want, "{kind:?} clip {clip} batch {n} step {step}: uploads");
                }
            }
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn a_training_step_on_wgpu_makes_the_same_transfers() {
    let gpu = hopfield::backend::cube::Wgpu::wgpu().expect("a wgpu adapter (lavapipe in CI)");
    let cpu_counts = transfers_per_step(Cpu::<f32>::new(), LossKind::Cloob, true, false, 4);
    assert_eq!(transfers_per_step(gpu, LossKind::Cloob, true, false, 4), cpu_counts);
}
