//! Properties of the Hopfield layers that hold for any parameters, including the hflayers bugs we fix.

mod common;

use common::{host, rel_err};
use hopfield_layers::energy::energy;
use hopfield_layers::layers::hopfield::{Convergence, PerHead};
use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, HopfieldPoolingConfig, Mask, PoolingInput};
use hopfield_layers::layers::{Layer, Mode};
use hopfield_layers::{Backend, Cpu, HopfieldError};
use rand::{rngs::StdRng, SeedableRng};

type B = Cpu<f64>;
use common::{rand_tensor, randomise};

#[test]
fn masked_stored_patterns_change_nothing() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(1);
    for heads in 1..=3 {
        let cfg =
            HopfieldConfig::new(6).num_heads(heads).hidden_size(2).update_steps_max(Some(2)).update_steps_eps(1e-12);
        let mut layer = cfg.init(&be, &mut rng).unwrap();
        randomise(&mut layer.params, &mut rng);
        let (b, l, s) = (2, 3, 5);
        let mask: Vec<bool> = (0..b * s).map(|i| i % s == 1 || i % s == 4).collect();
        let stored = rand_tensor(&mut rng, &[b, s, 6]);
        let state = rand_tensor(&mut rng, &[b, l, 6]);
        let projection = rand_tensor(&mut rng, &[b, s, 6]);
        let run = |k: &hopfield_layers::backend::CpuTensor<f64>, v: &hopfield_layers::backend::CpuTensor<f64>| {
            let input =
                HopfieldInput::new(k.clone(), state.clone(), v.clone()).padding_mask(Mask::bool(mask.clone(), &[b, s]));
            layer.forward(&be, layer.params(), &input, Mode::Eval).unwrap()
        };
        let (y0, cache) = run(&stored, &projection);
        let (mut k2, mut v2) = (stored.clone(), projection.clone());
        for bi in 0..b {
            for si in [1, 4] {
                k2.slice_mut(ndarray::s![bi, si, ..]).fill(1e3);
                v2.slice_mut(ndarray::s![bi, si, ..]).fill(-7.0);
            }
        }
        let (y1, _) = run(&k2, &v2);
        assert!(rel_err(&host(&be, &y1.output), &host(&be, &y0.output)) < 1e-12, "heads {heads}");
        let mut grads = layer.zero_grads(&be);
        let g = layer.backward(&be, layer.params(), &cache, &be.full(&[b, l, 6], 1.0), &mut grads).unwrap();
        for bi in 0..b {
            for si in [1, 4] {
                assert!(g.stored.slice(ndarray::s![bi, si, ..]).iter().all(|v| v.abs() < 1e-14));
                assert!(g.projection.slice(ndarray::s![bi, si, ..]).iter().all(|v| v.abs() < 1e-14));
            }
        }
    }
}

#[test]
fn fully_masked_rows_give_zero_association_not_nan() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(2);
    let layer = HopfieldConfig::new(4).num_heads(2).init(&be, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, 3, 4]);
    // Sample 1 hides every stored pattern; sample 0 none.
    let mask = Mask::bool(vec![false, false, false, true, true, true], &[2, 3]);
    let (out, cache) = layer
        .forward(&be, layer.params(), &HopfieldInput::single(x).padding_mask(mask).with_association(), Mode::Eval)
        .unwrap();
    let a = out.association.unwrap();
    assert!(a.iter().all(|v| v.is_finite()) && out.output.iter().all(|v| v.is_finite()));
    assert!(a.slice(ndarray::s![1, .., .., ..]).iter().all(|&v| v == 0.0));
    // The output of a row with nothing to retrieve is the output projection's bias.
    let bias = layer.params.out_proj_bias.as_ref().unwrap();
    for l in 0..3 {
        assert_eq!(out.output.slice(ndarray::s![1, l, ..]).to_owned().into_dyn(), bias.clone());
    }
    let mut grads = layer.zero_grads(&be);
    let g = layer.backward(&be, layer.params(), &cache, &be.full(&[2, 3, 4], 1.0), &mut grads).unwrap();
    assert!(g.single(&be).iter().all(|v| v.is_finite()));
}

