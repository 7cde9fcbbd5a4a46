//! The CubeCL backend (wgpu runtime; Mesa's lavapipe in CI) against the CPU oracle `Cpu<f32>`, layer by
//! layer, forward and backward: randomised `Hopfield` configurations (heads 1–8, update steps 0–3 per
//! head, masks, dropout with the same seed, static/connected inputs, norms), pooling, lookup, encoder and
//! decoder layers. Output buffers are NaN-poisoned before every launch, so an unwritten element fails.
//!
//! Built with the `wgpu` feature (on by default; with `cuda` on CUDA device 0); a machine without the device FAILS
//! here (no silent skip): for wgpu install lavapipe (`apt-get install mesa-vulkan-drivers libvulkan1`; `.ci/run` does).
#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod common;

use common::{random_config, random_masks, rel_err, WIDE};
// CUDA device 0 when built with `cuda` (the GPU machine's binaries), else wgpu.
#[cfg(feature = "cuda")]
type Gpu = hopfield_layers::backend::cube::Cuda;
#[cfg(not(feature = "cuda"))]
type Gpu = hopfield_layers::backend::cube::Wgpu;
use hopfield_layers::backend::CpuTensor;
use hopfield_layers::layers::{DecoderInput, EncoderInput, Layer, LookupInput, Mode};
use hopfield_layers::layers::{
    DecoderMasks, HopfieldConfig, HopfieldEncoderLayerConfig, HopfieldInput, HopfieldLayerConfig,
    HopfieldPoolingConfig, Mask, PoolingInput,
};
use hopfield_layers::params::Parameters;
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

type C = Cpu<f32>;
const TOL: f64 = 1e-4;

/// One test at a time on the device: lavapipe runs its own worker threads, and parallel tests on a small CI
/// machine slowed the file from 47 s to minutes.
static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn device_lock() -> std::sync::MutexGuard<'static, ()> {
    DEVICE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The poisoned device; none fails the test (never a silent skip).
#[cfg(not(feature = "cuda"))]
fn gpu() -> Gpu {
    Gpu::wgpu().unwrap_or_else(|e| panic!("{e} (install mesa-vulkan-drivers libvulkan1)")).poisoned()
}
#[cfg(feature = "cuda")]
fn gpu() -> Gpu {
    Gpu::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned()
}

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> CpuTensor<f32> {
    let n = shape.iter().product();
    C::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

fn up(g: &Gpu, t: &CpuTensor<f32>) -> <Gpu as Backend>::Tensor {
    g.from_vec(t.iter().copied().collect(), t.shape())
}

fn check(what: &str, g: &Gpu, a: &<Gpu as Backend>::Tensor, b: &CpuTensor<f32>) {
    assert_eq!(g.shape(a), b.shape(), "{what}: shape");
    let av: Vec<f64> = g.to_vec(a).iter().map(|&v| v as f64).collect();
    let bv: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    assert!(av.iter().all(|v| !v.is_nan()), "{what}: NaN (unwritten output?)");
    let e = rel_err(&av, &bv);
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:.0e}");
}

/// Give the wgpu parameters the CPU parameters' values.
fn copy_params<Pc: Parameters<C>, Pg: Parameters<Gpu>>(g: &Gpu, src: &Pc, dst: &mut Pg) {
    let mut map = HashMap::new();
    src.visit(&mut |n, t, _| {
        map.insert(n.to_string(), t.clone());
    });
    dst.visit_mut(&mut |n, t, _| *t = up(g, &map[n]));
}

fn check_params<Pc: Parameters<C>, Pg: Parameters<Gpu>>(what: &str, g: &Gpu, pg: &Pg, pc: &Pc) {
    let mut map = HashMap::new();
    pc.visit(&mut |n, t, _| {
        map.insert(n.to_string(), t.clone());
    });
    assert_eq!(pg.names(), pc.names(), "{what}: parameter names");
    pg.visit(&mut |n, t, _| check(&format!("{what}: grad {n}"), g, t, &map[n]));
}

fn randomise<P: Parameters<C>>(p: &mut P, rng: &mut StdRng) {
    p.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5)));
}

