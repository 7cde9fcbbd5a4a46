//! The streaming (flash-attention) association of the CPU backend, forward and backward, on host slices.
//!
//! Rows in blocks of [`ROWS`], stored patterns in blocks of [`COLS`]; an online softmax keeps per-row
//! maximum, sum and output accumulator, so memory is `O((L + S)·d)` plus one `ROWS × COLS` block. Forward
//! saves the per-row log-sum-exp; backward recomputes each block's probabilities from it
//! (`p = exp(s − lse)`) and uses `Δ = rowsum(dO ⊙ O)`:
//! `dV += pᵀ dO`, `ds = p ⊙ (dO Vᵀ − Δ)`, `dQ += β ds K`, `dK += β dsᵀ Q`.
//!
//! A fully masked row (every bias `-inf`) has `lse = -inf`, output zero and no gradient, as in
//! `masked_softmax` (the convention of [`Backend`](crate::backend::Backend)).

use crate::backend::ScoreBias;
use crate::element::Element;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArcArray, ArrayD, ArrayView2, ArrayViewMut2, CowArray, IxDyn};

/// Rows (state patterns) per block.
const ROWS: usize = 64;
/// Columns (stored patterns) per block.
const COLS: usize = 256;

type Tensor<E> = ArcArray<E, IxDyn>;

/// [`Backend::association`](crate::backend::Backend::association) on tensors: `(out, lse)`.
pub(super) fn association<E: Element>(
    q: &Tensor<E>,
    k: &Tensor<E>,
    v: &Tensor<E>,
    beta: &[E],
    bias: &ScoreBias<'_, Tensor<E>>,
) -> (ArrayD<E>, ArrayD<E>) {
    let (q, k, v) = (q.as_standard_layout(), k.as_standard_layout(), v.as_standard_layout());
    let dims = Dims::of(q.shape(), k.shape(), v.shape());
    let biases = HostBiases::new(bias);
    let (out, lse) = forward(slice(&q), slice(&k), slice(&v), beta, &biases.view(), dims);
    (array(&[dims.b, dims.h, dims.l, dims.dv], out), array(&[dims.b, dims.h, dims.l], lse))
}

/// [`Backend::association_backward`](crate::backend::Backend::association_backward) on tensors:
/// `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments)]
pub(super) fn association_backward<E: Element>(
    q: &Tensor<E>,
    k: &Tensor<E>,
    v: &Tensor<E>,
    beta: &[E],
    bias: &ScoreBias<'_, Tensor<E>>,
    out: &Tensor<E>,
    lse: &Tensor<E>,
    d_out: &Tensor<E>,
) -> (ArrayD<E>, ArrayD<E>, ArrayD<E>) {
    let (q, k, v) = (q.as_standard_layout(), k.as_standard_layout(), v.as_standard_layout());
    let (out, lse, d_out) = (out.as_standard_layout(), lse.as_standard_layout(), d_out.as_standard_layout());
    let dims = Dims::of(q.shape(), k.shape(), v.shape());
    let biases = HostBiases::new(bias);
    let (dq, dk, dv) =
        backward(slice(&q), slice(&k), slice(&v), beta, &biases.view(), dims, slice(&out), slice(&lse), slice(&d_out));
    (array(q.shape(), dq), array(k.shape(), dk), array(v.shape(), dv))
}

fn slice<'a, E>(t: &'a CowArray<'_, E, IxDyn>) -> &'a [E] {
    t.as_slice().expect("standard layout")
}

fn array<E>(shape: &[usize], data: Vec<E>) -> ArrayD<E> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("data length equals the shape's size")
}

/// Standard-layout copies (or borrows) of the biases, with the association's broadcast strides.
struct HostBiases<'a, E> {
    padding: Option<CowArray<'a, E, IxDyn>>,
    association: Option<(CowArray<'a, E, IxDyn>, usize, usize)>,
}

impl<'a, E: Element> HostBiases<'a, E> {
    fn new(bias: &ScoreBias<'a, Tensor<E>>) -> Self {
        let association = bias.association.map(|a| {
            let sh = a.shape();
            let sh_h = if sh[1] == 1 { 0 } else { sh[2] * sh[3] };
            let sh_b = if sh[0] == 1 { 0 } else { sh[1] * sh[2] * sh[3] };
            (a.as_standard_layout(), sh_b, sh_h)
        });
        HostBiases { padding: bias.padding.map(|p| p.as_standard_layout()), association }
    }

