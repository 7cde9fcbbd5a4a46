//! Optimiser trajectories derived by hand from `torch.optim`'s update rules, error paths, and bit-exact
//! resume through the exported state.

use super::*;
use crate::element::Element;
use crate::Cpu;

/// A parameter (or gradient) set of named tensors with their `trainable` flags.
#[derive(Clone, Debug)]
pub(crate) struct Named<B: Backend>(pub Vec<(String, B::Tensor, bool)>);

impl<B: Backend> Parameters<B> for Named<B> {
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&str, &'a B::Tensor, bool)) {
        self.0.iter().for_each(|(n, t, tr)| f(n, t, *tr));
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, &mut B::Tensor, bool)) {
        self.0.iter_mut().for_each(|(n, t, tr)| f(n, t, *tr));
    }
}

impl<E: Element> Named<Cpu<E>> {
    /// Tensors from `(name, values, shape, trainable)`.
    pub(crate) fn of(entries: &[(&str, &[f64], &[usize], bool)]) -> Self {
        let cpu = Cpu::<E>::new();
        let t = |v: &[f64], s: &[usize]| cpu.from_vec(v.iter().map(|&x| E::of(x)).collect(), s);
        Named(entries.iter().map(|(n, v, s, tr)| (n.to_string(), t(v, s), *tr)).collect())
    }
    /// Trainable `w` of shape `[len]` and a frozen `frozen`.
    pub(crate) fn toy(w: &[f64], frozen: &[f64]) -> Self {
        Self::of(&[("w", w, &[w.len()], true), ("frozen", frozen, &[frozen.len()], false)])
    }
    /// The values of `name`, as `f64`.
    pub(crate) fn get(&self, name: &str) -> Vec<f64> {
        let t = &self.0.iter().find(|(n, _, _)| n == name).expect("test tensor exists").1;
        t.iter().map(|v| v.f64()).collect()
    }
}

fn close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
    }
}

fn adam_first_step_moves_by_lr_against_the_sign<E: Element>(tol: f64) {
    let cpu = Cpu::<E>::new();
    let mut p = Named::<Cpu<E>>::toy(&[1.0, -2.0, 0.5], &[7.0]);
    let g = Named::<Cpu<E>>::toy(&[0.3, -4.0, 1e-3], &[9.0]);
    let mut opt = Adam::new(AdamConfig::default()).unwrap();
    opt.step(&cpu, &mut p, &g, 0.01).unwrap();
    // m̂ = g, v̂ = g²: the step is lr·g/(|g| + ε) = lr·sign(g) up to ε.
    let want: Vec<f64> = [(1.0, 0.3), (-2.0, -4.0), (0.5, 1e-3)]
        .iter()
        .map(|&(p, g): &(f64, f64)| p - 0.01 * g / (g.abs() + 1e-8))
        .collect();
    close(&p.get("w"), &want, tol);
    assert_eq!(p.get("frozen"), vec![7.0], "a frozen tensor is skipped");
}

#[test]
fn adam_first_step() {
    adam_first_step_moves_by_lr_against_the_sign::<f64>(1e-15);
    adam_first_step_moves_by_lr_against_the_sign::<f32>(3e-7); // about one f32 ulp at 2
}

#[test]
fn adam_second_step_uses_both_bias_corrections() {
    let cpu = Cpu::<f64>::new();
    let (b1, b2, eps, lr) = (0.8, 0.9, 1e-3, 0.1);
    let cfg = AdamConfig::default().betas(b1, b2).eps(eps);
    let mut p = Named::<Cpu<f64>>::toy(&[1.0], &[]);
    let mut opt = Adam::new(cfg).unwrap();
    let (g1, g2) = (0.5, -1.5);
    opt.step(&cpu, &mut p, &Named::toy(&[g1], &[]), lr).unwrap();
    opt.step(&cpu, &mut p, &Named::toy(&[g2], &[]), lr).unwrap();
    let p1 = 1.0 - lr * g1 / (g1.abs() + eps);
    let m2 = b1 * (1.0 - b1) * g1 + (1.0 - b1) * g2; // -1.12
    let v2 = b2 * (1.0 - b2) * g1 * g1 + (1.0 - b2) * g2 * g2; // 0.2475
    let p2 = p1 - lr / (1.0 - b1 * b1) * m2 / (v2.sqrt() / (1.0 - b2 * b2).sqrt() + eps);
    close(&p.get("w"), &[p2], 1e-14);
}

