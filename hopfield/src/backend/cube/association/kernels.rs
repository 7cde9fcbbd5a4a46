//! The `#[cube]` kernels of the fused association (see the parent module for the scheme) and the tile
//! load and biased score they share.

use super::super::masked_score;
use super::{BC, ROWS};
use cubecl::prelude::*;

/// Rows `start..start + BC` of the `[len, width]` matrix that starts at row `first` of `src` into `tile`,
/// zeros past `len`. Every unit of the cube calls it (unit `u` copies every [`ROWS`]-th element).
#[cube]
pub(super) fn load_tile(
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
pub(super) fn biased_score(
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
pub(super) fn assoc_forward_kernel(
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
pub(super) fn assoc_delta_kernel(out: &[f32], d_out: &[f32], delta: &mut [f32], dv: usize, rows: usize) {
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
pub(super) fn assoc_dq_kernel(
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
pub(super) fn assoc_dkdv_kernel(
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
