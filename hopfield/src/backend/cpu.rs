//! The CPU backend: ndarray tensors, matrix products through matrixmultiply (threaded).
//! This is the reference every other backend is tested against; it favours plain loops over cleverness.

use super::association::{blocked_backward, blocked_forward, Dims, HostBias};
use super::{AdamStep, Backend, ScoreBias};
use crate::activation::Activation;
use crate::element::Element;
use ndarray::{linalg::general_mat_mul, s, ArrayD, ArrayView2, Axis, IxDyn, Zip};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::marker::PhantomData;

/// The ndarray backend, generic over `f32` and `f64`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu<E = f32>(PhantomData<E>);

impl<E: Element> Cpu<E> {
    /// The (only) CPU device.
    pub fn new() -> Self {
        Cpu(PhantomData)
    }
}

fn std_layout<E: Element>(t: &ArrayD<E>) -> ArrayD<E> {
    if t.is_standard_layout() { t.clone() } else { t.as_standard_layout().into_owned() }
}

/// View a standard-layout tensor `[.., r, c]` as `n` matrices `[r, c]`.
fn batch_dims(shape: &[usize]) -> (usize, usize, usize) {
    let r = shape[shape.len() - 2];
    let c = shape[shape.len() - 1];
    (shape[..shape.len() - 2].iter().product(), r, c)
}

impl<E: Element> Backend for Cpu<E> {
    type Elem = E;
    type Tensor = ArrayD<E>;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn from_vec(&self, data: Vec<E>, shape: &[usize]) -> ArrayD<E> {
        ArrayD::from_shape_vec(IxDyn(shape), data).expect("from_vec: data length equals the shape's size")
    }
    fn to_vec(&self, t: &ArrayD<E>) -> Vec<E> {
        t.iter().copied().collect()
    }
    fn shape(&self, t: &ArrayD<E>) -> Vec<usize> {
        t.shape().to_vec()
    }
    fn full(&self, shape: &[usize], value: E) -> ArrayD<E> {
        ArrayD::from_elem(IxDyn(shape), value)
    }

    fn reshape(&self, t: &ArrayD<E>, shape: &[usize]) -> ArrayD<E> {
        std_layout(t).into_shape_with_order(IxDyn(shape)).expect("reshape: sizes agree")
    }
    fn permute(&self, t: &ArrayD<E>, axes: &[usize]) -> ArrayD<E> {
        t.view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned()
    }
    fn concat(&self, a: &ArrayD<E>, b: &ArrayD<E>, axis: usize) -> ArrayD<E> {
        ndarray::concatenate(Axis(axis), &[a.view(), b.view()]).expect("concat: other axes agree")
    }
    fn slice(&self, t: &ArrayD<E>, axis: usize, start: usize, len: usize) -> ArrayD<E> {
        t.slice_axis(Axis(axis), ndarray::Slice::from(start..start + len)).to_owned()
    }
    fn slice_add(&self, dst: &mut ArrayD<E>, axis: usize, start: usize, src: &ArrayD<E>) {
        let len = src.shape()[axis];
        let mut view = dst.slice_axis_mut(Axis(axis), ndarray::Slice::from(start..start + len));
        view += src;
    }
    fn expand(&self, t: &ArrayD<E>, axis: usize, n: usize) -> ArrayD<E> {
        let mut shape = t.shape().to_vec();
        debug_assert_eq!(shape[axis], 1);
        shape[axis] = n;
        t.broadcast(IxDyn(&shape)).expect("expand: axis has size 1").to_owned()
    }
    fn sum_axis(&self, t: &ArrayD<E>, axis: usize) -> ArrayD<E> {
        t.sum_axis(Axis(axis)).insert_axis(Axis(axis))
    }

