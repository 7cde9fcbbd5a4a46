//! Central finite differences (f64, `hopfield_layers::testing`) against the analytical backward of `Hopfield`,
//! `HopfieldPooling`, `HopfieldLayer` and the encoder/decoder layers over randomised configurations: heads
//! 1–4, update steps 0–3 (per head, so some heads stop early), every static/connected combination, every
//! layer norm, bias and zero patterns, masks, dropout, activations and both layouts; and every retrieval
//! (sparsemax, entmax with fixed and learnable α, softmax₁).

mod common;

use hopfield_layers::backend::CpuTensor;
use hopfield_layers::layers::hopfield::PerHead;
use hopfield_layers::layers::{
    DecoderInput, EncoderInput, HopfieldConfig, HopfieldInput, HopfieldLayerConfig, HopfieldPoolingConfig, Layer,
    LookupInput, Mask, Mode, PoolingInput, Retrieval,
};
use hopfield_layers::testing::{check_gradients, check_tensor, GradCheck};
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

type B = Cpu<f64>;
use common::{rand_tensor, random_config, random_masks, randomise, SMALL};

/// The loss `⟨y, g⟩`, whose upstream gradient is `g`.
fn dot(a: &CpuTensor<f64>, b: &CpuTensor<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `k` random entries per tensor.
fn some(k: usize, rng: &mut StdRng) -> GradCheck {
    GradCheck::default().entries(k, rng.gen())
}

/// Panics with the case and the mismatch.
fn ok(ctx: &str, r: Result<usize, hopfield_layers::testing::GradMismatch>) {
    if let Err(e) = r {
        panic!("{ctx}: {e}");
    }
}

#[test]
fn hopfield_backward_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut checked = 0;
    while checked < 40 {
        let cfg = random_config(&mut rng, &SMALL);
        if cfg.validate().is_err() {
            continue;
        }
        check_hopfield(&cfg, &mut rng, checked);
        checked += 1;
    }
}

/// The same over random configurations with each retrieval other than softmax: sparsemax, entmax with a
/// fixed α, entmax with a learnable α per head (its gradient included) and softmax₁.
#[test]
fn every_retrieval_matches_finite_differences() {
    let mut rng = StdRng::seed_from_u64(17);
    let retrievals = [
        Retrieval::Sparsemax,
        Retrieval::Entmax { alpha: 1.3, learnable: false },
        Retrieval::Entmax { alpha: 1.5, learnable: true },
        Retrieval::Softmax1,
    ];
    let mut checked = 0;
    while checked < 48 {
        let mut cfg = random_config(&mut rng, &SMALL).retrieval(retrievals[checked % retrievals.len()]);
        // Larger β than the softmax cases so that sparse supports are neither full nor single.
        if let Some(PerHead::Each(b)) = cfg.scaling.as_mut() {
            b.iter_mut().for_each(|x| *x *= 3.0);
        }
        if cfg.validate().is_err() {
            continue;
        }
        check_hopfield(&cfg, &mut rng, checked);
        checked += 1;
    }
}

