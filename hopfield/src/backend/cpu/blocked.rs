//! The streaming (flash-attention) association of the CPU backend, forward and backward, on host slices.
//!
//! Rows in blocks of [`ROWS`], stored patterns in blocks of [`COLS`]; an online softmax keeps per-row
//! maximum, sum and output accumulator. Forward saves the per-row log-sum-exp; backward recomputes each
//! block's probabilities from it (`p = exp(s − lse)`) and uses `Δ = rowsum(dO ⊙ O)`:
//! `dV += pᵀ dO`, `ds = p ⊙ (dO Vᵀ − Δ)`, `dQ += β ds K`, `dK += β dsᵀ Q`. Every product is a GEMM on
//! tiles; the exponentials go through [`Element::exp_in_place`] (vectorised for f32).
//!
//! Work is spread over rayon's pool: forward by (head, row block), backward by (head, column group), with
//! the number of groups a function of the shapes only, so results are bit for bit the same for any
//! thread count. Memory is `O((L + S)·d)`: the inputs and outputs, one or two score blocks per thread, and
//! in backward at most [`BACKWARD_UNITS`]`·L·d` of `dq` partials.
//!
//! A fully masked row (every bias `-inf`) has `lse = -inf`, output zero and no gradient, as in
//! `masked_softmax` (the convention of [`Backend`](crate::backend::Backend)).

use super::elementwise::wide;
use super::rows as reduce;
use crate::backend::ScoreBias;
use crate::element::Element;
use ndarray::{ArcArray, ArrayD, CowArray, IxDyn};
use rayon::prelude::*;

/// Rows (state patterns) per block.
const ROWS: usize = 128;
/// Columns (stored patterns) per block (a 128 × 128 score block is 64 KiB in f32: it stays in L2 with its
/// q, k and v tiles).
const COLS: usize = 128;
/// Tasks the backward aims for when there are few heads (see [`column_groups`]).
const BACKWARD_UNITS: usize = 8;

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

/// `c ← α·op(a)·op(b) + β·c` on contiguous row-major blocks through the backend's GEMM: `op(a)` is m×k
/// (`a` stored k×m when `ta`), `op(b)` k×n (`b` stored n×k when `tb`), `c` m×n. The tiles below are small
/// enough (`m·k + k·n` under matrixmultiply's threading threshold for head sizes up to 64) that each product
/// runs on the calling thread: the parallelism is over tiles.
#[allow(clippy::too_many_arguments)]
fn mm<E: Element>(m: usize, k: usize, n: usize, alpha: E, a: &[E], ta: bool, b: &[E], tb: bool, beta: E, c: &mut [E]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "mm: operands shorter than {m}x{k}x{n}");
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above keep every access inside the slices; `c` is a distinct `&mut` borrow.
    unsafe { E::gemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), n as isize, 1) }
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
    mm(rows, d, cols, beta, &q[l0 * d..(l0 + rows) * d], false, &k[s0 * d..(s0 + cols) * d], true, E::zero(), block);
    bias.add(block, bh, (l0, rows), (s0, cols), dims.s);
}

/// One forward work unit: rows `l0..l0 + out.len() / dv` of head `bh`.
struct RowBlock<'a, E> {
    bh: usize,
    l0: usize,
    out: &'a mut [E],
    lse: &'a mut [E],
}

