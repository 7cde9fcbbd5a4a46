//! Layout kernels: permute, slice, expand, concat and slice_add are all one strided copy (shape, input
//! strides, output strides and offsets in a small metadata buffer), optionally accumulating; and the
//! per-head select.

use super::{grid_1d, row_major_strides, Cube, CubeRuntime, CubeTensor};
use cubecl::prelude::*;

/// `out[o(i)] (+)= input[s(i)]` for every multi-index `i` of `shape`, where `s` and `o` are the strided
/// offsets. `meta = [shape; rank] ++ [input strides; rank] ++ [output strides; rank]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn strided_copy_kernel(
    input: &[f32],
    out: &mut [f32],
    meta: &[u32],
    rank: usize,
    in_offset: usize,
    out_offset: usize,
    n: usize,
    #[comptime] accumulate: bool,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let mut rem = i;
        let mut src = in_offset;
        let mut dst = out_offset;
        let mut d = rank;
        while d > 0 {
            d -= 1;
            let size = meta[d] as usize;
            let idx = rem % size;
            rem /= size;
            src += idx * meta[rank + d] as usize;
            dst += idx * meta[2 * rank + d] as usize;
        }
        if comptime![accumulate] {
            out[dst] += input[src];
        } else {
            out[dst] = input[src];
        }
    }
}

#[cube(launch)]
fn select_heads_kernel(new: &[f32], old: &[f32], take: &[u32], out: &mut [f32], inner: usize, heads: usize, n: usize) {
    let i = ABSOLUTE_POS;
    if i < n {
        let h = (i / inner) % heads;
        out[i] = if take[h] != 0 { new[i] } else { old[i] };
    }
}

/// Launch one strided copy of `shape` from `input` into `out`.
#[allow(clippy::too_many_arguments)]
fn strided_copy<R: CubeRuntime>(
    g: &Cube<R>,
    input: &CubeTensor,
    out: &CubeTensor,
    shape: &[usize],
    in_strides: &[usize],
    out_strides: &[usize],
    in_offset: usize,
    out_offset: usize,
    accumulate: bool,
) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    debug_assert!(shape.len() == in_strides.len() && shape.len() == out_strides.len());
    let meta: Vec<u32> = shape
        .iter()
        .chain(in_strides)
        .chain(out_strides)
        .map(|&x| u32::try_from(x).expect("strided copy: sizes and strides fit u32"))
        .collect();
    let (count, dim) = grid_1d(n);
    strided_copy_kernel::launch(
        &g.client,
        count,
        dim,
        input.arg(),
        out.arg(),
        g.upload_u32(&meta),
        shape.len(),
        in_offset,
        out_offset,
        n,
        accumulate,
    );
}

pub(crate) fn permute<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axes: &[usize]) -> CubeTensor {
    debug_assert_eq!(axes.len(), t.shape.len(), "permute: axes {axes:?} for {:?}", t.shape);
    let in_strides = row_major_strides(&t.shape);
    let shape: Vec<usize> = axes.iter().map(|&a| t.shape[a]).collect();
    let strides: Vec<usize> = axes.iter().map(|&a| in_strides[a]).collect();
    let out = g.alloc(&shape);
    strided_copy(g, t, &out, &shape, &strides, &row_major_strides(&shape), 0, 0, false);
    out
}

pub(crate) fn slice<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axis: usize, start: usize, len: usize) -> CubeTensor {
    debug_assert!(start + len <= t.shape[axis], "slice {start}+{len} of axis {axis} of {:?}", t.shape);
    let in_strides = row_major_strides(&t.shape);
    let mut shape = t.shape.clone();
    shape[axis] = len;
    let out = g.alloc(&shape);
    strided_copy(g, t, &out, &shape, &in_strides, &row_major_strides(&shape), start * in_strides[axis], 0, false);
    out
}

pub(crate) fn expand<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor, axis: usize, n: usize) -> CubeTensor {
    debug_assert_eq!(t.shape[axis], 1, "expand: axis {axis} of {:?}", t.shape);
    let mut in_strides = row_major_strides(&t.shape);
    in_strides[axis] = 0;
    let mut shape = t.shape.clone();
    shape[axis] = n;
    let out = g.alloc(&shape);
    strided_copy(g, t, &out, &shape, &in_strides, &row_major_strides(&shape), 0, 0, false);
    out
}

pub(crate) fn concat<R: CubeRuntime>(g: &Cube<R>, a: &CubeTensor, b: &CubeTensor, axis: usize) -> CubeTensor {
    debug_assert!(
        a.shape.len() == b.shape.len()
            && a.shape.iter().zip(&b.shape).enumerate().all(|(i, (x, y))| i == axis || x == y),
        "concat {:?} and {:?} along {axis}",
        a.shape,
        b.shape
    );
    let mut shape = a.shape.clone();
    shape[axis] += b.shape[axis];
    let out = g.alloc(&shape);
    let os = row_major_strides(&shape);
    strided_copy(g, a, &out, &a.shape, &row_major_strides(&a.shape), &os, 0, 0, false);
    strided_copy(g, b, &out, &b.shape, &row_major_strides(&b.shape), &os, 0, a.shape[axis] * os[axis], false);
    out
}