/// Finite differences of one random `Hopfield` of config `cfg`: inputs and every parameter.
fn check_hopfield(cfg: &HopfieldConfig, rng: &mut StdRng, checked: usize) {
    let backend = B::new();
    {
        let mut layer = cfg.init(&backend, rng).unwrap();
        randomise(&mut layer.params, rng);
        let d = layer.spec.dims.clone();
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=4), rng.gen_range(1..=5));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let stored = rand_tensor(rng, &lay(s, d.stored));
        let state = rand_tensor(rng, &lay(l, d.input));
        let projection = rand_tensor(rng, &lay(s, d.projection));
        let (pm, am) = random_masks(rng, b, d.heads, l, s);
        let seed = rng.gen();
        let make = |k: &hopfield_layers::backend::CpuTensor<f64>,
                    q: &hopfield_layers::backend::CpuTensor<f64>,
                    v: &hopfield_layers::backend::CpuTensor<f64>| {
            let mut i = HopfieldInput::new(k.clone(), q.clone(), v.clone());
            i.stored_pattern_padding_mask = pm.clone();
            i.association_mask = am.clone();
            i
        };
        let (out, cache) =
            layer.forward(&backend, layer.params(), &make(&stored, &state, &projection), Mode::Train { seed }).unwrap();
        let g = rand_tensor(rng, &backend.shape(&out.output));
        let mut grads = layer.zero_grads(&backend);
        let gi = layer.backward(&backend, layer.params(), &cache, &g, &mut grads).unwrap();
        let ctx = format!("case {checked} {cfg:?}");
        let (k0, q0, v0) = (stored.clone(), state.clone(), projection.clone());
        let out_of = |i: &HopfieldInput<B>| {
            dot(&layer.forward(&backend, layer.params(), i, Mode::Train { seed }).unwrap().0.output, &g)
        };
        ok(
            &ctx,
            check_tensor(&backend, "d_stored", &stored, &gi.stored, &some(4, rng), |x| out_of(&make(x, &q0, &v0))),
        );
        ok(&ctx, check_tensor(&backend, "d_state", &state, &gi.state, &some(4, rng), |x| out_of(&make(&k0, x, &v0))));
        ok(
            &ctx,
            check_tensor(&backend, "d_projection", &projection, &gi.projection, &some(4, rng), |x| {
                out_of(&make(&k0, &q0, x))
            }),
        );
        let input = make(&k0, &q0, &v0);
        ok(
            &ctx,
            check_gradients(&backend, layer.params(), &grads, &some(3, rng), |p| {
                dot(&layer.forward(&backend, p, &input, Mode::Train { seed }).unwrap().0.output, &g)
            }),
        );
    }
}

#[test]
fn pooling_and_lookup_backward_match_finite_differences() {
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(11);
    let mut checked = 0;
    while checked < 12 {
        let mut cfg = random_config(&mut rng, &SMALL);
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
        let stored = rand_tensor(&mut rng, &lay(n, d.stored));
        let projection = rand_tensor(&mut rng, &lay(n, d.projection));
        let (y, cache) = pool
            .forward(
                &backend,
                pool.params(),
                &PoolingInput::new(stored.clone(), projection.clone()),
                Mode::Train { seed },
            )
            .unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = pool.zero_grads(&backend);
        let gi = pool.backward(&backend, pool.params(), &cache, &g, &mut grads).unwrap();
        let pooled = |p: &_, stored: &CpuTensor<f64>| {
            let input = PoolingInput::new(stored.clone(), projection.clone());
            dot(&pool.forward(&backend, p, &input, Mode::Train { seed }).unwrap().0, &g)
        };
        ok(
            "pooling",
            check_tensor(&backend, "d_stored", &stored, &gi.stored, &some(4, &mut rng), |x| pooled(pool.params(), x)),
        );
        ok("pooling", check_gradients(&backend, pool.params(), &grads, &some(4, &mut rng), |p| pooled(p, &stored)));
        // Lookup with n learned patterns, separated targets when the sizes allow both.
        let separated = d.stored != d.projection || rng.gen_bool(0.5);
        let look_cfg =
            HopfieldLayerConfig::new(d.input).hopfield(cfg.clone()).quantity(n).lookup_weights_as_separated(separated);
        let mut look = look_cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut look.params, &mut rng);
        let x = rand_tensor(&mut rng, &lay(quantity, d.input));
        let (y, cache) =
            look.forward(&backend, look.params(), &LookupInput::new(x.clone()), Mode::Train { seed }).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = look.zero_grads(&backend);
        let dx = look.backward(&backend, look.params(), &cache, &g, &mut grads).unwrap();
        let looked_up = |p: &_, x: &CpuTensor<f64>| {
            dot(&look.forward(&backend, p, &LookupInput::new(x.clone()), Mode::Train { seed }).unwrap().0, &g)
        };
        ok("lookup", check_tensor(&backend, "d_input", &x, &dx, &some(4, &mut rng), |x| looked_up(look.params(), x)));
        ok("lookup", check_gradients(&backend, look.params(), &grads, &some(4, &mut rng), |p| looked_up(p, &x)));
        checked += 1;
    }
}

