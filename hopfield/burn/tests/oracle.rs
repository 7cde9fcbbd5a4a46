//! The burn modules against `hopfield`'s own forward/backward on `Cpu<f32>` (the oracle): random
//! configurations over every option (static/connected patterns, norms, bias and zero patterns, update steps
//! with both convergence rules, masks, activations, both layouts), the encoder layer in both norm orders,
//! and the weights' conversions (hflayers safetensors → burn → host, burn's own records).

// The shared helpers name the layers crate by its library name; here it is the dependency `hopfield`.
extern crate hopfield as hopfield_layers;

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use burn::module::Module;
use burn::tensor::{Bool, Device, Gradients, Tensor, TensorData};
use common::{random_config, random_masks, ConfigRanges};
use hopfield::backend::CpuTensor;
use hopfield::layers::hopfield::Convergence;
use hopfield::layers::{EncoderInput, HopfieldConfig, HopfieldEncoderLayerConfig, HopfieldInput, Layer, Mask, Mode};
use hopfield::{Backend, Cpu, Parameters};
use hopfield_burn::{AssociationMask, HopfieldInit};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::BTreeMap;
use support::{named_grads, vals};

#[allow(deprecated)]
fn ndarray() -> Device {
    Device::ndarray().autodiff()
}

/// `max |a − b| / max(max |b|, 1e-2)` of burn's f32 result against the f64 oracle.
fn rel(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().zip(b).any(|(x, y)| x.is_nan() != y.is_nan()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(1e-2f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs())) / scale
}

/// The oracle's f64 parameters copied into an f32 struct of the same layout.
fn copy_to_f32<P: Parameters<Cpu<f32>>, Q: Parameters<Cpu<f64>>>(dst: &mut P, src: &Q) {
    let mut values = BTreeMap::new();
    src.visit(&mut |name, t, _| {
        values.insert(name.to_string(), t.iter().map(|&v| v as f32).collect::<Vec<f32>>());
    });
    dst.visit_mut(&mut |name, t, _| {
        let v = &values[name];
        t.iter_mut().zip(v).for_each(|(x, y)| *x = *y);
    });
}

fn up<const D: usize>(t: &CpuTensor<f64>, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.iter().map(|&v| v as f32).collect::<Vec<f32>>(), t.shape().to_vec()), device)
}

/// Uniform(−1, 1) in f64, rounded to f32 values (so both sides see the same inputs).
fn rand64(rng: &mut StdRng, shape: &[usize]) -> CpuTensor<f64> {
    let n = shape.iter().product();
    Cpu::<f64>::new().from_vec((0..n).map(|_| rng.gen_range(-1.0f32..1.0) as f64).collect(), shape)
}

fn compare_grads<M: Module, P: Parameters<Cpu<f64>>>(what: &str, m: &M, grads: &Gradients, host: &P, tol: f64) {
    let named = named_grads(m, grads);
    let mut seen = 0;
    host.visit(&mut |name, t, trainable| {
        if !trainable {
            return;
        }
        let got = named.get(name).unwrap_or_else(|| panic!("{what}: no burn parameter `{name}`"));
        let e = rel(got, t.as_slice().unwrap());
        assert!(e <= tol, "{what}: grad {name}: relative error {e:.3e}");
        seen += 1;
    });
    assert!(seen > 0 || named.is_empty(), "{what}: no parameter compared");
}

fn to_bool_mask<const D: usize>(m: &Mask, device: &Device) -> Tensor<D, Bool> {
    let Mask::Bool { values, shape } = m else { panic!("a boolean mask") };
    Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
}

