//! `fused_association: true` (the streaming association, never materialising `L × S`) gives the same
//! outputs, update steps and gradients as the materialised path, over randomised configurations with
//! heads, masks, appended patterns and update steps 0–3 under `convergence: state` (f64, CPU; the CubeCL
//! kernels are checked the same way in `tests/cube_backend.rs`).

mod common;

use common::rel_err;
use hopfield_layers::layers::hopfield::{Convergence, PerHead};
use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, Mask};
use hopfield_layers::layers::{Layer, Mode};
use hopfield_layers::params::Parameters;
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

type B = Cpu<f64>;

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> hopfield_layers::backend::CpuTensor<f64> {
    let n = shape.iter().product();
    B::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

fn random_config(rng: &mut StdRng) -> HopfieldConfig {
    let heads = rng.gen_range(1..=4);
    let mut c = HopfieldConfig::new(rng.gen_range(3..=9))
        .num_heads(heads)
        .hidden_size(rng.gen_range(2..=5))
        .pattern_size(rng.gen_range(2..=5))
        .stored_pattern_size(rng.gen_range(3..=7))
        .pattern_projection_size(rng.gen_range(3..=7))
        .batch_first(rng.gen_bool(0.7))
        .concat_bias_pattern(rng.gen_bool(0.3))
        .add_zero_association(rng.gen_bool(0.3))
        .normalize_hopfield_space(rng.gen_bool(0.3))
        .convergence(Convergence::State);
    c.update_steps_max = PerHead::Each((0..heads).map(|_| Some(rng.gen_range(0..=3))).collect());
    c.update_steps_eps = PerHead::All(if rng.gen_bool(0.5) { 1e-30 } else { 0.05 });
    c.scaling = Some(PerHead::Each((0..heads).map(|_| rng.gen_range(0.3..2.0)).collect()));
    c
}

fn grads_map<P: Parameters<B>>(p: &P) -> HashMap<String, hopfield_layers::backend::CpuTensor<f64>> {
    let mut m = HashMap::new();
    p.visit(&mut |n, t, _| {
        m.insert(n.to_string(), t.clone());
    });
    m
}

fn close(what: &str, a: &hopfield_layers::backend::CpuTensor<f64>, b: &hopfield_layers::backend::CpuTensor<f64>) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    let e = rel_err(&a.iter().copied().collect::<Vec<_>>(), &b.iter().copied().collect::<Vec<_>>());
    assert!(e < 1e-10, "{what}: relative error {e:.3e}");
}

#[test]
fn fused_path_equals_the_materialised_path() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(31);
    let mut checked = 0;
    while checked < 30 {
        let cfg = random_config(&mut rng);
        if cfg.validate().is_err() {
            continue;
        }
        let mut plain = cfg.init(&be, &mut rng).unwrap();
        plain.params.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5)));
        let mut fused = plain.clone();
        fused.spec.config.fused_association = true;
        let d = plain.spec.dims.clone();
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=70), rng.gen_range(1..=300));
        let lay = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let mut input = HopfieldInput::new(
            rand_tensor(&mut rng, &lay(s, d.stored)),
            rand_tensor(&mut rng, &lay(l, d.input)),
            rand_tensor(&mut rng, &lay(s, d.projection)),
        );
        if rng.gen_bool(0.5) {
            // Sample 0 fully masked when b > 1: its rows must give zeros, not NaN.
            input.stored_pattern_padding_mask =
                Some(Mask::bool((0..b * s).map(|i| (b > 1 && i < s) || rng.gen_bool(0.3)).collect(), &[b, s]));
        }
        if rng.gen_bool(0.4) {
            input.association_mask = Some(Mask::additive(
                (0..b * d.heads * l * s).map(|_| rng.gen_range(-1.0..1.0)).collect(),
                &[b * d.heads, l, s],
            ));
        }
        let ctx = format!("case {checked} b{b} l{l} s{s} {cfg:?}");
        let (op, cp) = plain.forward(&be, plain.params(), &input, Mode::Eval).unwrap();
        let (of, cf) = fused.forward(&be, fused.params(), &input, Mode::Eval).unwrap();
        close(&format!("{ctx}: output"), &of.output, &op.output);
        assert_eq!(of.update_steps, op.update_steps, "{ctx}: update steps");
        let dy = rand_tensor(&mut rng, op.output.shape());
        let (mut gp, mut gf) = (plain.zero_grads(&be), fused.zero_grads(&be));
        let ip = plain.backward(&be, plain.params(), &cp, &dy, &mut gp).unwrap();
        let i_f = fused.backward(&be, fused.params(), &cf, &dy, &mut gf).unwrap();
        close(&format!("{ctx}: d_stored"), &i_f.stored, &ip.stored);
        close(&format!("{ctx}: d_state"), &i_f.state, &ip.state);
        close(&format!("{ctx}: d_projection"), &i_f.projection, &ip.projection);
        let (mp, mf) = (grads_map(&gp), grads_map(&gf));
        for (name, t) in &mp {
            close(&format!("{ctx}: grad {name}"), &mf[name], t);
        }
        checked += 1;
    }
}

#[test]
fn fused_path_is_not_taken_when_the_association_is_requested() {
    let be = B::new();
    let mut rng = StdRng::seed_from_u64(32);
    let mut cfg = HopfieldConfig::new(4).num_heads(2);
    cfg.fused_association = true;
    let layer = cfg.init(&be, &mut rng).unwrap();
    let x = rand_tensor(&mut rng, &[2, 5, 4]);
    let (out, _) =
        layer.forward(&be, layer.params(), &HopfieldInput::single(x.clone()).with_association(), Mode::Eval).unwrap();
    assert_eq!(out.association.unwrap().shape(), [2, 2, 5, 5]);
    assert_eq!(layer.association_matrix(&be, &HopfieldInput::single(x)).unwrap().shape(), [2, 2, 5, 5]);
}
