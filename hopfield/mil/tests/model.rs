//! The MIL model and its training: gradients against finite differences, padding invariance, and learning
//! the planted-cluster task.

use hopfield::layers::{Layer, Mode};
use hopfield::testing::{check_gradients, GradCheck};
use hopfield::{Backend, Cpu, Parameters};
use hopfield_mil::cv::{cross_validate, cross_validate_resuming, paper_grid, small_grid, CvSettings, HopfieldTrainer};
use hopfield_mil::metrics::roc_auc;
use hopfield_mil::model::{BagBatch, MilModel, MilModelConfig};
use hopfield_mil::synthetic::{planted_cluster, PlantedCluster};
use hopfield_mil::train::{predict, train, MilConfig, PreparedBags};
use hopfield_mil::Standardizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn tiny_model(cpu: &Cpu<f64>, bag_dropout: f64) -> MilModel<Cpu<f64>> {
    let cfg = MilModelConfig {
        input_size: 3,
        embedding_layers: 2,
        width: 4,
        heads: 2,
        head_dim: 3,
        beta: 0.7,
        bag_dropout,
        retrieval: Default::default(),
    };
    let mut rng = StdRng::seed_from_u64(11);
    let mut model = cfg.init(cpu, &mut rng).unwrap();
    // Projection biases start at exactly zero; a bag whose every association is dropped would then sit on
    // the ReLU's kink, where finite differences see half a derivative. Nudge every tensor off it.
    model.visit_mut(&mut |_, t, _| {
        let v: Vec<f64> = cpu.to_vec(t).iter().map(|x| x + rng.gen_range(-0.1..0.1)).collect();
        *t = cpu.from_vec(v, &cpu.shape(t));
    });
    model
}

fn tiny_batch(rng: &mut StdRng) -> BagBatch<f64> {
    let lens = vec![2, 4, 1];
    let n: usize = lens.iter().sum();
    BagBatch { instances: (0..n * 3).map(|_| rng.gen_range(-1.5..1.5)).collect(), lens }
}

/// `Σ r ⊙ logits` for a fixed `r`, so every logit's gradient path is exercised with its own weight.
fn objective(cpu: &Cpu<f64>, model: &MilModel<Cpu<f64>>, batch: &BagBatch<f64>, r: &[f64], seed: Option<u64>) -> f64 {
    let (logits, _) = model.forward(cpu, model.params(), batch, Mode::from_seed(seed)).unwrap();
    cpu.to_vec(&logits).iter().zip(r).map(|(l, r)| l * r).sum()
}

#[test]
fn every_gradient_matches_finite_differences() {
    let cpu = Cpu::<f64>::new();
    let mut rng = StdRng::seed_from_u64(3);
    let batch = tiny_batch(&mut rng);
    let r = [0.7, -1.3, 0.4];
    // With bag dropout the seeded mask is the same in every evaluation, so the check covers it too.
    for (dropout, seed) in [(0.0, None), (0.5, Some(99))] {
        let model = tiny_model(&cpu, dropout);
        let (logits, cache) = model.forward(&cpu, model.params(), &batch, Mode::from_seed(seed)).unwrap();
        assert_eq!(cpu.shape(&logits), [3, 1]);
        let mut grads = model.zero_grads(&cpu);
        model.backward(&cpu, model.params(), &cache, &cpu.from_vec(r.to_vec(), &[3, 1]), &mut grads).unwrap();
        let names = grads.names();
        assert!(names.iter().any(|n| n == "pooling.pooling_weights"));
        assert!(names.iter().any(|n| n == "embed.1.weight"));
        let checked =
            check_gradients(&cpu, &model, &grads, &GradCheck::default(), |m| objective(&cpu, m, &batch, &r, seed))
                .unwrap_or_else(|e| panic!("dropout {dropout}: {e}"));
        assert_eq!(checked, model.num_scalars(&cpu));
    }
}

