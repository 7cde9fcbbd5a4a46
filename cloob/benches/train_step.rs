//! One training step of the tiny two-tower preset at batch 128 (f32, CPU backend), for CLOOB's loss and
//! CLIP's: forward both towers, loss, backward, clipping and AdamW. Steps/s = 1 / the time per iteration.

use cloob::loss::{LossConfig, LossKind};
use cloob::model::ClipConfig;
use cloob::shapes::ShapesBatch;
use cloob::tokenizer::ClipTokenizer;
use cloob::train::{TrainConfig, Trainer};
use criterion::{criterion_group, criterion_main, Criterion};
use hopfield::optim::LrSchedule;
use hopfield::Cpu;
use rand::{rngs::StdRng, SeedableRng};

fn train_step(c: &mut Criterion) {
    let cpu = Cpu::<f32>::with_tuned_allocator();
    let config = ClipConfig::tiny();
    let mut rng = StdRng::seed_from_u64(0);
    let data = ShapesBatch::generate(&mut rng, 128, config.vision.image_size);
    let images = data.images(&cpu);
    let tokens = ClipTokenizer::with_context_length(config.text.context_length).unwrap().tokenize(&data.captions);
    for (name, kind) in [("cloob_tiny_b128", LossKind::Cloob), ("clip_tiny_b128", LossKind::Clip)] {
        let model = config.init(&cpu, &mut StdRng::seed_from_u64(1)).unwrap();
        let schedule = LrSchedule::WarmupCosine { base: 1e-3, warmup: 10, total: 10_000, floor: 0.0 };
        let mut trainer =
            Trainer::new(model, TrainConfig::new(LossConfig::new(kind), schedule).grad_clip_norm(1.0)).unwrap();
        c.bench_function(name, |b| b.iter(|| trainer.step(&cpu, &images, &tokens).unwrap()));
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(15));
    targets = train_step
}
criterion_main!(group);