    fn add(&self, a: &ArrayD<E>, b: &ArrayD<E>) -> ArrayD<E> {
        debug_assert_eq!(a.shape(), b.shape());
        a + b
    }
    fn sub(&self, a: &ArrayD<E>, b: &ArrayD<E>) -> ArrayD<E> {
        debug_assert_eq!(a.shape(), b.shape());
        a - b
    }
    fn mul(&self, a: &ArrayD<E>, b: &ArrayD<E>) -> ArrayD<E> {
        debug_assert_eq!(a.shape(), b.shape());
        a * b
    }
    fn scale(&self, a: &ArrayD<E>, s: E) -> ArrayD<E> {
        a * s
    }
    fn axpy(&self, y: &mut ArrayD<E>, alpha: E, x: &ArrayD<E>) {
        debug_assert_eq!(y.shape(), x.shape());
        y.scaled_add(alpha, x);
    }
    fn activation(&self, x: &ArrayD<E>, act: Activation) -> ArrayD<E> {
        x.mapv(|v| act.forward(v))
    }
    fn activation_backward(&self, x: &ArrayD<E>, dy: &ArrayD<E>, act: Activation) -> ArrayD<E> {
        let mut out = dy.clone();
        Zip::from(&mut out).and(x).for_each(|o, &v| *o *= act.derivative(v));
        out
    }

    fn sum(&self, t: &ArrayD<E>) -> E {
        t.iter().copied().sum()
    }
    fn sum_squares(&self, t: &ArrayD<E>) -> E {
        t.iter().map(|&v| v * v).sum()
    }
    fn all_finite(&self, t: &ArrayD<E>) -> bool {
        t.iter().all(|v| v.is_finite())
    }

    fn matmul(&self, a: &ArrayD<E>, b: &ArrayD<E>, ta: bool, tb: bool) -> ArrayD<E> {
        let a = std_layout(a);
        let b = std_layout(b);
        let (na, ar, ac) = batch_dims(a.shape());
        let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
        let (nb, br, bc) = batch_dims(b.shape());
        let n = if tb { br } else { bc };
        debug_assert_eq!(k, if tb { bc } else { br }, "matmul: inner sizes {:?} x {:?}", a.shape(), b.shape());
        let mut out_shape = a.shape()[..a.ndim() - 2].to_vec();
        out_shape.extend([m, n]);
        let a_data = a.as_slice().unwrap();
        let b_data = b.as_slice().unwrap();
        if b.ndim() == 2 && !ta {
            // Shared weight: one big GEMM over all rows of a.
            let a2 = ArrayView2::from_shape((na * m, k), a_data).unwrap();
            let b2 = ArrayView2::from_shape((br, bc), b_data).unwrap();
            let b2 = if tb { b2.t() } else { b2 };
            let mut out = ndarray::Array2::<E>::zeros((na * m, n));
            general_mat_mul(E::one(), &a2, &b2, E::zero(), &mut out);
            return out.into_shape_with_order(IxDyn(&out_shape)).unwrap();
        }
        debug_assert!(nb == na || nb == 1, "matmul: batch {:?} vs {:?}", a.shape(), b.shape());
        let mut out = ArrayD::<E>::zeros(IxDyn(&out_shape));
        let out_data = out.as_slice_mut().unwrap();
        for (i, o) in out_data.chunks_mut(m * n).enumerate() {
            let a2 = ArrayView2::from_shape((ar, ac), &a_data[i * ar * ac..(i + 1) * ar * ac]).unwrap();
            let j = if nb == 1 { 0 } else { i };
            let b2 = ArrayView2::from_shape((br, bc), &b_data[j * br * bc..(j + 1) * br * bc]).unwrap();
            let a2 = if ta { a2.t() } else { a2 };
            let b2 = if tb { b2.t() } else { b2 };
            let mut o2 = ndarray::ArrayViewMut2::from_shape((m, n), o).unwrap();
            general_mat_mul(E::one(), &a2, &b2, E::zero(), &mut o2);
        }
        out
    }
    fn add_bias(&self, x: &ArrayD<E>, bias: &ArrayD<E>) -> ArrayD<E> {
        debug_assert_eq!(x.shape()[x.ndim() - 1], bias.len());
        x + bias
    }
    fn sum_rows(&self, x: &ArrayD<E>) -> ArrayD<E> {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let rows = x.len() / n.max(1);
        let x2 = x.into_shape_with_order((rows, n)).expect("sum_rows: standard layout");
        x2.sum_axis(Axis(0)).into_dyn()
    }