fn decay_groups<E: Element>(tol: f64) {
    let cpu = Cpu::<E>::new();
    let entries: &[(&str, &[f64], &[usize], bool)] =
        &[("proj.weight", &[1.0, -2.0, 4.0, 0.5], &[2, 2], true), ("proj.bias", &[3.0, -1.0], &[2], true)];
    let zero: &[(&str, &[f64], &[usize], bool)] =
        &[("proj.weight", &[0.0; 4], &[2, 2], true), ("proj.bias", &[0.0; 2], &[2], true)];
    let (lr, wd) = (0.1, 0.5);
    let cfg = AdamConfig::default().weight_decay(wd, DecayFilter::OpenClip);

    // AdamW, zero gradient: p ← p·(1 − lr·wd) and the Adam part is 0/(0 + ε); the bias is exempt.
    let mut p = Named::<Cpu<E>>::of(entries);
    AdamW::new(cfg).unwrap().step(&cpu, &mut p, &Named::of(zero), lr).unwrap();
    close(&p.get("proj.weight"), &[0.95, -1.9, 3.8, 0.475], tol);
    close(&p.get("proj.bias"), &[3.0, -1.0], 0.0);

    // Adam, zero gradient: the L2 term wd·p is the gradient, so the first step is −lr·sign(p).
    let mut p = Named::<Cpu<E>>::of(entries);
    Adam::new(cfg).unwrap().step(&cpu, &mut p, &Named::of(zero), lr).unwrap();
    let l2_step = |p: f64| p - lr * (wd * p) / ((wd * p).abs() + 1e-8); // ≈ p − lr·sign(p)
    close(&p.get("proj.weight"), &[l2_step(1.0), l2_step(-2.0), l2_step(4.0), l2_step(0.5)], tol);
    close(&p.get("proj.bias"), &[3.0, -1.0], 0.0);

    // "Decay everything" decays the bias too.
    let mut p = Named::<Cpu<E>>::of(entries);
    let all = AdamConfig::default().weight_decay(wd, DecayFilter::All);
    AdamW::new(all).unwrap().step(&cpu, &mut p, &Named::of(zero), lr).unwrap();
    close(&p.get("proj.bias"), &[2.85, -0.95], tol);
}

#[test]
fn weight_decay_groups() {
    decay_groups::<f64>(1e-12);
    decay_groups::<f32>(1e-6);
}

#[test]
fn sgd_momentum_nesterov_dampening_and_decay() {
    let cpu = Cpu::<f64>::new();
    let g = Named::<Cpu<f64>>::toy(&[1.0], &[]);
    let run = |cfg: SgdConfig, p0: f64| {
        let mut p = Named::<Cpu<f64>>::toy(&[p0], &[]);
        let mut opt = Sgd::new(cfg).unwrap();
        (0..3)
            .map(|_| {
                opt.step(&cpu, &mut p, &g, 0.1).unwrap();
                p.get("w")[0]
            })
            .collect::<Vec<_>>()
    };
    // Plain: p −= 0.1 each step.
    close(&run(SgdConfig::default(), 0.0), &[-0.1, -0.2, -0.3], 1e-15);
    // Momentum 0.9: buffers 1, 1.9, 2.71.
    close(&run(SgdConfig::momentum(0.9), 0.0), &[-0.1, -0.29, -0.561], 1e-15);
    // Nesterov: steps 1 + 0.9·b with b = 1, 1.9, 2.71.
    let nesterov = SgdConfig { nesterov: true, ..SgdConfig::momentum(0.9) };
    close(&run(nesterov, 0.0), &[-0.19, -0.461, -0.8049], 1e-15);
    // Dampening 0.5: the first buffer is the gradient itself, then 0.9·b + 0.5: 1, 1.4, 1.76.
    let damp = SgdConfig { dampening: 0.5, ..SgdConfig::momentum(0.9) };
    close(&run(damp, 0.0), &[-0.1, -0.24, -0.416], 1e-15);
    // L2 decay 0.5 with "decay everything" on p0 = 2: d = 1 + 0.5·p.
    let wd = SgdConfig { weight_decay: 0.5, decay_filter: DecayFilter::All, ..SgdConfig::default() };
    close(&run(wd, 2.0), &[1.8, 1.61, 1.4295], 1e-15);
}

