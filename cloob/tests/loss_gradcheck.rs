//! Central finite differences (f64) of all four losses, both InfoLOOB scalings, against their analytical
//! gradients w.r.t. the un-normalised image and text embeddings and the (log) inverse temperature.

use cloob::loss::{contrastive_loss, LoobScale, LossConfig, LossKind};
use hopfield::backend::CpuTensor as ArrayD;
use hopfield::testing::{check_tensor, GradCheck};
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

type B = Cpu<f64>;

const KINDS: [LossKind; 4] = [LossKind::Cloob, LossKind::Clip, LossKind::ClipHopfield, LossKind::InfoLoob];

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> ArrayD<f64> {
    let n = shape.iter().product();
    B::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

fn assert_fd(what: &str, fd: f64, analytic: f64) {
    assert!(
        (fd - analytic).abs() <= 1e-6 * (1.0 + fd.abs()),
        "{what}: finite difference {fd:.10} vs backward {analytic:.10}"
    );
}

/// Every entry of `x` perturbed by ±h.
fn check_all(what: &str, x: &ArrayD<f64>, analytic: &ArrayD<f64>, loss: &dyn Fn(&ArrayD<f64>) -> f64) {
    check_tensor(&B::new(), what, x, analytic, &GradCheck::default(), loss).unwrap_or_else(|e| panic!("{e}"));
}

fn check(config: &LossConfig, n: usize, d: usize, inv_tau: f64, rng: &mut StdRng) {
    let cpu = B::new();
    let (image, text) = (rand_tensor(rng, &[n, d]), rand_tensor(rng, &[n, d]));
    let loss = |x: &ArrayD<f64>, y: &ArrayD<f64>, s: f64| contrastive_loss(&cpu, config, x, y, s).unwrap().loss;
    let out = contrastive_loss(&cpu, config, &image, &text, inv_tau).unwrap();
    let tag = format!("{config:?} N={n} d={d} s={inv_tau}");
    check_all(&format!("{tag}: d_image"), &image, &out.d_image, &|x| loss(x, &text, inv_tau));
    check_all(&format!("{tag}: d_text"), &text, &out.d_text, &|y| loss(&image, y, inv_tau));
    let h = 1e-6;
    let fd_s = (loss(&image, &text, inv_tau + h) - loss(&image, &text, inv_tau - h)) / (2.0 * h);
    assert_fd(&format!("{tag}: d_inv_tau"), fd_s, out.d_inv_tau);
    let log_s = inv_tau.ln();
    let fd_log = (loss(&image, &text, (log_s + h).exp()) - loss(&image, &text, (log_s - h).exp())) / (2.0 * h);
    assert_fd(&format!("{tag}: d_log_inv_tau"), fd_log, out.d_log_inv_tau);
}

#[test]
fn all_four_losses_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(5);
    for kind in KINDS {
        for scale in [LoobScale::TauSum, LoobScale::Mean] {
            for (n, d, s, beta) in [(2, 3, 2.0, 1.0), (5, 4, 3.0, 2.5), (7, 6, 8.0, 8.0)] {
                check(&LossConfig::new(kind).hopfield_beta(beta).loob_scale(scale), n, d, s, &mut rng);
            }
        }
    }
}

/// CLOOB and the InfoNCE + Hopfield ablation with every parameter-free retrieval (`--retrieval`).
#[test]
fn every_retrieval_in_the_loss_matches_finite_differences() {
    use hopfield::layers::Retrieval;
    let mut rng = StdRng::seed_from_u64(7);
    for retrieval in [Retrieval::Sparsemax, Retrieval::Entmax { alpha: 1.5, learnable: false }, Retrieval::Softmax1] {
        for kind in [LossKind::Cloob, LossKind::ClipHopfield] {
            for (n, d, s, beta) in [(5, 4, 3.0, 2.5), (7, 6, 8.0, 8.0)] {
                check(&LossConfig::new(kind).hopfield_beta(beta).retrieval(retrieval), n, d, s, &mut rng);
            }
        }
    }
}

/// The retrieval choice changes the CLOOB loss (softmax stays the default) — except softmax₁, which scales
/// each retrieved row by `Σe/(1 + Σe)` before CLOOB's row normalisation removes any such scale, so it equals
/// softmax there — and a learnable α is refused.
#[test]
fn the_retrieval_choice_reaches_the_loss() {
    use hopfield::layers::Retrieval;
    let (cpu, mut rng) = (B::new(), StdRng::seed_from_u64(8));
    let (x, y) = (rand_tensor(&mut rng, &[6, 5]), rand_tensor(&mut rng, &[6, 5]));
    let loss = |r| contrastive_loss(&cpu, &LossConfig::new(LossKind::Cloob).retrieval(r), &x, &y, 10.0);
    let soft = loss(Retrieval::Softmax).unwrap().loss;
    assert_eq!(soft, contrastive_loss(&cpu, &LossConfig::new(LossKind::Cloob), &x, &y, 10.0).unwrap().loss);
    let l1 = loss(Retrieval::Softmax1).unwrap().loss;
    assert!((l1 - soft).abs() <= 1e-12 * soft.abs(), "softmax₁ {l1} vs softmax {soft}");
    for r in [Retrieval::Sparsemax, Retrieval::Entmax { alpha: 1.5, learnable: false }] {
        let l = loss(r).unwrap().loss;
        assert!(l.is_finite() && (l - soft).abs() > 1e-6, "{r}: {l} vs softmax {soft}");
    }
    let err = loss(Retrieval::Entmax { alpha: 1.5, learnable: true }).unwrap_err().to_string();
    assert!(err.contains("retrieval") && err.contains("parameter"), "{err}");
}

#[test]
fn paper_temperatures_match_finite_differences() {
    // s = 30 and β = 14.3 make the softmaxes sharp; the gradients still hold.
    let mut rng = StdRng::seed_from_u64(6);
    for kind in KINDS {
        check(&LossConfig::new(kind), 6, 8, 30.0, &mut rng);
    }
}
