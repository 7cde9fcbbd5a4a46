//! Fused streaming association (the flash-attention scheme) on CubeCL:
//! `out = softmax(β_h · q kᵀ + bias) · v` block by block with an online softmax, never materialising
//! `L × S`; backward recomputes each block's probabilities from the saved per-row log-sum-exp.
//!
//! - forward: one cube per (head, block of [`ROWS`] state patterns), one unit per row; the query row and
//!   output accumulator live in registers (`Array`, head sizes are comptime), key/value tiles of [`BC`]
//!   stored patterns go through shared memory.
//! - backward: `Δ = rowsum(dO ⊙ O)`; a `dq` kernel shaped like the forward; a `dk, dv` kernel with one
//!   unit per stored pattern looping over tiles of state patterns.
//!
//! The three kernels ([`kernels`]) share their tile loads and the biased score
//! `β q·k + padding + association`. Masked entries are `-inf` in the bias buffers;
//! running maxima start at [`MASKED_SCORE`](super::MASKED_SCORE) (WGSL has no infinite literals), and a
//! row whose maximum stays there is fully masked: output 0 and `lse = -inf`, as on the CPU.
//! Head sizes above [`MAX_HEAD`] (registers) fall back to the materialised reference.

mod kernels;

use super::{Cube, CubeRuntime, CubeTensor};
use crate::backend::reference;
use crate::backend::ScoreBias;
use cubecl::prelude::*;
use kernels::{assoc_delta_kernel, assoc_dkdv_kernel, assoc_dq_kernel, assoc_forward_kernel};

/// State patterns per cube (units per cube).
pub const ROWS: usize = 64;
/// Stored patterns per shared-memory tile.
pub const BC: usize = 32;
/// Largest head size (q/k and v) the fused kernels take.
pub const MAX_HEAD: usize = 128;

/// Shapes `(B, H, L, S, d, dv)` of a fused association, or `None` when it does not fit the kernels.
fn fused_dims<R: CubeRuntime>(g: &Cube<R>, q: &CubeTensor, k: &CubeTensor, v: &CubeTensor) -> Option<[usize; 6]> {
    let (qs, ks, vs) = (&q.shape, &k.shape, &v.shape);
    debug_assert!(qs.len() == 4 && ks.len() == 4 && vs.len() == 4, "association: rank-4 q, k, v");
    debug_assert!(
        qs[..2] == ks[..2] && ks[..3] == vs[..3] && qs[3] == ks[3],
        "association: q {qs:?} k {ks:?} v {vs:?}"
    );
    let dims = [qs[0], qs[1], qs[2], ks[2], qs[3], vs[3]];
    let [b, h, l, s, d, dv] = dims;
    // The forward's tiles and scores (the dk/dv kernel's `2·BC` extra is smaller).
    let shared = (BC * (d + dv) + BC * ROWS) * std::mem::size_of::<f32>();
    let props = g.client.properties();
    let fits = d >= 1
        && dv >= 1
        && d <= MAX_HEAD
        && dv <= MAX_HEAD
        && shared <= props.hardware.max_shared_memory_size
        && b * h <= 65_535
        && l.div_ceil(ROWS) <= 65_535
        && s.div_ceil(ROWS) <= 65_535
        && l > 0
        && s > 0;
    fits.then_some(dims)
}

fn assoc_strides(a: &CubeTensor) -> (usize, usize) {
    let (ab, ah, l, s) = (a.shape[0], a.shape[1], a.shape[2], a.shape[3]);
    (if ab == 1 { 0 } else { ah * l * s }, if ah == 1 { 0 } else { l * s })
}

