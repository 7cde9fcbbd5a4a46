//! Batched matrix products for the CPU backend, straight on matrixmultiply's strided GEMM.
//!
//! Going past ndarray's `general_mat_mul` buys three things on the layers' hot path: transposed and
//! head-split operands are read through their strides instead of being copied, a shared weight is one
//! GEMM over all rows of every batch entry, and the output is written once (never zero-filled first).
//!
//! matrixmultiply is built single-threaded: products are split over rayon's pool here (by batch entry, or
//! one product by rows or columns), the pool every other op of the backend runs on, so GEMMs and row ops
//! never compete as two pools on the same cores. [`linear`] adds bias and activation to each block of
//! rows right after its GEMM, while the block is in cache.

use super::elementwise::{assume_written, map_loop, wide, widened_forward_slices, written};
use crate::activation::Activation;
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

/// `c ← op(a)·op(b)` (β = 0) for an `m × n` block whose operands start at `ap` and `bp`, with `a`'s and
/// `b`'s strides and inner size; `c` is row-major with row stride `ldc`.
///
/// # Safety
/// `ap`, `bp` and `c` must address `m × k`, `k × n` and `m × n` valid (for `c`, writable and not aliased)
/// elements under those strides.
unsafe fn gemm_block<E: Element>(
    m: usize,
    n: usize,
    a: &Operand<'_, E>,
    ap: *const E,
    b: &Operand<'_, E>,
    bp: *const E,
    c: *mut E,
    ldc: usize,
) {
    E::gemm(m, a.cols, n, E::one(), ap, a.rs, a.cs, bp, b.rs, b.cs, E::zero(), c, ldc as isize, 1)
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
        unsafe { gemm_block(rows, n, &a, a.ptr(i), &b, b.ptr(j), c.as_mut_ptr() as *mut E, n) }
    };
    if merged || a.batch == 1 {
        split_product(&a, &b, (0, 0), len / n, n, &mut out);
    } else if a.batch * m * n * k < PAR_MIN_WORK {
        out.chunks_mut(m * n).enumerate().for_each(|(i, c)| product(i, c, m));
    } else if m * k + k * n < (1 << 16) || a.batch >= 2 * rayon::current_num_threads() {
        // Many products (heads × batch) parallelise better across the batch than inside each GEMM.
        out.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| product(i, c, m));
    } else {
        // A few large products: each one split over the pool.
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            split_product(&a, &b, (i, if b_shared { 0 } else { i }), m, n, c);
        }
    }
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: every element was initialised by the GEMMs; MaybeUninit<E> has E's layout.
    let data = unsafe { Vec::from_raw_parts(out.as_mut_ptr() as *mut E, len, out.capacity()) };
    ArrayD::from_shape_vec(IxDyn(&out_shape), data).expect("product shape")
}

/// Work (multiply-adds) from which one product is split over rayon's threads.
const SPLIT_MIN_WORK: usize = 1 << 20;
/// Parts are whole multiples of this many rows or columns (a multiple of the GEMM kernels' tile sides).
const SPLIT_ALIGN: usize = 32;

/// A raw output pointer shared by the tasks of one split product (each writes its own rows or columns).
#[derive(Clone, Copy)]
struct OutPtr<E>(*mut E);
// SAFETY: the tasks of `split_product` write disjoint parts of the output.
unsafe impl<E> Send for OutPtr<E> {}
unsafe impl<E> Sync for OutPtr<E> {}

impl<E> OutPtr<E> {
    /// The element `offset` elements on (a method, so that closures capture the `Send` wrapper, not its
    /// raw pointer field).
    ///
    /// # Safety
    /// `offset` must stay inside the output.
    unsafe fn at(self, offset: usize) -> *mut E {
        self.0.add(offset)
    }
}

