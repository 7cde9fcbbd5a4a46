//! Data parallelism: a global batch of `B` pairs split over `R` ranks, each encoding its shard of
//! `B / R` pairs, with the loss over all `B` pairs as one process would compute it.
//!
//! A step on `R` ranks ([`crate::train::Trainer::step_with`]):
//! 1. each rank embeds its shard (images and texts);
//! 2. the embeddings are all-gathered in rank order, so every rank holds the batch's `[B, d]` embeddings
//!    in the order of the global batch;
//! 3. every rank computes the loss and its gradient w.r.t. all `B` embeddings (the same numbers on every
//!    rank) and backpropagates its own rows through its towers: that is each rank's share of the exact
//!    gradient of the full-batch loss (the gather's backward is "take your rows");
//! 4. parameter gradients are summed over ranks (all-reduce); the τ⁻¹ gradient, which the loss gives
//!    whole, is counted on rank 0 only; clipping and AdamW then see the global gradient on every rank,
//!    which all take the same step.
//!
//! Engines implement [`Collective`]: [`SingleProcess`] (`R = 1`, no communication) and, with the `mpi`
//! feature, `mpi::Mpi` on the `mpi` crate (rsmpi; OpenMPI or MPICH, started by `mpiexec`).

#[cfg(feature = "mpi")]
pub mod mpi;

use hopfield::{Backend, Element, HopfieldError, Parameters, Result};

/// The collective operations data parallelism needs. Every rank calls the same operations in the same
/// order with buffers of the same length (all-gather: the same local length).
pub trait Collective {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Every rank's `local` (all of one length), concatenated in rank order.
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// Every rank's `local` (all of one length), concatenated in rank order.
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>>;
    /// Rank `root`'s bytes on every rank (`buf` is replaced on the others; lengths may differ).
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) -> Result<()>;
    /// Wait until every rank is here.
    fn barrier(&self) -> Result<()>;
}

