//! The CPU backend: ndarray tensors, matrix products through matrixmultiply, all parallel work on rayon's pool.
//! This is the reference every other backend is tested against; it favours plain loops over cleverness.
//!
//! This file holds the tensor type and the ops; its helpers are leaves that know nothing of [`Cpu`]:
//! `gemm` (batched strided matrix products), `rows` (vectorisable row reductions), `blocked` (the
//! streaming association) and `memory` (the opt-in allocator tuning, [`tune_allocator`]).

mod blocked;
mod elementwise;
mod gemm;
mod info;
mod memory;
mod rows;
pub(crate) mod sgemm;
pub(crate) mod sparse;

pub use info::CpuInfo;
pub use memory::{tune_allocator, MALLOC_TUNING_ENV};
pub use sgemm::{cpu_vector_bits, sgemm_kernel, sgemm_parallel, SgemmKernel, SGEMM_KERNEL_ENV};

use super::{AdamStep, Backend, ScoreBias};
use crate::activation::Activation;
use crate::element::Element;
use elementwise::{arr, flat, map1, wide, zip2};
use ndarray::{ArcArray, ArrayD, Axis, IxDyn, Zip};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use std::marker::PhantomData;

/// The CPU tensor: a reference-counted n-dimensional array, so clones (caches, reshapes) are free and
/// writes copy only when shared.
pub type CpuTensor<E> = ArcArray<E, IxDyn>;

/// Row loops over fewer elements than this stay on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// The ndarray backend, generic over `f32` and `f64`.
///
/// Creating one has no side effect. Long-running programs should also call [`tune_allocator`] (or create
/// the backend with [`Cpu::with_tuned_allocator`]): without it, glibc returns every freed tensor to the
/// kernel and a layer's forward + backward spends about a quarter of its time in page faults.
#[derive(Clone, Copy, Debug)]
pub struct Cpu<E = f32>(PhantomData<E>);

impl<E: Element> Cpu<E> {
    /// The (only) CPU device.
    pub fn new() -> Self {
        Cpu(PhantomData)
    }

    /// The CPU device, after [`tune_allocator`]: for programs (binaries, benches), never for libraries,
    /// since the tuning changes the allocator of the whole process.
    pub fn with_tuned_allocator() -> Self {
        tune_allocator();
        Self::new()
    }
}

impl<E: Element> Default for Cpu<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// A standard-layout view (borrowed when already contiguous, copied otherwise).
fn std_layout<E: Element>(t: &CpuTensor<E>) -> ndarray::CowArray<'_, E, IxDyn> {
    t.as_standard_layout()
}

/// Rows of length `n` handled by one parallel task: enough work to amortise scheduling, and a fixed
/// count so that reductions do not depend on the number of threads.
fn rows_per_task(n: usize) -> usize {
    (PAR_MIN / n.max(1)).max(1)
}