#[test]
fn u8_masks_equal_bool_masks() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(3);
    let layer = HopfieldConfig::new(4).init(&be, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[1, 4, 4]);
    let bools = vec![
        false, true, false, false, true, false, false, false, false, false, true, false, false, false, false, false,
    ];
    let bytes: Vec<u8> = bools.iter().map(|&b| if b { 255 } else { 0 }).collect();
    let y_bool = layer
        .forward(
            &be,
            layer.params(),
            &HopfieldInput::single(x.clone()).association_mask(Mask::bool(bools, &[4, 4])),
            Mode::Eval,
        )
        .unwrap()
        .0;
    let y_u8 = layer
        .forward(
            &be,
            layer.params(),
            &HopfieldInput::single(x).association_mask(Mask::from_u8(&bytes, &[4, 4])),
            Mode::Eval,
        )
        .unwrap()
        .0;
    assert_eq!(y_bool.output, y_u8.output);
}

#[test]
fn pooling_equals_hopfield_with_the_expanded_state_pattern() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(4);
    for (heads, quantity, batch_first) in [(1, 1, true), (2, 3, true), (4, 2, false)] {
        let hcfg = HopfieldConfig::new(8).num_heads(heads).batch_first(batch_first);
        let mut pool =
            HopfieldPoolingConfig::new(8).hopfield(hcfg.clone()).quantity(quantity).init(&be, &mut rng).unwrap();
        randomise(&mut pool.params, &mut rng);
        let b = 3;
        let x = rand_tensor(&mut rng, &if batch_first { [b, 5, 8] } else { [5, b, 8] });
        let (y, _) = pool.forward(&be, pool.params(), &PoolingInput::single(x.clone()), Mode::Eval).unwrap();
        let mut hop = hcfg.init(&be, &mut rng).unwrap();
        hop.params = pool.params.hopfield.clone();
        let w = pool.params.pooling_weights.clone();
        let state = if batch_first { be.expand(&w, 0, b) } else { be.expand(&be.reshape(&w, &[quantity, 1, 8]), 1, b) };
        let out =
            hop.forward(&be, hop.params(), &HopfieldInput::new(x.clone(), state, x), Mode::Eval).unwrap().0.output;
        let out = if batch_first { out } else { be.permute(&out, &[1, 0, 2]) };
        assert_eq!(be.reshape(&out, &[b, quantity * 8]), y);
    }
}

#[test]
fn update_steps_never_increase_the_energy() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(5);
    for beta in [0.5, 2.0, 8.0] {
        let cfg = HopfieldConfig::static_retrieval(6, beta).update_steps_max(Some(3)).update_steps_eps(1e-14);
        let layer = cfg.init(&be, &mut rng).unwrap();
        let x = rand_tensor(&mut rng, &[2, 7, 6]);
        let xi = rand_tensor(&mut rng, &[2, 4, 6]);
        let (out, cache) =
            layer.forward(&be, layer.params(), &HopfieldInput::new(x.clone(), xi, x.clone()), Mode::Eval).unwrap();
        assert_eq!(out.update_steps, vec![3]);
        let energies: Vec<Vec<f64>> =
            cache.states().map(|s| energy(&be, &x, &be.reshape(s, &[2, 4, 6]), beta).unwrap()).collect();
        assert_eq!(energies.len(), 4);
        for w in energies.windows(2) {
            for (e_next, e_prev) in w[1].iter().zip(&w[0]) {
                assert!(e_next <= &(e_prev + 1e-12), "β {beta}: energy rose from {e_prev} to {e_next}");
            }
        }
    }
}

