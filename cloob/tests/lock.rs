//! Locked towers (LiT, open_clip's `--lock-image`/`--lock-text`): frozen weights stay bit-identical through
//! training steps (weight decay on), the trainable tensors get exactly the gradients they get without a
//! lock, frozen tensors get no gradient memory and no optimiser moments, and a locked run resumes bit for
//! bit with its lock and refuses another.

use cloob::lock::LockConfig;
use cloob::loss::{LossConfig, LossKind};
use cloob::model::{ClipConfig, ClipModel};
use cloob::pretrain::checkpoint;
use cloob::pretrain::{train, LockOptions, RunConfig, RunOptions};
use cloob::shapes::ShapesBatch;
use cloob::text::TextConfig;
use cloob::tokenizer::{ClipTokenizer, TokenBatch};
use cloob::train::{TrainConfig, Trainer};
use cloob::vit::VisionConfig;
use hopfield::optim::{LrSchedule, Optimizer};
use hopfield::params::Parameters;
use hopfield::{Backend, Cpu, Element};
use rand::{rngs::StdRng, SeedableRng};
use std::collections::BTreeMap;

/// Two blocks per tower (four lock groups each), small enough for f64.
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
    ClipConfig { embed_dim: 8, vision: vision.into(), text, ..ClipConfig::tiny() }.learnable_inv_tau(true)
}

/// Every tensor's values as bit patterns, by name.
fn bits<B: Backend, P: Parameters<B>>(backend: &B, p: &P) -> BTreeMap<String, Vec<u64>> {
    let mut out = BTreeMap::new();
    p.visit(&mut |n, t, _| {
        out.insert(n.to_string(), backend.to_vec(t).iter().map(|v| v.f64().to_bits()).collect());
    });
    out
}

fn batch<B: Backend>(backend: &B, seed: u64) -> (B::Tensor, TokenBatch) {
    let data = ShapesBatch::generate(&mut StdRng::seed_from_u64(seed), 8, 16);
    (data.images(backend), ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions))
}

fn trainer<B: Backend>(backend: &B, lock: LockConfig, accum: usize) -> Trainer<B> {
    trainer_eps(backend, lock, accum, 1e-6)
}

/// With AdamW's ε: a large ε makes the update proportional to the gradient, so that gradients equal up to
/// rounding give weights equal up to rounding (at ε = 1e-6 a gradient that is zero in exact arithmetic,
/// such as a key bias's, moves its tensor by the sign of its rounding noise).
fn trainer_eps<B: Backend>(backend: &B, lock: LockConfig, accum: usize, eps: f64) -> Trainer<B> {
    let model = micro_config().init(backend, &mut StdRng::seed_from_u64(3)).unwrap();
    // A large constant rate and open_clip's weight decay: anything not frozen moves visibly.
    let mut config = TrainConfig::new(LossConfig::new(LossKind::Cloob), LrSchedule::Constant { lr: 1e-2 })
        .accum_freq(accum)
        .lock(lock);
    config.adam = config.adam.eps(eps);
    Trainer::new(model, config).unwrap()
}

/// Names whose tensors changed between `before` and `after`.
fn changed(before: &BTreeMap<String, Vec<u64>>, after: &BTreeMap<String, Vec<u64>>) -> Vec<String> {
    before.iter().filter(|(n, v)| after[*n] != **v).map(|(n, _)| n.clone()).collect()
}

