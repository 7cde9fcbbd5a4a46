//! A backend wrapper that counts host transfers, so that a test can pin how many round trips an
//! algorithm makes (a new one fails the test).

use crate::activation::Activation;
use crate::backend::{AdamStep, Backend, ScoreBias, Unary};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Transfers seen by a [`Counting`] backend and its clones.
#[derive(Debug, Default)]
pub struct Transfers {
    /// Device-to-host reads: `to_vec`, the scalar reductions (`sum`, `sum_squares`, `sum_squares_all`,
    /// `all_finite`) and `head_distance`. Each stalls a GPU until the work before it is done.
    pub downloads: AtomicUsize,
    /// Host-to-device writes of host data: `from_vec`.
    pub uploads: AtomicUsize,
}

impl Transfers {
    /// `(downloads, uploads)` so far.
    pub fn get(&self) -> (usize, usize) {
        (self.downloads.load(Ordering::SeqCst), self.uploads.load(Ordering::SeqCst))
    }
    /// Start counting again from zero.
    pub fn reset(&self) {
        self.downloads.store(0, Ordering::SeqCst);
        self.uploads.store(0, Ordering::SeqCst);
    }
}

/// `B` with every host transfer counted in [`Counting::transfers`]; every op is `B`'s own.
#[derive(Clone, Debug)]
pub struct Counting<B> {
    /// The backend doing the work.
    pub inner: B,
    /// The counters (shared by clones).
    pub transfers: Arc<Transfers>,
}

impl<B: Backend> Counting<B> {
    /// Wrap `inner`, counters at zero.
    pub fn new(inner: B) -> Self {
        Counting { inner, transfers: Arc::default() }
    }
    fn read(&self) {
        self.transfers.downloads.fetch_add(1, Ordering::SeqCst);
    }
}