/// Streaming forward on host slices: returns `out [B, H, L, dv]` and `lse [B, H, L]`. Every (head, row
/// block) is a task on rayon's pool; each row's result depends only on its own data, so it is the same for
/// any number of threads.
fn forward<E: Element>(q: &[E], k: &[E], v: &[E], beta: &[E], bias: &HostBias<'_, E>, dims: Dims) -> (Vec<E>, Vec<E>) {
    let Dims { b, h, l, s, d, dv } = dims;
    let mut out = vec![E::zero(); b * h * l * dv];
    let mut lse = vec![E::zero(); b * h * l];
    let mut units = Vec::with_capacity(b * h * l.div_ceil(ROWS));
    let (mut out_rest, mut lse_rest) = (&mut out[..], &mut lse[..]);
    for bh in 0..b * h {
        for l0 in (0..l).step_by(ROWS) {
            let rows = ROWS.min(l - l0);
            let (out, out_tail) = std::mem::take(&mut out_rest).split_at_mut(rows * dv);
            let (lse, lse_tail) = std::mem::take(&mut lse_rest).split_at_mut(rows);
            (out_rest, lse_rest) = (out_tail, lse_tail);
            units.push(RowBlock { bh, l0, out, lse });
        }
    }
    units.into_par_iter().for_each_init(
        || vec![E::zero(); ROWS * COLS],
        |block, u| {
            wide(|| {
                let (bi, hi) = (u.bh / h, u.bh % h);
                let (qh, kh, vh) = (
                    &q[u.bh * l * d..(u.bh + 1) * l * d],
                    &k[u.bh * s * d..(u.bh + 1) * s * d],
                    &v[u.bh * s * dv..(u.bh + 1) * s * dv],
                );
                let rows = u.lse.len();
                forward_rows(block, qh, kh, vh, beta[hi], bias, (bi, hi), (u.l0, rows), &dims, u.out, u.lse);
            })
        },
    );
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
    let mut m = [E::neg_infinity(); ROWS];
    let mut sum = [E::zero(); ROWS];
    out.fill(E::zero());
    for s0 in (0..s).step_by(COLS) {
        let cols = COLS.min(s - s0);
        scores(block, q, k, beta, bias, bh, (l0, rows), (s0, cols), dims);
        for r in 0..rows {
            let row = &mut block[r * cols..(r + 1) * cols];
            let bmax = reduce::max(row);
            let m_new = if bmax > m[r] { bmax } else { m[r] };
            if m_new == E::neg_infinity() {
                row.fill(E::zero());
                continue;
            }
            row.iter_mut().for_each(|x| *x -= m_new);
            E::exp_in_place(row);
            let scale = (m[r] - m_new).exp();
            sum[r] = sum[r] * scale + reduce::sum(row);
            m[r] = m_new;
            if scale != E::one() {
                out[r * dv..(r + 1) * dv].iter_mut().for_each(|o| *o *= scale);
            }
        }
        // out += p · v[s0..s0+cols]
        mm(rows, cols, dv, E::one(), block, false, &v[s0 * dv..(s0 + cols) * dv], false, E::one(), out);
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

/// One backward work unit: the column blocks `s0..s0 + dk.len() / d` of head `bh`, over every row block.
/// It owns its `dk`, `dv` rows and a `dq` accumulator (the head's `dq` itself for the first unit of a head,
/// a private partial otherwise).
struct ColumnGroup<'a, E> {
    bh: usize,
    s0: usize,
    width: usize,
    dk: &'a mut [E],
    dv: &'a mut [E],
    dq: &'a mut [E],
}

/// How many column groups each head's backward splits into: about [`BACKWARD_UNITS`] tasks in all, never
/// more groups than column blocks. A function of the shapes only, so the sum over groups (and the result)
/// is the same for any number of threads.
fn column_groups(dims: &Dims) -> usize {
    (BACKWARD_UNITS / (dims.b * dims.h).max(1)).min(dims.s.div_ceil(COLS)).max(1)
}

/// Streaming backward on host slices: `(dq, dk, dv)`. Tasks are (head, column group) pairs (FlashAttention-2's
/// order: a column block's `dK`, `dV` stay in cache while every row block passes); the `dq` partials of a
/// head's groups are added in group order afterwards.
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
    // Δ_r = Σ_j dO[r, j] O[r, j]
    let delta: Vec<E> =
        (0..b * h * l).map(|r| reduce::dot(&out[r * dv..(r + 1) * dv], &d_out[r * dv..(r + 1) * dv])).collect();
    let groups = column_groups(&dims);
    let blocks = s.div_ceil(COLS);
    let mut partials = vec![E::zero(); b * h * (groups - 1) * l * d];
    let mut units = Vec::with_capacity(b * h * groups);
    {
        let mut dq_rest = dq.chunks_mut((l * d).max(1));
        let mut part_rest = partials.chunks_mut((l * d).max(1));
        let (mut dk_rest, mut dv_rest) = (&mut dk[..], &mut dvv[..]);
        for bh in 0..b * h {
            let mut dq_head = dq_rest.next();
            for g in 0..groups {
                let c0 = (g * blocks / groups * COLS).min(s);
                let c1 = ((g + 1) * blocks / groups * COLS).min(s);
                let (dk_g, dk_tail) = std::mem::take(&mut dk_rest).split_at_mut((c1 - c0) * d);
                let (dv_g, dv_tail) = std::mem::take(&mut dv_rest).split_at_mut((c1 - c0) * dv);
                (dk_rest, dv_rest) = (dk_tail, dv_tail);
                let dq = if g == 0 { dq_head.take() } else { part_rest.next() };
                units.push(ColumnGroup { bh, s0: c0, width: c1 - c0, dk: dk_g, dv: dv_g, dq: dq.unwrap_or_default() });
            }
        }
    }
    units.into_par_iter().for_each_init(
        || (vec![E::zero(); ROWS * COLS], vec![E::zero(); ROWS * COLS]),
        |(p, dp), u| {
            wide(|| {
                let bh = u.bh;
                let (bi, hi) = (bh / h, bh % h);
                let beta_h = beta[hi];
                let (qh, kh, vh) = (
                    &q[bh * l * d..(bh + 1) * l * d],
                    &k[bh * s * d..(bh + 1) * s * d],
                    &v[bh * s * dv..(bh + 1) * s * dv],
                );
                let (doh, lh, dh) =
                    (&d_out[bh * l * dv..(bh + 1) * l * dv], &lse[bh * l..(bh + 1) * l], &delta[bh * l..(bh + 1) * l]);
                let width = u.width;
                for c0 in (0..width).step_by(COLS) {
                    let (s0, cols) = (u.s0 + c0, COLS.min(width - c0));
                    let (kb, vb) = (&kh[s0 * d..(s0 + cols) * d], &vh[s0 * dv..(s0 + cols) * dv]);
                    let dk_b = &mut u.dk[c0 * d..(c0 + cols) * d];
                    let dv_b = &mut u.dv[c0 * dv..(c0 + cols) * dv];
                    for l0 in (0..l).step_by(ROWS) {
                        let rows = ROWS.min(l - l0);
                        let n = rows * cols;
                        scores(p, qh, kh, beta_h, bias, (bi, hi), (l0, rows), (s0, cols), &dims);
                        for r in 0..rows {
                            let (lr, row) = (lh[l0 + r], &mut p[r * cols..(r + 1) * cols]);
                            if lr == E::neg_infinity() {
                                row.fill(E::zero());
                            } else {
                                row.iter_mut().for_each(|x| *x -= lr);
                                E::exp_in_place(row);
                            }
                        }
                        let do_b = &doh[l0 * dv..(l0 + rows) * dv];
                        // dV[s0..] += pᵀ dO
                        mm(cols, rows, dv, E::one(), p, true, do_b, false, E::one(), dv_b);
                        // dp = dO V[s0..]ᵀ, then ds = p ⊙ (dp − Δ) in place
                        mm(rows, dv, cols, E::one(), do_b, false, vb, true, E::zero(), dp);
                        for r in 0..rows {
                            let dr = dh[l0 + r];
                            let (pr, dpr) = (&p[r * cols..(r + 1) * cols], &mut dp[r * cols..(r + 1) * cols]);
                            dpr.iter_mut().zip(pr).for_each(|(g, &pp)| *g = pp * (*g - dr));
                        }
                        let ds = &dp[..n];
                        mm(rows, cols, d, beta_h, ds, false, kb, false, E::one(), &mut u.dq[l0 * d..(l0 + rows) * d]);
                        mm(cols, rows, d, beta_h, ds, true, &qh[l0 * d..(l0 + rows) * d], false, E::one(), dk_b);
                    }
                }
            })
        },
    );
    // dq of each head = its first group's accumulator + the other groups' partials, in group order.
    if groups > 1 && l * d > 0 {
        for (dq_head, parts) in dq.chunks_mut((l * d).max(1)).zip(partials.chunks((groups - 1) * l * d)) {
            for part in parts.chunks(l * d) {
                dq_head.iter_mut().zip(part).for_each(|(a, &x)| *a += x);
            }
        }
    }
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

    /// The blocked path gives the same bits on one thread as on several (the work split depends on the
    /// shapes only), for one head (column groups in backward) and for several.
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let be = Cpu::<f32>::new();
        let mut rng = StdRng::seed_from_u64(9);
        for &(b, h, l, s, d) in &[(1, 1, 300, 700, 16), (2, 3, 200, 260, 8)] {
            let mut t = |shape: &[usize]| {
                be.from_vec((0..shape.iter().product::<usize>()).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape)
            };
            let (q, k, v, dout) = (t(&[b, h, l, d]), t(&[b, h, s, d]), t(&[b, h, s, d]), t(&[b, h, l, d]));
            let beta: Vec<f32> = (0..h).map(|i| 0.5 + i as f32).collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let bias = ScoreBias::default();
                    let (o, lse) = be.association(&q, &k, &v, &beta, &bias);
                    let (dq, dk, dv) = be.association_backward(&q, &k, &v, &beta, &bias, &o, &lse, &dout);
                    [o, lse, dq, dk, dv].map(|x| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>())
                })
            };
            assert_eq!(run(1), run(2), "{:?}", (b, h, l, s, d));
            assert_eq!(run(1), run(3), "{:?}", (b, h, l, s, d));
        }
    }
}
