//! Central finite differences (f64) against the analytical backward of `Hopfield`, `HopfieldPooling` and
//! `HopfieldLayer` over randomised configurations: heads 1–4, update steps 0–3 (per head, so some heads stop
//! early), every static/connected combination, every layer norm, bias and zero patterns, masks, dropout,
//! activations and both layouts.

mod common;

use hopfield::layers::{
    HopfieldConfig, HopfieldInput, HopfieldLayerConfig, HopfieldPoolingConfig, Mask, PoolingInput,
};
use hopfield::params::Parameters;
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

type B = Cpu<f64>;
use common::{rand_tensor, randomise};



fn dot(a: &hopfield::backend::CpuTensor<f64>, b: &hopfield::backend::CpuTensor<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compare `analytic` with central differences of `loss` at up to `k` random entries of `x`.
fn check_entries(what: &str, x: &mut hopfield::backend::CpuTensor<f64>, analytic: &hopfield::backend::CpuTensor<f64>, k: usize,
                 rng: &mut StdRng, loss: &mut dyn FnMut(&hopfield::backend::CpuTensor<f64>) -> f64) {
    assert_eq!(x.shape(), analytic.shape(), "{what}: gradient shape");
    let h = 1e-6;
    for _ in 0..k.min(x.len()) {
        let i = rng.gen_range(0..x.len());
        let orig = x.as_slice().unwrap()[i];
        x.as_slice_mut().unwrap()[i] = orig + h;
        let up = loss(x);
        x.as_slice_mut().unwrap()[i] = orig - h;
        let down = loss(x);
        x.as_slice_mut().unwrap()[i] = orig;
        let fd = (up - down) / (2.0 * h);
        let an = analytic.as_slice().unwrap()[i];
        assert!((fd - an).abs() <= 1e-6 * (1.0 + fd.abs()), "{what}[{i}]: finite difference {fd:.9} vs backward {an:.9}");
    }
}

fn random_config(rng: &mut StdRng) -> HopfieldConfig {
    let heads = rng.gen_range(1..=4);
    let hd = rng.gen_range(2..=3);
    let (ks, qs, vs) = (rng.gen_bool(0.3), rng.gen_bool(0.3), rng.gen_bool(0.3));
    let connected = !ks && rng.gen_bool(0.3);
    let pattern = if connected { hd } else { rng.gen_range(2..=3) };
    let mut c = HopfieldConfig::new(if qs { hd } else { rng.gen_range(3..=6) })
        .num_heads(heads).hidden_size(hd).pattern_size(pattern)
        .stored_pattern_as_static(ks).state_pattern_as_static(qs).pattern_projection_as_static(vs)
        .pattern_projection_as_connected(connected)
        .stored_pattern_size(if ks { hd } else { rng.gen_range(3..=5) })
        .batch_first(rng.gen_bool(0.7))
        .input_bias(rng.gen_bool(0.8))
        .concat_bias_pattern(rng.gen_bool(0.3))
        .add_zero_association(rng.gen_bool(0.3))
        .disable_out_projection(rng.gen_bool(0.2))
        .normalize_hopfield_space(rng.gen_bool(0.3));
    c.pattern_projection_size = Some(if vs { pattern } else if connected { c.stored_pattern_size.unwrap() } else { rng.gen_range(3..=5) });
    if connected {
        c.pattern_projection_size = c.stored_pattern_size;
    }
    c.normalize_hopfield_space_affine = c.normalize_hopfield_space && rng.gen_bool(0.5);
    c.output_size = Some(rng.gen_range(2..=4));
    for (on, affine) in [
        (&mut c.normalize_stored_pattern, &mut c.normalize_stored_pattern_affine),
        (&mut c.normalize_state_pattern, &mut c.normalize_state_pattern_affine),
        (&mut c.normalize_pattern_projection, &mut c.normalize_pattern_projection_affine),
    ] {
        *on = rng.gen_bool(0.6);
        *affine = *on && rng.gen_bool(0.7);
    }
    c.update_steps_max = hopfield::layers::hopfield::PerHead::Each((0..heads).map(|_| Some(rng.gen_range(0..=3))).collect());
    c.update_steps_eps = hopfield::layers::hopfield::PerHead::All(1e-12);
    c.scaling = Some(hopfield::layers::hopfield::PerHead::Each((0..heads).map(|_| rng.gen_range(0.3..2.0)).collect()));
    if rng.gen_bool(0.3) {
        c.association_activation = Some(["tanh", "gelu", "sigmoid", "silu"][rng.gen_range(0..4)].to_string());
    }
    if rng.gen_bool(0.3) {
        c.dropout = 0.3;
    }
    c
}

fn random_masks(rng: &mut StdRng, b: usize, h: usize, l: usize, s: usize) -> (Option<Mask>, Option<Mask>) {
    let padding = rng.gen_bool(0.4).then(|| Mask::bool((0..b * s).map(|_| rng.gen_bool(0.3)).collect(), &[b, s]));
    let association = match rng.gen_range(0..4) {
        0 => Some(Mask::bool((0..l * s).map(|_| rng.gen_bool(0.3)).collect(), &[l, s])),
        1 => Some(Mask::additive((0..b * h * l * s).map(|_| rng.gen_range(-1.0..1.0)).collect(), &[b * h, l, s])),
        _ => None,
    };
    (padding, association)
}

#[test]
fn hopfield_backward_matches_finite_differences() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(7);
    let mut checked = 0;
    while checked < 40 {
        let cfg = random_config(&mut rng);
        if cfg.validate().is_err() {
            continue;
        }
        let mut layer = cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut layer.params, &mut rng);
        let d = layer.spec.dims.clone();
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=4), rng.gen_range(1..=5));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let mut stored = rand_tensor(&mut rng, &lay(s, d.stored));
        let mut state = rand_tensor(&mut rng, &lay(l, d.input));
        let mut projection = rand_tensor(&mut rng, &lay(s, d.projection));
        let (pm, am) = random_masks(&mut rng, b, d.heads, l, s);
        let seed = rng.gen();
        let make = |k: &hopfield::backend::CpuTensor<f64>, q: &hopfield::backend::CpuTensor<f64>, v: &hopfield::backend::CpuTensor<f64>| {
            let mut i = HopfieldInput::new(k.clone(), q.clone(), v.clone());
            i.stored_pattern_padding_mask = pm.clone();
            i.association_mask = am.clone();
            i
        };
        let (out, cache) = layer.forward_train(&backend, &make(&stored, &state, &projection), seed).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&out.output));
        let mut grads = layer.zero_grads(&backend);
        let gi = layer.backward(&backend, &cache, &g, &mut grads).unwrap();
        let ctx = format!("case {checked} {cfg:?}");
        let (k0, q0, v0) = (stored.clone(), state.clone(), projection.clone());
        check_entries(&format!("{ctx} d_stored"), &mut stored, &gi.stored, 4, &mut rng, &mut |x| {
            dot(&layer.forward_train(&backend, &make(x, &q0, &v0), seed).unwrap().0.output, &g)
        });
        check_entries(&format!("{ctx} d_state"), &mut state, &gi.state, 4, &mut rng, &mut |x| {
            dot(&layer.forward_train(&backend, &make(&k0, x, &v0), seed).unwrap().0.output, &g)
        });
        check_entries(&format!("{ctx} d_projection"), &mut projection, &gi.projection, 4, &mut rng, &mut |x| {
            dot(&layer.forward_train(&backend, &make(&k0, &q0, x), seed).unwrap().0.output, &g)
        });
        let input = make(&k0, &q0, &v0);
        for name in layer.params.names() {
            let mut analytic = None;
            grads.visit(&mut |n, t, _| if n == name { analytic = Some(t.clone()) });
            let analytic = analytic.unwrap();
            let mut probe = layer.clone();
            let mut tensor = None;
            probe.params.visit(&mut |n, t, _| if n == name { tensor = Some(t.clone()) });
            let mut tensor = tensor.unwrap();
            check_entries(&format!("{ctx} param {name}"), &mut tensor, &analytic, 3, &mut rng, &mut |x| {
                probe.params.visit_mut(&mut |n, t, _| if n == name { *t = x.clone() });
                dot(&probe.forward_train(&backend, &input, seed).unwrap().0.output, &g)
            });
        }
        checked += 1;
    }
}

