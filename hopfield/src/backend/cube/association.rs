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
//! The three kernels share their tile loads ([`load_tile`]) and the biased score
//! `β q·k + padding + association` ([`biased_score`]). Masked entries are `-inf` in the bias buffers;
//! running maxima start at [`MASKED_SCORE`](super::MASKED_SCORE) (WGSL has no infinite literals), and a
//! row whose maximum stays there is fully masked: output 0 and `lse = -inf`, as on the CPU.
//! Head sizes above [`MAX_HEAD`] (registers) fall back to the materialised reference.

use super::{masked_score, Cube, CubeRuntime, CubeTensor};
use crate::backend::reference;
use crate::backend::ScoreBias;
use cubecl::prelude::*;

/// State patterns per cube (units per cube).
pub const ROWS: usize = 64;
/// Stored patterns per shared-memory tile.
pub const BC: usize = 32;
/// Largest head size (q/k and v) the fused kernels take.
pub const MAX_HEAD: usize = 128;

/// Rows `start..start + BC` of the `[len, width]` matrix that starts at row `first` of `src` into `tile`,
/// zeros past `len`. Every unit of the cube calls it (unit `u` copies every [`ROWS`]-th element).
#[cube]
fn load_tile(
    src: &[f32],
    tile: &mut Shared<[f32]>,
    first: usize,
    start: usize,
    len: usize,
    u: usize,
    #[comptime] width: usize,
) {
    let mut i = u;
    while i < BC * width {
        tile[i] = if start + i / width < len { src[(first + start) * width + i] } else { 0.0f32 };
        i += ROWS;
    }
}

/// The biased score `β · (x · tile[at..at + d]) + padding[b, col] + association[b, h, row, col]` of a
/// register row `x` against one row of a shared tile, with the biases the comptime flags switch on.
/// `row` and `col` must be in range: callers clamp them and discard the scores of clamped entries.
#[cube]
#[allow(clippy::too_many_arguments)]
fn biased_score(
    x: &Array<f32>,
    tile: &Shared<[f32]>,
    at: usize,
    beta: f32,
    pad: &[f32],
    assoc: &[f32],
    b: usize,
    h: usize,
    row: usize,
    col: usize,
    len_s: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    #[comptime] d: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
) -> f32 {
    let mut s = 0.0f32;
    #[unroll]
    for c in 0..d {
        s += x[c] * tile[at + c];
    }
    s *= beta;
    if comptime![has_pad] {
        s += pad[b * len_s + col];
    }
    if comptime![has_assoc] {
        s += assoc[b * assoc_sb + h * assoc_sh + row * len_s + col];
    }
    s
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn assoc_forward_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    beta: &[f32],
    pad: &[f32],
    assoc: &[f32],
    out: &mut [f32],
    lse: &mut [f32],
    len_l: usize,
    len_s: usize,
    heads: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    masked_lse: f32,
    #[comptime] d: usize,
    #[comptime] dv: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
) {
    let u = UNIT_POS as usize;
    let bh = CUBE_POS_Y as usize;
    let b = bh / heads;
    let h = bh % heads;
    let row = CUBE_POS_X as usize * ROWS + u;
    let valid_row = row < len_l;
    let rc = min(row, len_l - 1);
    let bq = beta[h];
    let mut qr = Array::<f32>::new(d);
    #[unroll]
    for c in 0..d {
        qr[c] = if valid_row { q[(bh * len_l + row) * d + c] } else { 0.0f32 };
    }
    let mut acc = Array::<f32>::new(dv);
    #[unroll]
    for c in 0..dv {
        acc[c] = 0.0;
    }
    // This unit's scores of the current tile, column-major (`[j][unit]`: no bank conflicts). In shared memory
    // rather than a register array: `sc[j]` is indexed by a loop variable, and lavapipe compiled the kernel
    // with such an array in 5–8 s (of the fused layer test's 7 cold minutes), against under 1 s without.
    let mut sc = Shared::<[f32]>::new_slice(BC * ROWS);
    let mut m = masked_score();
    let mut lsum = 0.0f32;
    let mut ks = Shared::<[f32]>::new_slice(BC * d);
    let mut vs = Shared::<[f32]>::new_slice(BC * dv);
    let tiles = len_s.div_ceil(BC);
    for t in 0..tiles {
        let s0 = t * BC;
        load_tile(k, &mut ks, bh * len_s, s0, len_s, u, d);
        load_tile(v, &mut vs, bh * len_s, s0, len_s, u, dv);
        sync_cube();
        let mut tmax = masked_score();
        for j in 0..BC {
            let col = s0 + j;
            let sj = biased_score(
                &qr,
                &ks,
                j * d,
                bq,
                pad,
                assoc,
                b,
                h,
                rc,
                min(col, len_s - 1),
                len_s,
                assoc_sb,
                assoc_sh,
                d,
                has_pad,
                has_assoc,
            );
            let sj = if col < len_s { sj } else { masked_score() };
            sc[j * ROWS + u] = sj;
            tmax = max(tmax, sj);
        }
        let m_new = max(m, tmax);
        if m_new > masked_score() {
            let alpha = (m - m_new).exp();
            #[unroll]
            for c in 0..dv {
                acc[c] *= alpha;
            }
            let mut psum = 0.0f32;
            for j in 0..BC {
                let p = if s0 + j < len_s { (sc[j * ROWS + u] - m_new).exp() } else { 0.0f32 };
                psum += p;
                #[unroll]
                for c in 0..dv {
                    acc[c] += p * vs[j * dv + c];
                }
            }
            lsum = lsum * alpha + psum;
            m = m_new;
        }
        sync_cube();
    }
    if valid_row {
        let o = (bh * len_l + row) * dv;
        let masked = m <= masked_score();
        let inv = if masked { 0.0f32 } else { 1.0 / lsum };
        #[unroll]
        for c in 0..dv {
            out[o + c] = acc[c] * inv;
        }
        lse[bh * len_l + row] = if masked { masked_lse } else { m + lsum.ln() };
    }
}

