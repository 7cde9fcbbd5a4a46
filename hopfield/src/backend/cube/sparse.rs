//! α-entmax (sparsemax at α = 2) over the last axis of `[B, H, L, S]` scores, and its backward. One cube
//! per row `(b, h, l)`, as the softmax kernels.
//!
//! The threshold τ of `p = [x − τ]₊^{1/(α−1)}` (`x = (α−1)·z`) is found by bisection in shared memory:
//! every unit sums its strided columns, the cube reduces, and all units move the same bracket, which starts
//! at `[max x − 1, max x − S^{1−α}]` (the mass is ≥ 1 at the left end and ≤ 1 at the right). 40 halvings
//! take the bracket below f32 resolution; the result is normalised to sum one, as the CPU backend does.

use super::reduce::tree_sum;
use super::softmax::{assoc_strides, biased_row_max};
use super::{grid_cubes, masked_score, Cube, CubeRuntime, CubeTensor, BLOCK_SIZE};
use crate::backend::ScoreBias;
use cubecl::prelude::*;

/// Bisection steps on τ.
const STEPS: u32 = 40;

/// The backward's weight `g = p^{2−α}` of a support entry (`sparse`: 1).
#[cube]
fn entmax_grad_weight(p: f32, two_minus_alpha: f32, #[comptime] sparse: bool) -> f32 {
    if comptime![sparse] {
        f32::new(1.0)
    } else {
        p.powf(two_minus_alpha)
    }
}

/// `x^{1/(α−1)}` for x > 0 (`sparse`: x).
#[cube]
fn entmax_power(x: f32, inv: f32, #[comptime] sparse: bool) -> f32 {
    if comptime![sparse] {
        x
    } else {
        x.powf(inv)
    }
}

/// `ent[3h..3h+3] = (α_h − 1, 1/(α_h − 1), S^{1−α_h})`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn masked_entmax_kernel(
    scores: &[f32],
    beta: &[f32],
    ent: &[f32],
    pad: &[f32],
    assoc: &[f32],
    out: &mut [f32],
    cols: usize,
    len_l: usize,
    heads: usize,
    rows: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
    #[comptime] sparse: bool,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let h = (r / len_l) % heads;
        let base = r * cols;
        let bh = beta[h];
        let am1 = ent[3 * h];
        let inv = ent[3 * h + 1];
        let gap = ent[3 * h + 2];
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);

        let row_max = biased_row_max(
            scores, pad, assoc, out, &mut smem, r, u, bh, am1, cols, len_l, heads, assoc_sb, assoc_sh, has_pad,
            has_assoc, true,
        );
        let masked = row_max <= masked_score();

        let mut lo = row_max - 1.0f32;
        let mut hi = row_max - gap;
        let mut it = 0u32;
        while it < STEPS {
            let mid = (lo + hi) * 0.5f32;
            let mut acc = 0.0f32;
            let mut j2 = u;
            while j2 < cols {
                let x = out[base + j2];
                if x > mid {
                    acc += entmax_power(x - mid, inv, sparse);
                }
                j2 += BLOCK_SIZE;
            }
            smem[u] = acc;
            sync_cube();
            tree_sum(&mut smem, u);
            let mass = smem[0];
            sync_cube();
            if mass >= 1.0f32 {
                lo = mid;
            } else {
                hi = mid;
            }
            it += 1;
        }

        let mut total = 0.0f32;
        let mut j3 = u;
        while j3 < cols {
            let x = out[base + j3];
            let p = if !masked && x > lo { entmax_power(x - lo, inv, sparse) } else { 0.0f32 };
            out[base + j3] = p;
            total += p;
            j3 += BLOCK_SIZE;
        }
        smem[u] = total;
        sync_cube();
        tree_sum(&mut smem, u);
        let scale = if masked { 0.0f32 } else { 1.0f32 / smem[0] };
        let mut j4 = u;
        while j4 < cols {
            out[base + j4] *= scale;
            j4 += BLOCK_SIZE;
        }
    }
}

/// Sum of `smem` over the cube into every unit's return value (leaves `smem` free for the next use).
#[cube]
fn cube_sum(smem: &mut Shared<[f32]>, u: usize, v: f32) -> f32 {
    smem[u] = v;
    sync_cube();
    tree_sum(smem, u);
    let total = smem[0];
    sync_cube();
    total
}