/// `z = β_h · scores + padding + association` row by row (`[B, H, L, S]`, rows in parallel), each row then
/// normalised in place by `f(h, row, scratch)` (`scratch`: a buffer reused by the rows of one task).
fn biased_rows<E: Element>(
    scores: &CpuTensor<E>,
    beta: &[E],
    bias: &ScoreBias<'_, CpuTensor<E>>,
    f: impl Fn(usize, &mut [E], &mut Vec<E>) + Sync + Send,
) -> CpuTensor<E> {
    let sh = scores.shape();
    let (h_n, l_n, s_n) = (sh[1], sh[2], sh[3]);
    let src = std_layout(scores);
    let mut out = vec![E::zero(); src.len()];
    let pad = bias.padding.map(|p| std_layout(p));
    let assoc = bias.association.map(|a| (std_layout(a), a.shape()[0] == 1, a.shape()[1] == 1));
    let per = rows_per_task(s_n);
    out.par_chunks_mut(s_n * per).zip(src.as_slice().unwrap().par_chunks(s_n * per)).enumerate().for_each(
        |(task, (block, src_block))| {
            wide(|| {
                let mut scratch = Vec::new();
                for (r, (row, src_row)) in block.chunks_exact_mut(s_n).zip(src_block.chunks_exact(s_n)).enumerate() {
                    let row_i = task * per + r;
                    let (l, h, b) = (row_i % l_n, (row_i / l_n) % h_n, row_i / (l_n * h_n));
                    let beta_h = beta[h];
                    row.iter_mut().zip(src_row).for_each(|(v, &s)| *v = s * beta_h);
                    if let Some(p) = &pad {
                        row.iter_mut().zip(&p.as_slice().unwrap()[b * s_n..(b + 1) * s_n]).for_each(|(v, &m)| *v += m);
                    }
                    if let Some((a, one_b, one_h)) = &assoc {
                        let (ab, ah) = (if *one_b { 0 } else { b }, if *one_h { 0 } else { h });
                        let a_h = if *one_h { 1 } else { h_n };
                        let start = ((ab * a_h + ah) * l_n + l) * s_n;
                        row.iter_mut().zip(&a.as_slice().unwrap()[start..start + s_n]).for_each(|(v, &m)| *v += m);
                    }
                    f(h, row, &mut scratch);
                }
            })
        },
    );
    arr(sh, out)
}

impl<E: Element> Backend for Cpu<E> {
    type Elem = E;
    type Tensor = CpuTensor<E>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn from_vec(&self, data: Vec<E>, shape: &[usize]) -> CpuTensor<E> {
        ArrayD::from_shape_vec(IxDyn(shape), data).expect("from_vec: data length equals the shape's size").into_shared()
    }
    fn to_vec(&self, t: &CpuTensor<E>) -> Vec<E> {
        t.iter().copied().collect()
    }
    fn shape(&self, t: &CpuTensor<E>) -> Vec<usize> {
        t.shape().to_vec()
    }
    fn full(&self, shape: &[usize], value: E) -> CpuTensor<E> {
        ArrayD::from_elem(IxDyn(shape), value).into_shared()
    }

    fn reshape(&self, t: &CpuTensor<E>, shape: &[usize]) -> CpuTensor<E> {
        if t.is_standard_layout() {
            t.clone().into_shape_with_order(IxDyn(shape)).expect("reshape: sizes agree")
        } else {
            t.as_standard_layout()
                .into_owned()
                .into_shared()
                .into_shape_with_order(IxDyn(shape))
                .expect("reshape: sizes agree")
        }
    }
    fn permute(&self, t: &CpuTensor<E>, axes: &[usize]) -> CpuTensor<E> {
        let nd = axes.len();
        if nd < 2 || axes[nd - 1] != nd - 1 || t.is_empty() {
            return t.view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned().into_shared();
        }
        // The last axis stays in place (head split/merge, batch/sequence swap): copy whole contiguous
        // runs of it instead of single elements.
        let src = std_layout(t);
        let view = src.view().permuted_axes(IxDyn(axes));
        let (shape, strides) = (view.shape().to_vec(), view.strides().to_vec());
        let inner = shape[nd - 1];
        let data = src.as_slice().expect("standard layout");
        let mut out = vec![E::zero(); data.len()];
        let per = rows_per_task(inner);
        out.par_chunks_mut(per * inner).enumerate().for_each(|(task, block)| {
            for (r, dst) in block.chunks_exact_mut(inner).enumerate() {
                // Unravel the output row index over the outer axes; sum their source strides.
                let (mut row, mut offset) = (task * per + r, 0isize);
                for ax in (0..nd - 1).rev() {
                    offset += (row % shape[ax]) as isize * strides[ax];
                    row /= shape[ax];
                }
                dst.copy_from_slice(&data[offset as usize..offset as usize + inner]);
            }
        });
        arr(&shape, out)
    }
    fn concat(&self, a: &CpuTensor<E>, b: &CpuTensor<E>, axis: usize) -> CpuTensor<E> {
        ndarray::concatenate(Axis(axis), &[a.view(), b.view()]).expect("concat: other axes agree").into_shared()
    }
    fn slice(&self, t: &CpuTensor<E>, axis: usize, start: usize, len: usize) -> CpuTensor<E> {
        t.slice_axis(Axis(axis), ndarray::Slice::from(start..start + len)).to_owned().into_shared()
    }
    fn slice_add(&self, dst: &mut CpuTensor<E>, axis: usize, start: usize, src: &CpuTensor<E>) {
        let len = src.shape()[axis];
        let mut view = dst.slice_axis_mut(Axis(axis), ndarray::Slice::from(start..start + len));
        view += src;
    }
    fn expand(&self, t: &CpuTensor<E>, axis: usize, n: usize) -> CpuTensor<E> {
        let mut shape = t.shape().to_vec();
        debug_assert_eq!(shape[axis], 1);
        shape[axis] = n;
        t.broadcast(IxDyn(&shape)).expect("expand: axis has size 1").to_owned().into_shared()
    }
    fn sum_axis(&self, t: &CpuTensor<E>, axis: usize) -> CpuTensor<E> {
        t.sum_axis(Axis(axis)).insert_axis(Axis(axis)).into_shared()
    }