    fn view(&self) -> HostBias<'_, E> {
        HostBias {
            padding: self.padding.as_ref().map(slice),
            association: self.association.as_ref().map(|(a, sb, sh)| (slice(a), *sb, *sh)),
        }
    }
}

/// Sizes of one association problem.
#[derive(Clone, Copy, Debug)]
struct Dims {
    /// Batch.
    b: usize,
    /// Heads.
    h: usize,
    /// State patterns (rows).
    l: usize,
    /// Stored patterns (columns).
    s: usize,
    /// Head size of q and k.
    d: usize,
    /// Head size of v.
    dv: usize,
}

impl Dims {
    fn of(qs: &[usize], ks: &[usize], vs: &[usize]) -> Dims {
        debug_assert!(qs.len() == 4 && ks.len() == 4 && vs.len() == 4, "association: rank-4 q, k, v");
        debug_assert!(
            qs[..2] == ks[..2] && ks[..3] == vs[..3] && qs[3] == ks[3],
            "association: q {qs:?} k {ks:?} v {vs:?}"
        );
        Dims { b: qs[0], h: qs[1], l: qs[2], s: ks[2], d: qs[3], dv: vs[3] }
    }
}

/// Host views of the optional biases: padding `[B, S]`, association `[B|1, H|1, L, S]` with its
/// batch and head strides (0 on a broadcast axis).
#[derive(Clone, Copy, Debug, Default)]
struct HostBias<'a, E> {
    /// `[B, S]`.
    padding: Option<&'a [E]>,
    /// `([B|1, H|1, L, S], stride over b, stride over h)`.
    association: Option<(&'a [E], usize, usize)>,
}

impl<E: Element> HostBias<'_, E> {
    /// Add the biases of rows `l0..l0+rows`, columns `s0..s0+cols` of head `(b, h)` to `block`.
    fn add(
        &self,
        block: &mut [E],
        (b, h): (usize, usize),
        (l0, rows): (usize, usize),
        (s0, cols): (usize, usize),
        s: usize,
    ) {
        if let Some(p) = self.padding {
            for r in 0..rows {
                for c in 0..cols {
                    block[r * cols + c] += p[b * s + s0 + c];
                }
            }
        }
        if let Some((a, sb, sh)) = self.association {
            for r in 0..rows {
                let base = b * sb + h * sh + (l0 + r) * s + s0;
                for c in 0..cols {
                    block[r * cols + c] += a[base + c];
                }
            }
        }
    }
}

/// `block = β · q[l0..] k[s0..]ᵀ + bias` for one head.
#[allow(clippy::too_many_arguments)]
fn scores<E: Element>(
    block: &mut [E],
    q: &[E],
    k: &[E],
    beta: E,
    bias: &HostBias<'_, E>,
    bh: (usize, usize),
    (l0, rows): (usize, usize),
    (s0, cols): (usize, usize),
    dims: &Dims,
) {
    let d = dims.d;
    let qv = ArrayView2::from_shape((rows, d), &q[l0 * d..(l0 + rows) * d]).unwrap();
    let kv = ArrayView2::from_shape((cols, d), &k[s0 * d..(s0 + cols) * d]).unwrap();
    let mut out = ArrayViewMut2::from_shape((rows, cols), &mut block[..rows * cols]).unwrap();
    general_mat_mul(beta, &qv, &kv.t(), E::zero(), &mut out);
    bias.add(block, bh, (l0, rows), (s0, cols), dims.s);
}

