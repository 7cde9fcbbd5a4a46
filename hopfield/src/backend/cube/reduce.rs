//! Reductions: whole-tensor totals (sum, sum of squares, count of non-finite values), sums over one axis,
//! and the per-head distance of the update iteration's convergence test.
//!
//! Totals: each cube reduces a chunk through shared memory; the per-cube partials come back to the host
//! and are summed in f64 (the result is a host scalar anyway).

use super::{grid_1d, grid_cubes, Cube, CubeRuntime, CubeTensor, BLOCK_SIZE};
use cubecl::prelude::*;

/// Elements per cube of the total kernel.
const CHUNK: usize = BLOCK_SIZE * 16;

/// What [`total`] adds up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Total {
    Sum,
    SumSquares,
    NonFinite,
}

/// Sum `smem[0..CUBE_DIM]` into `smem[0]` by halving (every unit calls it; `CUBE_DIM` a power of two).
/// The kernels' shared reduction: one copy instead of one per kernel.
#[cube]
pub(crate) fn tree_sum(smem: &mut Shared<[f32]>, u: usize) {
    let mut s = CUBE_DIM as usize / 2;
    while s > 0 {
        if u < s {
            let t_smem = smem[u] + smem[u + s];
            smem[u] = t_smem;
        }
        sync_cube();
        s /= 2;
    }
}

#[cube(launch)]
fn total_kernel(x: &[f32], partial: &mut [f32], offset: usize, n: usize, #[comptime] kind: u32) {
    let u = UNIT_POS as usize;
    let start = CUBE_POS * CHUNK;
    let mut acc = 0.0f32;
    let mut i = start + u;
    let end = min(start + CHUNK, n);
    while i < end {
        let v = x[i];
        if comptime![kind == 0] {
            acc += v;
        } else if comptime![kind == 1] {
            acc += v * v;
        } else {
            acc += if v.is_nan() || v.is_inf() { 1.0f32 } else { 0.0f32 };
        }
        i += BLOCK_SIZE;
    }
    let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);
    smem[u] = acc;
    sync_cube();
    tree_sum(&mut smem, u);
    if u == 0 {
        partial[offset + CUBE_POS] = smem[0];
    }
}

/// `out[o, j] = Σ_a x[o, a, j]` (or `max_a` with `max`), one unit per output.
#[cube(launch)]
fn sum_axis_kernel(x: &[f32], out: &mut [f32], axis_len: usize, inner: usize, n: usize, #[comptime] max: bool) {
    let i = ABSOLUTE_POS;
    if i < n {
        let o = i / inner;
        let j = i % inner;
        let base = o * axis_len * inner + j;
        if comptime![max] {
            // The first entry seeds the maximum, so `-inf` entries are values like any other.
            let mut acc = x[base];
            for a in 1..axis_len {
                let v = x[base + a * inner];
                if v > acc || v.is_nan() {
                    acc = v;
                }
            }
            out[i] = acc;
        } else {
            let mut acc = 0.0f32;
            for a in 0..axis_len {
                acc += x[base + a * inner];
            }
            out[i] = acc;
        }
    }
}

/// `out[r] = Σ_j (a[r, j] − b[r, j])²`, one cube per row.
#[cube(launch)]
fn row_sq_dist_kernel(a: &[f32], b: &[f32], out: &mut [f32], cols: usize, rows: usize) {
    let r = CUBE_POS;
    if r < rows {
        let u = UNIT_POS as usize;
        let mut acc = 0.0f32;
        let mut j = u;
        while j < cols {
            let d = a[r * cols + j] - b[r * cols + j];
            acc += d * d;
            j += BLOCK_SIZE;
        }
        let mut smem = Shared::<[f32]>::new_slice(BLOCK_SIZE);
        smem[u] = acc;
        sync_cube();
        tree_sum(&mut smem, u);
        if u == 0 {
            out[r] = smem[0];
        }
    }
}

pub(crate) fn total<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, kind: Total) -> f64 {
    let n = t.len();
    if n == 0 {
        return 0.0;
    }
    let cubes = n.div_ceil(CHUNK);
    let partial = g.alloc(&[cubes]);
    let (count, dim) = grid_cubes(cubes);
    total_kernel::launch(&g.client, count, dim, t.arg(), partial.arg(), 0, n, kind as u32);
    g.read(&partial).iter().map(|&v| v as f64).sum()
}

/// `Σ_t Σ t²`: every tensor's per-cube partials into one buffer, read back once and summed in f64.
pub(crate) fn sum_squares_all<R: CubeRuntime>(g: &Cube<R>, ts: &[&CubeTensor]) -> f64 {
    let cubes: Vec<usize> = ts.iter().map(|t| t.len().div_ceil(CHUNK)).collect();
    let all: usize = cubes.iter().sum();
    if all == 0 {
        return 0.0;
    }
    let partial = g.alloc(&[all]);
    let mut offset = 0;
    for (t, &c) in ts.iter().zip(&cubes) {
        if c > 0 {
            let (count, dim) = grid_cubes(c);
            let kind = Total::SumSquares as u32;
            total_kernel::launch(&g.client, count, dim, t.arg(), partial.arg(), offset, t.len(), kind);
        }
        offset += c;
    }
    g.read(&partial).iter().map(|&v| v as f64).sum()
}