#[test]
fn hopfield_forward_and_backward_equal_the_cpu_oracle() {
    let _device = device_lock();
    let (g, c) = (gpu(), C::new());
    let mut rng = StdRng::seed_from_u64(21);
    let mut checked = 0;
    while checked < 24 {
        let cfg = random_config(&mut rng, &WIDE);
        if cfg.validate().is_err() {
            continue;
        }
        let mut lc = cfg.init(&c, &mut rng).unwrap();
        randomise(&mut lc.params, &mut rng);
        let mut lg = cfg.init(&g, &mut rng).unwrap();
        copy_params(&g, &lc.params, &mut lg.params);
        let d = lc.spec.dims.clone();
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=21), rng.gen_range(1..=37));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let stored = rand_tensor(&mut rng, &lay(s, d.stored));
        let state = rand_tensor(&mut rng, &lay(l, d.input));
        let projection = rand_tensor(&mut rng, &lay(s, d.projection));
        let (pm, am) = random_masks(&mut rng, b, d.heads, l, s);
        let seed = rng.gen();
        let mut ic = HopfieldInput::new(stored.clone(), state.clone(), projection.clone()).with_association();
        ic.stored_pattern_padding_mask = pm.clone();
        ic.association_mask = am.clone();
        let mut ig = HopfieldInput::new(up(&g, &stored), up(&g, &state), up(&g, &projection)).with_association();
        ig.stored_pattern_padding_mask = pm;
        ig.association_mask = am;
        let ctx = format!("case {checked} b{b} l{l} s{s} {cfg:?}");
        let (oc, cc) = lc.forward(&c, lc.params(), &ic, Mode::Train { seed }).unwrap();
        let (og, cg) = lg.forward(&g, lg.params(), &ig, Mode::Train { seed }).unwrap();
        check(&format!("{ctx}: output"), &g, &og.output, &oc.output);
        check(&format!("{ctx}: association"), &g, og.association.as_ref().unwrap(), oc.association.as_ref().unwrap());
        assert_eq!(og.update_steps, oc.update_steps, "{ctx}: update steps");
        let dy = rand_tensor(&mut rng, oc.output.shape());
        let mut gc = lc.zero_grads(&c);
        let mut gg = lg.zero_grads(&g);
        let dc = lc.backward(&c, lc.params(), &cc, &dy, &mut gc).unwrap();
        let dg = lg.backward(&g, lg.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check(&format!("{ctx}: d_stored"), &g, &dg.stored, &dc.stored);
        check(&format!("{ctx}: d_state"), &g, &dg.state, &dc.state);
        check(&format!("{ctx}: d_projection"), &g, &dg.projection, &dc.projection);
        check_params(&ctx, &g, &gg, &gc);
        checked += 1;
    }
}

