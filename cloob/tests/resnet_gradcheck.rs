//! Central finite differences (f64) against the explicit backward of the ResNet image tower end to end:
//! every trainable tensor at random entries and the images, with batch norms on batch statistics
//! (training) and on running statistics (evaluation, and training with frozen statistics).

use cloob::resnet::{ModifiedResNet, ResNetConfig};
use hopfield::backend::CpuTensor;
use hopfield::layers::{Layer, Mode};
use hopfield::params::Parameters;
use hopfield::testing::{check_gradients, check_tensor, GradCheck};
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

type B = Cpu<f64>;

fn rand_tensor(rng: &mut StdRng, shape: &[usize]) -> CpuTensor<f64> {
    let n = shape.iter().product();
    B::new().from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

fn dot(a: &CpuTensor<f64>, b: &CpuTensor<f64>) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Two blocks in the second stage (one without downsampling), 64×64 images (a 2×2 map into the pool).
fn small(freeze_bn_stats: bool) -> ResNetConfig {
    ResNetConfig {
        image_size: 64,
        layers: [1, 2, 1, 1],
        width: 2,
        heads: 2,
        output_dim: 5,
        freeze_bn_stats,
        ..ResNetConfig::tiny()
    }
}

/// Every trainable tensor at `k` entries and the images at 40, for `loss = ⟨net(images), g⟩` in `mode`.
fn check(what: &str, net: &ModifiedResNet<B>, mode: Mode, rng: &mut StdRng) -> usize {
    let backend = B::new();
    let images = rand_tensor(rng, &[3, 3, 64, 64]);
    let (y, cache) = net.forward(&backend, net, &images, mode).unwrap();
    let g = rand_tensor(rng, &backend.shape(&y));
    let mut grads = net.zero_grads(&backend);
    let d_images = net.backward(&backend, net, &cache, &g, &mut grads).unwrap();
    let opts = GradCheck::default().entries(3, rng.gen());
    let n =
        check_gradients(&backend, net, &grads, &opts, |m| dot(&m.forward(&backend, m, &images, mode).unwrap().0, &g))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    let opts = GradCheck::default().entries(40, rng.gen());
    let loss = |x: &CpuTensor<f64>| dot(&net.forward(&backend, net, x, mode).unwrap().0, &g);
    let m = check_tensor(&backend, "images", &images, &d_images, &opts, loss).unwrap_or_else(|e| panic!("{what}: {e}"));
    n + m
}

fn drawn(config: &ResNetConfig, rng: &mut StdRng) -> ModifiedResNet<B> {
    let mut net = config.init(&B::new(), rng).unwrap();
    // Away from the initialisation (γ of one, zero β, zero `bn3.weight`), running variances kept positive.
    net.visit_mut(&mut |n, t, _| {
        if n.ends_with("running_var") {
            t.mapv_inplace(|_| rng.gen_range(0.5..1.5))
        } else {
            t.mapv_inplace(|v| v + rng.gen_range(-0.3..0.3))
        }
    });
    net
}

#[test]
fn resnet_backward_matches_finite_differences_with_batch_statistics() {
    let mut rng = StdRng::seed_from_u64(31);
    let net = drawn(&small(false), &mut rng);
    let n = check("train", &net, Mode::Train { seed: 0 }, &mut rng);
    assert!(n > 250, "{n} entries checked");
}

#[test]
fn resnet_backward_matches_finite_differences_with_running_statistics() {
    let mut rng = StdRng::seed_from_u64(32);
    let net = drawn(&small(false), &mut rng);
    let n = check("eval", &net, Mode::Eval, &mut rng);
    assert!(n > 250, "{n} entries checked");
    let frozen = drawn(&small(true), &mut rng);
    check("frozen", &frozen, Mode::Train { seed: 0 }, &mut rng);
}
