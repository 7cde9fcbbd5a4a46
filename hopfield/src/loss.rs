//! Training losses with their gradients, mean-reduced as PyTorch's defaults (`reduction='mean'`).
//!
//! Each returns `(loss, dinput)`: the loss as `f64` and its gradient w.r.t. the input tensor (the logits or
//! the prediction), ready to be passed to the layer's backward. Gradients are composed from [`Backend`]
//! ops and stay on the device; [`cross_entropy`] downloads the logits once for its log-sum-exp.

use crate::activation::Activation;
use crate::backend::{Backend, ScoreBias};
use crate::element::Element;
use crate::error::{HopfieldError, Result};

fn same_shape<B: Backend>(backend: &B, op: &'static str, a: &B::Tensor, b: &B::Tensor) -> Result<Vec<usize>> {
    let (sa, sb) = (backend.shape(a), backend.shape(b));
    if sa != sb {
        return Err(HopfieldError::shape(op, format!("targets shaped like the input {sa:?}"), &sb));
    }
    if sa.iter().product::<usize>() == 0 {
        return Err(HopfieldError::shape(op, "a non-empty input", &sa));
    }
    Ok(sa)
}

/// Binary cross-entropy on logits, `torch.nn.functional.binary_cross_entropy_with_logits`:
/// `ℓ = mean[(1 − y)·x + w·softplus(−x)]` with `w = 1 + (pos_weight − 1)·y`, which is stable for every `x`.
/// Its gradient is `[(1 − y) − w·σ(−x)] / n` (`(σ(x) − y)/n` without `pos_weight`).
///
/// # Shapes
/// `logits, targets: [.., C]` (any non-empty shape), `pos_weight: [C]` broadcast over the leading axes.
pub fn bce_with_logits<B: Backend>(
    backend: &B,
    logits: &B::Tensor,
    targets: &B::Tensor,
    pos_weight: Option<&B::Tensor>,
) -> Result<(f64, B::Tensor)> {
    const OP: &str = "bce_with_logits";
    let shape = same_shape(backend, OP, logits, targets)?;
    let n: usize = shape.iter().product();
    let ones = backend.full(&shape, B::Elem::of(1.0));
    let neg = backend.scale(logits, B::Elem::of(-1.0));
    let one_minus_y = backend.sub(&ones, targets);
    // w = 1 + (pos_weight − 1)·y, the positive weight broadcast over all rows.
    let weight = match pos_weight {
        None => None,
        Some(pw) => {
            let c = *shape.last().unwrap_or(&1);
            if backend.shape(pw) != [c] {
                return Err(HopfieldError::shape(OP, format!("pos_weight [{c}]"), &backend.shape(pw)));
            }
            let pw_minus_one = backend.add_bias(&backend.full(&[1, c], B::Elem::of(-1.0)), pw);
            let rows = backend.expand(&pw_minus_one, 0, n / c);
            let scaled_y = backend.mul(&backend.reshape(&rows, &shape), targets);
            Some(backend.add(&ones, &scaled_y))
        }
    };
    let weighted = |t: B::Tensor| match &weight {
        Some(w) => backend.mul(w, &t),
        None => t,
    };
    let softplus = weighted(backend.activation(&neg, Activation::Softplus));
    let loss = (backend.sum(&backend.mul(&one_minus_y, logits)).f64() + backend.sum(&softplus).f64()) / n as f64;
    let sig_neg = weighted(backend.activation(&neg, Activation::Sigmoid));
    let grad = backend.scale(&backend.sub(&one_minus_y, &sig_neg), B::Elem::of(1.0 / n as f64));
    Ok((loss, grad))
}

