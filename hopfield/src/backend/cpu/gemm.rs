//! Batched matrix products for the CPU backend, straight on matrixmultiply's strided GEMM.
//!
//! Going past ndarray's `general_mat_mul` buys three things on the layers' hot path: transposed and
//! head-split operands are read through their strides instead of being copied, a shared weight is one
//! GEMM over all rows of every batch entry, and the output is written once (never zero-filled first).

use crate::element::Element;
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Work (multiply-adds) below which a batch of products runs on the calling thread.
const PAR_MIN_WORK: usize = 1 << 15;

/// One operand `[.., r, c]`: its data, the matrix size and strides after the optional transpose, and the
/// stride between consecutive matrices of the (flattened) batch.
struct Operand<'a, E> {
    data: CowArray<'a, E, IxDyn>,
    batch: usize,
    batch_stride: isize,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl<'a, E: Element> Operand<'a, E> {
    fn new(t: ArrayViewD<'a, E>, transpose: bool) -> Self {
        let nd = t.ndim();
        let data = match batch_stride(t.shape(), t.strides()) {
            Some(_) if t.strides().iter().all(|&s| s >= 0) => CowArray::from(t),
            _ => CowArray::from(t.as_standard_layout().into_owned()),
        };
        let (sh, st) = (data.shape(), data.strides());
        let batch_stride = batch_stride(sh, st).expect("standard layout flattens");
        let (r, c, rs, cs) = (sh[nd - 2], sh[nd - 1], st[nd - 2], st[nd - 1]);
        let batch = sh[..nd - 2].iter().product();
        let (rows, cols, rs, cs) = if transpose { (c, r, cs, rs) } else { (r, c, rs, cs) };
        Operand { data, batch, batch_stride, rows, cols, rs, cs }
    }

    /// Base pointer of batch entry `i`.
    fn ptr(&self, i: usize) -> *const E {
        // SAFETY: `i < batch` (callers), so the offset stays inside the array's allocation.
        unsafe { self.data.as_ptr().offset(i as isize * self.batch_stride) }
    }
}

/// The one stride that steps through the flattened batch axes `shape[..nd-2]`, if they flatten (axes of
/// size 1 do not count); 0 when there is at most one batch entry.
fn batch_stride(shape: &[usize], strides: &[isize]) -> Option<isize> {
    let mut axes = (0..shape.len().saturating_sub(2)).filter(|&i| shape[i] > 1).rev();
    let Some(inner) = axes.next() else { return Some(0) };
    let (stride, mut span) = (strides[inner], strides[inner] * shape[inner] as isize);
    for i in axes {
        if strides[i] != span {
            return None;
        }
        span *= shape[i] as isize;
    }
    Some(stride)
}