#[test]
fn padding_does_not_change_a_bags_logit() {
    let cpu = Cpu::<f64>::new();
    let model = tiny_model(&cpu, 0.0);
    let mut rng = StdRng::seed_from_u64(5);
    let batch = tiny_batch(&mut rng);
    let (together, _) = model.forward(&cpu, model.params(), &batch, Mode::Eval).unwrap();
    let together = cpu.to_vec(&together);
    let mut start = 0;
    for (b, &len) in batch.lens.iter().enumerate() {
        let alone = BagBatch { instances: batch.instances[start * 3..(start + len) * 3].to_vec(), lens: vec![len] };
        let (l, _) = model.forward(&cpu, model.params(), &alone, Mode::Eval).unwrap();
        assert!((cpu.to_vec(&l)[0] - together[b]).abs() < 1e-12, "bag {b} changes when padded");
        start += len;
    }
    // predict() regroups bags by length; it must hand the logits back in the given order.
    let bags: Vec<(&[f64], usize)> = batch
        .lens
        .iter()
        .scan(0, |start, &len| {
            let bag = (&batch.instances[*start * 3..(*start + len) * 3], len);
            *start += len;
            Some(bag)
        })
        .collect();
    let predicted = model.predict(&cpu, &bags, 2).unwrap();
    for (p, t) in predicted.iter().zip(&together) {
        assert!((p - t).abs() < 1e-12, "predict reorders: {predicted:?} vs {together:?}");
    }
    let empty = BagBatch { instances: vec![], lens: vec![0] };
    assert!(model.forward(&cpu, model.params(), &empty, Mode::Eval).is_err(), "an empty bag is rejected");
}

fn planted_split() -> (PreparedBags<f32>, PreparedBags<f32>) {
    let data = planted_cluster(&PlantedCluster { bags: 240, ..Default::default() }, 17);
    // Labels alternate, so both halves hold both classes.
    let (train_idx, test_idx): (Vec<usize>, Vec<usize>) = (0..data.bags.len()).partition(|&i| i < 180);
    let scaler = Standardizer::fit(&data, &train_idx);
    (PreparedBags::new(&data, &train_idx, &scaler), PreparedBags::new(&data, &test_idx, &scaler))
}

fn planted_config() -> MilConfig {
    MilConfig {
        lr: 3e-3,
        lr_decay: 0.98,
        weight_decay: 1e-3,
        embedding_layers: 1,
        width: 32,
        heads: 4,
        head_dim: 8,
        beta: 1.0,
        bag_dropout: 0.0,
        epochs: 10,
        batch_size: 8,
        grad_clip: Some(1.0),
        retrieval: Default::default(),
    }
}