/// One process: rank 0 of 1, every operation the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(local.to_vec())
    }
    fn broadcast_bytes(&self, _: usize, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// The element types a [`Collective`] moves.
pub trait CommElement: Element {
    /// [`Collective::all_reduce_sum_f32`] or `_f64`.
    fn all_reduce_sum(c: &dyn Collective, buf: &mut [Self]) -> Result<()>;
    /// [`Collective::all_gather_f32`] or `_f64`.
    fn all_gather(c: &dyn Collective, local: &[Self]) -> Result<Vec<Self>>;
}

impl CommElement for f32 {
    fn all_reduce_sum(c: &dyn Collective, buf: &mut [f32]) -> Result<()> {
        c.all_reduce_sum_f32(buf)
    }
    fn all_gather(c: &dyn Collective, local: &[f32]) -> Result<Vec<f32>> {
        c.all_gather_f32(local)
    }
}

impl CommElement for f64 {
    fn all_reduce_sum(c: &dyn Collective, buf: &mut [f64]) -> Result<()> {
        c.all_reduce_sum_f64(buf)
    }
    fn all_gather(c: &dyn Collective, local: &[f64]) -> Result<Vec<f64>> {
        c.all_gather_f64(local)
    }
}

/// Every rank's rows of `local` (`[n, …]`, the same shape on every rank), stacked in rank order:
/// `[R·n, …]`. On one rank, `local` itself.
pub fn all_gather_rows<B: Backend>(backend: &B, comm: &dyn Collective, local: &B::Tensor) -> Result<B::Tensor>
where
    B::Elem: CommElement,
{
    if comm.size() == 1 {
        return Ok(local.clone());
    }
    let mut shape = backend.shape(local);
    let all = B::Elem::all_gather(comm, &backend.to_vec(local))?;
    shape[0] *= comm.size();
    Ok(backend.from_vec(all, &shape))
}

/// Elements of one all-reduce of [`all_reduce_grads`]: 16 MiB of f32, so every buffer of a step stays under
/// the 32 MiB below which [`hopfield::backend::cpu::tune_allocator`] keeps allocations on the heap. Larger
/// buffers were mapped afresh every step, and page-faulting them in cost more than the all-reduce itself
/// (the tiny preset's 8 M gradients: ≈ 30 ms a step on one core).
const REDUCE_CHUNK: usize = 1 << 22;

/// Matrices with at least this many rows are reduced by rows: an embedding table's gradient is zero in every
/// row whose token no rank's batch holds, and those rows need not travel.
const SPARSE_MIN_ROWS: usize = 4096;

/// Sum every tensor of `grads` over the ranks. A matrix of at least `SPARSE_MIN_ROWS` rows (the token
/// embedding: 49 408 rows, most of them zero in a batch's gradient) sends only the rows that are non-zero on
/// some rank (found by an all-reduce of per-row flags); the others are zero on every rank, so their sum is
/// zero. The rest go concatenated into all-reduces of at most `REDUCE_CHUNK` elements (a larger tensor
/// alone). Each element is the same sum over ranks as a dense all-reduce gives.
pub fn all_reduce_grads<B: Backend, P: Parameters<B>>(backend: &B, comm: &dyn Collective, grads: &mut P) -> Result<()>
where
    B::Elem: CommElement,
{
    if comm.size() == 1 {
        return Ok(());
    }
    let mut tensors: Vec<(Vec<usize>, Vec<B::Elem>)> = Vec::new();
    grads.visit(&mut |_, t, _| tensors.push((backend.shape(t), backend.to_vec(t))));
    let is_table = |shape: &[usize]| shape.len() == 2 && shape[0] >= SPARSE_MIN_ROWS;
    for (shape, values) in tensors.iter_mut().filter(|(shape, _)| is_table(shape)) {
        all_reduce_rows(comm, shape[1], values)?;
    }
    let dense: Vec<usize> = (0..tensors.len()).filter(|&i| !is_table(&tensors[i].0)).collect();
    let mut start = 0;
    while start < dense.len() {
        let (mut end, mut len) = (start, 0);
        while end < dense.len() && (end == start || len + tensors[dense[end]].1.len() <= REDUCE_CHUNK) {
            len += tensors[dense[end]].1.len();
            end += 1;
        }
        if end == start + 1 {
            B::Elem::all_reduce_sum(comm, &mut tensors[dense[start]].1)?;
        } else {
            let mut flat = Vec::with_capacity(len);
            for &i in &dense[start..end] {
                flat.extend_from_slice(&tensors[i].1);
            }
            B::Elem::all_reduce_sum(comm, &mut flat)?;
            let mut at = 0;
            for &i in &dense[start..end] {
                let t = &mut tensors[i].1;
                let n = t.len();
                t.copy_from_slice(&flat[at..at + n]);
                at += n;
            }
        }
        start = end;
    }
    let mut reduced = tensors.into_iter();
    grads.visit_mut(&mut |_, t, _| {
        let (shape, values) = reduced.next().expect("one buffer per tensor");
        *t = backend.from_vec(values, &shape);
    });
    Ok(())
}

/// Sum a row-major matrix of rows of `cols` over the ranks, sending only the rows non-zero on some rank;
/// the others are set to zero (`+0.0`, as a dense sum of zeros of either sign but all negative would not:
/// the sign of a zero gradient changes nothing in AdamW or the clipping norm).
fn all_reduce_rows<E: CommElement>(comm: &dyn Collective, cols: usize, values: &mut [E]) -> Result<()> {
    let mut used: Vec<E> =
        values.chunks(cols).map(|row| if row.iter().any(|v| !v.is_zero()) { E::one() } else { E::zero() }).collect();
    E::all_reduce_sum(comm, &mut used)?;
    let rows: Vec<usize> = (0..used.len()).filter(|&r| !used[r].is_zero()).collect();
    let mut packed = Vec::with_capacity(rows.len() * cols);
    for &r in &rows {
        packed.extend_from_slice(&values[r * cols..(r + 1) * cols]);
    }
    E::all_reduce_sum(comm, &mut packed)?;
    values.fill(E::zero());
    for (k, &r) in rows.iter().enumerate() {
        values[r * cols..(r + 1) * cols].copy_from_slice(&packed[k * cols..(k + 1) * cols]);
    }
    Ok(())
}

/// Check at start-up that every rank runs the same thing: rank 0's `fingerprint` (the run's settings
/// and this build's version) is sent to all; a rank whose own differs fails naming the first difference.
pub fn check_same_everywhere(comm: &dyn Collective, fingerprint: &str) -> Result<()> {
    let mut root = fingerprint.as_bytes().to_vec();
    comm.broadcast_bytes(0, &mut root)?;
    let same = root == fingerprint.as_bytes();
    // Every rank learns whether any differs, so none goes on alone.
    let mut differing = [f64::from(u8::from(!same))];
    comm.all_reduce_sum_f64(&mut differing)?;
    if same && differing[0] == 0.0 {
        return Ok(());
    }
    if same {
        return Err(HopfieldError::input(
            "distributed start-up",
            format!("{} rank(s) run other settings or another program version than rank 0", differing[0]),
        ));
    }
    let root = String::from_utf8_lossy(&root);
    let at = root.chars().zip(fingerprint.chars()).take_while(|(a, b)| a == b).count();
    let around = |s: &str| s.chars().skip(at.saturating_sub(30)).take(80).collect::<String>();
    Err(HopfieldError::input(
        "distributed start-up",
        format!(
            "rank {} differs from rank 0 (settings or program version): rank 0 has …{}…, this rank …{}…",
            comm.rank(),
            around(&root),
            around(fingerprint)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopfield::Cpu;

    #[test]
    fn one_process_is_the_identity() {
        let cpu = Cpu::<f64>::new();
        let t = cpu.from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let g = all_gather_rows(&cpu, &SingleProcess, &t).unwrap();
        assert_eq!(cpu.to_vec(&g), cpu.to_vec(&t));
        check_same_everywhere(&SingleProcess, "x").unwrap();
    }
}