/// One product `a (rows × k) · b (k × n)` of batch entries `i` of `a` and `j` of `b`, split over rayon's pool along the rows of `a`
/// or the columns of `b`, whichever is longer (the operand that every part packs again is then the shorter
/// one). matrixmultiply runs each part on the calling thread, so GEMMs and row ops share one pool. Each
/// output element is the same k-ordered sum whatever the split, so results do not depend on the thread
/// count.
fn split_product<E: Element>(
    a: &Operand<'_, E>,
    b: &Operand<'_, E>,
    (i, j): (usize, usize),
    rows: usize,
    n: usize,
    out: &mut [MaybeUninit<E>],
) {
    let k = a.cols;
    let threads = rayon::current_num_threads();
    let (along_rows, len) = if rows >= n { (true, rows) } else { (false, n) };
    let parts = if threads > 1 && rows * k * n >= SPLIT_MIN_WORK { threads.min(len.div_ceil(SPLIT_ALIGN)) } else { 1 };
    let chunk = len.div_ceil(parts).next_multiple_of(SPLIT_ALIGN).min(len);
    let c = OutPtr(out.as_mut_ptr() as *mut E);
    let part = |p: usize| {
        let (lo, hi) = (p * chunk, ((p + 1) * chunk).min(len));
        if lo >= hi {
            return;
        }
        // SAFETY: rows (or columns) lo..hi of the operands and of the rows × n output, which the other
        // parts do not touch; the operands describe valid strided matrices (checked by `matmul`).
        unsafe {
            if along_rows {
                let ap = a.ptr(i).offset(lo as isize * a.rs);
                gemm_block(hi - lo, n, a, ap, b, b.ptr(j), c.at(lo * n), n)
            } else {
                let bp = b.ptr(j).offset(lo as isize * b.cs);
                gemm_block(rows, hi - lo, a, a.ptr(i), b, bp, c.at(lo), n)
            }
        }
    };
    if parts == 1 {
        part(0);
    } else {
        (0..parts).into_par_iter().for_each(part);
    }
}

/// Output elements per row block of [`linear`] (512 KiB of f32): small enough that a block is still in L2
/// when its bias and activation are applied, large enough that the weight, packed again for every block,
/// stays a small part of the packing (2¹⁶ and 2¹⁸ measured no better on the peer's training step, 2²⁰
/// worse).
const LINEAR_BLOCK: usize = 1 << 17;

/// `y = x · wᵀ + bias` and, with `act`, `act(y)`, for `x [.., k]`, `w [n, k]`, `bias [n]`: the rows in
/// blocks of about [`LINEAR_BLOCK`] outputs on rayon's pool, each block's bias and activation applied
/// right after its GEMM while it is in cache (one pass over memory instead of three). Every element is
/// computed as `matmul`, `add_bias` and `activation` compute it, so the results are the same bits.
pub(super) fn linear<E: Element>(
    x: ArrayViewD<'_, E>,
    w: ArrayViewD<'_, E>,
    bias: Option<&[E]>,
    act: Option<Activation>,
) -> (ArrayD<E>, Option<ArrayD<E>>) {
    let a = Operand::new(x, false);
    let b = Operand::new(w, true);
    let (k, n) = (a.cols, b.cols);
    debug_assert_eq!(b.rows, k, "linear: inner sizes differ");
    debug_assert!(bias.is_none_or(|bs| bs.len() == n), "linear: bias of {n}");
    let mut shape = a.data.shape().to_vec();
    *shape.last_mut().expect("rank ≥ 1") = n;
    let rows = a.batch * a.rows;
    let merged = a.batch <= 1 || a.batch_stride == a.rows as isize * a.rs;
    if !merged || k == 0 || rows * n == 0 {
        // Not one row-major matrix (never for the layers' inputs): compose the plain ops.
        let mut y = matmul(a.data.view(), b.data.view(), false, true);
        let ys = y.as_slice_mut().expect("row-major product");
        add_bias(ys, n.max(1), bias);
        let z = act.map(|f| written(ys.len(), |zs| activate(zs, ys, f)));
        let z = z.map(|z| ArrayD::from_shape_vec(y.raw_dim(), z).expect("activation shape"));
        return (y, z);
    }
    // About LINEAR_BLOCK outputs per block, the block count a multiple of the threads (every thread gets
    // as many rows); each element's value does not depend on the blocking.
    let threads = rayon::current_num_threads().max(1);
    let blocks = rows.div_ceil((LINEAR_BLOCK / n).max(1)).div_ceil(threads) * threads;
    let block_rows = rows.div_ceil(blocks).max(1);
    // Neither output is zero-filled: the GEMM (β = 0) writes every element of `y`, the epilogue of `z`.
    let uninit = |len: usize| {
        let mut v: Vec<MaybeUninit<E>> = Vec::with_capacity(len);
        // SAFETY: MaybeUninit needs no initialisation.
        unsafe { v.set_len(len) };
        v
    };
    let mut y = uninit(rows * n);
    let mut z = if act.is_some() { uninit(rows * n) } else { Vec::new() };
    let block = |(bi, (yb, zb)): (usize, (&mut [MaybeUninit<E>], &mut [MaybeUninit<E>]))| {
        let (r0, nr) = (bi * block_rows, yb.len() / n);
        // SAFETY: rows r0..r0+nr of the row-major `x` (merged batches, checked above) and the n × k `w`;
        // `yb` holds nr × n elements.
        let yb = unsafe {
            let ap = a.ptr(0).offset(r0 as isize * a.rs);
            gemm_block(nr, n, &a, ap, &b, b.ptr(0), yb.as_mut_ptr() as *mut E, n);
            // SAFETY: the GEMM above wrote all nr × n elements of `yb`; MaybeUninit<E> has E's layout.
            &mut *(yb as *mut [MaybeUninit<E>] as *mut [E])
        };
        wide(|| epilogue(yb, zb, n, bias, act));
    };
    let zs: Vec<&mut [MaybeUninit<E>]> = if act.is_some() {
        z.chunks_mut(block_rows * n).collect()
    } else {
        (0..rows.div_ceil(block_rows)).map(|_| &mut [][..]).collect()
    };
    let tasks = y.chunks_mut(block_rows * n).zip(zs).enumerate();
    if rows * k * n >= SPLIT_MIN_WORK && rayon::current_num_threads() > 1 {
        tasks.collect::<Vec<_>>().into_par_iter().for_each(block);
    } else {
        tasks.for_each(block);
    }
    let arr = |v: Vec<E>| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("linear output shape");
    // Every block wrote its rows of `y` (GEMM) and, with an activation, of `z` (epilogue).
    (arr(assume_written(y)), act.map(|_| arr(assume_written(z))))
}