    fn max_axis(&self, t: &CpuTensor<E>, axis: usize) -> CpuTensor<E> {
        debug_assert!(t.shape()[axis] > 0, "max_axis over an empty axis");
        t.fold_axis(Axis(axis), E::neg_infinity(), |&m, &v| if v > m || v.is_nan() { v } else { m })
            .insert_axis(Axis(axis))
            .into_shared()
    }

    fn gather_rows(&self, table: &CpuTensor<E>, ids: &[usize]) -> CpuTensor<E> {
        let n = table.shape()[1];
        let t = std_layout(table);
        let data = t.as_slice().expect("standard layout");
        let mut out = Vec::with_capacity(ids.len() * n);
        for &id in ids {
            out.extend_from_slice(&data[id * n..(id + 1) * n]);
        }
        arr(&[ids.len(), n], out)
    }
    fn scatter_add_rows(&self, dst: &mut CpuTensor<E>, ids: &[usize], src: &CpuTensor<E>) {
        let n = dst.shape()[1];
        debug_assert_eq!(src.shape(), [ids.len(), n], "scatter_add_rows: src {:?} for {} ids", src.shape(), ids.len());
        let src = std_layout(src);
        for (&id, row) in ids.iter().zip(src.as_slice().expect("standard layout").chunks(n.max(1))) {
            for (d, &s) in dst.index_axis_mut(Axis(0), id).iter_mut().zip(row) {
                *d += s;
            }
        }
    }

    fn add(&self, a: &CpuTensor<E>, b: &CpuTensor<E>) -> CpuTensor<E> {
        debug_assert_eq!(a.shape(), b.shape());
        zip2(a, b, |x, y| x + y)
    }
    fn sub(&self, a: &CpuTensor<E>, b: &CpuTensor<E>) -> CpuTensor<E> {
        debug_assert_eq!(a.shape(), b.shape());
        zip2(a, b, |x, y| x - y)
    }
    fn mul(&self, a: &CpuTensor<E>, b: &CpuTensor<E>) -> CpuTensor<E> {
        debug_assert_eq!(a.shape(), b.shape());
        zip2(a, b, |x, y| x * y)
    }
    fn scale(&self, a: &CpuTensor<E>, s: E) -> CpuTensor<E> {
        map1(a, |x| x * s)
    }
    fn axpy(&self, y: &mut CpuTensor<E>, alpha: E, x: &CpuTensor<E>) {
        debug_assert_eq!(y.shape(), x.shape());
        if y.len() >= PAR_MIN {
            Zip::from(y).and(x).par_for_each(|y, &x| *y += alpha * x);
        } else {
            y.scaled_add(alpha, x);
        }
    }
    fn activation(&self, x: &CpuTensor<E>, act: Activation) -> CpuTensor<E> {
        // GELU and QuickGELU (the encoders' MLPs) get loops of their own, with no per-element dispatch on
        // `act`, compiled for the CPU's vector width; the values are `Element::gelu`'s / `quick_gelu`'s.
        elementwise::widened_forward(act, x).unwrap_or_else(|| map1(x, |v| act.forward(v)))
    }
    fn activation_backward(&self, x: &CpuTensor<E>, dy: &CpuTensor<E>, act: Activation) -> CpuTensor<E> {
        elementwise::widened_backward(act, dy, x).unwrap_or_else(|| zip2(dy, x, |d, v| d * act.derivative(v)))
    }