#[test]
fn learns_the_planted_cluster_task() {
    let cpu = Cpu::<f32>::new();
    let (train_bags, test_bags) = planted_split();
    let start = Instant::now();
    let model = train(&cpu, &planted_config(), &train_bags, 1).unwrap();
    let auc = roc_auc(&predict(&cpu, &model, &test_bags).unwrap(), &test_bags.labels).unwrap();
    eprintln!("planted cluster: test AUC {auc:.3} after {:.2} s", start.elapsed().as_secs_f64());
    assert!(auc >= 0.95, "test AUC {auc}");
    // Untrained, the same model is near chance: the AUC above was learned.
    let untrained = MilConfig { epochs: 0, ..planted_config() };
    let model = train(&cpu, &untrained, &train_bags, 1).unwrap();
    let auc0 = roc_auc(&predict(&cpu, &model, &test_bags).unwrap(), &test_bags.labels).unwrap();
    assert!(auc0 < 0.85, "untrained AUC {auc0}");
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let cpu = Cpu::<f32>::new();
    let (train_bags, test_bags) = planted_split();
    let cfg = MilConfig { epochs: 2, bag_dropout: 0.5, ..planted_config() };
    let a = predict(&cpu, &train(&cpu, &cfg, &train_bags, 4).unwrap(), &test_bags).unwrap();
    let b = predict(&cpu, &train(&cpu, &cfg, &train_bags, 4).unwrap(), &test_bags).unwrap();
    let c = predict(&cpu, &train(&cpu, &cfg, &train_bags, 5).unwrap(), &test_bags).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn cross_validation_selects_on_a_holdout_and_scores_every_fold() {
    let cpu = Cpu::<f32>::new();
    let data = planted_cluster(&PlantedCluster { bags: 60, ..Default::default() }, 2);
    let base = MilConfig { epochs: 3, ..planted_config() };
    let settings =
        CvSettings { folds: 3, repeats: 2, seed: 9, val_fraction: 0.25, inner_folds: 0, grid: small_grid(&base) };
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let records = cross_validate(&cpu, &data, &settings, &|_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen.into_inner(), 6);
    let keys: Vec<(usize, usize)> = records.iter().map(|r| (r.repeat, r.fold)).collect();
    assert_eq!(keys, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
    for r in &records {
        assert_eq!(r.n_train + r.n_test, 60);
        assert!((0.0..=1.0).contains(&r.test_auc) && r.val_auc.is_some());
        assert_eq!(r.config, serde_json::to_value(&settings.grid[r.grid_index]).unwrap());
    }
    let again = cross_validate(&cpu, &data, &settings, &|_| {}).unwrap();
    let aucs = |rs: &[hopfield_mil::report::FoldRecord]| rs.iter().map(|r| r.test_auc).collect::<Vec<_>>();
    assert_eq!(aucs(&records), aucs(&again), "a seed reproduces the run");
}

#[test]
fn cross_validation_can_select_by_inner_folds() {
    let cpu = Cpu::<f32>::new();
    let data = planted_cluster(&PlantedCluster { bags: 48, ..Default::default() }, 3);
    let base = MilConfig { epochs: 2, ..planted_config() };
    let holdout =
        CvSettings { folds: 3, repeats: 1, seed: 4, val_fraction: 0.25, inner_folds: 0, grid: small_grid(&base) };
    let inner = CvSettings { inner_folds: 3, ..holdout.clone() };
    let a = cross_validate(&cpu, &data, &holdout, &|_| {}).unwrap();
    let b = cross_validate(&cpu, &data, &inner, &|_| {}).unwrap();
    assert_eq!(b.len(), 3);
    for r in &b {
        assert!(r.val_auc.is_some_and(|v| (0.0..=1.0).contains(&v)));
        assert_eq!(r.config, serde_json::to_value(&inner.grid[r.grid_index]).unwrap());
    }
    let vals = |rs: &[hopfield_mil::report::FoldRecord]| rs.iter().map(|r| r.val_auc).collect::<Vec<_>>();
    assert_ne!(vals(&a), vals(&b), "the inner folds validate on other bags than the hold-out");
    let again = cross_validate(&cpu, &data, &inner, &|_| {}).unwrap();
    assert_eq!(vals(&b), vals(&again));
}

#[test]
fn a_resumed_cross_validation_trains_only_the_missing_folds_and_matches_a_whole_run() {
    let cpu = Cpu::<f32>::new();
    let data = planted_cluster(&PlantedCluster { bags: 30, ..Default::default() }, 5);
    let cfg = MilConfig { epochs: 2, ..planted_config() };
    let settings = CvSettings { folds: 3, repeats: 2, seed: 1, val_fraction: 0.25, inner_folds: 0, grid: vec![cfg] };
    let whole = cross_validate(&cpu, &data, &settings, &|_| {}).unwrap();
    let untimed = |rs: &[hopfield_mil::report::FoldRecord]| {
        rs.iter().map(|r| hopfield_mil::report::FoldRecord { seconds: 0.0, ..r.clone() }).collect::<Vec<_>>()
    };
    // Folds (0, 1) and (1, 2) finished earlier; a marker in `seconds` shows they come back as they were.
    let finished: Vec<_> = [&whole[1], &whole[5]]
        .iter()
        .map(|r| hopfield_mil::report::FoldRecord { seconds: -1.0, ..(*r).clone() })
        .collect();
    let trained = std::sync::Mutex::new(Vec::new());
    let resumed = cross_validate_resuming(&HopfieldTrainer(&cpu), &data, &settings, &finished, &|r| {
        trained.lock().unwrap().push((r.repeat, r.fold));
        Ok(())
    })
    .unwrap();
    let mut trained = trained.into_inner().unwrap();
    trained.sort_unstable();
    assert_eq!(trained, [(0, 0), (0, 2), (1, 0), (1, 1)]);
    assert_eq!(untimed(&resumed), untimed(&whole));
    assert_eq!((resumed[1].seconds, resumed[5].seconds), (-1.0, -1.0));

    // A record that is not a fold of this run is refused; an error from `on_fold` stops the run.
    let stray = hopfield_mil::report::FoldRecord { fold: 3, ..whole[0].clone() };
    let err = cross_validate_resuming(&HopfieldTrainer(&cpu), &data, &settings, &[stray], &|_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("repeat 0 fold 3 is not a fold"), "{err}");
    let err = cross_validate_resuming(&HopfieldTrainer(&cpu), &data, &settings, &[], &|_| {
        Err(hopfield_mil::MilError::File { path: "out.partial".into(), reason: "disk full".into() })
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "out.partial: disk full");
}

#[test]
fn paper_grid_draws_distinct_points_of_table_a2() {
    let base = MilConfig::default();
    let grid = paper_grid(&base, 20, 1);
    assert_eq!(grid.len(), 20);
    for (i, a) in grid.iter().enumerate() {
        assert!(grid[i + 1..].iter().all(|b| a != b), "duplicate grid point");
        assert!([1e-3, 1e-5].contains(&a.lr) && [0.0, 0.75].contains(&a.bag_dropout));
        assert_eq!((a.epochs, a.batch_size), (base.epochs, base.batch_size));
    }
    assert_eq!(grid, paper_grid(&base, 20, 1));
    assert_eq!(paper_grid(&base, 100_000, 1).len(), 2 * 3 * 3 * 4 * 4 * 3 * 3 * 2);
}