    fn layer_norm(&self, x: &ArrayD<E>, weight: Option<&ArrayD<E>>, bias: Option<&ArrayD<E>>, eps: E)
        -> (ArrayD<E>, ArrayD<E>) {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let rows = x.len() / n;
        let xs = x.as_slice().unwrap();
        let mut y = vec![E::zero(); x.len()];
        let mut stats = vec![E::zero(); rows * 2];
        let nf = E::of(n as f64);
        for r in 0..rows {
            let row = &xs[r * n..(r + 1) * n];
            let mean = row.iter().copied().sum::<E>() / nf;
            let var = row.iter().map(|&v| (v - mean) * (v - mean)).sum::<E>() / nf;
            let rstd = E::one() / (var + eps).sqrt();
            stats[2 * r] = mean;
            stats[2 * r + 1] = rstd;
            for (i, (&v, o)) in row.iter().zip(&mut y[r * n..(r + 1) * n]).enumerate() {
                let mut z = (v - mean) * rstd;
                if let Some(w) = weight {
                    z = z * w[i];
                }
                if let Some(b) = bias {
                    z += b[i];
                }
                *o = z;
            }
        }
        (ArrayD::from_shape_vec(x.raw_dim(), y).unwrap(), ArrayD::from_shape_vec(IxDyn(&[rows, 2]), stats).unwrap())
    }

    fn layer_norm_backward(&self, x: &ArrayD<E>, stats: &ArrayD<E>, weight: Option<&ArrayD<E>>, dy: &ArrayD<E>)
        -> (ArrayD<E>, Option<(ArrayD<E>, ArrayD<E>)>) {
        let n = x.shape()[x.ndim() - 1];
        let x = std_layout(x);
        let dy = std_layout(dy);
        let rows = x.len() / n;
        let (xs, dys, st) = (x.as_slice().unwrap(), dy.as_slice().unwrap(), stats.as_slice().unwrap());
        let mut dx = vec![E::zero(); x.len()];
        let mut dw = vec![E::zero(); n];
        let mut db = vec![E::zero(); n];
        let nf = E::of(n as f64);
        let mut dxhat = vec![E::zero(); n];
        for r in 0..rows {
            let (mean, rstd) = (st[2 * r], st[2 * r + 1]);
            let row = &xs[r * n..(r + 1) * n];
            let drow = &dys[r * n..(r + 1) * n];
            // y = xhat·w + b; dxhat = dy·w; dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
            let (mut sum_d, mut sum_dx) = (E::zero(), E::zero());
            for i in 0..n {
                let xhat = (row[i] - mean) * rstd;
                let d = match weight { Some(w) => drow[i] * w[i], None => drow[i] };
                dxhat[i] = d;
                sum_d += d;
                sum_dx += d * xhat;
                dw[i] += drow[i] * xhat;
                db[i] += drow[i];
            }
            let (mean_d, mean_dx) = (sum_d / nf, sum_dx / nf);
            for i in 0..n {
                let xhat = (row[i] - mean) * rstd;
                dx[r * n + i] = rstd * (dxhat[i] - mean_d - xhat * mean_dx);
            }
        }
        let dx = ArrayD::from_shape_vec(x.raw_dim(), dx).unwrap();
        let affine = weight.map(|_| (ArrayD::from_shape_vec(IxDyn(&[n]), dw).unwrap(),
                                     ArrayD::from_shape_vec(IxDyn(&[n]), db).unwrap()));
        (dx, affine)
    }