/// `Δ[r] = Σ_c dO[r, c] · O[r, c]`.
#[cube(launch)]
fn assoc_delta_kernel(out: &[f32], d_out: &[f32], delta: &mut [f32], dv: usize, rows: usize) {
    let r = ABSOLUTE_POS;
    if r < rows {
        let mut acc = 0.0f32;
        for c in 0..dv {
            acc += out[r * dv + c] * d_out[r * dv + c];
        }
        delta[r] = acc;
    }
}

/// `dq[r] = β Σ_j p_rj (dO_r · v_j − Δ_r) k_j`, one unit per state pattern.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn assoc_dq_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    beta: &[f32],
    pad: &[f32],
    assoc: &[f32],
    d_out: &[f32],
    lse: &[f32],
    delta: &[f32],
    dq: &mut [f32],
    len_l: usize,
    len_s: usize,
    heads: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    #[comptime] d: usize,
    #[comptime] dv: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
) {
    let u = UNIT_POS as usize;
    let bh = CUBE_POS_Y as usize;
    let b = bh / heads;
    let h = bh % heads;
    let row = CUBE_POS_X as usize * ROWS + u;
    let valid_row = row < len_l;
    let rc = min(row, len_l - 1);
    let bq = beta[h];
    let mut qr = Array::<f32>::new(d);
    let mut dq_acc = Array::<f32>::new(d);
    #[unroll]
    for c in 0..d {
        qr[c] = if valid_row { q[(bh * len_l + row) * d + c] } else { 0.0f32 };
        dq_acc[c] = 0.0;
    }
    let mut dor = Array::<f32>::new(dv);
    #[unroll]
    for c in 0..dv {
        dor[c] = if valid_row { d_out[(bh * len_l + row) * dv + c] } else { 0.0f32 };
    }
    let lse_r = if valid_row { lse[bh * len_l + row] } else { masked_score() };
    let delta_r = if valid_row { delta[bh * len_l + row] } else { 0.0f32 };
    // A fully masked row (`lse = -inf`) has no gradient.
    let live = valid_row && lse_r > masked_score();
    let mut ks = Shared::<[f32]>::new_slice(BC * d);
    let mut vs = Shared::<[f32]>::new_slice(BC * dv);
    let tiles = len_s.div_ceil(BC);
    for t in 0..tiles {
        let s0 = t * BC;
        load_tile(k, &mut ks, bh * len_s, s0, len_s, u, d);
        load_tile(v, &mut vs, bh * len_s, s0, len_s, u, dv);
        sync_cube();
        for j in 0..BC {
            let col = s0 + j;
            let sj = biased_score(
                &qr,
                &ks,
                j * d,
                bq,
                pad,
                assoc,
                b,
                h,
                rc,
                min(col, len_s - 1),
                len_s,
                assoc_sb,
                assoc_sh,
                d,
                has_pad,
                has_assoc,
            );
            let p = if live && col < len_s { (sj - lse_r).exp() } else { 0.0f32 };
            let mut dp = 0.0f32;
            #[unroll]
            for c in 0..dv {
                dp += dor[c] * vs[j * dv + c];
            }
            let ds = p * (dp - delta_r);
            #[unroll]
            for c in 0..d {
                dq_acc[c] += ds * ks[j * d + c];
            }
        }
        sync_cube();
    }
    if valid_row {
        #[unroll]
        for c in 0..d {
            dq[(bh * len_l + row) * d + c] = bq * dq_acc[c];
        }
    }
}

