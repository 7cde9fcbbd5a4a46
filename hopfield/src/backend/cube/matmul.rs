//! Batched `op(a) · op(b)` with optional transposes: a tiled shared-memory kernel, one 16×16 output tile
//! per cube, one output per unit, `k` in steps of 16. Out-of-range tile entries load as zero, so any
//! `m, n, k` works. `b` of rank 2 is shared by every batch entry (batch stride 0).
//!
//! Our own kernel rather than cubek-matmul: it is simple enough to check, runs on lavapipe, and keeps
//! the dependency tree (and the CI build) small. The fused association kernels carry the hot path.

use super::{Cube, CubeTensor};
use cubecl::prelude::*;

const TILE: usize = 16;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn matmul_kernel(a: &[f32], b: &[f32], out: &mut [f32], m: usize, n: usize, k: usize, a_bs: usize, b_bs: usize,
                 #[comptime] ta: bool, #[comptime] tb: bool) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let row = CUBE_POS_Y as usize * TILE + ty;
    let col = CUBE_POS_X as usize * TILE + tx;
    let batch = CUBE_POS_Z as usize;
    let a_off = batch * a_bs;
    let b_off = batch * b_bs;
    let mut sa = Shared::<[f32]>::new_slice(TILE * TILE);
    let mut sb = Shared::<[f32]>::new_slice(TILE * TILE);
    let mut acc = 0.0f32;
    let tiles = (k + TILE - 1) / TILE;
    for t in 0..tiles {
        let ka = t * TILE + tx;
        let mut va = 0.0f32;
        if row < m && ka < k {
            if comptime![ta] {
                va = a[a_off + ka * m + row];
            } else {
                va = a[a_off + row * k + ka];
            }
        }
        sa[ty * TILE + tx] = va;
        let kb = t * TILE + ty;
        let mut vb = 0.0f32;
        if kb < k && col < n {
            if comptime![tb] {
                vb = b[b_off + col * k + kb];
            } else {
                vb = b[b_off + kb * n + col];
            }
        }
        sb[ty * TILE + tx] = vb;
        sync_cube();
        for i in 0..TILE {
            acc += sa[ty * TILE + i] * sb[i * TILE + tx];
        }
        sync_cube();
    }
    if row < m && col < n {
        out[batch * m * n + row * n + col] = acc;
    }
}

pub(crate) fn matmul(g: &Cube, a: &CubeTensor, b: &CubeTensor, ta: bool, tb: bool) -> CubeTensor {
    let (ar, br) = (a.shape.len(), b.shape.len());
    debug_assert!(ar >= 2 && br >= 2, "matmul: operands of rank ≥ 2, got {:?} x {:?}", a.shape, b.shape);
    let (a0, a1) = (a.shape[ar - 2], a.shape[ar - 1]);
    let (b0, b1) = (b.shape[br - 2], b.shape[br - 1]);
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if tb { (b1, b0) } else { (b0, b1) };
    debug_assert_eq!(k, kb, "matmul: inner sizes {:?} x {:?} (ta {ta}, tb {tb})", a.shape, b.shape);
    let na: usize = a.shape[..ar - 2].iter().product();
    let nb: usize = b.shape[..br - 2].iter().product();
    debug_assert!(nb == na || br == 2 || nb == 1, "matmul: batch {:?} vs {:?}", a.shape, b.shape);
    let mut shape = a.shape[..ar - 2].to_vec();
    shape.extend([m, n]);
    let out = g.alloc(&shape);
    if out.is_empty() {
        return out;
    }
    if k == 0 {
        return super::elementwise::fill(g, &shape, 0.0);
    }
    let (cx, cy) = (n.div_ceil(TILE), m.div_ceil(TILE));
    assert!(cx <= 65_535 && cy <= 65_535 && na <= 65_535, "matmul: {:?} x {:?} exceeds the launch grid", a.shape, b.shape);
    let b_bs = if nb == 1 { 0 } else { k * n };
    matmul_kernel::launch(&g.client, CubeCount::Static(cx as u32, cy as u32, na as u32),
                          CubeDim::new_2d(TILE as u32, TILE as u32), a.arg(), b.arg(), out.arg(), m, n, k, m * k, b_bs,
                          ta, tb);
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::Backend;

    #[test]
    fn matmul_matches_cpu_for_every_transpose_and_odd_sizes() {
        let (g, c, mut r) = (gpu(), cpu(), rng(11));
        for &(batch, m, k, n) in &[(1, 1, 1, 1), (3, 17, 33, 5), (2, 40, 7, 65), (1, 129, 64, 31)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let sa = if ta { [batch, k, m] } else { [batch, m, k] };
                    let sb = if tb { [batch, n, k] } else { [batch, k, n] };
                    let (ag, ac) = pair(&g, &mut r, &sa);
                    let (bg, bc) = pair(&g, &mut r, &sb);
                    assert_close(&format!("matmul {batch}x{m}x{k}x{n} ta {ta} tb {tb}"), &g,
                                 &g.matmul(&ag, &bg, ta, tb), &c.matmul(&ac, &bc, ta, tb), 1e-5);
                    // Shared rank-2 right operand.
                    let sb2 = if tb { [n, k] } else { [k, n] };
                    let (bg2, bc2) = pair(&g, &mut r, &sb2);
                    assert_close("matmul shared b", &g, &g.matmul(&ag, &bg2, ta, tb), &c.matmul(&ac, &bc2, ta, tb), 1e-5);
                }
            }
        }
        // Four-dimensional batches, as the layers use them: [B, H, L, d] x [B, H, S, d]ᵀ.
        let (qg, qc) = pair(&g, &mut r, &[2, 3, 9, 8]);
        let (kg, kc) = pair(&g, &mut r, &[2, 3, 11, 8]);
        assert_close("matmul 4d", &g, &g.matmul(&qg, &kg, false, true), &c.matmul(&qc, &kc, false, true), 1e-5);
    }
}