    fn masked_softmax(&self, scores: &ArrayD<E>, beta: &[E], bias: &ScoreBias<'_, ArrayD<E>>) -> ArrayD<E> {
        let sh = scores.shape();
        let (b_n, h_n, l_n, s_n) = (sh[0], sh[1], sh[2], sh[3]);
        let mut out = std_layout(scores);
        let assoc = bias.association;
        for b in 0..b_n {
            for h in 0..h_n {
                for l in 0..l_n {
                    let mut row = out.slice_mut(s![b, h, l, ..]);
                    let mut max = E::neg_infinity();
                    for s_i in 0..s_n {
                        let mut v = row[s_i] * beta[h];
                        if let Some(p) = bias.padding {
                            v += p[[b, s_i]];
                        }
                        if let Some(a) = assoc {
                            let ab = if a.shape()[0] == 1 { 0 } else { b };
                            let ah = if a.shape()[1] == 1 { 0 } else { h };
                            v += a[[ab, ah, l, s_i]];
                        }
                        row[s_i] = v;
                        if v > max {
                            max = v;
                        }
                    }
                    if max == E::neg_infinity() || max.is_nan() {
                        // Fully masked row: no pattern to retrieve, the association is zero (not NaN).
                        row.fill(E::zero());
                        continue;
                    }
                    let mut sum = E::zero();
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    let inv = E::one() / sum;
                    row.mapv_inplace(|v| v * inv);
                }
            }
        }
        out
    }

    fn masked_softmax_backward(&self, probs: &ArrayD<E>, d_probs: &ArrayD<E>, beta: &[E]) -> ArrayD<E> {
        let sh = probs.shape();
        let (h_n, s_n) = (sh[1], sh[3]);
        let l_n = sh[2];
        let p = std_layout(probs);
        let dp = std_layout(d_probs);
        let mut out = vec![E::zero(); p.len()];
        for ((row_i, (pr, dr)), o) in p.as_slice().unwrap().chunks(s_n)
            .zip(dp.as_slice().unwrap().chunks(s_n)).enumerate().zip(out.chunks_mut(s_n)) {
            let h = (row_i / l_n) % h_n;
            let dot: E = pr.iter().zip(dr).map(|(&a, &b)| a * b).sum();
            for i in 0..s_n {
                o[i] = beta[h] * pr[i] * (dr[i] - dot);
            }
        }
        ArrayD::from_shape_vec(p.raw_dim(), out).unwrap()
    }