#[test]
fn pooling_and_lookup_equal_the_cpu_oracle() {
    let _device = device_lock();
    let (g, c) = (gpu(), C::new());
    let mut rng = StdRng::seed_from_u64(22);
    let mut checked = 0;
    while checked < 8 {
        let mut cfg = random_config(&mut rng, &WIDE);
        cfg.state_pattern_as_static = false;
        if cfg.validate().is_err() {
            continue;
        }
        let d = cfg.validate().unwrap();
        let (b, n, quantity) = (rng.gen_range(1..=3), rng.gen_range(2..=19), rng.gen_range(1..=5));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let seed = rng.gen();

        let pool_cfg = HopfieldPoolingConfig::new(d.input).hopfield(cfg.clone()).quantity(quantity);
        let mut pc = pool_cfg.init(&c, &mut rng).unwrap();
        randomise(&mut pc.params, &mut rng);
        let mut pg = pool_cfg.init(&g, &mut rng).unwrap();
        copy_params(&g, &pc.params, &mut pg.params);
        let stored = rand_tensor(&mut rng, &lay(n, d.stored));
        let projection = rand_tensor(&mut rng, &lay(n, d.projection));
        let (yc, cc) = pc
            .forward(&c, pc.params(), &PoolingInput::new(stored.clone(), projection.clone()), Mode::Train { seed })
            .unwrap();
        let (yg, cg) = pg
            .forward(&g, pg.params(), &PoolingInput::new(up(&g, &stored), up(&g, &projection)), Mode::Train { seed })
            .unwrap();
        check("pooling output", &g, &yg, &yc);
        let dy = rand_tensor(&mut rng, yc.shape());
        let (mut gc, mut gg) = (pc.zero_grads(&c), pg.zero_grads(&g));
        let ic = pc.backward(&c, pc.params(), &cc, &dy, &mut gc).unwrap();
        let ig = pg.backward(&g, pg.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check("pooling d_stored", &g, &ig.stored, &ic.stored);
        check("pooling d_projection", &g, &ig.projection, &ic.projection);
        check_params("pooling", &g, &gg, &gc);

        let look_cfg = HopfieldLayerConfig::new(d.input)
            .hopfield(cfg.clone())
            .quantity(n)
            .lookup_weights_as_separated(d.stored != d.projection || rng.gen_bool(0.5));
        let mut lc = look_cfg.init(&c, &mut rng).unwrap();
        randomise(&mut lc.params, &mut rng);
        let mut lg = look_cfg.init(&g, &mut rng).unwrap();
        copy_params(&g, &lc.params, &mut lg.params);
        let x = rand_tensor(&mut rng, &lay(quantity, d.input));
        let (yc, cc) = lc.forward(&c, lc.params(), &LookupInput::new(x.clone()), Mode::Train { seed }).unwrap();
        let (yg, cg) = lg.forward(&g, lg.params(), &LookupInput::new(up(&g, &x)), Mode::Train { seed }).unwrap();
        check("lookup output", &g, &yg, &yc);
        let dy = rand_tensor(&mut rng, yc.shape());
        let (mut gc, mut gg) = (lc.zero_grads(&c), lg.zero_grads(&g));
        let dxc = lc.backward(&c, lc.params(), &cc, &dy, &mut gc).unwrap();
        let dxg = lg.backward(&g, lg.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check("lookup d_input", &g, &dxg, &dxc);
        check_params("lookup", &g, &gg, &gc);
        checked += 1;
    }
}

#[test]
fn encoder_and_decoder_layers_equal_the_cpu_oracle() {
    let _device = device_lock();
    let (g, c) = (gpu(), C::new());
    let mut rng = StdRng::seed_from_u64(23);
    for (norm_first, batch_first, dropout, steps) in [(false, true, 0.0, 0), (true, false, 0.2, 2)] {
        let hcfg = HopfieldConfig::new(12)
            .num_heads(3)
            .batch_first(batch_first)
            .update_steps_max(Some(steps))
            .update_steps_eps(1e-30);
        let cfg = HopfieldEncoderLayerConfig::new(hcfg.clone())
            .dim_feedforward(17)
            .dropout(dropout)
            .activation("gelu")
            .norm_first(norm_first);
        let lay = |n: usize| if batch_first { vec![2, n, 12] } else { vec![n, 2, 12] };
        let seed: Option<u64> = Some(rng.gen());
        let causal = Mask::bool((0..81).map(|i| i % 9 > i / 9).collect(), &[9, 9]);
        let mut ec = cfg.init(&c, &mut rng).unwrap();
        randomise(&mut ec.params, &mut rng);
        let mut eg = cfg.init(&g, &mut rng).unwrap();
        copy_params(&g, &ec.params, &mut eg.params);
        let src = rand_tensor(&mut rng, &lay(9));
        let (yc, cc) = ec
            .forward(&c, ec.params(), &EncoderInput::new(src.clone()).mask(causal.clone()), Mode::from_seed(seed))
            .unwrap();
        let (yg, cg) = eg
            .forward(&g, eg.params(), &EncoderInput::new(up(&g, &src)).mask(causal.clone()), Mode::from_seed(seed))
            .unwrap();
        check("encoder output", &g, &yg, &yc);
        let dy = rand_tensor(&mut rng, yc.shape());
        let (mut gc, mut gg) = (ec.zero_grads(&c), eg.zero_grads(&g));
        let dc = ec.backward(&c, ec.params(), &cc, &dy, &mut gc).unwrap();
        let dg = eg.backward(&g, eg.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check("encoder d_src", &g, &dg, &dc);
        check_params("encoder", &g, &gg, &gc);

        let mut dc_ = cfg.init_decoder(&hcfg, &c, &mut rng).unwrap();
        randomise(&mut dc_.params, &mut rng);
        let mut dg_ = cfg.init_decoder(&hcfg, &g, &mut rng).unwrap();
        copy_params(&g, &dc_.params, &mut dg_.params);
        let masks = DecoderMasks { tgt_mask: Some(causal.clone()), ..Default::default() };
        let tgt = rand_tensor(&mut rng, &lay(9));
        let memory = rand_tensor(&mut rng, &lay(5));
        let (yc, cc) = dc_
            .forward(
                &c,
                dc_.params(),
                &DecoderInput::new(tgt.clone(), memory.clone()).masks(masks.clone()),
                Mode::from_seed(seed),
            )
            .unwrap();
        let (yg, cg) = dg_
            .forward(
                &g,
                dg_.params(),
                &DecoderInput::new(up(&g, &tgt), up(&g, &memory)).masks(masks.clone()),
                Mode::from_seed(seed),
            )
            .unwrap();
        check("decoder output", &g, &yg, &yc);
        let dy = rand_tensor(&mut rng, yc.shape());
        let (mut gc, mut gg) = (dc_.zero_grads(&c), dg_.zero_grads(&g));
        let dc = dc_.backward(&c, dc_.params(), &cc, &dy, &mut gc).unwrap();
        let dg = dg_.backward(&g, dg_.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check("decoder d_tgt", &g, &dg.tgt, &dc.tgt);
        check("decoder d_memory", &g, &dg.memory, &dc.memory);
        check_params("decoder", &g, &gg, &gc);
    }
}

/// `fused_association` on the GPU (the streaming kernels) against the materialised path on the CPU:
/// same outputs, update steps (`convergence: state`) and gradients.
#[test]
fn fused_hopfield_on_the_gpu_equals_the_materialised_cpu_layer() {
    use hopfield_layers::layers::hopfield::Convergence;
    let _device = device_lock();
    let (g, c) = (gpu(), C::new());
    let mut rng = StdRng::seed_from_u64(24);
    let mut checked = 0;
    while checked < 12 {
        let mut cfg = random_config(&mut rng, &WIDE);
        cfg.dropout = 0.0;
        cfg.convergence = Convergence::State;
        if cfg.validate().is_err() {
            continue;
        }
        let mut lc = cfg.init(&c, &mut rng).unwrap();
        randomise(&mut lc.params, &mut rng);
        let mut lg = cfg.init(&g, &mut rng).unwrap();
        copy_params(&g, &lc.params, &mut lg.params);
        lg.spec.config.fused_association = true;
        let d = lc.spec.dims.clone();
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=70), rng.gen_range(1..=100));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let stored = rand_tensor(&mut rng, &lay(s, d.stored));
        let state = rand_tensor(&mut rng, &lay(l, d.input));
        let projection = rand_tensor(&mut rng, &lay(s, d.projection));
        let (pm, am) = random_masks(&mut rng, b, d.heads, l, s);
        let mut ic = HopfieldInput::new(stored.clone(), state.clone(), projection.clone());
        ic.stored_pattern_padding_mask = pm.clone();
        ic.association_mask = am.clone();
        let mut ig = HopfieldInput::new(up(&g, &stored), up(&g, &state), up(&g, &projection));
        ig.stored_pattern_padding_mask = pm;
        ig.association_mask = am;
        let ctx = format!("fused case {checked} b{b} l{l} s{s} {cfg:?}");
        let (oc, cc) = lc.forward(&c, lc.params(), &ic, Mode::Eval).unwrap();
        let (og, cg) = lg.forward(&g, lg.params(), &ig, Mode::Eval).unwrap();
        check(&format!("{ctx}: output"), &g, &og.output, &oc.output);
        assert_eq!(og.update_steps, oc.update_steps, "{ctx}: update steps");
        let dy = rand_tensor(&mut rng, oc.output.shape());
        let (mut gc, mut gg) = (lc.zero_grads(&c), lg.zero_grads(&g));
        let dc = lc.backward(&c, lc.params(), &cc, &dy, &mut gc).unwrap();
        let dg = lg.backward(&g, lg.params(), &cg, &up(&g, &dy), &mut gg).unwrap();
        check(&format!("{ctx}: d_stored"), &g, &dg.stored, &dc.stored);
        check(&format!("{ctx}: d_state"), &g, &dg.state, &dc.state);
        check(&format!("{ctx}: d_projection"), &g, &dg.projection, &dc.projection);
        check_params(&ctx, &g, &gg, &gc);
        checked += 1;
    }
}