/// Softmax cross-entropy with class indices, `torch.nn.functional.cross_entropy`:
/// `ℓ = mean_i [logsumexp(x_i) − x_i[label_i]]`, gradient `(softmax(x) − onehot(label)) / N`.
///
/// The loss is reduced in `f64` on the host from the downloaded logits; the gradient stays on the device.
///
/// # Shapes
/// `logits: [N, C]`, `labels: N` indices below `C`.
pub fn cross_entropy<B: Backend>(backend: &B, logits: &B::Tensor, labels: &[usize]) -> Result<(f64, B::Tensor)> {
    const OP: &str = "cross_entropy";
    let shape = backend.shape(logits);
    if shape.len() != 2 || shape[0] != labels.len() || shape[0] == 0 || shape[1] == 0 {
        return Err(HopfieldError::shape(OP, format!("[N = {} labels, C > 0]", labels.len()), &shape));
    }
    let (n, c) = (shape[0], shape[1]);
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= c) {
        return Err(HopfieldError::input(OP, format!("label {l} at {i} is not below {c} classes")));
    }
    let host = backend.to_vec(logits);
    let mut loss = 0.0;
    for (row, &label) in host.chunks(c).zip(labels) {
        let max = row.iter().map(|v| v.f64()).fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v.f64() - max).exp()).sum::<f64>().ln();
        loss += lse - row[label].f64();
    }
    let probs =
        backend.masked_softmax(&backend.reshape(logits, &[1, 1, n, c]), &[B::Elem::of(1.0)], &ScoreBias::default());
    let mut onehot = vec![B::Elem::of(0.0); n * c];
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * c + l] = B::Elem::of(1.0);
    }
    let diff = backend.sub(&backend.reshape(&probs, &[n, c]), &backend.from_vec(onehot, &[n, c]));
    Ok((loss / n as f64, backend.scale(&diff, B::Elem::of(1.0 / n as f64))))
}