#[test]
fn static_patterns_stay_with_their_sample_for_several_heads() {
    // hflayers repeats static patterns with `.repeat(1, num_heads, 1)`, which interleaves samples and heads
    // when batch > 1 and heads > 1; here every sample retrieves from its own patterns.
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(6);
    let cfg = HopfieldConfig::static_retrieval(5, 3.0).num_heads(3);
    let layer = cfg.init(&be, &mut rng).unwrap();
    let (k, q) = (rand_tensor(&mut rng, &[4, 6, 5]), rand_tensor(&mut rng, &[4, 2, 5]));
    let y = layer
        .forward(&be, layer.params(), &HopfieldInput::new(k.clone(), q.clone(), k.clone()), Mode::Eval)
        .unwrap()
        .0
        .output;
    let single = HopfieldConfig::static_retrieval(5, 3.0).init(&be, &mut rng).unwrap();
    for b in 0..4 {
        let kb = be.slice(&k, 0, b, 1);
        let yb = single
            .forward(&be, single.params(), &HopfieldInput::new(kb.clone(), be.slice(&q, 0, b, 1), kb), Mode::Eval)
            .unwrap()
            .0
            .output;
        for h in 0..3 {
            let got = y.slice(ndarray::s![b..b + 1, .., h * 5..(h + 1) * 5]).to_owned().into_dyn().into_shared();
            assert!(rel_err(&host(&be, &got), &host(&be, &yb)) < 1e-14, "sample {b} head {h}");
        }
    }
}

#[test]
fn per_head_beta_scales_its_own_head() {
    // hflayers multiplies by `scaling.repeat(...)` along the feature axis, interleaving the βs.
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(7);
    let two = HopfieldConfig::static_retrieval(4, 1.0)
        .num_heads(2)
        .scaling_per_head(vec![0.5, 6.0])
        .init(&be, &mut rng)
        .unwrap();
    let (k, q) = (rand_tensor(&mut rng, &[2, 5, 4]), rand_tensor(&mut rng, &[2, 3, 4]));
    let a = two.association_matrix(&be, &HopfieldInput::new(k.clone(), q.clone(), k.clone())).unwrap();
    for (h, beta) in [(0, 0.5), (1, 6.0)] {
        let one = HopfieldConfig::static_retrieval(4, beta).init(&be, &mut rng).unwrap();
        let a1 = one.association_matrix(&be, &HopfieldInput::new(k.clone(), q.clone(), k.clone())).unwrap();
        let ah = be.slice(&a, 1, h, 1);
        assert!(rel_err(&host(&be, &ah), &host(&be, &a1)) < 1e-14, "head {h}");
    }
}

#[test]
fn concat_bias_pattern_is_appended_and_learned() {
    // hflayers accepts concat_bias_pattern but never appends the bias.
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(8);
    let mut layer = HopfieldConfig::new(4).num_heads(2).concat_bias_pattern(true).init(&be, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, 3, 4]);
    let (out, _) =
        layer.forward(&be, layer.params(), &HopfieldInput::single(x.clone()).with_association(), Mode::Eval).unwrap();
    assert_eq!(be.shape(out.association.as_ref().unwrap()), vec![2, 2, 3, 4]);
    layer.params.bias_k = Some(be.full(&[1, 1, 4], 3.0));
    let (out2, _) = layer.forward(&be, layer.params(), &HopfieldInput::single(x), Mode::Eval).unwrap();
    assert!(rel_err(&host(&be, &out2.output), &host(&be, &out.output)) > 1e-6);
}