/// Streaming forward on host slices: returns `out [B, H, L, dv]` and `lse [B, H, L]`.
fn forward<E: Element>(q: &[E], k: &[E], v: &[E], beta: &[E], bias: &HostBias<'_, E>, dims: Dims) -> (Vec<E>, Vec<E>) {
    let Dims { b, h, l, s, d, dv } = dims;
    let mut out = vec![E::zero(); b * h * l * dv];
    let mut lse = vec![E::zero(); b * h * l];
    // Heads are independent: spread them over the available threads.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min((b * h).max(1));
    let head_out: Vec<&mut [E]> = out.chunks_mut(l * dv).collect();
    let head_lse: Vec<&mut [E]> = lse.chunks_mut(l).collect();
    let mut per_head: Vec<(usize, &mut [E], &mut [E])> =
        head_out.into_iter().zip(head_lse).enumerate().map(|(i, (o, s))| (i, o, s)).collect();
    std::thread::scope(|scope| {
        let chunk = per_head.len().div_ceil(threads);
        for group in per_head.chunks_mut(chunk.max(1)) {
            scope.spawn(move || {
                let mut block = vec![E::zero(); ROWS * COLS];
                for (bh, o, ls) in group.iter_mut() {
                    let (bi, hi) = (*bh / h, *bh % h);
                    let (qh, kh, vh) = (
                        &q[*bh * l * d..(*bh + 1) * l * d],
                        &k[*bh * s * d..(*bh + 1) * s * d],
                        &v[*bh * s * dv..(*bh + 1) * s * dv],
                    );
                    for l0 in (0..l).step_by(ROWS) {
                        let rows = ROWS.min(l - l0);
                        forward_rows(
                            &mut block,
                            qh,
                            kh,
                            vh,
                            beta[hi],
                            bias,
                            (bi, hi),
                            (l0, rows),
                            &dims,
                            &mut o[l0 * dv..(l0 + rows) * dv],
                            &mut ls[l0..l0 + rows],
                        );
                    }
                }
            });
        }
    });
    (out, lse)
}

/// Online softmax over every column block for rows `l0..l0+rows` of one head.
#[allow(clippy::too_many_arguments)]
fn forward_rows<E: Element>(
    block: &mut [E],
    q: &[E],
    k: &[E],
    v: &[E],
    beta: E,
    bias: &HostBias<'_, E>,
    bh: (usize, usize),
    (l0, rows): (usize, usize),
    dims: &Dims,
    out: &mut [E],
    lse: &mut [E],
) {
    let (s, dv) = (dims.s, dims.dv);
    let mut m = vec![E::neg_infinity(); rows];
    let mut sum = vec![E::zero(); rows];
    out.fill(E::zero());
    for s0 in (0..s).step_by(COLS) {
        let cols = COLS.min(s - s0);
        scores(block, q, k, beta, bias, bh, (l0, rows), (s0, cols), dims);
        for r in 0..rows {
            let row = &mut block[r * cols..(r + 1) * cols];
            let bmax = row.iter().copied().fold(E::neg_infinity(), |a, x| if x > a { x } else { a });
            let m_new = if bmax > m[r] { bmax } else { m[r] };
            if m_new == E::neg_infinity() {
                row.fill(E::zero());
                continue;
            }
            let scale = (m[r] - m_new).exp();
            let mut bsum = E::zero();
            for x in row.iter_mut() {
                *x = (*x - m_new).exp();
                bsum += *x;
            }
            sum[r] = sum[r] * scale + bsum;
            m[r] = m_new;
            for o in &mut out[r * dv..(r + 1) * dv] {
                *o *= scale;
            }
        }
        // out += p · v[s0..s0+cols]
        let pv = ArrayView2::from_shape((rows, cols), &block[..rows * cols]).unwrap();
        let vv = ArrayView2::from_shape((cols, dv), &v[s0 * dv..(s0 + cols) * dv]).unwrap();
        let mut ov = ArrayViewMut2::from_shape((rows, dv), &mut *out).unwrap();
        general_mat_mul(E::one(), &pv, &vv, E::one(), &mut ov);
    }
    for r in 0..rows {
        if m[r] == E::neg_infinity() {
            lse[r] = E::neg_infinity();
            out[r * dv..(r + 1) * dv].fill(E::zero());
        } else {
            let inv = E::one() / sum[r];
            out[r * dv..(r + 1) * dv].iter_mut().for_each(|o| *o *= inv);
            lse[r] = m[r] + sum[r].ln();
        }
    }
}