/// Minimise ½ Σ aᵢ (pᵢ − cᵢ)² from p = 0 with a cosine schedule.
fn minimise<E: Element, O: Optimizer<Cpu<E>>>(mut opt: O, base: f64, tol: f64) {
    let (a, c) = ([1.0, 4.0, 0.25], [1.5, -2.0, 0.75]);
    let cpu = Cpu::<E>::new();
    let mut p = Named::<Cpu<E>>::toy(&[0.0; 3], &[]);
    let sched = LrSchedule::WarmupCosine { base, warmup: 20, total: 600, floor: 0.0 };
    for t in 0..600 {
        let w = p.get("w");
        let g: Vec<f64> = (0..3).map(|i| a[i] * (w[i] - c[i])).collect();
        opt.step(&cpu, &mut p, &Named::toy(&g, &[]), sched.lr_at(t)).unwrap();
    }
    close(&p.get("w"), &c, tol);
}

fn minimise_all<E: Element>(tol: f64) {
    minimise::<E, _>(Sgd::new(SgdConfig::default()).unwrap(), 0.3, tol);
    minimise::<E, _>(Sgd::new(SgdConfig::momentum(0.9)).unwrap(), 0.05, tol);
    minimise::<E, _>(Sgd::new(SgdConfig { nesterov: true, ..SgdConfig::momentum(0.9) }).unwrap(), 0.05, tol);
    minimise::<E, _>(Adam::new(AdamConfig::default()).unwrap(), 0.1, tol);
    minimise::<E, _>(AdamW::new(AdamConfig::default()).unwrap(), 0.1, tol);
}

#[test]
fn every_optimizer_minimises_a_quadratic() {
    minimise_all::<f64>(1e-3);
    minimise_all::<f32>(1e-3);
}

#[test]
fn missing_or_misshapen_gradients_change_nothing() {
    let cpu = Cpu::<f64>::new();
    let mut p = Named::<Cpu<f64>>::of(&[("a", &[1.0], &[1], true), ("b", &[2.0, 3.0], &[2], true)]);
    let mut opt = AdamW::new(AdamConfig::default()).unwrap();
    let missing = Named::of(&[("a", &[1.0], &[1], true)]);
    let err = opt.step(&cpu, &mut p, &missing, 0.1).unwrap_err();
    assert!(matches!(err, HopfieldError::Missing { .. }), "{err}");
    let misshapen = Named::of(&[("a", &[1.0], &[1], true), ("b", &[1.0, 1.0], &[1, 2], true)]);
    let err = opt.step(&cpu, &mut p, &misshapen, 0.1).unwrap_err();
    assert!(err.to_string().contains("[1, 2]"), "{err}");
    let ok = Named::of(&[("a", &[1.0], &[1], true), ("b", &[1.0, 1.0], &[2], true)]);
    assert!(opt.step(&cpu, &mut p, &ok, -1.0).is_err());
    assert!(opt.step(&cpu, &mut p, &ok, f64::NAN).is_err());
    assert_eq!((p.get("a"), p.get("b")), (vec![1.0], vec![2.0, 3.0]));
    assert!(opt.export_state(&cpu).tensors.is_empty(), "a failed step creates no state");
    // A frozen tensor needs no gradient.
    let mut frozen = Named::<Cpu<f64>>::toy(&[1.0], &[5.0]);
    opt.step(&cpu, &mut frozen, &Named::of(&[("w", &[1.0], &[1], true)]), 0.1).unwrap();
}