/// 40 random configurations (seeded), forward and every gradient, f32 at 1e-4 relative.
#[test]
fn random_configurations_equal_hopfields_own_backward() {
    let (cpu, cpu32, device) = (Cpu::<f64>::new(), Cpu::<f32>::new(), ndarray());
    let ranges = ConfigRanges { eps: 1e-30, ..common::WIDE };
    let mut rng = StdRng::seed_from_u64(11);
    let (mut ran, mut state_rule) = (0, 0);
    while ran < 40 {
        let mut cfg: HopfieldConfig = random_config(&mut rng, &ranges);
        cfg.dropout = 0.0;
        if rng.gen_bool(0.5) {
            cfg.convergence = Convergence::State;
        }
        let Ok(host) = cfg.init(&cpu, &mut StdRng::seed_from_u64(ran as u64)) else { continue };
        let mut host = host;
        host.params.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| ((v + rng.gen_range(-0.3..0.3)) as f32) as f64));
        let mut host32 = cfg.init(&cpu32, &mut StdRng::seed_from_u64(0)).unwrap();
        copy_to_f32(&mut host32.params, &host.params);
        let module = hopfield_burn::Hopfield::from_host(host.spec.clone(), &host32.params, &device);
        let d = &host.spec.dims;
        let (b, l, s) = (rng.gen_range(1..=3), rng.gen_range(1..=5), rng.gen_range(2..=6));
        let shape = |n: usize, f: usize| if cfg.batch_first { vec![b, n, f] } else { vec![n, b, f] };
        let (k, q, v) = (
            rand64(&mut rng, &shape(s, d.stored)),
            rand64(&mut rng, &shape(l, d.input)),
            rand64(&mut rng, &shape(s, d.projection)),
        );
        let (padding, association) = random_masks(&mut rng, b, d.heads, l, s);
        let mut hin = HopfieldInput::new(k.clone(), q.clone(), v.clone());
        hin.stored_pattern_padding_mask = padding.clone();
        hin.association_mask = association.clone();
        let (hout, cache) = host.forward(&cpu, host.params(), &hin, Mode::Eval).unwrap();
        let dy = rand64(&mut rng, cpu.shape(&hout.output).as_slice());
        let mut g = host.zero_grads(&cpu);
        let dx = host.backward(&cpu, host.params(), &cache, &dy, &mut g).unwrap();

        let (bk, bq, bv) = (
            up::<3>(&k, &device).require_grad(),
            up::<3>(&q, &device).require_grad(),
            up::<3>(&v, &device).require_grad(),
        );
        let mut input = hopfield_burn::HopfieldInput::new(bk.clone(), bq.clone(), bv.clone());
        input.stored_pattern_padding_mask = padding.as_ref().map(|m| to_bool_mask(m, &device));
        input.association_mask = association.as_ref().map(|m| match m {
            Mask::Bool { .. } => AssociationMask::Shared(to_bool_mask(m, &device)),
            Mask::Additive { values, shape } => AssociationMask::Additive(Tensor::from_data(
                TensorData::new(values.iter().map(|&x| x as f32).collect::<Vec<f32>>(), shape.clone()),
                &device,
            )),
        });
        let out = module.forward(input).unwrap();
        let what = format!("config {ran} ({cfg:?})");
        assert_eq!(out.update_steps, hout.update_steps, "{what}: update steps");
        let e = rel(&vals(out.output.clone()), hout.output.as_slice().unwrap());
        assert!(e <= 1e-4, "{what}: output relative error {e:.3e}");
        let grads = (out.output * up::<3>(&dy, &device)).sum().backward();
        for (name, x, h) in
            [("stored", &bk, &dx.stored), ("state", &bq, &dx.state), ("projection", &bv, &dx.projection)]
        {
            let e = rel(&vals(x.grad(&grads).unwrap()), h.as_slice().unwrap());
            assert!(e <= 1e-4, "{what}: grad {name} relative error {e:.3e}");
        }
        compare_grads(&what, &module, &grads, &g, 1e-4);
        state_rule += (cfg.convergence == Convergence::State) as usize;
        ran += 1;
    }
    assert!(state_rule > 5, "both convergence rules ran");
}

/// The encoder layer, post-norm and pre-norm, with a causal association mask: output and every gradient.
#[test]
fn encoder_layer_equals_hopfields_own_backward() {
    let (cpu, cpu32, device) = (Cpu::<f64>::new(), Cpu::<f32>::new(), ndarray());
    let mut rng = StdRng::seed_from_u64(5);
    for norm_first in [false, true] {
        let cfg = HopfieldEncoderLayerConfig::new(HopfieldConfig::new(12).num_heads(3).update_steps_max(Some(1)))
            .dim_feedforward(20)
            .dropout(0.0)
            .activation("gelu")
            .norm_first(norm_first);
        let mut host = cfg.init(&cpu, &mut rng).unwrap();
        host.params.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| ((v + rng.gen_range(-0.3..0.3)) as f32) as f64));
        let mut host32 = cfg.init(&cpu32, &mut rng).unwrap();
        copy_to_f32(&mut host32.params, &host.params);
        let module = hopfield_burn::HopfieldEncoderLayer::from_host(cfg.clone(), &host32.params, &device).unwrap();
        let (b, n) = (2, 5);
        let src = rand64(&mut rng, &[b, n, 12]);
        let causal = Mask::bool((0..n * n).map(|i| i % n > i / n).collect(), &[n, n]);
        let (y, cache) = host
            .forward(&cpu, host.params(), &EncoderInput::new(src.clone()).mask(causal.clone()), Mode::Eval)
            .unwrap();
        let dy = rand64(&mut rng, &[b, n, 12]);
        let mut g = host.zero_grads(&cpu);
        let dx = host.backward(&cpu, host.params(), &cache, &dy, &mut g).unwrap();
        let x = up::<3>(&src, &device).require_grad();
        let out =
            module.forward(x.clone(), Some(AssociationMask::Shared(to_bool_mask(&causal, &device))), None).unwrap();
        let what = format!("encoder norm_first={norm_first}");
        let e = rel(&vals(out.clone()), y.as_slice().unwrap());
        assert!(e <= 1e-4, "{what}: output {e:.3e}");
        let grads = (out * up::<3>(&dy, &device)).sum().backward();
        let e = rel(&vals(x.grad(&grads).unwrap()), dx.as_slice().unwrap());
        assert!(e <= 1e-4, "{what}: grad src {e:.3e}");
        compare_grads(&what, &module, &grads, &g, 1e-4);
    }
}