pub(crate) fn association<R: CubeRuntime>(
    g: &Cube<R>,
    q: &CubeTensor,
    k: &CubeTensor,
    v: &CubeTensor,
    beta: &[f32],
    bias: &ScoreBias<'_, CubeTensor>,
) -> (CubeTensor, CubeTensor) {
    let Some([b, h, l, s, d, dv]) = fused_dims(g, q, k, v) else {
        return reference::association(g, q, k, v, beta, bias);
    };
    let out = g.alloc(&[b, h, l, dv]);
    let lse = g.alloc(&[b, h, l]);
    let (sb, sh) = bias.association.map_or((0, 0), assoc_strides);
    let pad = bias.padding.map_or_else(|| g.dummy(), |p| p.arg());
    let assoc = bias.association.map_or_else(|| g.dummy(), |a| a.arg());
    assoc_forward_kernel::launch(
        &g.client,
        CubeCount::Static(l.div_ceil(ROWS) as u32, (b * h) as u32, 1),
        CubeDim::new_1d(ROWS as u32),
        q.arg(),
        k.arg(),
        v.arg(),
        g.upload_f32(beta),
        pad,
        assoc,
        out.arg(),
        lse.arg(),
        l,
        s,
        h,
        sb,
        sh,
        f32::NEG_INFINITY,
        d,
        dv,
        bias.padding.is_some(),
        bias.association.is_some(),
    );
    (out, lse)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn association_backward<R: CubeRuntime>(
    g: &Cube<R>,
    q: &CubeTensor,
    k: &CubeTensor,
    v: &CubeTensor,
    beta: &[f32],
    bias: &ScoreBias<'_, CubeTensor>,
    out: &CubeTensor,
    lse: &CubeTensor,
    d_out: &CubeTensor,
) -> (CubeTensor, CubeTensor, CubeTensor) {
    let Some([b, h, l, s, d, dv]) = fused_dims(g, q, k, v) else {
        return reference::association_backward(g, q, k, v, beta, bias, d_out);
    };
    debug_assert_eq!(d_out.shape, [b, h, l, dv], "association_backward: d_out");
    let rows = b * h * l;
    let delta = g.alloc(&[rows]);
    let (count, dim) = super::grid_1d(rows);
    assoc_delta_kernel::launch(&g.client, count, dim, out.arg(), d_out.arg(), delta.arg(), dv, rows);
    let (sb, sh) = bias.association.map_or((0, 0), assoc_strides);
    let arg = |t: Option<&CubeTensor>| t.map_or_else(|| g.dummy(), |t| t.arg());
    let (has_pad, has_assoc) = (bias.padding.is_some(), bias.association.is_some());
    let dq = g.alloc(&q.shape);
    assoc_dq_kernel::launch(
        &g.client,
        CubeCount::Static(l.div_ceil(ROWS) as u32, (b * h) as u32, 1),
        CubeDim::new_1d(ROWS as u32),
        q.arg(),
        k.arg(),
        v.arg(),
        g.upload_f32(beta),
        arg(bias.padding),
        arg(bias.association),
        d_out.arg(),
        lse.arg(),
        delta.arg(),
        dq.arg(),
        l,
        s,
        h,
        sb,
        sh,
        d,
        dv,
        has_pad,
        has_assoc,
    );
    let dk = g.alloc(&k.shape);
    let dvt = g.alloc(&v.shape);
    assoc_dkdv_kernel::launch(
        &g.client,
        CubeCount::Static(s.div_ceil(ROWS) as u32, (b * h) as u32, 1),
        CubeDim::new_1d(ROWS as u32),
        q.arg(),
        k.arg(),
        v.arg(),
        g.upload_f32(beta),
        arg(bias.padding),
        arg(bias.association),
        d_out.arg(),
        lse.arg(),
        delta.arg(),
        dk.arg(),
        dvt.arg(),
        l,
        s,
        h,
        sb,
        sh,
        d,
        dv,
        has_pad,
        has_assoc,
    );
    (dq, dk, dvt)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::reference;
    use crate::backend::{Backend, ScoreBias};
    use rand::Rng;

    /// A fully masked row gives zeros (output, probabilities, gradients) and `lse = -inf`, as on the CPU.
    #[test]
    fn fully_masked_rows_are_zero() {
        reference::tests::check_fully_masked_rows(&gpu(), true);
    }

    /// Fused forward and backward equal the materialised CPU oracle, on sizes straddling the tiles, with
    /// heads, padding (sample 0 fully masked), shared and per-sample association biases.
    #[test]
    fn fused_association_matches_the_cpu_oracle() {
        let (g, c, mut r) = (gpu(), cpu(), rng(12));
        for &(b, h, l, s, d, dv) in
            &[(1, 1, 1, 1, 1, 1), (2, 3, 70, 33, 5, 3), (1, 2, 65, 100, 16, 9), (2, 1, 3, 129, 8, 8)]
        {
            let shapes = [[b, h, l, d], [b, h, s, d], [b, h, s, dv], [b, h, l, dv]];
            let [(qg, qc), (kg, kc), (vg, vc), (dog, doc)] = shapes.map(|sh| pair(&g, &mut r, &sh));
            let beta: Vec<f32> = (0..h).map(|i| 0.7 + i as f32).collect();
            let ninf = f32::NEG_INFINITY;
            let pad: Vec<f32> =
                (0..b * s).map(|i| if (b > 1 && i < s) || r.gen_bool(0.2) { ninf } else { 0.0 }).collect();
            let assoc: Vec<f32> =
                (0..h * l * s).map(|_| if r.gen_bool(0.1) { ninf } else { r.gen_range(-1.0..1.0) }).collect();
            let assoc_b: Vec<f32> = (0..b * l * s).map(|_| r.gen_range(-1.0..1.0)).collect();
            let (pg, pc) = (g.from_vec(pad.clone(), &[b, s]), c.from_vec(pad, &[b, s]));
            let (ag, ac) = (g.from_vec(assoc.clone(), &[1, h, l, s]), c.from_vec(assoc, &[1, h, l, s]));
            let (abg, abc) = (g.from_vec(assoc_b.clone(), &[b, 1, l, s]), c.from_vec(assoc_b, &[b, 1, l, s]));
            let cases = [
                (ScoreBias::default(), ScoreBias::default()),
                (
                    ScoreBias { padding: Some(&pg), association: None },
                    ScoreBias { padding: Some(&pc), association: None },
                ),
                (
                    ScoreBias { padding: Some(&pg), association: Some(&ag) },
                    ScoreBias { padding: Some(&pc), association: Some(&ac) },
                ),
                (
                    ScoreBias { padding: None, association: Some(&abg) },
                    ScoreBias { padding: None, association: Some(&abc) },
                ),
            ];
            for (i, (bg, bc)) in cases.iter().enumerate() {
                let ctx = format!("{:?} case {i}", (b, h, l, s, d, dv));
                let (og, lg) = g.association(&qg, &kg, &vg, &beta, bg);
                let (oc, _) = reference::association(&c, &qc, &kc, &vc, &beta, bc);
                assert_close(&format!("{ctx}: out"), &g, &og, &oc, 1e-4);
                let (dqg, dkg, dvg) = g.association_backward(&qg, &kg, &vg, &beta, bg, &og, &lg, &dog);
                let (dqc, dkc, dvc) = reference::association_backward(&c, &qc, &kc, &vc, &beta, bc, &doc);
                assert_close(&format!("{ctx}: dq"), &g, &dqg, &dqc, 1e-4);
                assert_close(&format!("{ctx}: dk"), &g, &dkg, &dkc, 1e-4);
                assert_close(&format!("{ctx}: dv"), &g, &dvg, &dvc, 1e-4);
            }
        }
    }
}