/// [`linear`]'s work on one block after its GEMM: `y += bias` per row, `z = act(y)`. Always inlined, so
/// that it vectorises at the width [`wide`] gives.
#[inline(always)]
fn epilogue<E: Element>(y: &mut [E], z: &mut [MaybeUninit<E>], n: usize, bias: Option<&[E]>, act: Option<Activation>) {
    add_bias(y, n, bias);
    if let Some(f) = act {
        activate(z, y, f);
    }
}

/// `y += bias` on each row of `n`.
#[inline(always)]
fn add_bias<E: Element>(y: &mut [E], n: usize, bias: Option<&[E]>) {
    if let Some(bs) = bias {
        y.chunks_exact_mut(n).for_each(|r| r.iter_mut().zip(bs).for_each(|(v, &c)| *v += c));
    }
}

/// `z = f(y)`, every element of `z` written.
#[inline(always)]
fn activate<E: Element>(z: &mut [MaybeUninit<E>], y: &[E], f: Activation) {
    if !widened_forward_slices(f, z, y) {
        map_loop(z, y, &|v: E| f.forward(v));
    }
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

    /// `linear` gives the bits of `matmul` + bias + activation, for row counts that fill no block, with and
    /// without bias and activation; `linear` and split products give the same bits on 1, 2 and 3 threads.
    #[test]
    fn linear_and_split_products_are_exact_and_thread_independent() {
        let x = tensor(&[3, 700, 40], 21).mapv(|v| v as f32);
        let w = tensor(&[200, 40], 22).mapv(|v| v as f32 / 7.0);
        let bias: Vec<f32> = (0..200).map(|i| i as f32 / 100.0 - 1.0).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (y, z) = linear(x.view(), w.view(), Some(&bias), Some(Activation::Gelu));
                let (y0, _) = linear(x.view(), w.view(), None, None);
                let big = matmul(x.view(), w.view(), false, true);
                let wide_b = matmul(w.view(), x.index_axis(ndarray::Axis(0), 0), false, true);
                let bits = |t: &ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
                (bits(&y), bits(&z.unwrap()), bits(&y0), bits(&big), bits(&wide_b.into_dyn()))
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // The composed ops, element by element.
        let plain = matmul(x.view(), w.view(), false, true);
        let (y, z) = linear(x.view(), w.view(), Some(&bias), Some(Activation::Gelu));
        let (y0, _) = linear(x.view(), w.view(), None, None);
        assert_eq!(y0, plain);
        for (&yv, &zv) in y.iter().zip(&z.unwrap()) {
            assert_eq!(zv.to_bits(), yv.gelu().to_bits());
        }
        // An input whose batches do not merge into one matrix takes the composed path: the same bits.
        let xt = x.view().permuted_axes(IxDyn(&[1, 0, 2]));
        let (yt, zt) = linear(xt.clone(), w.view(), Some(&bias), Some(Activation::Gelu));
        let plain_t = matmul(xt, w.view(), false, true);
        for (i, ((&p, &yv), &zv)) in plain_t.iter().zip(&yt).zip(&zt.unwrap()).enumerate() {
            assert_eq!(yv.to_bits(), (p + bias[i % 200]).to_bits());
            assert_eq!(zv.to_bits(), yv.gelu().to_bits());
        }
        for (r, (pr, yr)) in plain.rows().into_iter().zip(y.rows()).enumerate() {
            for (c, (&p, &yv)) in pr.iter().zip(yr.iter()).enumerate() {
                assert_eq!(yv.to_bits(), (p + bias[c]).to_bits(), "row {r} col {c}");
            }
        }
    }
}