/// `dv[j] = Σ_r p_rj dO_r`, `dk[j] = β Σ_r p_rj (dO_r · v_j − Δ_r) q_r`, one unit per stored pattern.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn assoc_dkdv_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    beta: &[f32],
    pad: &[f32],
    assoc: &[f32],
    d_out: &[f32],
    lse: &[f32],
    delta: &[f32],
    dk: &mut [f32],
    dvo: &mut [f32],
    len_l: usize,
    len_s: usize,
    heads: usize,
    assoc_sb: usize,
    assoc_sh: usize,
    #[comptime] d: usize,
    #[comptime] dv: usize,
    #[comptime] has_pad: bool,
    #[comptime] has_assoc: bool,
) {
    let u = UNIT_POS as usize;
    let bh = CUBE_POS_Y as usize;
    let b = bh / heads;
    let h = bh % heads;
    let col = CUBE_POS_X as usize * ROWS + u;
    let valid_col = col < len_s;
    // Reads outside the L × S matrix are clamped in range; their terms are zeroed below.
    let cc = min(col, len_s - 1);
    let bq = beta[h];
    let mut kr = Array::<f32>::new(d);
    let mut dk_acc = Array::<f32>::new(d);
    #[unroll]
    for c in 0..d {
        kr[c] = if valid_col { k[(bh * len_s + col) * d + c] } else { 0.0f32 };
        dk_acc[c] = 0.0;
    }
    let mut vr = Array::<f32>::new(dv);
    let mut dv_acc = Array::<f32>::new(dv);
    #[unroll]
    for c in 0..dv {
        vr[c] = if valid_col { v[(bh * len_s + col) * dv + c] } else { 0.0f32 };
        dv_acc[c] = 0.0;
    }
    let mut qs = Shared::<[f32]>::new_slice(BC * d);
    let mut dos = Shared::<[f32]>::new_slice(BC * dv);
    let mut ls = Shared::<[f32]>::new_slice(BC);
    let mut dls = Shared::<[f32]>::new_slice(BC);
    let tiles = len_l.div_ceil(BC);
    for t in 0..tiles {
        let l0 = t * BC;
        load_tile(q, &mut qs, bh * len_l, l0, len_l, u, d);
        load_tile(d_out, &mut dos, bh * len_l, l0, len_l, u, dv);
        if u < BC {
            let live_row = l0 + u < len_l;
            ls[u] = if live_row { lse[bh * len_l + l0 + u] } else { masked_score() };
            dls[u] = if live_row { delta[bh * len_l + l0 + u] } else { 0.0f32 };
        }
        sync_cube();
        for r in 0..BC {
            let row = l0 + r;
            let sj = biased_score(
                &kr,
                &qs,
                r * d,
                bq,
                pad,
                assoc,
                b,
                h,
                min(row, len_l - 1),
                cc,
                len_s,
                assoc_sb,
                assoc_sh,
                d,
                has_pad,
                has_assoc,
            );
            let lr = ls[r];
            // Padded rows and fully masked ones (`lse = -inf`) contribute nothing.
            let p = if valid_col && row < len_l && lr > masked_score() { (sj - lr).exp() } else { 0.0f32 };
            let mut dp = 0.0f32;
            #[unroll]
            for c in 0..dv {
                dp += dos[r * dv + c] * vr[c];
                dv_acc[c] += p * dos[r * dv + c];
            }
            let ds = p * (dp - dls[r]);
            #[unroll]
            for c in 0..d {
                dk_acc[c] += ds * qs[r * d + c];
            }
        }
        sync_cube();
    }
    if valid_col {
        #[unroll]
        for c in 0..d {
            dk[(bh * len_s + col) * d + c] = bq * dk_acc[c];
        }
        #[unroll]
        for c in 0..dv {
            dvo[(bh * len_s + col) * dv + c] = dv_acc[c];
        }
    }
}

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