    fn unary(&self, x: &CpuTensor<E>, op: super::Unary) -> CpuTensor<E> {
        map1(x, |v| op.apply(v))
    }

    fn sum(&self, t: &CpuTensor<E>) -> E {
        t.iter().copied().sum()
    }
    fn sum_squares(&self, t: &CpuTensor<E>) -> E {
        t.iter().map(|&v| v * v).sum()
    }
    fn all_finite(&self, t: &CpuTensor<E>) -> bool {
        t.iter().all(|v| v.is_finite())
    }

    fn matmul(&self, a: &CpuTensor<E>, b: &CpuTensor<E>, ta: bool, tb: bool) -> CpuTensor<E> {
        gemm::matmul(a.view(), b.view(), ta, tb).into_shared()
    }
    fn linear(&self, x: &CpuTensor<E>, w: &CpuTensor<E>, bias: Option<&CpuTensor<E>>) -> CpuTensor<E> {
        let bias = bias.map(std_layout);
        gemm::linear(x.view(), w.view(), bias.as_ref().map(|b| b.as_slice().expect("standard layout")), None)
            .0
            .into_shared()
    }
    fn linear_activation(
        &self,
        x: &CpuTensor<E>,
        w: &CpuTensor<E>,
        bias: Option<&CpuTensor<E>>,
        act: Activation,
    ) -> (CpuTensor<E>, CpuTensor<E>) {
        let bias = bias.map(std_layout);
        let (y, a) =
            gemm::linear(x.view(), w.view(), bias.as_ref().map(|b| b.as_slice().expect("standard layout")), Some(act));
        (y.into_shared(), a.expect("an activation was asked for").into_shared())
    }
    fn add_bias(&self, x: &CpuTensor<E>, bias: &CpuTensor<E>) -> CpuTensor<E> {
        debug_assert_eq!(x.shape()[x.ndim() - 1], bias.len());
        (x + bias).into_shared()
    }
    fn sum_rows(&self, x: &CpuTensor<E>) -> CpuTensor<E> {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let mut out = vec![E::zero(); n];
        for row in x.as_slice().unwrap().chunks_exact(n.max(1)) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        ArrayD::from_shape_vec(IxDyn(&[n]), out).unwrap().into_shared()
    }