/// `dz = β_h (g ⊙ dp − g Σ(g dp)/Σg)`, `g = p^{2−α}` on the support; `d_alpha[r]` the α-derivative of
/// `Σ dp ⊙ p` (written when `with_alpha`). `ent` as in the forward kernel.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn masked_entmax_backward_kernel(
    p: &[f32],
    dp: &[f32],
    beta: &[f32],
    ent: &[f32],
    out: &mut [f32],
    d_alpha: &mut [f32],
    cols: usize,
    len_l: usize,
    heads: usize,
    rows: usize,
    #[comptime] sparse: bool,
    #[comptime] with_alpha: bool,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let h = (r / len_l) % heads;
        let base = r * cols;
        let am1 = ent[3 * h];
        let two_minus_alpha = 1.0f32 - am1;
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);
        let mut sg = 0.0f32;
        let mut sgd = 0.0f32;
        let mut sdp = 0.0f32;
        let mut sds = 0.0f32;
        let mut se = 0.0f32;
        let mut j = u;
        while j < cols {
            let pi = p[base + j];
            if pi > 0.0f32 {
                let g = entmax_grad_weight(pi, two_minus_alpha, sparse);
                let di = dp[base + j];
                sg += g;
                sgd += g * di;
                if comptime![with_alpha] {
                    let sh = pi * pi.ln();
                    sdp += di * pi;
                    sds += di * sh;
                    se += sh;
                }
            }
            j += BLOCK_SIZE;
        }
        let tg = cube_sum(&mut smem, u, sg);
        let tgd = cube_sum(&mut smem, u, sgd);
        let q = if tg > 0.0f32 { tgd / tg } else { 0.0f32 };
        let bh = beta[h];
        let mut j2 = u;
        while j2 < cols {
            let pi = p[base + j2];
            let mut o = 0.0f32;
            if pi > 0.0f32 {
                let g = entmax_grad_weight(pi, two_minus_alpha, sparse);
                o = bh * g * (dp[base + j2] - q);
            }
            out[base + j2] = o;
            j2 += BLOCK_SIZE;
        }
        if comptime![with_alpha] {
            let tdp = cube_sum(&mut smem, u, sdp);
            let tds = cube_sum(&mut smem, u, sds);
            let te = cube_sum(&mut smem, u, se);
            if u == 0 {
                d_alpha[r] = if tg > 0.0f32 { (tdp - q) / (am1 * am1) - (tds - q * te) / am1 } else { 0.0f32 };
            }
        }
    }
}

/// Per head `(α − 1, 1/(α − 1), cols^{1−α})`, the constants of both kernels.
fn entmax_constants(alpha: &[f32], cols: usize) -> Vec<f32> {
    alpha
        .iter()
        .flat_map(|&a| {
            let am1 = a as f64 - 1.0;
            [am1 as f32, (1.0 / am1) as f32, (cols as f64).powf(-am1) as f32]
        })
        .collect()
}

pub(crate) fn masked_entmax<R: CubeRuntime>(
    g: &Cube<R>,
    scores: &CubeTensor,
    beta: &[f32],
    bias: &ScoreBias<'_, CubeTensor>,
    alpha: &[f32],
) -> CubeTensor {
    let sh = &scores.shape;
    debug_assert_eq!(sh.len(), 4, "masked_entmax: scores [B, H, L, S], got {sh:?}");
    let (b, h, l, s) = (sh[0], sh[1], sh[2], sh[3]);
    debug_assert!(beta.len() == h && alpha.len() == h, "masked_entmax: one β and one α per head");
    let out = g.alloc(sh);
    let rows = b * h * l;
    if rows > 0 && s > 0 {
        let (count, dim) = grid_cubes(rows);
        let (sb, shh) = bias.association.map_or((0, 0), assoc_strides);
        let pad = bias.padding.map_or_else(|| g.dummy(), |p| p.arg());
        let assoc = bias.association.map_or_else(|| g.dummy(), |a| a.arg());
        masked_entmax_kernel::launch(
            &g.client,
            count,
            dim,
            scores.arg(),
            g.upload_f32(beta),
            g.upload_f32(&entmax_constants(alpha, s)),
            pad,
            assoc,
            out.arg(),
            s,
            l,
            h,
            rows,
            sb,
            shh,
            bias.padding.is_some(),
            bias.association.is_some(),
            alpha.iter().all(|&a| a == 2.0),
        );
    }
    out
}