/// Run 5 steps straight, and 3 steps + export → safetensors → import into a fresh optimiser + 2 steps.
fn resume_is_bit_exact<E: Element, O: Optimizer<Cpu<E>>>(make: impl Fn() -> O) {
    let cpu = Cpu::<E>::new();
    let grad = |t: usize| {
        Named::<Cpu<E>>::of(&[
            ("w", &[0.3 - 0.1 * t as f64, 1.7, -0.2 * t as f64], &[3], true),
            ("m", &[0.5, -0.25, 1.0 / (t + 1) as f64, 2.0], &[2, 2], true),
        ])
    };
    let init = Named::<Cpu<E>>::of(&[("w", &[1.0, 2.0, 3.0], &[3], true), ("m", &[0.1, 0.2, 0.3, 0.4], &[2, 2], true)]);
    let (mut straight, mut resumed) = (init.clone(), init);
    let mut opt = make();
    for t in 0..5 {
        opt.step(&cpu, &mut straight, &grad(t), 0.01).unwrap();
    }
    let mut first = make();
    for t in 0..3 {
        first.step(&cpu, &mut resumed, &grad(t), 0.01).unwrap();
    }
    let state = first.export_state(&cpu);
    let bytes = state.to_safetensors().unwrap();
    let decoded = OptimizerState::<E>::from_safetensors(&bytes).unwrap();
    assert_eq!(decoded, state);
    let mut second = make();
    second.import_state(&cpu, &decoded).unwrap();
    for t in 3..5 {
        second.step(&cpu, &mut resumed, &grad(t), 0.01).unwrap();
    }
    for name in ["w", "m"] {
        let bits = |p: &Named<Cpu<E>>| p.get(name).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&straight), bits(&resumed), "{name}");
    }
    assert_eq!(second.export_state(&cpu), opt.export_state(&cpu));
}

fn resume_all<E: Element>() {
    let wd = AdamConfig::default().weight_decay(0.1, DecayFilter::All);
    resume_is_bit_exact::<E, _>(|| Adam::new(wd).unwrap());
    resume_is_bit_exact::<E, _>(|| AdamW::new(wd).unwrap());
    resume_is_bit_exact::<E, _>(|| Sgd::new(SgdConfig { nesterov: true, ..SgdConfig::momentum(0.9) }).unwrap());
}

#[test]
fn state_round_trips_and_resumes_bit_exactly() {
    resume_all::<f64>();
    resume_all::<f32>();
}

#[test]
fn state_names_and_import_errors() {
    let cpu = Cpu::<f32>::new();
    let mut p = Named::<Cpu<f32>>::toy(&[1.0, 2.0], &[0.0]);
    let mut adam = AdamW::new(AdamConfig::default()).unwrap();
    adam.step(&cpu, &mut p, &Named::toy(&[1.0, 1.0], &[0.0]), 0.1).unwrap();
    let state = adam.export_state(&cpu);
    let names: Vec<&str> = state.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["exp_avg.w", "exp_avg_sq.w"]);
    assert_eq!(state.steps, vec![("w".to_string(), 1)]);
    assert_eq!(state.kind, "adamw");
    // Wrong kind, wrong dtype, a missing moment, a step count missing.
    assert!(Adam::<Cpu<f32>>::new(AdamConfig::default()).unwrap().import_state(&cpu, &state).is_err());
    assert!(Sgd::<Cpu<f32>>::new(SgdConfig::default()).unwrap().import_state(&cpu, &state).is_err());
    assert!(OptimizerState::<f64>::from_safetensors(&state.to_safetensors().unwrap()).is_err());
    let mut no_sq = state.clone();
    no_sq.tensors.retain(|t| t.name != "exp_avg_sq.w");
    assert!(adam.import_state(&cpu, &no_sq).is_err());
    let mut no_step = state.clone();
    no_step.steps.clear();
    assert!(adam.import_state(&cpu, &no_step).is_err());
    let mut short = state.clone();
    short.tensors[0].data.pop();
    assert!(adam.import_state(&cpu, &short).is_err());
    assert!(OptimizerState::<f32>::from_safetensors(b"not a safetensors file").is_err());
    // Imported moments of another shape are caught at the next step.
    let mut other = state;
    for t in &mut other.tensors {
        t.shape = vec![1, 2];
    }
    adam.import_state(&cpu, &other).unwrap();
    assert!(adam.step(&cpu, &mut p, &Named::toy(&[1.0, 1.0], &[0.0]), 0.1).is_err());
}