/// hflayers' safetensors → burn (through `load_hflayers`) → host again: every tensor unchanged; burn's own
/// record of the module loads back into a fresh module with the same forward.
#[test]
fn weights_convert_both_ways() {
    let (cpu, device) = (Cpu::<f32>::new(), ndarray());
    let cfg = HopfieldConfig::new(8)
        .num_heads(2)
        .concat_bias_pattern(true)
        .normalize_hopfield_space(true)
        .normalize_hopfield_space_affine(true);
    let mut host = cfg.init(&cpu, &mut StdRng::seed_from_u64(3)).unwrap();
    let mut rng = StdRng::seed_from_u64(4);
    host.params.visit_mut(&mut |_, t, _| t.mapv_inplace(|v| v + rng.gen_range(-0.5..0.5)));
    let dir = std::env::temp_dir().join(format!("hopfield-burn-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hopfield.safetensors");
    hopfield::io::save_params(&cpu, &host.params, &path).unwrap();
    let module = hopfield_burn::load_hflayers(&cfg, &path, "", true, &device).unwrap();
    let back = module.to_host();
    let mut n = 0;
    back.visit(&mut |name, t, _| {
        let mut found = false;
        host.params.visit(&mut |other, u, _| {
            if other == name {
                assert_eq!(t, u, "{name}");
                found = true;
            }
        });
        assert!(found, "{name}");
        n += 1;
    });
    assert_eq!(n, hopfield_burn::host_param_count(&host.params).min(n));
    assert_eq!(module.num_params(), hopfield_burn::host_param_count(&host.params));
    // A wrong-shaped file is an error naming the tensor, not a panic.
    let other = HopfieldConfig::new(6).num_heads(2);
    let err = hopfield_burn::load_hflayers(&other, &path, "", true, &device).unwrap_err().to_string();
    assert!(err.contains("in_proj_weight") || err.contains("shape"), "{err}");
    // burn's record round trip.
    let record_path = dir.join("module.bpk");
    let x = Tensor::<3>::random([2, 4, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let y0 = vals(module.forward(hopfield_burn::HopfieldInput::single(x.clone())).unwrap().output);
    module.save_file(&record_path).unwrap();
    let fresh = cfg.init_burn_seeded(&device, 99).unwrap().load_file(&record_path);
    let y1 = vals(fresh.forward(hopfield_burn::HopfieldInput::single(x)).unwrap().output);
    assert_eq!(y0, y1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Configurations are validated as `hopfield` validates them; shapes are errors naming the operation.
#[test]
fn bad_configs_and_shapes_are_errors() {
    let device = ndarray();
    let err = HopfieldConfig::new(7).num_heads(2).init_burn(&device).unwrap_err().to_string();
    assert!(err.contains("hidden_size"), "{err}");
    let m = HopfieldConfig::new(8).num_heads(2).init_burn(&device).unwrap();
    let x = Tensor::<3>::zeros([2, 3, 5], &device);
    let err = m.forward(hopfield_burn::HopfieldInput::single(x)).unwrap_err().to_string();
    assert!(err.contains("hopfield_burn.forward(stored)") && err.contains("8 features"), "{err}");
    let x = Tensor::<3>::zeros([2, 3, 8], &device);
    let bad_mask = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 4], [2, 2]), &device);
    let err = m.forward(hopfield_burn::HopfieldInput::single(x).padding_mask(bad_mask)).unwrap_err().to_string();
    assert!(err.contains("padding_mask") && err.contains("[2, 3]"), "{err}");
}
