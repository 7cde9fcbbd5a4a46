//! Gradient clipping by global norm, as `torch.nn.utils.clip_grad_norm_`.

use crate::backend::Backend;
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::params::{global_norm, Parameters};

/// Scale every trainable tensor of `grads` by `min(1, max_norm / (‖g‖ + 1e-6))`, where `‖g‖` is the L2 norm
/// of all trainable tensors together, and return `‖g‖` before clipping.
///
/// Unlike PyTorch, a non-finite norm leaves the gradients untouched (PyTorch would scale them by 0 or NaN):
/// the caller sees the returned norm and skips the step. Errors if `max_norm` is negative or not finite.
pub fn clip_grad_norm<B: Backend, P: Parameters<B> + ?Sized>(backend: &B, grads: &mut P, max_norm: f64) -> Result<f64> {
    if !max_norm.is_finite() || max_norm < 0.0 {
        return Err(HopfieldError::config("max_norm", format!("must be finite and ≥ 0, got {max_norm}")));
    }
    let total = global_norm(backend, grads);
    let coef = max_norm / (total + 1e-6);
    if total.is_finite() && coef < 1.0 {
        let c = B::Elem::of(coef);
        grads.visit_mut(&mut |_, g, trainable| {
            if trainable {
                *g = backend.scale(g, c);
            }
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::Named;
    use crate::Cpu;

    #[test]
    fn clips_to_max_norm_and_reports_the_norm_before() {
        let cpu = Cpu::<f64>::new();
        // ‖(3, 4)‖ = 5 with one trainable tensor; the frozen tensor neither counts nor changes.
        let mut g = Named::<Cpu<f64>>::toy(&[3.0, 4.0], &[100.0]);
        let norm = clip_grad_norm(&cpu, &mut g, 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let c = 1.0 / (5.0 + 1e-6);
        assert_eq!(g.get("w"), vec![3.0 * c, 4.0 * c]);
        assert_eq!(g.get("frozen"), vec![100.0]);
        // Below the threshold nothing moves.
        let norm = clip_grad_norm(&cpu, &mut g, 2.0).unwrap();
        assert!((norm - 1.0).abs() < 1e-6);
        assert_eq!(g.get("w"), vec![3.0 * c, 4.0 * c]);
    }

    #[test]
    fn non_finite_norm_and_bad_max_norm() {
        let cpu = Cpu::<f32>::new();
        let mut g = Named::<Cpu<f32>>::toy(&[f64::INFINITY, 1.0], &[0.0]);
        assert!(clip_grad_norm(&cpu, &mut g, 1.0).unwrap().is_infinite());
        assert_eq!(g.get("w"), vec![f64::INFINITY, 1.0]);
        assert!(clip_grad_norm(&cpu, &mut g, -1.0).is_err());
        assert!(clip_grad_norm(&cpu, &mut g, f64::NAN).is_err());
    }
}