#[test]
fn frozen_weights_stay_bit_identical_and_only_the_unlocked_groups_train() {
    let cpu = Cpu::<f32>::new();
    let image = |n| LockConfig { image_unlocked_groups: Some(n), ..LockConfig::default() };
    let text = |n| LockConfig { text_unlocked_groups: Some(n), ..LockConfig::default() };
    // (lock, accum_freq, the tensors that may change: a name filter)
    let cases: [(LockConfig, usize, fn(&str) -> bool); 5] = [
        (image(0), 1, |n| !n.starts_with("visual.")),
        (image(0), 2, |n| !n.starts_with("visual.")),
        (image(1), 1, |n| !n.starts_with("visual.") || n == "visual.proj"),
        (text(1), 2, |n| n.starts_with("visual.") || n == "text_projection" || n == "logit_scale"),
        (
            LockConfig { image_unlocked_groups: Some(2), text_unlocked_groups: Some(0), ..LockConfig::default() },
            1,
            |n| {
                n == "logit_scale"
                    || n == "visual.proj"
                    || n.starts_with("visual.ln_post.")
                    || n.starts_with("visual.transformer.resblocks.1.")
            },
        ),
    ];
    for (lock, accum, may_change) in cases {
        let mut t = trainer(&cpu, lock, accum);
        let start = bits(&cpu, &t.model);
        for step in 0..3 {
            let (images, tokens) = batch(&cpu, 10 + step);
            t.step(&cpu, &images, &tokens).unwrap();
        }
        let moved = changed(&start, &bits(&cpu, &t.model));
        let expected: Vec<String> = start.keys().filter(|n| may_change(n)).cloned().collect();
        assert_eq!(moved, expected, "{lock:?}, accum {accum}: the tensors that changed");
        // No optimiser moments for a frozen tensor, so a checkpoint holds none.
        let state = t.optimizer.export_state(&cpu);
        let with_moments: Vec<&str> = state.steps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(with_moments, expected, "{lock:?}: tensors with optimiser moments");
        // Frozen tensors get empty gradients.
        let (images, tokens) = batch(&cpu, 20);
        let (_, g) = t.gradients(&cpu, &images, &tokens).unwrap();
        g.visit(&mut |n, t, _| assert_eq!(cpu.shape(t) == [0], t_frozen(&lock, n, may_change), "{lock:?}: {n}"));
    }
}

/// Frozen under `lock`: a tensor of a locked tower that the case's filter keeps fixed.
fn t_frozen(lock: &LockConfig, name: &str, may_change: fn(&str) -> bool) -> bool {
    let image = name.starts_with("visual.");
    let locked = if image { lock.image_unlocked_groups.is_some() } else { lock.text_unlocked_groups.is_some() };
    locked && name != "logit_scale" && !may_change(name)
}

#[test]
fn trainable_tensors_get_the_gradients_of_the_unlocked_model() {
    let cpu = Cpu::<f64>::new();
    let (images, tokens) = batch(&cpu, 7);
    for accum in [1, 2] {
        let (_, open) = trainer(&cpu, LockConfig::default(), accum).gradients(&cpu, &images, &tokens).unwrap();
        let open = bits(&cpu, &open);
        for unlocked in 0..=4 {
            for text in [None, Some(unlocked.min(3))] {
                let lock = LockConfig {
                    image_unlocked_groups: Some(unlocked),
                    text_unlocked_groups: text,
                    ..LockConfig::default()
                };
                let t = trainer(&cpu, lock, accum);
                let (_, g) = t.gradients(&cpu, &images, &tokens).unwrap();
                let mut trainable = 0;
                for (n, v) in bits(&cpu, &g) {
                    if t.lock().is_frozen(&n) {
                        assert!(v.is_empty(), "{lock:?}: {n} is frozen");
                    } else {
                        // The same operations in the same order on the trainable side: bit-identical.
                        assert_eq!(v, open[&n], "{lock:?}, accum {accum}: gradient of {n}");
                        trainable += 1;
                    }
                }
                // Each unlocked group adds tensors: the plan is not vacuous.
                assert_eq!(unlocked == 4 && text.is_none(), trainable == open.len(), "{lock:?}");
            }
        }
    }
}