impl<B: Backend> Backend for Counting<B> {
    type Elem = B::Elem;
    type Tensor = B::Tensor;

    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn from_vec(&self, data: Vec<B::Elem>, shape: &[usize]) -> B::Tensor {
        self.transfers.uploads.fetch_add(1, Ordering::SeqCst);
        self.inner.from_vec(data, shape)
    }
    fn to_vec(&self, t: &B::Tensor) -> Vec<B::Elem> {
        self.read();
        self.inner.to_vec(t)
    }
    fn shape(&self, t: &B::Tensor) -> Vec<usize> {
        self.inner.shape(t)
    }
    fn full(&self, shape: &[usize], value: B::Elem) -> B::Tensor {
        self.inner.full(shape, value)
    }
    fn zeros(&self, shape: &[usize]) -> B::Tensor {
        self.inner.zeros(shape)
    }
    fn zeros_like(&self, t: &B::Tensor) -> B::Tensor {
        self.inner.zeros_like(t)
    }
    fn reshape(&self, t: &B::Tensor, shape: &[usize]) -> B::Tensor {
        self.inner.reshape(t, shape)
    }
    fn permute(&self, t: &B::Tensor, axes: &[usize]) -> B::Tensor {
        self.inner.permute(t, axes)
    }
    fn concat(&self, a: &B::Tensor, b: &B::Tensor, axis: usize) -> B::Tensor {
        self.inner.concat(a, b, axis)
    }
    fn slice(&self, t: &B::Tensor, axis: usize, start: usize, len: usize) -> B::Tensor {
        self.inner.slice(t, axis, start, len)
    }
    fn slice_add(&self, dst: &mut B::Tensor, axis: usize, start: usize, src: &B::Tensor) {
        self.inner.slice_add(dst, axis, start, src)
    }
    fn expand(&self, t: &B::Tensor, axis: usize, n: usize) -> B::Tensor {
        self.inner.expand(t, axis, n)
    }
    fn sum_axis(&self, t: &B::Tensor, axis: usize) -> B::Tensor {
        self.inner.sum_axis(t, axis)
    }
    fn max_axis(&self, t: &B::Tensor, axis: usize) -> B::Tensor {
        self.inner.max_axis(t, axis)
    }
    fn gather_rows(&self, table: &B::Tensor, ids: &[usize]) -> B::Tensor {
        self.inner.gather_rows(table, ids)
    }
    fn scatter_add_rows(&self, dst: &mut B::Tensor, ids: &[usize], src: &B::Tensor) {
        self.inner.scatter_add_rows(dst, ids, src)
    }
    fn add(&self, a: &B::Tensor, b: &B::Tensor) -> B::Tensor {
        self.inner.add(a, b)
    }
    fn sub(&self, a: &B::Tensor, b: &B::Tensor) -> B::Tensor {
        self.inner.sub(a, b)
    }
    fn mul(&self, a: &B::Tensor, b: &B::Tensor) -> B::Tensor {
        self.inner.mul(a, b)
    }
    fn scale(&self, a: &B::Tensor, s: B::Elem) -> B::Tensor {
        self.inner.scale(a, s)
    }
    fn axpy(&self, y: &mut B::Tensor, alpha: B::Elem, x: &B::Tensor) {
        self.inner.axpy(y, alpha, x)
    }
    fn activation(&self, x: &B::Tensor, act: Activation) -> B::Tensor {
        self.inner.activation(x, act)
    }
    fn activation_backward(&self, x: &B::Tensor, dy: &B::Tensor, act: Activation) -> B::Tensor {
        self.inner.activation_backward(x, dy, act)
    }
    fn unary(&self, x: &B::Tensor, op: Unary) -> B::Tensor {
        self.inner.unary(x, op)
    }
    fn sum(&self, t: &B::Tensor) -> B::Elem {
        self.read();
        self.inner.sum(t)
    }
    fn sum_squares(&self, t: &B::Tensor) -> B::Elem {
        self.read();
        self.inner.sum_squares(t)
    }
    fn all_finite(&self, t: &B::Tensor) -> bool {
        self.read();
        self.inner.all_finite(t)
    }
    fn sum_squares_all(&self, ts: &[&B::Tensor]) -> f64 {
        self.read();
        self.inner.sum_squares_all(ts)
    }
    fn matmul(&self, a: &B::Tensor, b: &B::Tensor, ta: bool, tb: bool) -> B::Tensor {
        self.inner.matmul(a, b, ta, tb)
    }
    fn add_bias(&self, x: &B::Tensor, bias: &B::Tensor) -> B::Tensor {
        self.inner.add_bias(x, bias)
    }
    fn sum_rows(&self, x: &B::Tensor) -> B::Tensor {
        self.inner.sum_rows(x)
    }
    fn layer_norm(
        &self,
        x: &B::Tensor,
        weight: Option<&B::Tensor>,
        bias: Option<&B::Tensor>,
        eps: B::Elem,
    ) -> (B::Tensor, B::Tensor) {
        self.inner.layer_norm(x, weight, bias, eps)
    }
    fn layer_norm_backward(
        &self,
        x: &B::Tensor,
        stats: &B::Tensor,
        weight: Option<&B::Tensor>,
        dy: &B::Tensor,
    ) -> (B::Tensor, Option<(B::Tensor, B::Tensor)>) {
        self.inner.layer_norm_backward(x, stats, weight, dy)
    }
    fn masked_softmax(&self, scores: &B::Tensor, beta: &[B::Elem], bias: &ScoreBias<'_, B::Tensor>) -> B::Tensor {
        self.inner.masked_softmax(scores, beta, bias)
    }
    fn masked_softmax_backward(&self, probs: &B::Tensor, d_probs: &B::Tensor, beta: &[B::Elem]) -> B::Tensor {
        self.inner.masked_softmax_backward(probs, d_probs, beta)
    }
    fn masked_softmax1(&self, scores: &B::Tensor, beta: &[B::Elem], bias: &ScoreBias<'_, B::Tensor>) -> B::Tensor {
        self.inner.masked_softmax1(scores, beta, bias)
    }
    fn masked_entmax(
        &self,
        scores: &B::Tensor,
        beta: &[B::Elem],
        bias: &ScoreBias<'_, B::Tensor>,
        alpha: &[B::Elem],
    ) -> B::Tensor {
        self.inner.masked_entmax(scores, beta, bias, alpha)
    }
    fn masked_entmax_backward(
        &self,
        probs: &B::Tensor,
        d_probs: &B::Tensor,
        beta: &[B::Elem],
        alpha: &[B::Elem],
        with_alpha: bool,
    ) -> (B::Tensor, Option<B::Tensor>) {
        self.inner.masked_entmax_backward(probs, d_probs, beta, alpha, with_alpha)
    }
    fn association(
        &self,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        beta: &[B::Elem],
        bias: &ScoreBias<'_, B::Tensor>,
    ) -> (B::Tensor, B::Tensor) {
        self.inner.association(q, k, v, beta, bias)
    }
    fn association_backward(
        &self,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        beta: &[B::Elem],
        bias: &ScoreBias<'_, B::Tensor>,
        out: &B::Tensor,
        lse: &B::Tensor,
        d_out: &B::Tensor,
    ) -> (B::Tensor, B::Tensor, B::Tensor) {
        self.inner.association_backward(q, k, v, beta, bias, out, lse, d_out)
    }
    fn head_distance(&self, a: &B::Tensor, b: &B::Tensor) -> Vec<B::Elem> {
        self.read();
        self.inner.head_distance(a, b)
    }
    fn select_heads(&self, new: &B::Tensor, old: &B::Tensor, take_new: &[bool]) -> B::Tensor {
        self.inner.select_heads(new, old, take_new)
    }
    fn dropout_mask(&self, shape: &[usize], p: f64, seed: u64) -> B::Tensor {
        self.inner.dropout_mask(shape, p, seed)
    }
    fn adam_step(&self, param: &mut B::Tensor, grad: &B::Tensor, m: &mut B::Tensor, v: &mut B::Tensor, hp: AdamStep) {
        self.inner.adam_step(param, grad, m, v, hp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cpu;

    #[test]
    fn counts_reads_and_writes_and_nothing_else() {
        let b = Counting::new(Cpu::<f32>::new());
        let t = b.from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let u = b.matmul(&t, &t, false, true);
        let u = b.add(&b.unary(&u, Unary::Exp), &b.expand(&b.max_axis(&u, 1), 1, 2));
        assert_eq!(b.transfers.get(), (0, 1));
        let _ = (b.to_vec(&u), b.sum(&u), b.sum_squares_all(&[&t, &u]));
        assert_eq!(b.transfers.get(), (3, 1));
        b.clone().transfers.reset();
        assert_eq!(b.transfers.get(), (0, 0));
    }
}