/// Sum over `axis`, keeping it with size 1.
pub(crate) fn sum_axis<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axis: usize) -> CubeTensor {
    reduce_axis(g, t, axis, false)
}

/// Maximum over `axis`, keeping it with size 1.
pub(crate) fn max_axis<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axis: usize) -> CubeTensor {
    reduce_axis(g, t, axis, true)
}

fn reduce_axis<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axis: usize, max: bool) -> CubeTensor {
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut shape = t.shape.clone();
    shape[axis] = 1;
    let out = g.alloc(&shape);
    let n = outer * inner;
    if n > 0 {
        let (count, dim) = grid_1d(n);
        sum_axis_kernel::launch(&g.client, count, dim, t.arg(), out.arg(), t.shape[axis], inner, n, max);
    }
    out
}

/// Per head `h`: `max_b ‖a[b,h] − b[b,h]‖_F`. The `[B·H]` squared norms come back to the host.
pub(crate) fn head_distance<R: CubeRuntime>(g: &Cube<R>, a: &CubeTensor, b: &CubeTensor) -> Vec<f32> {
    debug_assert_eq!(a.shape, b.shape, "head_distance: shapes");
    let (bn, hn) = (a.shape[0], a.shape[1]);
    let rows = bn * hn;
    let cols = a.len() / rows.max(1);
    let sq = g.alloc(&[rows]);
    let (count, dim) = grid_cubes(rows);
    row_sq_dist_kernel::launch(&g.client, count, dim, a.arg(), b.arg(), sq.arg(), cols, rows);
    let sq = g.read(&sq);
    (0..hn).map(|h| (0..bn).map(|bi| sq[bi * hn + h].sqrt()).fold(0.0f32, f32::max)).collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::Backend;

    #[test]
    fn totals_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(6));
        for shape in [vec![1], vec![3, 7], vec![5, 4099], vec![70_001]] {
            let (tg, tc) = pair(&g, &mut r, &shape);
            let (s, e) = (g.sum(&tg) as f64, c.sum(&tc) as f64);
            assert!((s - e).abs() <= 1e-4 * e.abs().max(1.0), "sum {s} vs {e}");
            let (s, e) = (g.sum_squares(&tg) as f64, c.sum_squares(&tc) as f64);
            assert!((s - e).abs() <= 1e-4 * e.abs().max(1.0), "sum_squares {s} vs {e}");
            assert!(g.all_finite(&tg));
        }
        let mut v = vec![0.5f32; 9000];
        v[8999] = f32::INFINITY;
        assert!(!g.all_finite(&g.from_vec(v.clone(), &[9000])));
        v[8999] = f32::NAN;
        assert!(!g.all_finite(&g.from_vec(v, &[9000])));
    }

    #[test]
    fn sum_axis_and_rows_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(7));
        let (tg, tc) = pair(&g, &mut r, &[3, 5, 7, 9]);
        for axis in 0..4 {
            assert_close(&format!("sum_axis {axis}"), &g, &g.sum_axis(&tg, axis), &c.sum_axis(&tc, axis), 1e-5);
        }
        assert_close("sum_rows", &g, &g.sum_rows(&tg), &c.sum_rows(&tc), 1e-5);
        let mut v = c.to_vec(&tc);
        v[0] = f32::NEG_INFINITY;
        v[1..9].fill(f32::NEG_INFINITY); // a whole run of the last axis: its maximum is -inf
        let (tg, tc) = (g.from_vec(v.clone(), &[3, 5, 7, 9]), c.from_vec(v, &[3, 5, 7, 9]));
        for axis in 0..4 {
            let (a, b) = (g.to_vec(&g.max_axis(&tg, axis)), c.to_vec(&c.max_axis(&tc, axis)));
            assert_eq!(a, b, "max_axis {axis}");
        }
    }

    #[test]
    fn sum_squares_all_matches_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(9));
        let shapes = [vec![3], vec![0], vec![70_001], vec![4, 5]];
        let (tg, tc): (Vec<_>, Vec<_>) = shapes.iter().map(|s| pair(&g, &mut r, s)).unzip();
        let a = g.sum_squares_all(&tg.iter().collect::<Vec<_>>());
        let b = c.sum_squares_all(&tc.iter().collect::<Vec<_>>());
        assert!((a - b).abs() <= 1e-5 * b, "{a} vs {b}");
        assert_eq!(g.sum_squares_all(&[]), 0.0);
    }

    #[test]
    fn head_distance_matches_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(8));
        let (ag, ac) = pair(&g, &mut r, &[3, 4, 5, 301]);
        let (bg, bc) = pair(&g, &mut r, &[3, 4, 5, 301]);
        assert_close_vec("head_distance", &g.head_distance(&ag, &bg), &c.head_distance(&ac, &bc), 1e-5);
    }
}