/// A locked run small enough for a test (the tiny preset, 6 steps).
fn locked_run(name: &str, logs: &std::path::Path, lock: LockOptions) -> RunConfig {
    RunConfig {
        batch_size: 16,
        steps: 6,
        warmup: 2,
        embedded_len: 40,
        eval_size: 40,
        eval_every: 0,
        save_every: 0,
        accum_freq: 2,
        logs: logs.to_path_buf(),
        name: name.into(),
        lock,
        ..RunConfig::default()
    }
}

fn visual_bits(model: &ClipModel<Cpu<f32>>) -> BTreeMap<String, Vec<u64>> {
    let mut all = bits(&Cpu::<f32>::new(), model);
    all.retain(|n, _| n.starts_with("visual."));
    all
}

#[test]
fn a_locked_run_resumes_bit_for_bit_and_refuses_another_lock() {
    let logs = std::env::temp_dir().join(format!("cloob-lock-{}", std::process::id()));
    std::fs::remove_dir_all(&logs).ok();
    let lock = LockOptions { lock_image: true, ..LockOptions::default() };
    let quiet = RunOptions { no_eval: true, ..RunOptions::default() };
    let full = train(&locked_run("full", &logs, lock.clone()), &quiet).unwrap();
    let cut_cfg = locked_run("cut", &logs, lock.clone());
    let cut = train(&cut_cfg, &RunOptions { stop_after: Some(3), ..quiet.clone() }).unwrap();
    let resumed = train(&cut_cfg, &RunOptions { resume: Some("latest".into()), ..quiet.clone() }).unwrap();
    let stitched: Vec<u64> = cut.losses.iter().chain(&resumed.losses).map(|(_, l)| l.to_bits()).collect();
    assert_eq!(stitched, full.losses.iter().map(|(_, l)| l.to_bits()).collect::<Vec<_>>());

    let cpu = Cpu::<f32>::new();
    let load = |json: &std::path::Path, cfg: &RunConfig| checkpoint::resume(&cpu, json, cfg, 6, &|_| {});
    let (at3, _) = load(cut.checkpoint.as_ref().unwrap(), &cut_cfg).unwrap();
    let (at6, _) = load(resumed.checkpoint.as_ref().unwrap(), &cut_cfg).unwrap();
    let fresh = cut_cfg.clip_config().unwrap().init(&cpu, &mut cloob::data::rng::rng_for(&[cut_cfg.seed, 0x1417]));
    assert_eq!(visual_bits(&at6.model), visual_bits(&fresh.unwrap()), "the image tower after 6 locked steps");
    assert_eq!(visual_bits(&at6.model), visual_bits(&at3.model));
    assert_ne!(bits(&cpu, &at6.model)["text_projection"], bits(&cpu, &at3.model)["text_projection"]);
    let state = at6.optimizer.export_state(&cpu);
    assert!(!state.tensors.is_empty() && state.tensors.iter().all(|t| !t.name.contains("visual.")));

    // Another lock on resume is refused, naming the setting.
    for other in [LockOptions::default(), LockOptions { lock_image_unlocked_groups: 1, ..lock.clone() }] {
        let e = load(cut.checkpoint.as_ref().unwrap(), &locked_run("cut", &logs, other)).err().unwrap();
        assert!(e.to_string().contains("lock"), "{e}");
    }
    std::fs::remove_dir_all(&logs).ok();
}

/// Ranks as threads of one process, for the data-parallel step without MPI: every operation exchanges
/// each rank's buffer through shared slots between barriers.
struct Threads {
    rank: usize,
    size: usize,
    slots: std::sync::Arc<(std::sync::Barrier, std::sync::Mutex<Vec<Vec<f64>>>)>,
}

impl Threads {
    fn group(size: usize) -> Vec<Threads> {
        let slots = std::sync::Arc::new((std::sync::Barrier::new(size), std::sync::Mutex::new(vec![Vec::new(); size])));
        (0..size).map(|rank| Threads { rank, size, slots: slots.clone() }).collect()
    }
    /// Every rank's `local`, in rank order.
    fn exchange(&self, local: Vec<f64>) -> Vec<Vec<f64>> {
        let (barrier, slots) = &*self.slots;
        barrier.wait(); // the previous exchange has been read everywhere
        slots.lock().unwrap()[self.rank] = local;
        barrier.wait();
        slots.lock().unwrap().clone()
    }
}