    fn association(&self, q: &ArrayD<E>, k: &ArrayD<E>, v: &ArrayD<E>, beta: &[E], bias: &ScoreBias<'_, ArrayD<E>>)
        -> (ArrayD<E>, ArrayD<E>) {
        let (q, k, v) = (std_layout(q), std_layout(k), std_layout(v));
        let dims = association_dims(&q, &k, &v);
        let (pad, assoc) = host_bias(bias);
        let (out, lse) = blocked_forward(q.as_slice().unwrap(), k.as_slice().unwrap(), v.as_slice().unwrap(), beta,
                                         &bias_view(&pad, &assoc), dims);
        (self.from_vec(out, &[dims.b, dims.h, dims.l, dims.dv]), self.from_vec(lse, &[dims.b, dims.h, dims.l]))
    }

    fn association_backward(&self, q: &ArrayD<E>, k: &ArrayD<E>, v: &ArrayD<E>, beta: &[E], bias: &ScoreBias<'_, ArrayD<E>>,
                            out: &ArrayD<E>, lse: &ArrayD<E>, d_out: &ArrayD<E>) -> (ArrayD<E>, ArrayD<E>, ArrayD<E>) {
        let (q, k, v) = (std_layout(q), std_layout(k), std_layout(v));
        let (out, lse, d_out) = (std_layout(out), std_layout(lse), std_layout(d_out));
        let dims = association_dims(&q, &k, &v);
        let (pad, assoc) = host_bias(bias);
        let (dq, dk, dv) = blocked_backward(q.as_slice().unwrap(), k.as_slice().unwrap(), v.as_slice().unwrap(), beta,
                                            &bias_view(&pad, &assoc), dims, out.as_slice().unwrap(),
                                            lse.as_slice().unwrap(), d_out.as_slice().unwrap());
        (self.from_vec(dq, q.shape()), self.from_vec(dk, k.shape()), self.from_vec(dv, v.shape()))
    }

    fn head_distance(&self, a: &ArrayD<E>, b: &ArrayD<E>) -> Vec<E> {
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

    fn select_heads(&self, new: &ArrayD<E>, old: &ArrayD<E>, take_new: &[bool]) -> ArrayD<E> {
        let mut out = old.clone();
        for (h, &t) in take_new.iter().enumerate() {
            if t {
                out.index_axis_mut(Axis(1), h).assign(&new.index_axis(Axis(1), h));
            }
        }
        out
    }

    fn dropout_mask(&self, shape: &[usize], p: f64, seed: u64) -> ArrayD<E> {
        let mut rng = StdRng::seed_from_u64(seed);
        let keep = E::of(1.0 / (1.0 - p));
        ArrayD::from_shape_simple_fn(IxDyn(shape), || if rng.gen::<f64>() < p { E::zero() } else { keep })
    }

    fn adam_step(&self, param: &mut ArrayD<E>, grad: &ArrayD<E>, m: &mut ArrayD<E>, v: &mut ArrayD<E>, hp: AdamStep) {
        let (b1, b2) = (E::of(hp.beta1), E::of(hp.beta2));
        let bc1 = 1.0 - hp.beta1.powi(hp.step as i32);
        let bc2 = 1.0 - hp.beta2.powi(hp.step as i32);
        let step_size = E::of(hp.lr / bc1);
        let bc2_sqrt = E::of(bc2.sqrt());
        let eps = E::of(hp.eps);
        let l2 = E::of(hp.l2);
        let decay = E::of(1.0 - hp.lr * hp.decoupled);
        Zip::from(param).and(grad).and(m).and(v).for_each(|p, &g, m, v| {
            let g = g + l2 * *p;
            *p *= decay;
            *m = b1 * *m + (E::one() - b1) * g;
            *v = b2 * *v + (E::one() - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
        });
    }
}

fn association_dims<E: Element>(q: &ArrayD<E>, k: &ArrayD<E>, v: &ArrayD<E>) -> Dims {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    debug_assert!(qs.len() == 4 && ks.len() == 4 && vs.len() == 4, "association: rank-4 q, k, v");
    debug_assert!(qs[..2] == ks[..2] && ks[..3] == vs[..3] && qs[3] == ks[3], "association: q {qs:?} k {ks:?} v {vs:?}");
    Dims { b: qs[0], h: qs[1], l: qs[2], s: ks[2], d: qs[3], dv: vs[3] }
}

/// Standard-layout copies of the biases, with the association's broadcast strides.
type HostBiases<E> = (Option<ArrayD<E>>, Option<(ArrayD<E>, usize, usize)>);

fn host_bias<E: Element>(bias: &ScoreBias<'_, ArrayD<E>>) -> HostBiases<E> {
    let pad = bias.padding.map(std_layout);
    let assoc = bias.association.map(|a| {
        let sh = a.shape();
        let sh_h = if sh[1] == 1 { 0 } else { sh[2] * sh[3] };
        let sh_b = if sh[0] == 1 { 0 } else { sh[1] * sh[2] * sh[3] };
        (std_layout(a), sh_b, sh_h)
    });
    (pad, assoc)
}

fn bias_view<'a, E: Element>(pad: &'a Option<ArrayD<E>>, assoc: &'a Option<(ArrayD<E>, usize, usize)>) -> HostBias<'a, E> {
    HostBias {
        padding: pad.as_ref().map(|p| p.as_slice().unwrap()),
        association: assoc.as_ref().map(|(a, sb, sh)| (a.as_slice().unwrap(), *sb, *sh)),
    }
}