#[test]
fn pooling_and_lookup_backward_match_finite_differences() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    while checked < 12 {
        let mut cfg = random_config(&mut rng);
        cfg.state_pattern_as_static = false;
        if rng.gen_bool(0.5) {
            cfg.pattern_projection_size = cfg.stored_pattern_size;
        }
        if cfg.validate().is_err() {
            continue;
        }
        let d = cfg.validate().unwrap();
        let (b, n) = (rng.gen_range(1..=3), rng.gen_range(2..=5));
        let quantity = rng.gen_range(1..=3);
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let seed = rng.gen();
        // Pooling over a set of n instances.
        let pool_cfg = HopfieldPoolingConfig::new(d.input).hopfield(cfg.clone()).quantity(quantity);
        let mut pool = pool_cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut pool.params, &mut rng);
        let mut stored = rand_tensor(&mut rng, &lay(n, d.stored));
        let projection = rand_tensor(&mut rng, &lay(n, d.projection));
        let (y, cache) = pool.forward_train(&backend, &PoolingInput::new(stored.clone(), projection.clone()), seed).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = pool.zero_grads(&backend);
        let gi = pool.backward(&backend, &cache, &g, &mut grads).unwrap();
        check_entries("pooling d_stored", &mut stored.clone(), &gi.stored, 4, &mut rng, &mut |x| {
            dot(&pool.forward_train(&backend, &PoolingInput::new(x.clone(), projection.clone()), seed).unwrap().0, &g)
        });
        let mut w = pool.params.pooling_weights.clone();
        check_entries("pooling d_pooling_weights", &mut w, &grads.pooling_weights, 4, &mut rng, &mut |x| {
            let mut p = pool.clone();
            p.params.pooling_weights = x.clone();
            dot(&p.forward_train(&backend, &PoolingInput::new(stored.clone(), projection.clone()), seed).unwrap().0, &g)
        });
        stored.fill(0.0);
        // Lookup with n learned patterns, separated targets when the sizes allow both.
        let separated = d.stored != d.projection || rng.gen_bool(0.5);
        let look_cfg = HopfieldLayerConfig::new(d.input).hopfield(cfg.clone()).quantity(n).lookup_weights_as_separated(separated);
        let mut look = look_cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut look.params, &mut rng);
        let mut x = rand_tensor(&mut rng, &lay(quantity, d.input));
        let (y, cache) = look.forward_train(&backend, &x, seed).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = look.zero_grads(&backend);
        let dx = look.backward(&backend, &cache, &g, &mut grads).unwrap();
        let x0 = x.clone();
        check_entries("lookup d_input", &mut x, &dx, 4, &mut rng, &mut |xx| dot(&look.forward_train(&backend, xx, seed).unwrap().0, &g));
        let mut lw = look.params.lookup_weights.clone();
        check_entries("lookup d_lookup_weights", &mut lw, &grads.lookup_weights, 4, &mut rng, &mut |w| {
            let mut p = look.clone();
            p.params.lookup_weights = w.clone();
            dot(&p.forward_train(&backend, &x0, seed).unwrap().0, &g)
        });
        if let (Some(mut tw), Some(gt)) = (look.params.target_weights.clone(), grads.target_weights.as_ref()) {
            check_entries("lookup d_target_weights", &mut tw, gt, 4, &mut rng, &mut |w| {
                let mut p = look.clone();
                p.params.target_weights = Some(w.clone());
                dot(&p.forward_train(&backend, &x0, seed).unwrap().0, &g)
            });
        }
        checked += 1;
    }
}

