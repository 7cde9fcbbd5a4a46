//! Element-wise helpers of the CPU backend: `f(a)` and `f(a, b)` over whole tensors, in parallel for large
//! ones, and the wrapping of row-major data.

use super::{CpuTensor, PAR_MIN};
use crate::element::Element;
use ndarray::{ArrayD, IxDyn, Zip};
use rayon::prelude::*;

/// Element-wise `f(a, b)` (same shapes), in parallel for large tensors. Row-major inputs go through plain
/// slice loops (chunks of [`PAR_MIN`]), which LLVM vectorises when `f` is branch-free (GELU's erf and exp
/// are); other layouts through ndarray's `Zip`. The same `f` per element either way: the same values.
pub(super) fn zip2<E: Element>(
    a: &CpuTensor<E>,
    b: &CpuTensor<E>,
    f: impl Fn(E, E) -> E + Sync + Send,
) -> CpuTensor<E> {
    if let (Some(xs), Some(ys)) = (a.as_slice(), b.as_slice()) {
        if a.shape() == b.shape() {
            let mut out = vec![E::zero(); xs.len()];
            let run = |(o, (x, y)): (&mut [E], (&[E], &[E]))| {
                o.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| *o = f(x, y));
            };
            if xs.len() >= PAR_MIN {
                out.par_chunks_mut(PAR_MIN).zip(xs.par_chunks(PAR_MIN).zip(ys.par_chunks(PAR_MIN))).for_each(run);
            } else {
                run((&mut out, (xs, ys)));
            }
            return arr(a.shape(), out);
        }
    }
    let z = Zip::from(a).and(b);
    if a.len() >= PAR_MIN { z.par_map_collect(|&x, &y| f(x, y)) } else { z.map_collect(|&x, &y| f(x, y)) }.into_shared()
}

/// Element-wise `f(a)`, in parallel for large tensors; slice loops for row-major inputs as in [`zip2`].
pub(super) fn map1<E: Element>(a: &CpuTensor<E>, f: impl Fn(E) -> E + Sync + Send) -> CpuTensor<E> {
    if let Some(xs) = a.as_slice() {
        let mut out = vec![E::zero(); xs.len()];
        let run = |(o, x): (&mut [E], &[E])| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x));
        if xs.len() >= PAR_MIN {
            out.par_chunks_mut(PAR_MIN).zip(xs.par_chunks(PAR_MIN)).for_each(run);
        } else {
            run((&mut out, xs));
        }
        return arr(a.shape(), out);
    }
    let z = Zip::from(a);
    if a.len() >= PAR_MIN { z.par_map_collect(|&x| f(x)) } else { z.map_collect(|&x| f(x)) }.into_shared()
}

/// Wrap row-major data.
pub(super) fn arr<E: Element>(shape: &[usize], data: Vec<E>) -> CpuTensor<E> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("data length equals the shape's size").into_shared()
}

/// The contiguous data of a 1-D parameter such as a norm weight.
pub(super) fn flat<E: Element>(t: &CpuTensor<E>) -> &[E] {
    t.as_slice().expect("parameters are contiguous")
}