#[test]
fn encoder_and_decoder_layers_match_finite_differences() {
    use hopfield_layers::layers::{DecoderMasks, HopfieldEncoderLayerConfig};
    let backend = B::new();
    let mut rng = StdRng::seed_from_u64(13);
    for (norm_first, batch_first, dropout, steps) in
        [(false, true, 0.0, 0), (true, true, 0.2, 1), (false, false, 0.2, 2), (true, false, 0.0, 0)]
    {
        let hcfg = HopfieldConfig::new(6)
            .num_heads(2)
            .batch_first(batch_first)
            .update_steps_max(Some(steps))
            .update_steps_eps(1e-12);
        let cfg = HopfieldEncoderLayerConfig::new(hcfg.clone())
            .dim_feedforward(5)
            .dropout(dropout)
            .activation("gelu")
            .norm_first(norm_first);
        let lay = |n: usize| if batch_first { vec![2, n, 6] } else { vec![n, 2, 6] };
        let mode = Mode::Train { seed: rng.gen() };
        let mode = if dropout > 0.0 { mode } else { Mode::Eval };
        let causal = Mask::bool((0..16).map(|i| i % 4 > i / 4).collect(), &[4, 4]);
        // Encoder.
        let mut enc = cfg.init(&backend, &mut rng).unwrap();
        randomise(&mut enc.params, &mut rng);
        let src = rand_tensor(&mut rng, &lay(4));
        let g = rand_tensor(&mut rng, &backend.shape(&enc.infer(&backend, &EncoderInput::new(src.clone())).unwrap()));
        let encoded = |p: &_, src: &CpuTensor<f64>| {
            let input = EncoderInput::new(src.clone()).mask(causal.clone());
            dot(&enc.forward(&backend, p, &input, mode).unwrap().0, &g)
        };
        let (_, cache) =
            enc.forward(&backend, enc.params(), &EncoderInput::new(src.clone()).mask(causal.clone()), mode).unwrap();
        let mut grads = enc.zero_grads(&backend);
        let dsrc = enc.backward(&backend, enc.params(), &cache, &g, &mut grads).unwrap();
        let ctx = format!("encoder norm_first={norm_first} batch_first={batch_first}");
        ok(&ctx, check_tensor(&backend, "d_src", &src, &dsrc, &some(6, &mut rng), |x| encoded(enc.params(), x)));
        ok(&ctx, check_gradients(&backend, enc.params(), &grads, &some(2, &mut rng), |p| encoded(p, &src)));
        // Decoder.
        let mut dec = cfg.init_decoder(&hcfg, &backend, &mut rng).unwrap();
        randomise(&mut dec.params, &mut rng);
        let masks = DecoderMasks { tgt_mask: Some(causal.clone()), ..Default::default() };
        let tgt = rand_tensor(&mut rng, &lay(4));
        let memory = rand_tensor(&mut rng, &lay(3));
        let input = DecoderInput::new(tgt.clone(), memory.clone()).masks(masks);
        let (y, cache) = dec.forward(&backend, dec.params(), &input, mode).unwrap();
        let g = rand_tensor(&mut rng, &backend.shape(&y));
        let mut grads = dec.zero_grads(&backend);
        let d_in = dec.backward(&backend, dec.params(), &cache, &g, &mut grads).unwrap();
        let decoded = |p: &_, tgt: &CpuTensor<f64>, memory: &CpuTensor<f64>| {
            let i = DecoderInput { tgt: tgt.clone(), memory: memory.clone(), masks: input.masks.clone() };
            dot(&dec.forward(&backend, p, &i, mode).unwrap().0, &g)
        };
        let ctx = format!("decoder norm_first={norm_first} batch_first={batch_first}");
        let p0 = dec.params();
        ok(&ctx, check_tensor(&backend, "d_tgt", &tgt, &d_in.tgt, &some(6, &mut rng), |x| decoded(p0, x, &memory)));
        ok(
            &ctx,
            check_tensor(&backend, "d_memory", &memory, &d_in.memory, &some(6, &mut rng), |x| decoded(p0, &tgt, x)),
        );
        ok(&ctx, check_gradients(&backend, p0, &grads, &some(2, &mut rng), |p| decoded(p, &tgt, &memory)));
    }
}
