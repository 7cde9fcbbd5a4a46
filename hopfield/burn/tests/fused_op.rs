//! The fused association operation ([`hopfield_burn::fused::association`]) against its materialised
//! reference on plain burn ops: output and the gradients of q, k and v through burn's autodiff, relative
//! 1e-4 in f32 (1e-9 in f64 on NdArray), on NdArray and on Wgpu (lavapipe without a GPU). Odd sizes that
//! fill no tile, per-head β, a padding mask that hides one sample's every stored pattern (a zero row and
//! zero gradients), association biases shared and per head, strided inputs, and no autodiff at all.

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use hopfield_burn::fused::{association, association_reference, supported};

fn vals(t: Tensor<4>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(1e-2f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[derive(Clone, Copy)]
enum Assoc {
    None,
    Shared,
    PerHead,
}

struct Case {
    dims: [usize; 6],
    padding: bool,
    assoc: Assoc,
    strided: bool,
}

/// `(out, dq, dk, dv)` of the fused op or of the reference, for the same inputs.
fn run(
    fused: bool,
    c: &Case,
    inputs: &[Tensor<4>; 3],
    pad: &Option<Tensor<2>>,
    assoc: &Option<Tensor<4>>,
) -> [Vec<f64>; 4] {
    let [q, k, v] = inputs.clone().map(|t| t.require_grad());
    let beta: Vec<f64> = (0..c.dims[1]).map(|h| 0.3 + 0.25 * h as f64).collect();
    let f = if fused { association } else { association_reference };
    let out = f(q.clone(), k.clone(), v.clone(), &beta, pad.clone(), assoc.clone());
    let w = Tensor::<4>::ones(out.dims(), (&out.device(), out.dtype())).cumsum(3).div_scalar(3.0).sin();
    let grads = (out.clone() * w).sum().backward();
    let g = |t: &Tensor<4>| t.grad(&grads).map_or_else(|| vec![0.0; t.shape().num_elements()], vals);
    [vals(out), g(&q), g(&k), g(&v)]
}

fn bias<const D: usize>(data: Vec<f64>, shape: [usize; D], dtype: DType, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), (device, dtype))
}

fn check(what: &str, c: Case, device: &Device, dtype: DType, tol: f64) {
    let [b, h, l, s, d, dv] = c.dims;
    let rnd = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype);
    // Strided: q and v laid out [B, L|S, H, d] and viewed as [B, H, ·, d].
    let q = if c.strided { rnd([b, l, h, d]).swap_dims(1, 2) } else { rnd([b, h, l, d]) };
    let k = rnd([b, h, s, d]);
    let v = if c.strided { rnd([b, s, h, dv]).swap_dims(1, 2) } else { rnd([b, h, s, dv]) };
    let pad: Option<Tensor<2>> = c.padding.then(|| {
        // Sample 0 hides every stored pattern; the others hide every third.
        let m = (0..b * s).map(|i| if i / s == 0 || i % 3 == 1 { f64::NEG_INFINITY } else { 0.0 }).collect();
        bias(m, [b, s], dtype, device)
    });
    let assoc: Option<Tensor<4>> = match c.assoc {
        Assoc::None => None,
        Assoc::Shared => {
            let m = (0..l * s).map(|i| if (i / s) % 4 == i % 4 { f64::NEG_INFINITY } else { 0.1 * (i % 7) as f64 });
            Some(bias(m.collect(), [1, 1, l, s], dtype, device))
        }
        Assoc::PerHead => {
            let m = (0..b * h * l * s).map(|i| if (i / s) % l < i % s { f64::NEG_INFINITY } else { 0.0 });
            Some(bias(m.collect(), [b, h, l, s], dtype, device))
        }
    };
    let inputs = [q, k, v];
    let fused = run(true, &c, &inputs, &pad, &assoc);
    let reference = run(false, &c, &inputs, &pad, &assoc);
    for (name, (f, r)) in ["output", "dq", "dk", "dv"].iter().zip(fused.iter().zip(&reference)) {
        let e = rel(f, r);
        assert!(e <= tol, "{what}: {name} relative error {e:.3e}");
    }
    if c.padding {
        // The fully padded sample: zero output, zero gradient for its queries.
        let n = h * l * dv;
        assert!(fused[0][..n].iter().all(|&x| x == 0.0), "{what}: the hidden sample's output is zero");
    }
}

fn cases(device: &Device, dtype: DType, tol: f64) {
    assert!(supported(device), "the fused association runs on {device:?}");
    let case = |dims, padding, assoc, strided| Case { dims, padding, assoc, strided };
    check("plain, odd sizes", case([2, 3, 37, 29, 5, 7], false, Assoc::None, false), device, dtype, tol);
    check("padding", case([3, 2, 33, 70, 8, 8], true, Assoc::None, false), device, dtype, tol);
    check("shared association bias", case([2, 2, 19, 41, 6, 3], false, Assoc::Shared, false), device, dtype, tol);
    check("per-head mask and padding", case([2, 3, 65, 65, 16, 16], true, Assoc::PerHead, false), device, dtype, tol);
    check("strided q and v", case([2, 4, 31, 17, 8, 12], true, Assoc::None, true), device, dtype, tol);
    check("one stored pattern", case([1, 1, 5, 1, 3, 2], false, Assoc::None, false), device, dtype, tol);
}

#[test]
#[allow(deprecated)]
fn fused_matches_reference_on_ndarray() {
    cases(&Device::ndarray().autodiff(), DType::F32, 1e-4);
}

#[test]
#[allow(deprecated)]
fn fused_matches_reference_on_ndarray_f64() {
    cases(&Device::ndarray().autodiff(), DType::F64, 1e-9);
}

#[cfg(feature = "wgpu")]
#[test]
fn fused_matches_reference_on_wgpu() {
    cases(&Device::wgpu(Default::default()).autodiff(), DType::F32, 1e-4);
}

/// Without autodiff the operation is the forward alone.
#[test]
#[allow(deprecated)]
fn fused_forward_without_autodiff() {
    let device = Device::ndarray();
    let q = Tensor::<4>::random([1, 2, 9, 4], Distribution::Normal(0.0, 1.0), &device);
    let k = Tensor::<4>::random([1, 2, 11, 4], Distribution::Normal(0.0, 1.0), &device);
    let v = Tensor::<4>::random([1, 2, 11, 3], Distribution::Normal(0.0, 1.0), &device);
    let beta = [0.5, 2.0];
    assert_eq!(q.dtype(), DType::F32);
    let f = vals(association(q.clone(), k.clone(), v.clone(), &beta, None, None));
    let r = vals(association_reference(q, k, v, &beta, None, None));
    assert!(rel(&f, &r) <= 1e-5);
}
