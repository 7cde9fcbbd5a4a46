//! Masked softmax over the last axis of `[B, H, L, S]` scores with per-head β, padding and association
//! biases, and its backward. One cube per row `(b, h, l)`.
//!
//! Masked entries are `-inf` in the bias buffers. The running maximum starts at
//! [`MASKED_SCORE`](super::MASKED_SCORE) instead of `-inf` (WGSL has no infinite literals): a row whose
//! maximum stays there is fully masked and gives zeros, as on the CPU.

use super::reduce::tree_sum;
use super::{grid_cubes, masked_score, Cube, CubeRuntime, CubeTensor, BLOCK_SIZE};
use crate::backend::ScoreBias;
use cubecl::prelude::*;

/// Writes the biased scores `(β_h · scores + padding + association)` of row `r` (times `scale` when
/// `scaled`) into `out`, each unit its strided columns, and returns the row maximum reduced through `smem`
/// ([`MASKED_SCORE`](super::MASKED_SCORE) when every entry is masked). Shared by the softmax and entmax
/// kernels; every unit of the cube calls it.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn biased_row_max(
    scores: &[f32],
    pad: &[f32],
    assoc: &[f32],
    out: &mut [f32],
    smem: &mut Shared<[f32]>,
    r: usize,
    u: usize,
    bh: f32,
    scale: f32,
    cols: usize,
    len_l: usize,
    heads: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
    #[comptime] scaled: bool,
) -> f32 {
    let l = r % len_l;
    let h = (r / len_l) % heads;
    let b = r / (len_l * heads);
    let base = r * cols;
    let mut m = masked_score();
    let mut j = u;
    while j < cols {
        let mut v = scores[base + j] * bh;
        if comptime![has_pad] {
            v += pad[b * cols + j];
        }
        if comptime![has_assoc] {
            v += assoc[b * assoc_sb + h * assoc_sh + l * cols + j];
        }
        if comptime![scaled] {
            v *= scale;
        }
        out[base + j] = v;
        m = max(m, v);
        j += BLOCK_SIZE;
    }
    smem[u] = m;
    sync_cube();
    let mut s = CUBE_DIM as usize / 2;
    while s > 0 {
        if u < s {
            let t_max = max(smem[u], smem[u + s]);
            smem[u] = t_max;
        }
        sync_cube();
        s /= 2;
    }
    let row_max = smem[0];
    sync_cube();
    row_max
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn masked_softmax_kernel(
    scores: &[f32],
    beta: &[f32],
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
    #[comptime] plus_one: bool,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let h = (r / len_l) % heads;
        let base = r * cols;
        let bh = beta[h];
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);

        let mut row_max = biased_row_max(
            scores, pad, assoc, out, &mut smem, r, u, bh, 1.0f32, cols, len_l, heads, assoc_sb, assoc_sh, has_pad,
            has_assoc, false,
        );

        let masked = row_max <= masked_score();
        if comptime![plus_one] {
            // softmax₁: the extra 1 is exp(0) in the denominator, so 0 joins the maximum.
            row_max = max(row_max, 0.0f32);
        }
        let mut acc = 0.0f32;
        let mut j2 = u;
        while j2 < cols {
            let e = if masked { 0.0f32 } else { (out[base + j2] - row_max).exp() };
            out[base + j2] = e;
            acc += e;
            j2 += BLOCK_SIZE;
        }
        smem[u] = acc;
        sync_cube();
        tree_sum(&mut smem, u);
        let mut denom = smem[0];
        if comptime![plus_one] {
            denom += (0.0f32 - row_max).exp();
        }
        let inv = if masked { 0.0f32 } else { 1.0 / denom };
        let mut j3 = u;
        while j3 < cols {
            out[base + j3] *= inv;
            j3 += BLOCK_SIZE;
        }
    }
}

/// `out = β_h · p ⊙ (dp − Σ dp ⊙ p)` per row.
#[cube(launch)]
fn masked_softmax_backward_kernel(
    p: &[f32],
    dp: &[f32],
    beta: &[f32],
    out: &mut [f32],
    cols: usize,
    len_l: usize,
    heads: usize,
    rows: usize,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let h = (r / len_l) % heads;
        let base = r * cols;
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);
        let mut acc = 0.0f32;
        let mut j = u;
        while j < cols {
            acc += p[base + j] * dp[base + j];
            j += BLOCK_SIZE;
        }
        smem[u] = acc;
        sync_cube();
        tree_sum(&mut smem, u);
        let dot = smem[0];
        let bh = beta[h];
        let mut j2 = u;
        while j2 < cols {
            out[base + j2] = bh * p[base + j2] * (dp[base + j2] - dot);
            j2 += BLOCK_SIZE;
        }
    }
}

/// Strides of the `[B|1, H|1, L, S]` association bias over b and h (0 on a broadcast axis).
pub(crate) fn assoc_strides(a: &CubeTensor) -> (usize, usize) {
    let (ab, ah, l, s) = (a.shape[0], a.shape[1], a.shape[2], a.shape[3]);
    let sh = if ah == 1 { 0 } else { l * s };
    let sb = if ab == 1 { 0 } else { ah * l * s };
    (sb, sh)
}

