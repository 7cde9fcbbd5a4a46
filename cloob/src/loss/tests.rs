//! Hand-computed values, conventions and errors of the losses (fixtures and finite differences live in
//! `tests/`).

use super::*;
use hopfield::Cpu;

fn t(cpu: &Cpu<f64>, v: &[f64], shape: &[usize]) -> hopfield::backend::CpuTensor<f64> {
    cpu.from_vec(v.to_vec(), shape)
}

#[test]
fn info_loob_of_two_is_the_other_logit_minus_the_positive() {
    let cpu = Cpu::<f64>::new();
    let (loss, grad) = info_loob_logits(&cpu, &t(&cpu, &[1.0, 4.0, -2.0, 0.5], &[2, 2])).unwrap();
    // Row 0: −1 + 4, row 1: −0.5 + (−2); lse over a single negative is that negative.
    assert!((loss - (3.0 - 2.5) / 2.0).abs() < 1e-15);
    assert_eq!(cpu.to_vec(&grad), vec![-0.5, 0.5, 0.5, -0.5]);
}

#[test]
fn info_loob_excludes_the_positive_exactly() {
    let cpu = Cpu::<f64>::new();
    // A huge positive would dominate an lse that includes it; InfoLOOB ignores it: −300 + ln(e⁰ + e⁰).
    let logits = t(&cpu, &[300.0, 0.0, 0.0, 0.0, 300.0, 0.0, 0.0, 0.0, 300.0], &[3, 3]);
    let (loss, _) = info_loob_logits(&cpu, &logits).unwrap();
    assert!((loss - (-300.0 + 2f64.ln())).abs() < 1e-12, "{loss}");
}

#[test]
fn the_mean_convention_is_the_tau_sum_times_s_over_two() {
    let cpu = Cpu::<f64>::new();
    let x = t(&cpu, &[0.3, -1.0, 0.2, 0.5, 0.9, 0.1, -0.4, 0.8, 0.6], &[3, 3]);
    let y = t(&cpu, &[1.0, 0.2, -0.3, 0.1, 0.7, 0.4, -0.2, -0.5, 0.9], &[3, 3]);
    for kind in [LossKind::Cloob, LossKind::InfoLoob] {
        let base = LossConfig::new(kind).hopfield_beta(4.0);
        let sum = contrastive_loss(&cpu, &base, &x, &y, 10.0).unwrap();
        let mean = contrastive_loss(&cpu, &base.clone().loob_scale(LoobScale::Mean), &x, &y, 10.0).unwrap();
        assert!((mean.loss - sum.loss * 5.0).abs() < 1e-12);
    }
}

#[test]
fn clip_on_orthonormal_pairs_is_the_softmax_cross_entropy() {
    let cpu = Cpu::<f64>::new();
    // X = Y = I₂ (scaled rows: normalisation undoes it): logits s·I, CE = ln(1 + e^{−s}) both ways.
    let x = t(&cpu, &[2.0, 0.0, 0.0, 3.0], &[2, 2]);
    let out = contrastive_loss(&cpu, &LossConfig::new(LossKind::Clip), &x, &x, 2.0).unwrap();
    assert!((out.loss - (1.0 + (-2f64).exp()).ln()).abs() < 1e-15);
}

#[test]
fn serde_names_are_snake_case() {
    let c: LossConfig = serde_json::from_str(r#"{"kind": "clip_hopfield", "loob_scale": "mean"}"#).unwrap();
    assert_eq!(c, LossConfig::new(LossKind::ClipHopfield).loob_scale(LoobScale::Mean));
    assert_eq!(serde_json::to_string(&LossKind::InfoLoob).unwrap(), r#""info_loob""#);
}

#[test]
fn invalid_inputs_are_errors() {
    let cpu = Cpu::<f64>::new();
    let x = t(&cpu, &[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let c = LossConfig::default();
    assert!(contrastive_loss(&cpu, &c, &x, &t(&cpu, &[1.0, 0.0], &[1, 2]), 1.0).is_err());
    assert!(contrastive_loss(&cpu, &c, &t(&cpu, &[1.0, 0.0], &[1, 2]), &t(&cpu, &[1.0, 0.0], &[1, 2]), 1.0).is_err());
    assert!(contrastive_loss(&cpu, &c, &x, &t(&cpu, &[1.0, 0.0, 0.0, 0.0], &[2, 2]), 1.0).is_err(), "zero row");
    assert!(contrastive_loss(&cpu, &c, &x, &x, 0.0).is_err());
    assert!(contrastive_loss(&cpu, &c, &x, &x, f64::NAN).is_err());
    assert!(contrastive_loss(&cpu, &c.clone().hopfield_beta(-1.0), &x, &x, 1.0).is_err());
    assert!(info_loob_logits(&cpu, &t(&cpu, &[1.0, 2.0], &[1, 2])).is_err());
}
