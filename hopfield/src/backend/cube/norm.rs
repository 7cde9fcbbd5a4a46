//! Layer norm over the last axis, forward and backward. One cube per row for the row statistics and
//! `dx`; one unit per column for the affine gradients (a loop over rows, no atomics).

use super::reduce::tree_sum;
use super::{grid_1d, grid_cubes, Cube, CubeRuntime, CubeTensor, BLOCK_SIZE};
use cubecl::prelude::*;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_kernel(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
    cols: usize,
    rows: usize,
    eps: f32,
    #[comptime] has_w: bool,
    #[comptime] has_b: bool,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let base = r * cols;
        let nf = f32::cast_from(cols);
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);

        let mut acc = 0.0f32;
        let mut j = u;
        while j < cols {
            acc += x[base + j];
            j += BLOCK_SIZE;
        }
        smem[u] = acc;
        sync_cube();
        tree_sum(&mut smem, u);
        let mean = smem[0] / nf;
        sync_cube();

        let mut acc2 = 0.0f32;
        let mut j2 = u;
        while j2 < cols {
            let d = x[base + j2] - mean;
            acc2 += d * d;
            j2 += BLOCK_SIZE;
        }
        smem[u] = acc2;
        sync_cube();
        tree_sum(&mut smem, u);
        let rstd = 1.0 / (smem[0] / nf + eps).sqrt();

        let mut j3 = u;
        while j3 < cols {
            let mut z = (x[base + j3] - mean) * rstd;
            if comptime![has_w] {
                z *= w[j3];
            }
            if comptime![has_b] {
                z += b[j3];
            }
            y[base + j3] = z;
            j3 += BLOCK_SIZE;
        }
        if u == 0 {
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
        }
    }
}

/// `dx = rstd · (d − mean(d) − x̂ · mean(d · x̂))` with `d = dy ⊙ w`, one cube per row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn layer_norm_dx_kernel(
    x: &[f32],
    stats: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    cols: usize,
    rows: usize,
    #[comptime] has_w: bool,
) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let base = r * cols;
        let nf = f32::cast_from(cols);
        let mean = stats[2 * r];
        let rstd = stats[2 * r + 1];
        let mut s_d = Shared::<[f32]>::new_slice(BLOCK_SIZE);
        let mut s_dx = Shared::<[f32]>::new_slice(BLOCK_SIZE);
        let mut acc_d = 0.0f32;
        let mut acc_dx = 0.0f32;
        let mut j = u;
        while j < cols {
            let xhat = (x[base + j] - mean) * rstd;
            let mut d = dy[base + j];
            if comptime![has_w] {
                d *= w[j];
            }
            acc_d += d;
            acc_dx += d * xhat;
            j += BLOCK_SIZE;
        }
        s_d[u] = acc_d;
        s_dx[u] = acc_dx;
        sync_cube();
        let mut s = CUBE_DIM as usize / 2;
        while s > 0 {
            if u < s {
                let t_s_d = s_d[u] + s_d[u + s];
                s_d[u] = t_s_d;
                let t_s_dx = s_dx[u] + s_dx[u + s];
                s_dx[u] = t_s_dx;
            }
            sync_cube();
            s /= 2;
        }
        let mean_d = s_d[0] / nf;
        let mean_dx = s_dx[0] / nf;
        let mut j2 = u;
        while j2 < cols {
            let xhat = (x[base + j2] - mean) * rstd;
            let mut d = dy[base + j2];
            if comptime![has_w] {
                d *= w[j2];
            }
            dx[base + j2] = rstd * (d - mean_d - xhat * mean_dx);
            j2 += BLOCK_SIZE;
        }
    }
}

/// `dw[j] = Σ_r dy[r, j] x̂[r, j]`, `db[j] = Σ_r dy[r, j]`, one unit per column.
#[cube(launch)]
fn layer_norm_affine_kernel(
    x: &[f32],
    stats: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    cols: usize,
    rows: usize,
) {
    let j = ABSOLUTE_POS;
    if j < cols {
        let mut acc_w = 0.0f32;
        let mut acc_b = 0.0f32;
        for r in 0..rows {
            let xhat = (x[r * cols + j] - stats[2 * r]) * stats[2 * r + 1];
            let d = dy[r * cols + j];
            acc_w += d * xhat;
            acc_b += d;
        }
        dw[j] = acc_w;
        db[j] = acc_b;
    }
}