/// softmax (`plus_one` off) or softmax₁ (on) of the biased scores, row by row.
pub(crate) fn masked_softmax<R: CubeRuntime>(
    g: &Cube<R>,
    scores: &CubeTensor,
    beta: &[f32],
    bias: &ScoreBias<'_, CubeTensor>,
    plus_one: bool,
) -> CubeTensor {
    let sh = &scores.shape;
    debug_assert_eq!(sh.len(), 4, "masked_softmax: scores [B, H, L, S], got {sh:?}");
    let (b, h, l, s) = (sh[0], sh[1], sh[2], sh[3]);
    debug_assert_eq!(beta.len(), h, "masked_softmax: one β per head");
    debug_assert!(bias.padding.is_none_or(|p| p.shape == [b, s]), "masked_softmax: padding shape");
    debug_assert!(bias.association.is_none_or(|a| a.shape[2..] == [l, s]), "masked_softmax: association shape");
    let out = g.alloc(sh);
    let rows = b * h * l;
    if rows > 0 && s > 0 {
        let (count, dim) = grid_cubes(rows);
        let (sb, shh) = bias.association.map_or((0, 0), assoc_strides);
        let pad = bias.padding.map_or_else(|| g.dummy(), |p| p.arg());
        let assoc = bias.association.map_or_else(|| g.dummy(), |a| a.arg());
        masked_softmax_kernel::launch(
            &g.client,
            count,
            dim,
            scores.arg(),
            g.upload_f32(beta),
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
            plus_one,
        );
    }
    out
}

pub(crate) fn masked_softmax_backward<R: CubeRuntime>(
    g: &Cube<R>,
    probs: &CubeTensor,
    d_probs: &CubeTensor,
    beta: &[f32],
) -> CubeTensor {
    debug_assert_eq!(probs.shape, d_probs.shape, "masked_softmax_backward: shapes");
    let sh = &probs.shape;
    let (b, h, l, s) = (sh[0], sh[1], sh[2], sh[3]);
    let out = g.alloc(sh);
    let rows = b * h * l;
    if rows > 0 && s > 0 {
        let (count, dim) = grid_cubes(rows);
        masked_softmax_backward_kernel::launch(
            &g.client,
            count,
            dim,
            probs.arg(),
            d_probs.arg(),
            g.upload_f32(beta),
            out.arg(),
            s,
            l,
            h,
            rows,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::{Backend, ScoreBias};
    use rand::Rng;

    #[test]
    fn masked_softmax_matches_cpu_with_masks_and_fully_masked_rows() {
        let (g, c, mut r) = (gpu(), cpu(), rng(10));
        for &(b, h, l, s) in &[(2, 3, 5, 7), (1, 1, 3, 300), (3, 2, 4, 1), (2, 4, 6, 513)] {
            let beta: Vec<f32> = (0..h).map(|i| 0.5 + i as f32).collect();
            let (sg, sc) = pair(&g, &mut r, &[b, h, l, s]);
            let ninf = f32::NEG_INFINITY;
            // Padding: sample 0 fully masked; the others masked at random.
            let pad: Vec<f32> = (0..b * s).map(|i| if i < s || r.gen_bool(0.3) { ninf } else { 0.0 }).collect();
            let assoc: Vec<f32> =
                (0..h * l * s).map(|_| if r.gen_bool(0.2) { ninf } else { r.gen_range(-1.0..1.0) }).collect();
            let assoc_b: Vec<f32> = (0..b * l * s).map(|_| if r.gen_bool(0.2) { ninf } else { 0.0 }).collect();
            let (pg, pc) = (g.from_vec(pad.clone(), &[b, s]), c.from_vec(pad, &[b, s]));
            let (ag, ac) = (g.from_vec(assoc.clone(), &[1, h, l, s]), c.from_vec(assoc, &[1, h, l, s]));
            let (abg, abc) = (g.from_vec(assoc_b.clone(), &[b, 1, l, s]), c.from_vec(assoc_b, &[b, 1, l, s]));
            let cases: [(ScoreBias<'_, _>, ScoreBias<'_, _>); 4] = [
                (ScoreBias::default(), ScoreBias::default()),
                (
                    ScoreBias { padding: Some(&pg), association: None },
                    ScoreBias { padding: Some(&pc), association: None },
                ),
                (
                    ScoreBias { padding: None, association: Some(&ag) },
                    ScoreBias { padding: None, association: Some(&ac) },
                ),
                (
                    ScoreBias { padding: Some(&pg), association: Some(&abg) },
                    ScoreBias { padding: Some(&pc), association: Some(&abc) },
                ),
            ];
            for (i, (bg, bc)) in cases.iter().enumerate() {
                let yg = g.masked_softmax(&sg, &beta, bg);
                let yc = c.masked_softmax(&sc, &beta, bc);
                assert_close(&format!("masked_softmax {i} {:?}", [b, h, l, s]), &g, &yg, &yc, 1e-5);
                let (dg, dc) = pair(&g, &mut r, &[b, h, l, s]);
                assert_close(
                    &format!("masked_softmax_backward {i}"),
                    &g,
                    &g.masked_softmax_backward(&yg, &dg, &beta),
                    &c.masked_softmax_backward(&yc, &dc, &beta),
                    1e-5,
                );
            }
        }
    }
}