/// Mean squared error, `torch.nn.functional.mse_loss`: `ℓ = mean[(p − t)²]`, gradient `2(p − t)/n`.
///
/// # Shapes
/// `pred, target`: the same non-empty shape.
pub fn mse<B: Backend>(backend: &B, pred: &B::Tensor, target: &B::Tensor) -> Result<(f64, B::Tensor)> {
    let shape = same_shape(backend, "mse", pred, target)?;
    let n = shape.iter().product::<usize>() as f64;
    let diff = backend.sub(pred, target);
    let loss = backend.sum_squares(&diff).f64() / n;
    Ok((loss, backend.scale(&diff, B::Elem::of(2.0 / n))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    type T = crate::backend::CpuTensor<f64>;

    /// Central differences of `loss` at `x`, compared with `grad`.
    fn check_gradient(x: &[f64], shape: &[usize], loss: impl Fn(&T) -> (f64, T)) {
        let cpu = Cpu::<f64>::new();
        let x = cpu.from_vec(x.to_vec(), shape);
        let (_, grad) = loss(&x);
        let opts = crate::testing::GradCheck { step: 1e-5, tolerance: 1e-8, ..Default::default() };
        crate::testing::check_tensor(&cpu, "x", &x, &grad, &opts, |x| loss(x).0).unwrap_or_else(|e| panic!("{e}"));
    }

    const X: [f64; 6] = [-3.0, -0.4, 0.0, 0.7, 2.5, -1.2];

    #[test]
    fn bce_values_gradients_and_stability() {
        let cpu = Cpu::<f64>::new();
        let y = cpu.from_vec(vec![1.0, 0.0, 1.0, 0.3, 0.0, 1.0], &[2, 3]);
        let pw = cpu.from_vec(vec![2.0, 0.5, 3.0], &[3]);
        check_gradient(&X, &[2, 3], |x| bce_with_logits(&cpu, x, &y, None).unwrap());
        check_gradient(&X, &[2, 3], |x| bce_with_logits(&cpu, x, &y, Some(&pw)).unwrap());
        // At x = 0 every term is ln 2 (times its weight).
        let zero = cpu.zeros(&[1, 3]);
        let (l, _) = bce_with_logits(&cpu, &zero, &cpu.from_vec(vec![1.0, 0.0, 1.0], &[1, 3]), None).unwrap();
        assert!((l - std::f64::consts::LN_2).abs() < 1e-15);
        let (l, _) = bce_with_logits(&cpu, &zero, &cpu.from_vec(vec![1.0, 0.0, 1.0], &[1, 3]), Some(&pw)).unwrap();
        assert!((l - std::f64::consts::LN_2 * (2.0 + 1.0 + 3.0) / 3.0).abs() < 1e-15);
        // Huge logits give finite, exact losses: confidently right ≈ 0, confidently wrong = |x|.
        let big = cpu.from_vec(vec![1000.0f64, -1000.0], &[2]);
        let (l, g) = bce_with_logits(&cpu, &big, &cpu.from_vec(vec![1.0, 1.0], &[2]), None).unwrap();
        assert!((l - 500.0).abs() < 1e-9, "{l}");
        assert_eq!(cpu.to_vec(&g), vec![0.0, -0.5]);
        // f32 agrees with f64.
        let c32 = Cpu::<f32>::new();
        let x32 = c32.from_vec(X.iter().map(|&v| v as f32).collect(), &[2, 3]);
        let y32 = c32.from_vec(vec![1.0, 0.0, 1.0, 0.3, 0.0, 1.0], &[2, 3]);
        let (l32, _) = bce_with_logits(&c32, &x32, &y32, None).unwrap();
        let (l64, _) = bce_with_logits(&cpu, &cpu.from_vec(X.to_vec(), &[2, 3]), &y, None).unwrap();
        assert!((l32 - l64).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_values_and_gradients() {
        let cpu = Cpu::<f64>::new();
        check_gradient(&X, &[2, 3], |x| cross_entropy(&cpu, x, &[2, 0]).unwrap());
        // Equal logits: ln C.
        let (l, _) = cross_entropy(&cpu, &cpu.zeros(&[2, 4]), &[1, 3]).unwrap();
        assert!((l - 4f64.ln()).abs() < 1e-15);
        // Logit gaps far beyond exp's range stay exact (CLIP logits scaled by 100 get there in f32).
        let c32 = Cpu::<f32>::new();
        let wide = c32.from_vec(vec![200.0, -200.0, 0.0], &[1, 3]);
        let (l, g) = cross_entropy(&c32, &wide, &[1]).unwrap();
        assert!((l - 400.0).abs() < 1e-9, "{l}");
        assert_eq!(c32.to_vec(&g), vec![1.0, -1.0, 0.0]);
    }

    #[test]
    fn mse_values_and_gradients() {
        let cpu = Cpu::<f64>::new();
        let t = cpu.from_vec(vec![0.5, 0.5, -1.0, 2.0, 0.0, 0.0], &[3, 2]);
        check_gradient(&X, &[3, 2], |x| mse(&cpu, x, &t).unwrap());
        let (l, _) = mse(&cpu, &cpu.from_vec(vec![1.0, 3.0], &[2]), &cpu.from_vec(vec![0.0, 1.0], &[2])).unwrap();
        assert_eq!(l, 2.5);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let cpu = Cpu::<f64>::new();
        let x = cpu.zeros(&[2, 3]);
        assert!(cross_entropy(&cpu, &x, &[0]).is_err());
        assert!(cross_entropy(&cpu, &x, &[0, 3]).is_err());
        assert!(cross_entropy(&cpu, &cpu.zeros(&[6]), &[0; 6]).is_err());
        assert!(bce_with_logits(&cpu, &x, &cpu.zeros(&[3, 2]), None).is_err());
        assert!(bce_with_logits(&cpu, &x, &x, Some(&cpu.zeros(&[2]))).is_err());
        assert!(mse(&cpu, &cpu.zeros(&[0]), &cpu.zeros(&[0])).is_err());
    }
}