pub(crate) fn layer_norm<R: CubeRuntime>(
    g: &Cube<R>,
    x: &CubeTensor,
    weight: Option<&CubeTensor>,
    bias: Option<&CubeTensor>,
    eps: f32,
) -> (CubeTensor, CubeTensor) {
    let cols = *x.shape.last().expect("layer_norm: x has a last axis");
    let rows = x.len() / cols.max(1);
    debug_assert!(
        weight.is_none_or(|w| w.len() == cols) && bias.is_none_or(|b| b.len() == cols),
        "layer_norm: affine size"
    );
    let y = g.alloc(&x.shape);
    let stats = g.alloc(&[rows, 2]);
    if rows > 0 {
        let (count, dim) = grid_cubes(rows);
        let w = weight.map_or_else(|| g.dummy(), |w| w.arg());
        let b = bias.map_or_else(|| g.dummy(), |b| b.arg());
        layer_norm_kernel::launch(
            &g.client,
            count,
            dim,
            x.arg(),
            w,
            b,
            y.arg(),
            stats.arg(),
            cols,
            rows,
            eps,
            weight.is_some(),
            bias.is_some(),
        );
    }
    (y, stats)
}

pub(crate) fn layer_norm_backward<R: CubeRuntime>(
    g: &Cube<R>,
    x: &CubeTensor,
    stats: &CubeTensor,
    weight: Option<&CubeTensor>,
    dy: &CubeTensor,
) -> (CubeTensor, Option<(CubeTensor, CubeTensor)>) {
    debug_assert_eq!(x.shape, dy.shape, "layer_norm_backward: shapes");
    let cols = *x.shape.last().expect("layer_norm_backward: x has a last axis");
    let rows = x.len() / cols.max(1);
    let dx = g.alloc(&x.shape);
    if rows > 0 {
        let (count, dim) = grid_cubes(rows);
        let w = weight.map_or_else(|| g.dummy(), |w| w.arg());
        layer_norm_dx_kernel::launch(
            &g.client,
            count,
            dim,
            x.arg(),
            stats.arg(),
            w,
            dy.arg(),
            dx.arg(),
            cols,
            rows,
            weight.is_some(),
        );
    }
    let affine = weight.map(|_| {
        let (dw, db) = (g.alloc(&[cols]), g.alloc(&[cols]));
        let (count, dim) = grid_1d(cols);
        layer_norm_affine_kernel::launch(
            &g.client,
            count,
            dim,
            x.arg(),
            stats.arg(),
            dy.arg(),
            dw.arg(),
            db.arg(),
            cols,
            rows,
        );
        (dw, db)
    });
    (dx, affine)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::Backend;

    #[test]
    fn layer_norm_forward_and_backward_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(9));
        for (shape, affine) in
            [(vec![3, 7, 5], true), (vec![2, 3, 301], false), (vec![1, 1000], true), (vec![4, 17, 64], true)]
        {
            let n = *shape.last().unwrap();
            let (xg, xc) = pair(&g, &mut r, &shape);
            let (dyg, dyc) = pair(&g, &mut r, &shape);
            let (wg, wc) = pair(&g, &mut r, &[n]);
            let (bg, bc) = pair(&g, &mut r, &[n]);
            let (wg, wc, bg, bc) =
                if affine { (Some(&wg), Some(&wc), Some(&bg), Some(&bc)) } else { (None, None, None, None) };
            let (yg, sg) = g.layer_norm(&xg, wg, bg, 1e-5);
            let (yc, sc) = c.layer_norm(&xc, wc, bc, 1e-5);
            assert_close("layer_norm y", &g, &yg, &yc, 1e-4);
            assert_close("layer_norm stats", &g, &sg, &sc, 1e-4);
            let (dxg, affg) = g.layer_norm_backward(&xg, &sg, wg, &dyg);
            let (dxc, affc) = c.layer_norm_backward(&xc, &sc, wc, &dyc);
            assert_close("layer_norm dx", &g, &dxg, &dxc, 1e-4);
            assert_eq!(affg.is_some(), affc.is_some());
            if let (Some((dwg, dbg)), Some((dwc, dbc))) = (affg, affc) {
                assert_close("layer_norm dw", &g, &dwg, &dwc, 1e-4);
                assert_close("layer_norm db", &g, &dbg, &dbc, 1e-4);
            }
        }
    }
}
