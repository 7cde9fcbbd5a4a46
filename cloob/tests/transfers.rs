//! The training step keeps its tensors on the device: a backend that counts host transfers pins how many
//! one step makes. Reads back: τ⁻¹ for the forward pass, the loss with ∂L/∂τ⁻¹ (one transfer), the
//! gradient norm (one transfer for all tensors), τ⁻¹ after the clamp: four, whatever the batch size, the
//! loss or the gradient clipping. Uploads: the batch and the constants the step builds (masks, the
//! identity of the objectives), the same number at every step and batch size of a loss. A new round trip fails here.

use cloob::loss::{LossConfig, LossKind};
use cloob::model::ClipConfig;
use cloob::shapes::ShapesBatch;
use cloob::text::TextConfig;
use cloob::tokenizer::ClipTokenizer;
use cloob::train::{TrainConfig, Trainer};
use cloob::vit::VisionConfig;
use hopfield::optim::LrSchedule;
use hopfield::testing::counting::Counting;
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, SeedableRng};

fn micro_config() -> ClipConfig {
    let vision = VisionConfig {
        image_size: 16,
        patch_size: 8,
        width: 16,
        layers: 2,
        heads: 2,
        output_dim: 8,
        ..VisionConfig::tiny()
    };
    let text = TextConfig { context_length: 16, width: 16, layers: 2, heads: 2, output_dim: 8, ..TextConfig::tiny() };
    ClipConfig { embed_dim: 8, vision, text, ..ClipConfig::tiny() }
}

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
fn on_wgpu_too() {
    let gpu = hopfield::backend::cube::Wgpu::wgpu().expect("a wgpu adapter (lavapipe in CI)");
    let cpu_counts = transfers_per_step(Cpu::<f32>::new(), LossKind::Cloob, true, false, 4);
    assert_eq!(transfers_per_step(gpu, LossKind::Cloob, true, false, 4), cpu_counts);
}