/// Streaming backward on host slices: `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments)]
fn backward<E: Element>(
    q: &[E],
    k: &[E],
    v: &[E],
    beta: &[E],
    bias: &HostBias<'_, E>,
    dims: Dims,
    out: &[E],
    lse: &[E],
    d_out: &[E],
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let Dims { b, h, l, s, d, dv } = dims;
    let mut dq = vec![E::zero(); b * h * l * d];
    let mut dk = vec![E::zero(); b * h * s * d];
    let mut dvv = vec![E::zero(); b * h * s * dv];
    let heads: Vec<(usize, (&mut [E], (&mut [E], &mut [E])))> =
        dq.chunks_mut(l * d).zip(dk.chunks_mut(s * d).zip(dvv.chunks_mut(s * dv))).enumerate().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(heads.len().max(1));
    let mut heads = heads;
    std::thread::scope(|scope| {
        let chunk = heads.len().div_ceil(threads);
        for group in heads.chunks_mut(chunk.max(1)) {
            scope.spawn(move || {
                let mut p = vec![E::zero(); ROWS * COLS];
                let mut dp = [E::zero(); ROWS * COLS];
                for (bh, (dqh, (dkh, dvh))) in group.iter_mut() {
                    let bh = *bh;
                    let (bi, hi) = (bh / h, bh % h);
                    let beta_h = beta[hi];
                    let (qh, kh, vh) = (
                        &q[bh * l * d..(bh + 1) * l * d],
                        &k[bh * s * d..(bh + 1) * s * d],
                        &v[bh * s * dv..(bh + 1) * s * dv],
                    );
                    let (oh, doh, lh) = (
                        &out[bh * l * dv..(bh + 1) * l * dv],
                        &d_out[bh * l * dv..(bh + 1) * l * dv],
                        &lse[bh * l..(bh + 1) * l],
                    );
                    for l0 in (0..l).step_by(ROWS) {
                        let rows = ROWS.min(l - l0);
                        // Δ_r = Σ_j dO[r, j] O[r, j]
                        let delta: Vec<E> = (0..rows)
                            .map(|r| {
                                let o = &oh[(l0 + r) * dv..(l0 + r + 1) * dv];
                                let g = &doh[(l0 + r) * dv..(l0 + r + 1) * dv];
                                o.iter().zip(g).map(|(&a, &b)| a * b).sum()
                            })
                            .collect();
                        for s0 in (0..s).step_by(COLS) {
                            let cols = COLS.min(s - s0);
                            scores(&mut p, qh, kh, beta_h, bias, (bi, hi), (l0, rows), (s0, cols), &dims);
                            for r in 0..rows {
                                let lr = lh[l0 + r];
                                for x in &mut p[r * cols..(r + 1) * cols] {
                                    *x = if lr == E::neg_infinity() { E::zero() } else { (*x - lr).exp() };
                                }
                            }
                            let pv = ArrayView2::from_shape((rows, cols), &p[..rows * cols]).unwrap();
                            let dov = ArrayView2::from_shape((rows, dv), &doh[l0 * dv..(l0 + rows) * dv]).unwrap();
                            // dV[s0..] += pᵀ dO
                            let mut dvv =
                                ArrayViewMut2::from_shape((cols, dv), &mut dvh[s0 * dv..(s0 + cols) * dv]).unwrap();
                            general_mat_mul(E::one(), &pv.t(), &dov, E::one(), &mut dvv);
                            // dp = dO V[s0..]ᵀ
                            let vv = ArrayView2::from_shape((cols, dv), &vh[s0 * dv..(s0 + cols) * dv]).unwrap();
                            {
                                let mut dpv = ArrayViewMut2::from_shape((rows, cols), &mut dp[..rows * cols]).unwrap();
                                general_mat_mul(E::one(), &dov, &vv.t(), E::zero(), &mut dpv);
                            }
                            // ds = p ⊙ (dp − Δ), stored in dp
                            for r in 0..rows {
                                for c in 0..cols {
                                    let i = r * cols + c;
                                    dp[i] = p[i] * (dp[i] - delta[r]);
                                }
                            }
                            let dsv = ArrayView2::from_shape((rows, cols), &dp[..rows * cols]).unwrap();
                            let kv = ArrayView2::from_shape((cols, d), &kh[s0 * d..(s0 + cols) * d]).unwrap();
                            let qv = ArrayView2::from_shape((rows, d), &qh[l0 * d..(l0 + rows) * d]).unwrap();
                            let mut dqv =
                                ArrayViewMut2::from_shape((rows, d), &mut dqh[l0 * d..(l0 + rows) * d]).unwrap();
                            general_mat_mul(beta_h, &dsv, &kv, E::one(), &mut dqv);
                            let mut dkv =
                                ArrayViewMut2::from_shape((cols, d), &mut dkh[s0 * d..(s0 + cols) * d]).unwrap();
                            general_mat_mul(beta_h, &dsv.t(), &qv, E::one(), &mut dkv);
                        }
                    }
                }
            });
        }
    });
    (dq, dk, dvv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::reference;
    use crate::backend::{Backend, Cpu};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn rel(a: &crate::backend::CpuTensor<f64>, b: &crate::backend::CpuTensor<f64>) -> f64 {
        assert_eq!(a.shape(), b.shape());
        let scale = b.iter().fold(1e-2f64, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// The blocked CPU path equals the materialised oracle (f64), with odd sizes straddling the blocks,
    /// several heads, padding, association biases and fully masked rows; `lse` equals the direct formula.
    #[test]
    fn blocked_association_equals_the_materialised_oracle() {
        let be = Cpu::<f64>::new();
        let mut rng = StdRng::seed_from_u64(5);
        for &(b, h, l, s, d, dv) in
            &[(1, 1, 1, 1, 1, 1), (2, 3, 70, 300, 5, 3), (1, 2, 129, 257, 8, 9), (2, 1, 3, 600, 4, 4)]
        {
            let mut t = |shape: &[usize]| {
                be.from_vec((0..shape.iter().product::<usize>()).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
            };
            let (q, k, v, dout) = (t(&[b, h, l, d]), t(&[b, h, s, d]), t(&[b, h, s, dv]), t(&[b, h, l, dv]));
            let beta: Vec<f64> = (0..h).map(|i| 0.7 + i as f64).collect();
            let ninf = f64::NEG_INFINITY;
            let pad: Vec<f64> =
                (0..b * s).map(|i| if (i < s && b > 1) || rng.gen_bool(0.2) { ninf } else { 0.0 }).collect();
            let assoc: Vec<f64> =
                (0..h * l * s).map(|_| if rng.gen_bool(0.1) { ninf } else { rng.gen_range(-1.0..1.0) }).collect();
            let pad_t = be.from_vec(pad.clone(), &[b, s]);
            let assoc_t = be.from_vec(assoc.clone(), &[1, h, l, s]);
            for (use_pad, use_assoc) in [(false, false), (true, false), (true, true)] {
                let bias = ScoreBias { padding: use_pad.then_some(&pad_t), association: use_assoc.then_some(&assoc_t) };
                let (o_ref, _) = reference::association(&be, &q, &k, &v, &beta, &bias);
                let (dq_ref, dk_ref, dv_ref) = reference::association_backward(&be, &q, &k, &v, &beta, &bias, &dout);
                let (o, lse) = be.association(&q, &k, &v, &beta, &bias);
                let (dq, dk, dvv) = be.association_backward(&q, &k, &v, &beta, &bias, &o, &lse, &dout);
                let ctx = format!("{:?} pad {use_pad} assoc {use_assoc}", (b, h, l, s, d, dv));
                assert!(rel(&o, &o_ref) < 1e-12, "{ctx}: out {}", rel(&o, &o_ref));
                assert!(rel(&dq, &dq_ref) < 1e-12, "{ctx}: dq {}", rel(&dq, &dq_ref));
                assert!(rel(&dk, &dk_ref) < 1e-12, "{ctx}: dk {}", rel(&dk, &dk_ref));
                assert!(rel(&dvv, &dv_ref) < 1e-12, "{ctx}: dv {}", rel(&dvv, &dv_ref));
                // lse of row (0, 0, 0) from its definition.
                let mut row: Vec<f64> =
                    (0..s).map(|j| beta[0] * (0..d).map(|i| q[[0, 0, 0, i]] * k[[0, 0, j, i]]).sum::<f64>()).collect();
                for (j, x) in row.iter_mut().enumerate() {
                    if use_pad {
                        *x += pad[j];
                    }
                    if use_assoc {
                        *x += assoc[j];
                    }
                }
                let m = row.iter().copied().fold(ninf, f64::max);
                let expect = if m == ninf { ninf } else { m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln() };
                let got = lse[[0, 0, 0]];
                assert!(got == expect || (got - expect).abs() < 1e-12, "{ctx}: lse {got} vs {expect}");
            }
        }
    }
}