/// A new buffer with the contents of `t` (the out-of-place start of the `&mut` ops).
pub(crate) fn copy<R: CubeRuntime>(g: &Cube<R>, t: &CubeTensor) -> CubeTensor {
    let out = g.alloc(&t.shape);
    strided_copy(g, t, &out, &[t.len()], &[1], &[1], 0, 0, false);
    out
}

/// A copy of `dst` with `src` added into `[start, start + len)` along `axis`.
pub(crate) fn slice_add<R: CubeRuntime>(
    g: &Cube<R>,
    dst: &CubeTensor,
    axis: usize,
    start: usize,
    src: &CubeTensor,
) -> CubeTensor {
    debug_assert!(
        start + src.shape[axis] <= dst.shape[axis],
        "slice_add {:?} at {start} into {:?}",
        src.shape,
        dst.shape
    );
    let out = copy(g, dst);
    let os = row_major_strides(&dst.shape);
    strided_copy(g, src, &out, &src.shape, &row_major_strides(&src.shape), &os, 0, start * os[axis], true);
    out
}

pub(crate) fn select_heads<R: CubeRuntime>(
    g: &Cube<R>,
    new: &CubeTensor,
    old: &CubeTensor,
    take_new: &[bool],
) -> CubeTensor {
    debug_assert_eq!(new.shape, old.shape, "select_heads: shapes");
    debug_assert_eq!(new.shape[1], take_new.len(), "select_heads: one flag per head");
    let out = g.alloc(&new.shape);
    let n = out.len();
    if n > 0 {
        let heads = new.shape[1];
        let inner = n / (new.shape[0] * heads);
        let take: Vec<u32> = take_new.iter().map(|&t| t as u32).collect();
        let (count, dim) = grid_1d(n);
        select_heads_kernel::launch(
            &g.client,
            count,
            dim,
            new.arg(),
            old.arg(),
            g.upload_u32(&take),
            out.arg(),
            inner,
            heads,
            n,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::backend::Backend;

    #[test]
    fn layout_ops_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(4));
        let shape = [3, 5, 7, 2];
        let (tg, tc) = pair(&g, &mut r, &shape);
        for axes in [[0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 3, 2], [0, 1, 2, 3]] {
            assert_close(&format!("permute {axes:?}"), &g, &g.permute(&tg, &axes), &c.permute(&tc, &axes), 0.0);
        }
        for (axis, start, len) in [(0, 1, 2), (1, 0, 5), (2, 3, 4), (3, 1, 1)] {
            assert_close("slice", &g, &g.slice(&tg, axis, start, len), &c.slice(&tc, axis, start, len), 0.0);
            let (sg, sc) = pair(&g, &mut r, &c.shape(&c.slice(&tc, axis, start, len)));
            let (mut dg, mut dc) = (tg.clone(), tc.clone());
            g.slice_add(&mut dg, axis, start, &sg);
            c.slice_add(&mut dc, axis, start, &sc);
            assert_close("slice_add", &g, &dg, &dc, 1e-6);
            assert_close("slice_add leaves clones alone", &g, &tg, &tc, 0.0);
        }
        for axis in 0..4 {
            let mut other = shape.to_vec();
            other[axis] = 3;
            let (og, oc) = pair(&g, &mut r, &other);
            assert_close(&format!("concat {axis}"), &g, &g.concat(&tg, &og, axis), &c.concat(&tc, &oc, axis), 0.0);
        }
        let (ug, uc) = pair(&g, &mut r, &[3, 1, 7, 1]);
        assert_close("expand 1", &g, &g.expand(&ug, 1, 4), &c.expand(&uc, 1, 4), 0.0);
        assert_close("expand 3", &g, &g.expand(&ug, 3, 5), &c.expand(&uc, 3, 5), 0.0);
        assert_close("reshape", &g, &g.reshape(&tg, &[15, 14]), &c.reshape(&tc, &[15, 14]), 0.0);
    }

    #[test]
    fn select_heads_matches_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(5));
        let (ng, nc) = pair(&g, &mut r, &[2, 3, 5, 7]);
        let (og, oc) = pair(&g, &mut r, &[2, 3, 5, 7]);
        let take = [true, false, true];
        assert_close("select_heads", &g, &g.select_heads(&ng, &og, &take), &c.select_heads(&nc, &oc, &take), 0.0);
    }
}
