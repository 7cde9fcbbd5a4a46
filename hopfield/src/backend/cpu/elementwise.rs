//! Element-wise helpers of the CPU backend: `f(a)` and `f(a, b)` over whole tensors, in parallel for large
//! ones, and the wrapping of row-major data.

use super::{CpuTensor, PAR_MIN};
use crate::activation::Activation;
use crate::element::Element;
use ndarray::{ArrayD, IxDyn, Zip};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Run `f` compiled for the widest vector unit the CPU has (AVX-512F, else AVX2 on x86-64), so that its
/// loops vectorise beyond the SSE2 baseline the crate is built for: runtime dispatch, no `-C target-cpu`.
/// Only where LLVM inlines `f` here: small loops do (the adds of `zip2`, checked in `perf annotate`), a
/// large body may stay an outlined call at the baseline width; the heavy loops use [`widened!`] instead. The same IEEE operations in the same order at any width (Rust never contracts
/// `a·b + c` into an FMA by itself, and the reductions keep fixed lanes), so the results are the same bits.
#[inline(always)]
pub(super) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { with_avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

/// `o = f(x, y)` element-wise; always inlined, so that a caller under [`wide`] vectorises it at its width
/// (a closure holding the loop may stay a call and keep the baseline width).
#[inline(always)]
pub(super) fn zip_loop<E: Copy>(o: &mut [MaybeUninit<E>], x: &[E], y: &[E], f: &impl Fn(E, E) -> E) {
    o.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| {
        o.write(f(x, y));
    });
}

/// `o = f(x)` element-wise, inlined as [`zip_loop`].
#[inline(always)]
pub(super) fn map_loop<E: Copy>(o: &mut [MaybeUninit<E>], x: &[E], f: &impl Fn(E) -> E) {
    o.iter_mut().zip(x).for_each(|(o, &x)| {
        o.write(f(x));
    });
}

/// A buffer of `len` elements that `fill` writes, every one of them (the element loops of this module
/// write their whole output), without zero-filling it first: for the tensors of a training step that
/// memset was a tenth of the element-wise time.
pub(super) fn written<E: Copy>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<E>])) -> Vec<E> {
    let mut out: Vec<MaybeUninit<E>> = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { out.set_len(len) };
    fill(&mut out);
    assume_written(out)
}

/// `Vec<MaybeUninit<E>>` → `Vec<E>` without a copy, once every element has been written.
pub(super) fn assume_written<E: Copy>(out: Vec<MaybeUninit<E>>) -> Vec<E> {
    let mut out = std::mem::ManuallyDrop::new(out);
    // SAFETY: the callers write every element before this; MaybeUninit<E> has E's layout, and the
    // allocation (pointer, length, capacity) is handed over unchanged.
    unsafe { Vec::from_raw_parts(out.as_mut_ptr() as *mut E, out.len(), out.capacity()) }
}

