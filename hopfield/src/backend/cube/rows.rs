//! Row gather and its adjoint, the row scatter-add (embedding lookup and its backward).
//!
//! The scatter is made race-free and deterministic on the host side: the ids are grouped by destination
//! row (a CSR list: unique rows, then the source rows of each), so one unit owns each destination element
//! and adds its sources in their original order, as `Cpu` does.

use super::{grid_1d, Cube, CubeRuntime, CubeTensor};
use cubecl::prelude::*;

/// `out[i, c] = table[ids[i], c]`.
#[cube(launch)]
fn gather_rows_kernel(table: &[f32], ids: &[u32], out: &mut [f32], cols: usize, n: usize) {
    let i = ABSOLUTE_POS;
    if i < n {
        let r = i / cols;
        out[i] = table[ids[r] as usize * cols + i % cols];
    }
}

/// `out[targets[u], c] += Σ_{k ∈ starts[u]..starts[u+1]} src[sources[k], c]`, one unit per (u, c).
#[cube(launch)]
fn scatter_add_rows_kernel(
    src: &[f32],
    targets: &[u32],
    starts: &[u32],
    sources: &[u32],
    out: &mut [f32],
    cols: usize,
    n: usize,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let u = i / cols;
        let c = i % cols;
        let mut acc = 0.0f32;
        for k in starts[u] as usize..starts[u + 1] as usize {
            acc += src[sources[k] as usize * cols + c];
        }
        let o = targets[u] as usize * cols + c;
        out[o] += acc;
    }
}

fn ids_u32(ids: &[usize], rows: usize) -> Vec<u32> {
    ids.iter()
        .map(|&id| {
            debug_assert!(id < rows, "row id {id} of a table with {rows} rows");
            u32::try_from(id).expect("row ids fit u32")
        })
        .collect()
}

pub(crate) fn gather_rows<R: CubeRuntime>(g: &Cube<R>, table: &CubeTensor, ids: &[usize]) -> CubeTensor {
    debug_assert_eq!(table.shape.len(), 2, "gather_rows: table {:?}", table.shape);
    let cols = table.shape[1];
    let out = g.alloc(&[ids.len(), cols]);
    let n = out.len();
    if n > 0 {
        let (count, dim) = grid_1d(n);
        gather_rows_kernel::launch(
            &g.client,
            count,
            dim,
            table.arg(),
            g.upload_u32(&ids_u32(ids, table.shape[0])),
            out.arg(),
            cols,
            n,
        );
    }
    out
}

/// A copy of `dst` with `src[i]` added to row `ids[i]`.
pub(crate) fn scatter_add_rows<R: CubeRuntime>(
    g: &Cube<R>,
    dst: &CubeTensor,
    ids: &[usize],
    src: &CubeTensor,
) -> CubeTensor {
    let cols = dst.shape[1];
    debug_assert_eq!(src.shape, [ids.len(), cols], "scatter_add_rows: src {:?} for {} ids", src.shape, ids.len());
    let out = super::layout::copy(g, dst);
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]); // stable: sources of one row keep their order
    let (mut targets, mut starts) = (Vec::new(), Vec::new());
    for (k, &i) in order.iter().enumerate() {
        if targets.last() != Some(&ids[i]) {
            targets.push(ids[i]);
            starts.push(k);
        }
    }
    starts.push(order.len());
    let n = targets.len() * cols;
    if n > 0 {
        let (count, dim) = grid_1d(n);
        let starts: Vec<u32> = starts.iter().map(|&s| s as u32).collect();
        scatter_add_rows_kernel::launch(
            &g.client,
            count,
            dim,
            src.arg(),
            g.upload_u32(&ids_u32(&targets, dst.shape[0])),
            g.upload_u32(&starts),
            g.upload_u32(&ids_u32(&order, ids.len().max(1))),
            out.arg(),
            cols,
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
    fn gather_and_scatter_add_rows_match_cpu() {
        let (g, c, mut r) = (gpu(), cpu(), rng(6));
        let (tg, tc) = pair(&g, &mut r, &[37, 13]);
        // Repeated ids (the scatter must accumulate them), unused rows, first and last row.
        let ids: Vec<usize> = (0..300).map(|i| (i * 7 + i / 5) % 37).filter(|&i| i != 5).collect();
        assert_close("gather_rows", &g, &g.gather_rows(&tg, &ids), &c.gather_rows(&tc, &ids), 0.0);
        let (sg, sc) = pair(&g, &mut r, &[ids.len(), 13]);
        let (mut dg, mut dc) = (tg.clone(), tc.clone());
        g.scatter_add_rows(&mut dg, &ids, &sg);
        c.scatter_add_rows(&mut dc, &ids, &sc);
        assert_close("scatter_add_rows", &g, &dg, &dc, 1e-5);
        assert_close("scatter_add_rows leaves clones alone", &g, &tg, &tc, 0.0);
        let empty: [usize; 0] = [];
        assert_close("gather none", &g, &g.gather_rows(&tg, &empty), &c.gather_rows(&tc, &empty), 0.0);
    }
}