    fn layer_norm(
        &self,
        x: &CpuTensor<E>,
        weight: Option<&CpuTensor<E>>,
        bias: Option<&CpuTensor<E>>,
        eps: E,
    ) -> (CpuTensor<E>, CpuTensor<E>) {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let rows = x.len() / n;
        let xs = x.as_slice().unwrap();
        let mut y = vec![E::zero(); x.len()];
        let mut stats = vec![E::zero(); rows * 2];
        let nf = E::of(n as f64);
        let (w, b) = (weight.map(flat), bias.map(flat));
        let per = rows_per_task(n);
        let task = |((xb, yb), sb): ((&[E], &mut [E]), &mut [E])| {
            wide(|| {
                for ((row, out), st) in xb.chunks_exact(n).zip(yb.chunks_exact_mut(n)).zip(sb.chunks_exact_mut(2)) {
                    let mean = rows::sum(row) / nf;
                    let var = rows::sum_sq_dev(row, mean) / nf;
                    let rstd = E::one() / (var + eps).sqrt();
                    st[0] = mean;
                    st[1] = rstd;
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = (v - mean) * rstd;
                    }
                    if let Some(w) = w {
                        out.iter_mut().zip(w).for_each(|(o, &w)| *o *= w);
                    }
                    if let Some(b) = b {
                        out.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
                    }
                }
            })
        };
        xs.par_chunks(per * n).zip(y.par_chunks_mut(per * n)).zip(stats.par_chunks_mut(per * 2)).for_each(task);
        (arr(x.shape(), y), arr(&[rows, 2], stats))
    }

    fn layer_norm_backward(
        &self,
        x: &CpuTensor<E>,
        stats: &CpuTensor<E>,
        weight: Option<&CpuTensor<E>>,
        dy: &CpuTensor<E>,
    ) -> (CpuTensor<E>, Option<(CpuTensor<E>, CpuTensor<E>)>) {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let dy = std_layout(dy);
        let (xs, dys, st) = (x.as_slice().unwrap(), dy.as_slice().unwrap(), stats.as_slice().unwrap());
        let mut dx = vec![E::zero(); x.len()];
        let nf = E::of(n as f64);
        let w = weight.map(flat);
        let per = rows_per_task(n);
        // Each task returns its partial (dw, db); partials are summed in task order, so results do not
        // depend on the number of threads.
        let partials: Vec<(Vec<E>, Vec<E>)> = xs
            .par_chunks(per * n)
            .zip(dys.par_chunks(per * n))
            .zip(dx.par_chunks_mut(per * n))
            .zip(st.par_chunks(per * 2))
            .map(|(((xb, db_), dxb), sb)| {
                wide(|| {
                    let (mut dw, mut dbias, mut dxhat) = (vec![E::zero(); n], vec![E::zero(); n], vec![E::zero(); n]);
                    for (((row, drow), dxr), s) in
                        xb.chunks_exact(n).zip(db_.chunks_exact(n)).zip(dxb.chunks_exact_mut(n)).zip(sb.chunks_exact(2))
                    {
                        let (mean, rstd) = (s[0], s[1]);
                        // y = xhat·w + b; dxhat = dy·w; dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
                        let (mut sum_d, mut sum_dx) = (E::zero(), E::zero());
                        for i in 0..n {
                            let xhat = (row[i] - mean) * rstd;
                            let d = match w {
                                Some(w) => drow[i] * w[i],
                                None => drow[i],
                            };
                            dxhat[i] = d;
                            sum_d += d;
                            sum_dx += d * xhat;
                            dw[i] += drow[i] * xhat;
                            dbias[i] += drow[i];
                        }
                        let (mean_d, mean_dx) = (sum_d / nf, sum_dx / nf);
                        for i in 0..n {
                            let xhat = (row[i] - mean) * rstd;
                            dxr[i] = rstd * (dxhat[i] - mean_d - xhat * mean_dx);
                        }
                    }
                    (dw, dbias)
                })
            })
            .collect();
        let affine = weight.map(|_| {
            let (mut dw, mut db) = (vec![E::zero(); n], vec![E::zero(); n]);
            for (pw, pb) in &partials {
                dw.iter_mut().zip(pw).for_each(|(a, &b)| *a += b);
                db.iter_mut().zip(pb).for_each(|(a, &b)| *a += b);
            }
            (arr(&[n], dw), arr(&[n], db))
        });
        (arr(x.shape(), dx), affine)
    }

    fn masked_softmax(&self, scores: &CpuTensor<E>, beta: &[E], bias: &ScoreBias<'_, CpuTensor<E>>) -> CpuTensor<E> {
        biased_rows(scores, beta, bias, |_, row, _| {
            let max = rows::max(row);
            if max == E::neg_infinity() {
                // Fully masked row: no pattern to retrieve, the association is zero (not NaN).
                row.fill(E::zero());
                return;
            }
            row.iter_mut().for_each(|v| *v -= max);
            E::exp_in_place(row);
            let sum = rows::sum(row);
            let inv = E::one() / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        })
    }

    fn masked_softmax1(&self, scores: &CpuTensor<E>, beta: &[E], bias: &ScoreBias<'_, CpuTensor<E>>) -> CpuTensor<E> {
        biased_rows(scores, beta, bias, |_, row, _| sparse::softmax1_row(row))
    }

    fn masked_entmax(
        &self,
        scores: &CpuTensor<E>,
        beta: &[E],
        bias: &ScoreBias<'_, CpuTensor<E>>,
        alpha: &[E],
    ) -> CpuTensor<E> {
        debug_assert_eq!(alpha.len(), scores.shape()[1], "masked_entmax: one α per head");
        biased_rows(scores, beta, bias, |h, row, scratch| sparse::entmax_row(row, alpha[h], scratch))
    }

    fn masked_entmax_backward(
        &self,
        probs: &CpuTensor<E>,
        d_probs: &CpuTensor<E>,
        beta: &[E],
        alpha: &[E],
        with_alpha: bool,
    ) -> (CpuTensor<E>, Option<CpuTensor<E>>) {
        let sh = probs.shape();
        let (h_n, l_n, s_n) = (sh[1], sh[2], sh[3]);
        let (p, dp) = (std_layout(probs), std_layout(d_probs));
        let mut out = vec![E::zero(); p.len()];
        let mut d_alpha = vec![E::zero(); sh[0] * h_n * l_n];
        let per = rows_per_task(s_n);
        p.as_slice()
            .unwrap()
            .par_chunks(per * s_n)
            .zip(dp.as_slice().unwrap().par_chunks(per * s_n))
            .zip(out.par_chunks_mut(per * s_n))
            .zip(d_alpha.par_chunks_mut(per))
            .enumerate()
            .for_each(|(task, (((pb, db), ob), ab))| {
                for (r, ((pr, dr), o)) in
                    pb.chunks_exact(s_n).zip(db.chunks_exact(s_n)).zip(ob.chunks_exact_mut(s_n)).enumerate()
                {
                    let h = ((task * per + r) / l_n) % h_n;
                    ab[r] = sparse::entmax_row_backward(pr, dr, alpha[h], beta[h], o);
                }
            });
        (arr(sh, out), with_alpha.then(|| arr(&sh[..3], d_alpha)))
    }

    fn masked_softmax_backward(&self, probs: &CpuTensor<E>, d_probs: &CpuTensor<E>, beta: &[E]) -> CpuTensor<E> {
        let sh = probs.shape();
        let (h_n, l_n, s_n) = (sh[1], sh[2], sh[3]);
        let p = std_layout(probs);
        let dp = std_layout(d_probs);
        let mut out = vec![E::zero(); p.len()];
        let per = rows_per_task(s_n);
        p.as_slice()
            .unwrap()
            .par_chunks(per * s_n)
            .zip(dp.as_slice().unwrap().par_chunks(per * s_n))
            .zip(out.par_chunks_mut(per * s_n))
            .enumerate()
            .for_each(|(task, ((pb, db), ob))| {
                wide(|| {
                    for (r, ((pr, dr), o)) in
                        pb.chunks_exact(s_n).zip(db.chunks_exact(s_n)).zip(ob.chunks_exact_mut(s_n)).enumerate()
                    {
                        let h = ((task * per + r) / l_n) % h_n;
                        let (dot, beta_h) = (rows::dot(pr, dr), beta[h]);
                        for ((o, &p), &d) in o.iter_mut().zip(pr).zip(dr) {
                            *o = beta_h * p * (d - dot);
                        }
                    }
                })
            });
        arr(p.shape(), out)
    }

    fn association(
        &self,
        q: &CpuTensor<E>,
        k: &CpuTensor<E>,
        v: &CpuTensor<E>,
        beta: &[E],
        bias: &ScoreBias<'_, CpuTensor<E>>,
    ) -> (CpuTensor<E>, CpuTensor<E>) {
        let (out, lse) = blocked::association(q, k, v, beta, bias);
        (out.into_shared(), lse.into_shared())
    }

    fn association_backward(
        &self,
        q: &CpuTensor<E>,
        k: &CpuTensor<E>,
        v: &CpuTensor<E>,
        beta: &[E],
        bias: &ScoreBias<'_, CpuTensor<E>>,
        out: &CpuTensor<E>,
        lse: &CpuTensor<E>,
        d_out: &CpuTensor<E>,
    ) -> (CpuTensor<E>, CpuTensor<E>, CpuTensor<E>) {
        let (dq, dk, dv) = blocked::association_backward(q, k, v, beta, bias, out, lse, d_out);
        (dq.into_shared(), dk.into_shared(), dv.into_shared())
    }

    fn head_distance(&self, a: &CpuTensor<E>, b: &CpuTensor<E>) -> Vec<E> {
        let (b_n, h_n) = (a.shape()[0], a.shape()[1]);
        let mut out = vec![E::zero(); h_n];
        for bi in 0..b_n {
            for (h, o) in out.iter_mut().enumerate() {
                let (ah, bh) = (a.index_axis(Axis(0), bi), b.index_axis(Axis(0), bi));
                let d: E = Zip::from(ah.index_axis(Axis(0), h))
                    .and(bh.index_axis(Axis(0), h))
                    .fold(E::zero(), |acc, &x, &y| acc + (x - y) * (x - y));
                let d = d.sqrt();
                if d > *o {
                    *o = d;
                }
            }
        }
        out
    }

    fn select_heads(&self, new: &CpuTensor<E>, old: &CpuTensor<E>, take_new: &[bool]) -> CpuTensor<E> {
        let mut out = old.clone();
        for (h, &t) in take_new.iter().enumerate() {
            if t {
                out.index_axis_mut(Axis(1), h).assign(&new.index_axis(Axis(1), h));
            }
        }
        out
    }

    fn dropout_mask(&self, shape: &[usize], p: f64, seed: u64) -> CpuTensor<E> {
        let mut rng = StdRng::seed_from_u64(seed);
        let keep = E::of(1.0 / (1.0 - p));
        ArrayD::from_shape_simple_fn(IxDyn(shape), || if rng.gen::<f64>() < p { E::zero() } else { keep }).into_shared()
    }

    fn adam_step(
        &self,
        param: &mut CpuTensor<E>,
        grad: &CpuTensor<E>,
        m: &mut CpuTensor<E>,
        v: &mut CpuTensor<E>,
        hp: AdamStep,
    ) {
        let (b1, b2) = (E::of(hp.beta1), E::of(hp.beta2));
        let bc1 = 1.0 - hp.beta1.powi(hp.step as i32);
        let bc2 = 1.0 - hp.beta2.powi(hp.step as i32);
        let step_size = E::of(hp.lr / bc1);
        let bc2_sqrt = E::of(bc2.sqrt());
        let eps = E::of(hp.eps);
        let l2 = E::of(hp.l2);
        let decay = E::of(1.0 - hp.lr * hp.decoupled);
        wide(|| {
            Zip::from(param).and(grad).and(m).and(v).for_each(|p, &g, m, v| {
                let g = g + l2 * *p;
                *p *= decay;
                *m = b1 * *m + (E::one() - b1) * g;
                *v = b2 * *v + (E::one() - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
            })
        });
    }
}

#[cfg(test)]
mod tests;