/// `$name(args)`: the loop `$body` (calls of always-inlined functions) compiled for AVX-512F, AVX2 or the
/// baseline, chosen at run time. Unlike [`wide`] this cannot fail to inline a large loop body (a closure
/// may stay a call).
macro_rules! widened {
    ($(#[$doc:meta])* $name:ident, ($($arg:ident: $ty:ty),*) => $body:expr) => {
        $(#[$doc])*
        pub(super) fn $name<E: Element>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn w512<E: Element>($($arg: $ty),*) {
                    $body
                }
                #[target_feature(enable = "avx2")]
                unsafe fn w256<E: Element>($($arg: $ty),*) {
                    $body
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { w512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { w256($($arg),*) };
                }
            }
            $body
        }
    };
}

// Indexed loops, not iterator chains: `Zip::fold` may stay an outlined call at the baseline width. The
// element functions are passed as fn items (`E::gelu`), direct calls that inline.
#[inline(always)]
fn indexed_map<E: Element>(o: &mut [MaybeUninit<E>], x: &[E], f: impl Fn(E) -> E) {
    let n = o.len().min(x.len());
    let (o, x) = (&mut o[..n], &x[..n]);
    for i in 0..n {
        o[i].write(f(x[i]));
    }
}

/// `o = dy · f'(x)` for the derivative `df`.
#[inline(always)]
fn indexed_backward<E: Element>(o: &mut [MaybeUninit<E>], dy: &[E], x: &[E], df: impl Fn(E) -> E) {
    let n = o.len().min(dy.len()).min(x.len());
    let (o, dy, x) = (&mut o[..n], &dy[..n], &x[..n]);
    for i in 0..n {
        o[i].write(dy[i] * df(x[i]));
    }
}

widened!(
    /// `o = quick_gelu(x)` element-wise (the tiny and CLIP presets' MLP activation).
    quick_gelu_slices, (o: &mut [MaybeUninit<E>], x: &[E]) => indexed_map(o, x, E::quick_gelu)
);
widened!(
    /// `o = dy · quick_gelu'(x)` element-wise.
    quick_gelu_backward_slices, (o: &mut [MaybeUninit<E>], dy: &[E], x: &[E]) => indexed_backward(o, dy, x, E::quick_gelu_derivative)
);
widened!(
    /// `o = gelu(x)` element-wise (the encoders' MLP activation, the heaviest element loop).
    gelu_slices, (o: &mut [MaybeUninit<E>], x: &[E]) => indexed_map(o, x, E::gelu)
);
widened!(
    /// `o = dy · gelu'(x)` element-wise.
    gelu_backward_slices, (o: &mut [MaybeUninit<E>], dy: &[E], x: &[E]) => indexed_backward(o, dy, x, E::gelu_derivative)
);

/// `dy · act'(x)` over whole tensors for the activations with a widened loop (GELU, QuickGELU), as [`zip2`]
/// would compute it (the same values); `None` for the others.
pub(super) fn widened_backward<E: Element>(
    act: Activation,
    dy: &CpuTensor<E>,
    x: &CpuTensor<E>,
) -> Option<CpuTensor<E>> {
    let (run, one): (fn(&mut [MaybeUninit<E>], &[E], &[E]), fn(E, E) -> E) = match act {
        Activation::Gelu => (gelu_backward_slices, |d, v| d * v.gelu_derivative()),
        Activation::QuickGelu => (quick_gelu_backward_slices, |d, v| d * v.quick_gelu_derivative()),
        _ => return None,
    };
    Some(match (dy.as_slice(), x.as_slice()) {
        (Some(ds), Some(xs)) if dy.shape() == x.shape() => {
            let out = written(xs.len(), |out| {
                out.par_chunks_mut(PAR_MIN)
                    .zip(ds.par_chunks(PAR_MIN).zip(xs.par_chunks(PAR_MIN)))
                    .for_each(|(o, (d, x))| run(o, d, x))
            });
            arr(x.shape(), out)
        }
        _ => zip2(dy, x, one),
    })
}

/// `act(x)` over a whole tensor for the activations with a widened loop, as [`map1`] would compute it;
/// `None` for the others.
pub(super) fn widened_forward<E: Element>(act: Activation, x: &CpuTensor<E>) -> Option<CpuTensor<E>> {
    let (run, one): (fn(&mut [MaybeUninit<E>], &[E]), fn(E) -> E) = match act {
        Activation::Gelu => (gelu_slices, |v| v.gelu()),
        Activation::QuickGelu => (quick_gelu_slices, |v| v.quick_gelu()),
        _ => return None,
    };
    Some(match x.as_slice() {
        Some(xs) => {
            let out = written(xs.len(), |out| {
                out.par_chunks_mut(PAR_MIN).zip(xs.par_chunks(PAR_MIN)).for_each(|(o, x)| run(o, x))
            });
            arr(x.shape(), out)
        }
        None => map1(x, one),
    })
}

/// [`widened_forward`] on slices: `o = act(x)`; false (nothing written) for an activation without a widened
/// loop.
pub(super) fn widened_forward_slices<E: Element>(act: Activation, o: &mut [MaybeUninit<E>], x: &[E]) -> bool {
    match act {
        Activation::Gelu => gelu_slices(o, x),
        Activation::QuickGelu => quick_gelu_slices(o, x),
        _ => return false,
    }
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

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
            let run = |(o, (x, y)): (&mut [MaybeUninit<E>], (&[E], &[E]))| {
                wide(|| zip_loop(o, x, y, &f));
            };
            let out = written(xs.len(), |out| {
                if xs.len() >= PAR_MIN {
                    out.par_chunks_mut(PAR_MIN).zip(xs.par_chunks(PAR_MIN).zip(ys.par_chunks(PAR_MIN))).for_each(run);
                } else {
                    run((out, (xs, ys)));
                }
            });
            return arr(a.shape(), out);
        }
    }
    let z = Zip::from(a).and(b);
    if a.len() >= PAR_MIN { z.par_map_collect(|&x, &y| f(x, y)) } else { z.map_collect(|&x, &y| f(x, y)) }.into_shared()
}

/// Element-wise `f(a)`, in parallel for large tensors; slice loops for row-major inputs as in [`zip2`].
pub(super) fn map1<E: Element>(a: &CpuTensor<E>, f: impl Fn(E) -> E + Sync + Send) -> CpuTensor<E> {
    if let Some(xs) = a.as_slice() {
        let run = |(o, x): (&mut [MaybeUninit<E>], &[E])| wide(|| map_loop(o, x, &f));
        let out = written(xs.len(), |out| {
            if xs.len() >= PAR_MIN {
                out.par_chunks_mut(PAR_MIN).zip(xs.par_chunks(PAR_MIN)).for_each(run);
            } else {
                run((out, xs));
            }
        });
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