impl cloob::dist::Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> hopfield::Result<()> {
        let all = self.exchange(buf.iter().map(|&v| v as f64).collect());
        for (i, v) in buf.iter_mut().enumerate() {
            *v = all.iter().map(|r| r[i] as f32).sum();
        }
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> hopfield::Result<()> {
        let all = self.exchange(buf.to_vec());
        for (i, v) in buf.iter_mut().enumerate() {
            *v = all.iter().map(|r| r[i]).sum();
        }
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32]) -> hopfield::Result<Vec<f32>> {
        Ok(self.exchange(local.iter().map(|&v| v as f64).collect()).concat().into_iter().map(|v| v as f32).collect())
    }
    fn all_gather_f64(&self, local: &[f64]) -> hopfield::Result<Vec<f64>> {
        Ok(self.exchange(local.to_vec()).concat())
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) -> hopfield::Result<()> {
        let all = self.exchange(buf.iter().map(|&b| b as f64).collect());
        *buf = all[root].iter().map(|&b| b as u8).collect();
        Ok(())
    }
    fn barrier(&self) -> hopfield::Result<()> {
        self.slots.0.wait();
        Ok(())
    }
}

#[test]
fn two_ranks_with_a_lock_take_the_one_process_step() {
    let cpu = Cpu::<f64>::new();
    let lock = LockConfig { image_unlocked_groups: Some(2), text_unlocked_groups: Some(0), ..LockConfig::default() };
    for accum in [1, 2] {
        let mut one = trainer_eps(&cpu, lock, accum, 1.0);
        let start = bits(&cpu, &one.model);
        let ranks: Vec<Trainer<Cpu<f64>>> = (0..2).map(|_| trainer_eps(&cpu, lock, accum, 1.0)).collect();
        let batches: Vec<_> = (0..3).map(|s| batch(&cpu, 30 + s)).collect();
        let one_losses: Vec<f64> = batches.iter().map(|(i, t)| one.step(&cpu, i, t).unwrap().loss).collect();
        let finished: Vec<(Trainer<Cpu<f64>>, Vec<f64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .into_iter()
                .zip(Threads::group(2))
                .map(|(mut t, comm)| {
                    let batches = &batches;
                    s.spawn(move || {
                        let cpu = Cpu::<f64>::new();
                        let r = comm.rank;
                        let losses = batches
                            .iter()
                            .map(|(images, tokens)| {
                                let shard = cpu.slice(images, 0, 4 * r, 4);
                                t.step_with(&cpu, &shard, &tokens.rows(4 * r, 4), &comm).unwrap().loss
                            })
                            .collect();
                        (t, losses)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, (t, losses)) in finished.iter().enumerate() {
            for (a, b) in one_losses.iter().zip(losses) {
                assert!((a - b).abs() <= 1e-9 * a.abs(), "accum {accum}, rank {rank}: loss {b} vs one process {a}");
            }
            let (after, ref_after) = (bits(&cpu, &t.model), bits(&cpu, &one.model));
            for (n, v) in &after {
                if t.lock().is_frozen(n) {
                    assert_eq!(v, &start[n], "rank {rank}: frozen {n} changed");
                } else {
                    let (x, y) =
                        (v.iter().map(|b| f64::from_bits(*b)), ref_after[n].iter().map(|b| f64::from_bits(*b)));
                    let diff = x.zip(y).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                    assert!(diff <= 1e-12, "accum {accum}, rank {rank}: {n} differs from one process by {diff:e}");
                }
            }
            assert_ne!(after["visual.proj"], start["visual.proj"]);
        }
    }
}

/// 8 pairs of 32×32 images.
fn batch32<B: Backend>(backend: &B, seed: u64) -> (B::Tensor, TokenBatch) {
    let data = ShapesBatch::generate(&mut StdRng::seed_from_u64(seed), 8, 32);
    (data.images(backend), ClipTokenizer::with_context_length(16).unwrap().tokenize(&data.captions))
}

/// A ResNet image tower (32×32 images, one bottleneck per stage) with the micro text tower.
fn resnet_trainer<B: Backend>(backend: &B, lock: LockConfig) -> Trainer<B> {
    use cloob::resnet::ResNetConfig;
    let vision = ResNetConfig { image_size: 32, width: 4, output_dim: 8, ..ResNetConfig::tiny() };
    let model = ClipConfig { vision: vision.into(), ..micro_config() }.init(backend, &mut StdRng::seed_from_u64(3));
    let config = TrainConfig::new(LossConfig::new(LossKind::Cloob), LrSchedule::Constant { lr: 1e-2 }).lock(lock);
    Trainer::new(model.unwrap(), config).unwrap()
}

/// A ResNet tower locks by open_clip's groups (stem, 4 stages, attention pool): locked whole with frozen
/// batch-norm statistics nothing of it changes, running statistics included; with the attention pool
/// unlocked only the pool trains (the running statistics still follow the batches, as in open_clip without
/// `freeze_bn_stats`), with the gradients of the unlocked model.
#[test]
fn a_resnet_tower_locks_by_its_groups() {
    let cpu = Cpu::<f64>::new();
    let whole = LockConfig { image_unlocked_groups: Some(0), freeze_bn_stats: true, ..LockConfig::default() };
    let pool = LockConfig { image_unlocked_groups: Some(1), ..LockConfig::default() };
    let running = |n: &str| n.contains("running_") || n.ends_with("num_batches_tracked");
    for (lock, may_change) in [
        (whole, (|n: &str| !n.starts_with("visual.")) as fn(&str) -> bool),
        (pool, |n: &str| {
            !n.starts_with("visual.")
                || n.starts_with("visual.attnpool.")
                || n.contains("running_")
                || n.ends_with("num_batches_tracked")
        }),
    ] {
        let mut t = resnet_trainer(&cpu, lock);
        let start = bits(&cpu, &t.model);
        for step in 0..2 {
            let (images, tokens) = batch32(&cpu, 30 + step);
            t.step(&cpu, &images, &tokens).unwrap();
        }
        let moved = changed(&start, &bits(&cpu, &t.model));
        let expected: Vec<String> = start.keys().filter(|n| may_change(n)).cloned().collect();
        assert_eq!(moved, expected, "{lock:?}: the tensors that changed");
    }
    // The unlocked pool's gradients equal the unlocked model's.
    let (images, tokens) = batch32(&cpu, 40);
    let (_, open) = resnet_trainer(&cpu, LockConfig::default()).gradients(&cpu, &images, &tokens).unwrap();
    let (_, locked) = resnet_trainer(&cpu, pool).gradients(&cpu, &images, &tokens).unwrap();
    let (open, locked) = (bits(&cpu, &open), bits(&cpu, &locked));
    for (n, v) in &locked {
        if n.starts_with("visual.") && !running(n) {
            let trainable = n.starts_with("visual.attnpool.");
            assert_eq!(v.is_empty(), !trainable, "{n}");
            if trainable {
                assert_eq!(v, &open[n], "{n}");
            }
        }
    }
    // Frozen statistics for only some groups are refused.
    let some = LockConfig { image_unlocked_groups: Some(2), freeze_bn_stats: true, ..LockConfig::default() };
    let (images, tokens) = batch32(&cpu, 41);
    let err = resnet_trainer(&cpu, some).gradients(&cpu, &images, &tokens).unwrap_err();
    assert!(err.to_string().contains("locked whole"), "{err}");
}