#[test]
fn encoder_and_decoder_layers_match_finite_differences() {
    use hopfield::layers::{DecoderMasks, HopfieldEncoderLayerConfig};
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(13);
    for (norm_first, batch_first, dropout, steps) in [(false, true, 0.0, 0), (true, true, 0.2, 1), (false, false, 0.2, 2), (true, false, 0.0, 0)] {
        let hcfg = HopfieldConfig::new(6).num_heads(2).batch_first(batch_first).update_steps_max(Some(steps)).update_steps_eps(1e-12);
        let cfg = HopfieldEncoderLayerConfig::new(hcfg.clone()).dim_feedforward(5).dropout(dropout).activation("gelu").norm_first(norm_first);
        let lay = |n: usize| if batch_first { vec![2, n, 6] } else { vec![n, 2, 6] };
        let seed = Some(rng.gen());
        let causal = Mask::bool((0..16).map(|i| i % 4 > i / 4).collect(), &[4, 4]);
        // Encoder.
        let mut enc = cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut enc.params, &mut rng);
        let src = rand_tensor(&mut rng, &lay(4));
        let (y, cache) = enc.forward(&backend, &src, Some(causal.clone()), None, seed).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = enc.zero_grads(&backend);
        let dsrc = enc.backward(&backend, &cache, &g, &mut grads).unwrap();
        let ctx = format!("encoder norm_first={norm_first} batch_first={batch_first}");
        check_entries(&format!("{ctx} d_src"), &mut src.clone(), &dsrc, 6, &mut rng, &mut |x| {
            dot(&enc.forward(&backend, x, Some(causal.clone()), None, seed).unwrap().0, &g)
        });
        for name in enc.params.names() {
            let (mut t, mut an) = (None, None);
            enc.params.visit(&mut |n, v, _| if n == name { t = Some(v.clone()) });
            grads.visit(&mut |n, v, _| if n == name { an = Some(v.clone()) });
            let mut probe = enc.clone();
            check_entries(&format!("{ctx} {name}"), &mut t.unwrap(), &an.unwrap(), 2, &mut rng, &mut |x| {
                probe.params.visit_mut(&mut |n, v, _| if n == name { *v = x.clone() });
                dot(&probe.forward(&backend, &src, Some(causal.clone()), None, seed).unwrap().0, &g)
            });
        }
        // Decoder.
        let mut dec = cfg.init_decoder(&hcfg, &backend, &mut rng).unwrap();
        randomise(&mut dec.params, &mut rng);
        let masks = DecoderMasks { tgt_mask: Some(causal.clone()), ..Default::default() };
        let tgt = rand_tensor(&mut rng, &lay(4));
        let memory = rand_tensor(&mut rng, &lay(3));
        let (y, cache) = dec.forward(&backend, &tgt, &memory, &masks, seed).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = dec.zero_grads(&backend);
        let (dtgt, dmem) = dec.backward(&backend, &cache, &g, &mut grads).unwrap();
        let ctx = format!("decoder norm_first={norm_first} batch_first={batch_first}");
        check_entries(&format!("{ctx} d_tgt"), &mut tgt.clone(), &dtgt, 6, &mut rng, &mut |x| {
            dot(&dec.forward(&backend, x, &memory, &masks, seed).unwrap().0, &g)
        });
        check_entries(&format!("{ctx} d_memory"), &mut memory.clone(), &dmem, 6, &mut rng, &mut |x| {
            dot(&dec.forward(&backend, &tgt, x, &masks, seed).unwrap().0, &g)
        });
        for name in dec.params.names() {
            let (mut t, mut an) = (None, None);
            dec.params.visit(&mut |n, v, _| if n == name { t = Some(v.clone()) });
            grads.visit(&mut |n, v, _| if n == name { an = Some(v.clone()) });
            let mut probe = dec.clone();
            check_entries(&format!("{ctx} {name}"), &mut t.unwrap(), &an.unwrap(), 2, &mut rng, &mut |x| {
                probe.params.visit_mut(&mut |n, v, _| if n == name { *v = x.clone() });
                dot(&probe.forward(&backend, &tgt, &memory, &masks, seed).unwrap().0, &g)
            });
        }
    }
}