#[test]
fn convergence_stops_each_head_and_reports_its_steps() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(9);
    let x = rand_tensor(&mut rng, &[2, 6, 4]);
    let q = rand_tensor(&mut rng, &[2, 3, 4]);
    for conv in [Convergence::Association, Convergence::State] {
        let mut cfg = HopfieldConfig::static_retrieval(4, 1.0).num_heads(3).convergence(conv);
        cfg.update_steps_max = PerHead::Each(vec![None, Some(1), Some(0)]);
        cfg.update_steps_eps = PerHead::All(1e-6);
        let layer = cfg.init(&be, &mut rng).unwrap();
        let (out, cache) = layer
            .forward(&be, layer.params(), &HopfieldInput::new(x.clone(), q.clone(), x.clone()), Mode::Eval)
            .unwrap();
        let s = &out.update_steps;
        assert_eq!(&s[1..], &[1, 0], "{conv:?}");
        assert!(s[0] >= 2 && s[0] < 1000, "{conv:?}: unbounded head ran {} steps", s[0]);
        // The unbounded head has converged: one more step moves less than eps.
        let states: Vec<_> = cache.states().collect();
        let last = states[states.len() - 1];
        let prev = states[states.len() - 2];
        let d = be.head_distance(&be.slice(last, 1, 0, 1), &be.slice(prev, 1, 0, 1))[0];
        assert!(d < 1e-3, "{conv:?}: last state step {d}");
    }
}

#[test]
fn invalid_configs_name_their_field() {
    let cases: Vec<(HopfieldConfig, &str)> = vec![
        (HopfieldConfig::new(7).num_heads(2), "hidden_size"),
        (HopfieldConfig::new(4).num_heads(0), "num_heads"),
        (HopfieldConfig::new(4).normalize_stored_pattern(false), "normalize_stored_pattern_affine"),
        (HopfieldConfig::new(4).normalize_hopfield_space_affine(true), "normalize_hopfield_space_affine"),
        (HopfieldConfig::new(4).scaling(f64::NAN), "scaling"),
        (HopfieldConfig::new(4).num_heads(2).scaling_per_head(vec![1.0]), "scaling"),
        (HopfieldConfig::new(4).association_activation("relu7"), "association_activation"),
        (HopfieldConfig::new(6).hidden_size(3).state_pattern_as_static(true), "state_pattern_as_static"),
        (
            HopfieldConfig::new(4).stored_pattern_size(5).pattern_projection_as_connected(true),
            "pattern_projection_as_connected",
        ),
        (HopfieldConfig::new(4).dropout(1.0), "dropout"),
        (HopfieldConfig::new(4).update_steps_eps(0.0), "update_steps_eps"),
        (HopfieldConfig::default(), "input_size"),
    ];
    for (cfg, field) in cases {
        match cfg.validate() {
            Err(HopfieldError::Config { field: f, .. }) => assert_eq!(f, field, "{cfg:?}"),
            other => panic!("expected a config error on `{field}`, got {other:?}"),
        }
    }
}

#[test]
fn wrong_input_shapes_are_errors_naming_the_input() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(10);
    let layer = HopfieldConfig::new(4).init(&be, &mut rng).unwrap();
    let err = layer
        .forward(&be, layer.params(), &HopfieldInput::single(rand_tensor(&mut rng, &[2, 3, 5])), Mode::Eval)
        .unwrap_err();
    assert!(err.to_string().contains("hopfield.forward(stored)") && err.to_string().contains("[2, 3, 5]"), "{err}");
    let bad_mask =
        HopfieldInput::single(rand_tensor(&mut rng, &[2, 3, 4])).padding_mask(Mask::bool(vec![false; 5], &[1, 5]));
    assert!(layer
        .forward(&be, layer.params(), &bad_mask, Mode::Eval)
        .unwrap_err()
        .to_string()
        .contains("padding_mask"));
    let (_, cache) = layer
        .forward(&be, layer.params(), &HopfieldInput::single(rand_tensor(&mut rng, &[2, 3, 4])), Mode::Eval)
        .unwrap();
    let mut g = layer.zero_grads(&be);
    assert!(layer.backward(&be, layer.params(), &cache, &be.zeros(&[2, 3, 3]), &mut g).is_err());
}