pub(crate) fn masked_entmax_backward<R: CubeRuntime>(
    g: &Cube<R>,
    probs: &CubeTensor,
    d_probs: &CubeTensor,
    beta: &[f32],
    alpha: &[f32],
    with_alpha: bool,
) -> (CubeTensor, Option<CubeTensor>) {
    debug_assert_eq!(probs.shape, d_probs.shape, "masked_entmax_backward: shapes");
    let sh = &probs.shape;
    let (b, h, l, s) = (sh[0], sh[1], sh[2], sh[3]);
    let out = g.alloc(sh);
    let d_alpha = g.alloc(&[b, h, l]);
    let rows = b * h * l;
    if rows > 0 && s > 0 {
        let (count, dim) = grid_cubes(rows);
        masked_entmax_backward_kernel::launch(
            &g.client,
            count,
            dim,
            probs.arg(),
            d_probs.arg(),
            g.upload_f32(beta),
            g.upload_f32(&entmax_constants(alpha, s)),
            out.arg(),
            d_alpha.arg(),
            s,
            l,
            h,
            rows,
            alpha.iter().all(|&a| a == 2.0),
            with_alpha,
        );
    }
    (out, with_alpha.then_some(d_alpha))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::{Backend, ScoreBias};
    use rand::Rng;

    /// softmax₁ and entmax (α = 2, 1.5, 1.2 and mixed per head) forward and backward, with padding and
    /// association masks and fully masked rows, against the CPU backend; the α-derivative rows too.
    #[test]
    fn softmax1_and_entmax_match_cpu_with_masks_and_fully_masked_rows() {
        let (g, c, mut r) = (gpu(), cpu(), rng(31));
        for &(b, h, l, s) in &[(2, 3, 5, 7), (1, 1, 3, 300), (3, 2, 4, 1), (2, 2, 6, 513)] {
            let beta: Vec<f32> = (0..h).map(|i| 1.5 + i as f32).collect();
            let ninf = f32::NEG_INFINITY;
            let pad: Vec<f32> = (0..b * s).map(|i| if i < s || r.gen_bool(0.3) { ninf } else { 0.0 }).collect();
            let assoc: Vec<f32> =
                (0..h * l * s).map(|_| if r.gen_bool(0.2) { ninf } else { r.gen_range(-1.0..1.0) }).collect();
            let (pg, pc) = (g.from_vec(pad.clone(), &[b, s]), c.from_vec(pad, &[b, s]));
            let (ag, ac) = (g.from_vec(assoc.clone(), &[1, h, l, s]), c.from_vec(assoc, &[1, h, l, s]));
            let (sg, sc) = pair(&g, &mut r, &[b, h, l, s]);
            let biases = [
                (ScoreBias::default(), ScoreBias::default()),
                (
                    ScoreBias { padding: Some(&pg), association: Some(&ag) },
                    ScoreBias { padding: Some(&pc), association: Some(&ac) },
                ),
            ];
            for (i, (bg, bc)) in biases.iter().enumerate() {
                let at = format!("{i} {:?}", [b, h, l, s]);
                let (yg, yc) = (g.masked_softmax1(&sg, &beta, bg), c.masked_softmax1(&sc, &beta, bc));
                assert_close(&format!("masked_softmax1 {at}"), &g, &yg, &yc, 1e-5);
                let mixed: Vec<f32> = (0..h).map(|i| [1.2, 2.0, 1.5][i % 3]).collect();
                for alpha in [vec![2.0; h], vec![1.5; h], vec![1.2; h], mixed] {
                    let yg = g.masked_entmax(&sg, &beta, bg, &alpha);
                    let yc = c.masked_entmax(&sc, &beta, bc, &alpha);
                    assert_close(&format!("masked_entmax α {alpha:?} {at}"), &g, &yg, &yc, 1e-5);
                    let (dg, dc) = pair(&g, &mut r, &[b, h, l, s]);
                    let (xg, ag2) = g.masked_entmax_backward(&yg, &dg, &beta, &alpha, true);
                    let (xc, ac2) = c.masked_entmax_backward(&yc, &dc, &beta, &alpha, true);
                    assert_close(&format!("masked_entmax_backward α {alpha:?} {at}"), &g, &xg, &xc, 1e-4);
                    if alpha.iter().all(|&a| a < 2.0) {
                        let (ag2, ac2) = (ag2.unwrap(), ac2.unwrap());
                        assert_close(&format!("entmax d_alpha α {alpha:?} {at}"), &g, &ag2, &ac2, 1e-3);
                    }
                }
            }
        }
    }
}
