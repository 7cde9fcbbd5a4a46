//! CLOOB (Fürst et al., "CLOOB: Modern Hopfield Networks with InfoLOOB Outperform CLIP").
//!
//! - [`tokenizer`]: CLIP's BPE tokenizer with open_clip's ids.
//! - [`vit`], [`text`]: the image and text towers, pre-LN transformers whose attention is a
//!   [`hopfield`] association (no further update step, β = 1/√head_dim: multi-head attention).
//! - [`blocks`]: the transformer stack both towers share, under open_clip's names.
//! - [`model`]: the two-tower model with L2-normalised embeddings and a fixed or learnable τ⁻¹.
//! - [`model_config`]: architectures as open_clip model-config JSON (ViT-B-32, ViT-L-14, …, our presets).
//! - [`loss`]: CLOOB's InfoLOOB with Hopfield retrieval, CLIP's InfoNCE and the paper's ablations, with
//!   explicit gradients on the [`hopfield::Backend`] trait.
//! - [`train`]: one optimisation step (AdamW, schedules, gradient accumulation, clipping).
//! - [`dist`]: data parallelism over ranks (the [`dist::Collective`] trait; MPI with the `mpi` feature).
//! - [`eval`]: zero-shot classification, image↔text retrieval, linear probe and embedding analysis.
//! - [`shapes`]: a generated image–caption set (coloured shapes) for tests, benches and demos.
//! - [`data`]: the embedded captioned-scene generator, Fashion-MNIST, open_clip CSV files, the loader.
//! - `pretrain` (feature `pretrain`, on by default): the `cloob-pretrain` run, checkpoints, evaluation, plots;
//!   `pretrained`: open_clip weights in (safetensors, PyTorch `.pt`) and out.
//!
//! Every module is config → `init` → `forward` (output + cache) → `backward`; gradients accumulate into
//! a zeroed copy of the module (`zero_grads`), which [`hopfield::optim`] optimisers take by name.
//!
//! ```
//! use cloob::{loss::{LossConfig, LossKind}, model::ClipConfig, shapes::ShapesBatch};
//! use cloob::{tokenizer::ClipTokenizer, train::{TrainConfig, Trainer}};
//! use hopfield::{optim::LrSchedule, Backend, Cpu};
//! use rand::SeedableRng;
//!
//! let cpu = Cpu::<f32>::new();
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let model = ClipConfig::tiny().init(&cpu, &mut rng)?;
//! let schedule = LrSchedule::WarmupCosine { base: 1e-3, warmup: 10, total: 1000, floor: 0.0 };
//! let mut trainer = Trainer::new(model, TrainConfig::new(LossConfig::new(LossKind::Cloob), schedule))?;
//! let batch = ShapesBatch::generate(&mut rng, 4, 32); // 4 images 32×32 with captions
//! let tokens = ClipTokenizer::with_context_length(32)?.tokenize(&batch.captions);
//! let stats = trainer.step(&cpu, &batch.images(&cpu), &tokens)?;
//! assert!(stats.loss.is_finite() && trainer.step == 1);
//! let text = trainer.model.encode_text(&cpu, &tokens)?; // [4, 64], unit rows
//! assert_eq!(cpu.shape(&text), [4, 64]);
//! # Ok::<(), hopfield::HopfieldError>(())
//! ```
pub mod blocks;
pub mod data;
pub mod dist;
pub mod eval;
pub mod image_tower;
pub mod lock;
pub mod loss;
pub mod model;
pub mod model_config;
#[cfg(feature = "pretrain")]
pub mod pretrain;
#[cfg(feature = "pretrain")]
pub mod pretrained;
pub mod resnet;
pub mod shapes;
pub mod text;
pub mod tokenizer;
pub mod train;
pub mod vit;