/// `op(a) · op(b)` for `a [.., m, k]` and `b [.., k, n]` with equal batch sizes, or `b` of batch size 1
/// (shared by every entry of `a`); `op` transposes the last two axes when asked.
pub(super) fn matmul<E: Element>(a: ArrayViewD<'_, E>, b: ArrayViewD<'_, E>, ta: bool, tb: bool) -> ArrayD<E> {
    let a = Operand::new(a, ta);
    let b = Operand::new(b, tb);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    debug_assert_eq!(k, b.rows, "matmul: inner sizes differ");
    debug_assert!(b.batch == a.batch || b.batch == 1, "matmul: batch {} vs {}", a.batch, b.batch);
    let mut out_shape = a.data.shape()[..a.data.ndim() - 2].to_vec();
    out_shape.extend([m, n]);
    let len = a.batch * m * n;
    if k == 0 || len == 0 {
        return ArrayD::zeros(IxDyn(&out_shape));
    }
    let mut out: Vec<MaybeUninit<E>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation; every element is written by a GEMM below (β = 0).
    unsafe { out.set_len(len) };
    let b_shared = b.batch == 1;
    // A shared weight with row-contiguous batches of `a`: one GEMM with m·batch rows.
    let merged = b_shared && a.batch > 1 && a.batch_stride == m as isize * a.rs;
    let product = |i: usize, c: &mut [MaybeUninit<E>], rows: usize| {
        let j = if b_shared { 0 } else { i };
        // SAFETY: the operands describe valid strided matrices (shapes checked above); `c` holds
        // rows × n elements, written in row-major order and not aliasing the inputs.
        unsafe {
            E::gemm(
                rows,
                k,
                n,
                E::one(),
                a.ptr(i),
                a.rs,
                a.cs,
                b.ptr(j),
                b.rs,
                b.cs,
                E::zero(),
                c.as_mut_ptr() as *mut E,
                n as isize,
                1,
            )
        }
    };
    if merged || a.batch == 1 {
        product(0, &mut out, len / n);
    } else if m * k + k * n < (1 << 16) && a.batch * m * n * k >= PAR_MIN_WORK {
        // Many small products (heads × batch) parallelise better across the batch than inside each GEMM.
        out.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| product(i, c, m));
    } else {
        out.chunks_mut(m * n).enumerate().for_each(|(i, c)| product(i, c, m));
    }
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: every element was initialised by the GEMMs; MaybeUninit<E> has E's layout.
    let data = unsafe { Vec::from_raw_parts(out.as_mut_ptr() as *mut E, len, out.capacity()) };
    ArrayD::from_shape_vec(IxDyn(&out_shape), data).expect("product shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], seed: usize) -> ArrayD<f64> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(
            IxDyn(shape),
            (0..n).map(|i| (((i + seed) * 7919 % 211) as f64 - 105.0) / 37.0).collect(),
        )
        .unwrap()
    }

    /// The product by definition, on standard-layout copies.
    fn naive(a: &ArrayD<f64>, b: &ArrayD<f64>, ta: bool, tb: bool) -> ArrayD<f64> {
        let op = |t: &ArrayD<f64>, tr: bool| {
            let mut v = t.to_owned();
            if tr {
                v.swap_axes(t.ndim() - 2, t.ndim() - 1);
            }
            v.as_standard_layout().into_owned()
        };
        let (a, b) = (op(a, ta), op(b, tb));
        let (m, k, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1], b.shape()[b.ndim() - 1]);
        let batch = a.len() / (m * k).max(1);
        let b_batch = b.len() / (k * n).max(1);
        let (ad, bd) = (a.as_slice().unwrap(), b.as_slice().unwrap());
        let mut out = vec![0.0; batch * m * n];
        for i in 0..batch {
            let j = if b_batch == 1 { 0 } else { i };
            for r in 0..m {
                for c in 0..n {
                    out[(i * m + r) * n + c] = (0..k).map(|p| ad[(i * m + r) * k + p] * bd[(j * k + p) * n + c]).sum();
                }
            }
        }
        let mut shape = a.shape()[..a.ndim() - 2].to_vec();
        shape.extend([m, n]);
        ArrayD::from_shape_vec(IxDyn(&shape), out).unwrap()
    }

    fn check(a: &ArrayD<f64>, b: &ArrayD<f64>, ta: bool, tb: bool) {
        let got = matmul(a.view(), b.view(), ta, tb);
        let want = naive(a, b, ta, tb);
        assert_eq!(got.shape(), want.shape());
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "a {:?} b {:?} ta {ta} tb {tb}: {g} vs {w}",
                a.shape(),
                b.shape()
            );
        }
    }

    #[test]
    fn products_equal_the_definition_for_every_layout() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, k, n) = (5, 7, 3);
            let a_sh = if ta { vec![k, m] } else { vec![m, k] };
            let b_sh = if tb { vec![n, k] } else { vec![k, n] };
            // 2-D, batched, batched with a shared 2-D right operand, size-1 batch axes.
            check(&tensor(&a_sh, 1), &tensor(&b_sh, 2), ta, tb);
            let batched = |pre: &[usize], sh: &[usize]| [pre, sh].concat();
            check(&tensor(&batched(&[2, 3], &a_sh), 3), &tensor(&batched(&[2, 3], &b_sh), 4), ta, tb);
            check(&tensor(&batched(&[4], &a_sh), 5), &tensor(&b_sh, 6), ta, tb);
            check(&tensor(&batched(&[1, 3, 1], &a_sh), 7), &tensor(&batched(&[1, 3, 1], &b_sh), 8), ta, tb);
        }
    }

    #[test]
    fn strided_operands_are_read_in_place_or_copied_correctly() {
        // Head split: [B, N, H, d] viewed as [B, H, N, d] (the batch axes do not flatten to one stride).
        let q = tensor(&[2, 6, 3, 4], 9).permuted_axes(IxDyn(&[0, 2, 1, 3]));
        let k = tensor(&[2, 5, 3, 4], 10).permuted_axes(IxDyn(&[0, 2, 1, 3]));
        check(&q, &k, false, true);
        // A transposed view as the left operand, flattening batch axes with a gap.
        let a = tensor(&[3, 4, 6], 11).permuted_axes(IxDyn(&[0, 2, 1]));
        check(&a, &tensor(&[3, 4, 2], 12), false, false);
        check(&a, &tensor(&[4, 2], 13), false, false);
        // Empty inner size gives zeros.
        let z = matmul(tensor(&[2, 3, 0], 0).view(), tensor(&[2, 0, 4], 0).view(), false, false);
        assert_eq!(z.shape(), [2, 3, 4]);
        assert!(z.iter().all(|&v| v == 0.0));
    }
}
