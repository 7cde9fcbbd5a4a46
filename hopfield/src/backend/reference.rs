//! The materialised association `softmax(β_h · q kᵀ + bias) · v`, forward and backward, written with the
//! backend's own ops ([`Backend::masked_softmax`], [`Backend::matmul`]): it holds the whole `[B, H, L, S]`
//! matrix. It is the default of [`Backend::association`] and the oracle the streaming implementations (the
//! CPU's blocked one, the CubeCL kernels) are tested against.
//!
//! A fully masked row gives a zero output row and no gradient, through `masked_softmax`'s zero row.
//!
//! For backend implementations (the trait's default calls it) and tests against it. Not part of the layers'
//! API: its functions may change in any release, with the backend trait.

use super::{Backend, ScoreBias};

/// Materialised [`Backend::association`]: `(out [B, H, L, dv], lse)`. Its `lse` is zeros: the
/// materialised backward recomputes the whole matrix and ignores it.
pub fn association<B: Backend>(
    backend: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    beta: &[B::Elem],
    bias: &ScoreBias<'_, B::Tensor>,
) -> (B::Tensor, B::Tensor) {
    let p = backend.masked_softmax(&backend.matmul(q, k, false, true), beta, bias);
    let out = backend.matmul(&p, v, false, false);
    let s = backend.shape(q);
    (out, backend.zeros(&s[..3]))
}

/// Materialised [`Backend::association_backward`]: `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments)]
pub fn association_backward<B: Backend>(
    backend: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    beta: &[B::Elem],
    bias: &ScoreBias<'_, B::Tensor>,
    d_out: &B::Tensor,
) -> (B::Tensor, B::Tensor, B::Tensor) {
    let p = backend.masked_softmax(&backend.matmul(q, k, false, true), beta, bias);
    let dv = backend.matmul(&p, d_out, true, false);
    let dp = backend.matmul(d_out, v, false, true);
    let ds = backend.masked_softmax_backward(&p, &dp, beta);
    (backend.matmul(&ds, k, false, false), backend.matmul(&ds, q, true, false), dv)
}

#[cfg(test)]
pub(crate) mod tests {
    //! The fully-masked-row convention of [`Backend`], one body for every backend.
    use super::*;
    use crate::element::Element;
    use num_traits::Float;

    /// A fully masked row (every bias `-inf`) gives a zero row from `masked_softmax`, a zero output row
    /// from [`Backend::association`] and from the oracle, `lse = -inf` (when `streaming`: the backend
    /// overrides the materialised default, whose `lse` is zeros), and zero, finite gradients.
    pub(crate) fn check_fully_masked_rows<B: Backend>(be: &B, streaming: bool) {
        let (b, h, l, s, d) = (2, 2, 3, 5, 4);
        let t = |shape: &[usize], seed: usize| {
            let n: usize = shape.iter().product();
            // Multiples of 1/8, exact in f32.
            be.from_vec((0..n).map(|i| B::Elem::of((((i + seed) * 7 % 17) as f64 - 8.0) / 8.0)).collect(), shape)
        };
        let (q, k, v, d_out) = (t(&[b, h, l, d], 1), t(&[b, h, s, d], 2), t(&[b, h, s, d], 3), t(&[b, h, l, d], 4));
        let (zero, ninf) = (B::Elem::of(0.0), B::Elem::neg_infinity());
        // Sample 1 hides every stored pattern; the association mask hides row 1 of head 0 in every sample.
        let pad = be.from_vec((0..b * s).map(|i| if i >= s { ninf } else { zero }).collect(), &[b, s]);
        let assoc = be.from_vec((0..h * l * s).map(|i| if i / s == 1 { ninf } else { zero }).collect(), &[1, h, l, s]);
        let bias = ScoreBias { padding: Some(&pad), association: Some(&assoc) };
        let beta = vec![B::Elem::of(0.5); h];
        let name = be.name();
        let rows = |x: &B::Tensor, n: usize| be.to_vec(x).chunks(n).map(|r| r.to_vec()).collect::<Vec<_>>();

        let probs = be.masked_softmax(&be.matmul(&q, &k, false, true), &beta, &bias);
        let (out, lse) = be.association(&q, &k, &v, &beta, &bias);
        let (out_ref, _) = association(be, &q, &k, &v, &beta, &bias);
        let (p_rows, o_rows, r_rows, lse_h) = (rows(&probs, s), rows(&out, d), rows(&out_ref, d), be.to_vec(&lse));
        for i in 0..b * h * l {
            let (bi, hi, li) = (i / (h * l), (i / l) % h, i % l);
            let finite = |r: &[B::Elem]| r.iter().all(|x| x.is_finite());
            assert!(finite(&p_rows[i]) && finite(&o_rows[i]) && finite(&r_rows[i]), "{name}: row {i} not finite");
            if bi == 1 || (hi == 0 && li == 1) {
                assert!(p_rows[i].iter().all(|&x| x == zero), "{name}: probabilities of masked row {i}");
                assert!(o_rows[i].iter().all(|&x| x == zero), "{name}: output of masked row {i}");
                assert!(r_rows[i].iter().all(|&x| x == zero), "{name}: oracle output of masked row {i}");
                if streaming {
                    assert_eq!(lse_h[i], ninf, "{name}: lse of masked row {i}");
                }
            } else if streaming {
                assert!(lse_h[i].is_finite(), "{name}: lse of row {i}");
            }
        }
        let fused = be.association_backward(&q, &k, &v, &beta, &bias, &out, &lse, &d_out);
        let oracle = association_backward(be, &q, &k, &v, &beta, &bias, &d_out);
        for (what, g) in [
            ("dq", &fused.0),
            ("dk", &fused.1),
            ("dv", &fused.2),
            ("oracle dq", &oracle.0),
            ("oracle dk", &oracle.1),
            ("oracle dv", &oracle.2),
        ] {
            let g = be.to_vec(g);
            assert!(g.iter().all(|x| x.is_finite()), "{name}: {what} not finite");
            // Sample 1 retrieves nothing: all of its gradients are zero.
            assert!(g[g.len() / 2..].iter().all(|&x| x == zero), "{name}: {what} of the fully masked sample");
        }
    }

    #[test]
    fn fully_masked_rows_are_zero_on_the_cpu() {
        check_fully_masked_rows(&crate::backend::Cpu::<f64>::new(), true);
        check_fully_masked_rows(&crate::backend::Cpu::<f32>::new(), true);
    }
}
