//! Batched `op(a) · op(b)` with optional transposes; `b` of rank 2 is shared by every batch entry (batch
//! stride 0). Two kernels, picked per [`Cube`] by [`MatmulKernel`]:
//!
//! - our own tiled shared-memory kernel: one 16×16 output tile per cube, one output per unit, `k` in steps
//!   of 16; out-of-range tile entries load as zero, so any `m, n, k` works;
//! - with the `cubek` feature, cubek-matmul (CubeCL's authors' matmul library, same CubeCL version). It
//!   reads our layouts directly: a transposed operand is a column-major view (strides swapped), a shared
//!   rank-2 `b` is either folded into one GEMM (`[batch·m, k] · [k, n]` when `a` is not transposed) or a
//!   batch of one that cubek broadcasts. When cubek refuses a problem (a setup error: launch limits, a
//!   layout it cannot express), our kernel runs instead, so the op never fails for the choice of kernel.
//!
//! Which is faster, and why ours stays the default, is measured in docs/cubecl.md (`hopfield/benches/matmul.rs`).

use super::{Cube, CubeRuntime, CubeTensor};
use cubecl::prelude::*;

const TILE: usize = 16;

/// Which kernel runs [`Backend::matmul`](crate::Backend::matmul) on a [`Cube`] (see [`Cube::with_matmul`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MatmulKernel {
    /// Our tiled shared-memory kernel (the default without the `cubek` feature).
    #[cfg_attr(not(feature = "cubek"), default)]
    Own,
    /// cubek-matmul's `SimpleUnit` routine: each unit computes a register tile, f32 throughout (no tensor
    /// cores), so it matches the CPU oracle as closely as ours. The default with the `cubek` feature.
    #[cfg(feature = "cubek")]
    #[cfg_attr(feature = "cubek", default)]
    CubekUnit,
    /// cubek-matmul's `DoubleUnit` routine: `SimpleUnit` with double-buffered stages.
    #[cfg(feature = "cubek")]
    CubekDoubleUnit,
    /// What cubek-matmul's `Strategy::Auto` picks: tensor cores (`SimpleCyclicCmma`) where the device has
    /// them, else `SimpleUnit`. On CUDA, f32 operands then run as **tf32** (about 1e-3 relative error):
    /// for timing against libraries that do the same, not for the 1e-4 oracle tests.
    #[cfg(feature = "cubek")]
    CubekAuto,
}

impl MatmulKernel {
    /// A short name for reports and bench ids: `own`, `cubek_unit`, `cubek_double_unit`, `cubek_auto`.
    pub fn name(self) -> &'static str {
        match self {
            MatmulKernel::Own => "own",
            #[cfg(feature = "cubek")]
            MatmulKernel::CubekUnit => "cubek_unit",
            #[cfg(feature = "cubek")]
            MatmulKernel::CubekDoubleUnit => "cubek_double_unit",
            #[cfg(feature = "cubek")]
            MatmulKernel::CubekAuto => "cubek_auto",
        }
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn matmul_kernel(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a_bs: usize,
    b_bs: usize,
    #[comptime] ta: bool,
    #[comptime] tb: bool,
) {
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let row = CUBE_POS_Y as usize * TILE + ty;
    let col = CUBE_POS_X as usize * TILE + tx;
    let batch = CUBE_POS_Z as usize;
    let a_off = batch * a_bs;
    let b_off = batch * b_bs;
    let mut sa = Shared::<[f32]>::new_slice(TILE * TILE);
    let mut sb = Shared::<[f32]>::new_slice(TILE * TILE);
    let mut acc = 0.0f32;
    let tiles = k.div_ceil(TILE);
    for t in 0..tiles {
        let ka = t * TILE + tx;
        let mut va = 0.0f32;
        if row < m && ka < k {
            if comptime![ta] {
                va = a[a_off + ka * m + row];
            } else {
                va = a[a_off + row * k + ka];
            }
        }
        sa[ty * TILE + tx] = va;
        let kb = t * TILE + ty;
        let mut vb = 0.0f32;
        if kb < k && col < n {
            if comptime![tb] {
                vb = b[b_off + col * k + kb];
            } else {
                vb = b[b_off + kb * n + col];
            }
        }
        sb[ty * TILE + tx] = vb;
        sync_cube();
        for i in 0..TILE {
            acc += sa[ty * TILE + i] * sb[i * TILE + tx];
        }
        sync_cube();
    }
    if row < m && col < n {
        out[batch * m * n + row * n + col] = acc;
    }
}

pub(crate) fn matmul<R: CubeRuntime>(
    g: &Cube<R>,
    a: &CubeTensor,
    b: &CubeTensor,
    ta: bool,
    tb: bool,
    kernel: MatmulKernel,
) -> CubeTensor {
    launch(g, a, b, ta, tb, kernel, true).expect("our kernel takes every problem")
}

/// [`matmul`]; where cubek refuses the problem, our kernel with `fallback`, else `None` (for the tests,
/// which must know that cubek ran).
fn launch<R: CubeRuntime>(
    g: &Cube<R>,
    a: &CubeTensor,
    b: &CubeTensor,
    ta: bool,
    tb: bool,
    kernel: MatmulKernel,
    fallback: bool,
) -> Option<CubeTensor> {
    let (ar, br) = (a.shape.len(), b.shape.len());
    debug_assert!(ar >= 2 && br >= 2, "matmul: operands of rank ≥ 2, got {:?} x {:?}", a.shape, b.shape);
    let (a0, a1) = (a.shape[ar - 2], a.shape[ar - 1]);
    let (b0, b1) = (b.shape[br - 2], b.shape[br - 1]);
    let (m, k) = if ta { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if tb { (b1, b0) } else { (b0, b1) };
    debug_assert_eq!(k, kb, "matmul: inner sizes {:?} x {:?} (ta {ta}, tb {tb})", a.shape, b.shape);
    let na: usize = a.shape[..ar - 2].iter().product();
    let nb: usize = b.shape[..br - 2].iter().product();
    debug_assert!(nb == na || br == 2 || nb == 1, "matmul: batch {:?} vs {:?}", a.shape, b.shape);
    let mut shape = a.shape[..ar - 2].to_vec();
    shape.extend([m, n]);
    let out = g.alloc(&shape);
    if out.is_empty() {
        return Some(out);
    }
    if k == 0 {
        return Some(super::elementwise::fill(g, &shape, 0.0));
    }
    let shared_b = br == 2 && ar > 2 || nb == 1 && na > 1;
    #[cfg(feature = "cubek")]
    if kernel != MatmulKernel::Own {
        match cubek::matmul(g, a, b, &out, [na, m, n, k], ta, tb, shared_b, kernel) {
            Ok(()) => return Some(out),
            Err(_) if !fallback => return None,
            Err(_) => {}
        }
    }
    let _ = (kernel, shared_b, fallback);
    let (cx, cy) = (n.div_ceil(TILE), m.div_ceil(TILE));
    assert!(
        cx <= 65_535 && cy <= 65_535 && na <= 65_535,
        "matmul: {:?} x {:?} exceeds the launch grid",
        a.shape,
        b.shape
    );
    let b_bs = if nb == 1 { 0 } else { k * n };
    matmul_kernel::launch(
        &g.client,
        CubeCount::Static(cx as u32, cy as u32, na as u32),
        CubeDim::new_2d(TILE as u32, TILE as u32),
        a.arg(),
        b.arg(),
        out.arg(),
        m,
        n,
        k,
        m * k,
        b_bs,
        ta,
        tb,
    );
    Some(out)
}

/// The launch through cubek-matmul.
#[cfg(feature = "cubek")]
mod cubek {
    use super::{Cube, CubeRuntime, CubeTensor, MatmulKernel};
    use cubecl::prelude::*;
    use cubek_matmul::definition::{MatmulElems, MatmulSetupError};
    use cubek_matmul::multi_level::Strategy as Routine;
    use cubek_matmul::strategy::Strategy;
    use cubek_std::InputBinding;

    /// A view of `t` as `op(t)` of logical shape `[batch, rows, cols]` (rank 2 without `batch`): row-major,
    /// or with `transposed` the storage is `[batch, cols, rows]`, i.e. a column-major view.
    fn view(t: &CubeTensor, batch: Option<usize>, rows: usize, cols: usize, transposed: bool) -> TensorBinding {
        let (rs, cs) = if transposed { (1, rows) } else { (cols, 1) };
        let (shape, strides) = match batch {
            Some(nb) => (vec![nb, rows, cols], vec![rows * cols, rs, cs]),
            None => (vec![rows, cols], vec![rs, cs]),
        };
        // SAFETY: `t` holds `batch · rows · cols` f32 (checked by the caller's shape logic) and these strides
        // address exactly its elements.
        unsafe { TensorBinding::from_raw_parts(t.handle.clone(), strides.into(), shape.into()) }
    }

    /// `out = op(a) · op(b)` for `[na, m, n, k]`; `Err` when cubek-matmul refuses the problem (the caller
    /// then runs our kernel; `out` is untouched by a refused launch).
    #[allow(clippy::too_many_arguments, clippy::result_large_err)]
    pub(super) fn matmul<R: CubeRuntime>(
        g: &Cube<R>,
        a: &CubeTensor,
        b: &CubeTensor,
        out: &CubeTensor,
        [na, m, n, k]: [usize; 4],
        ta: bool,
        tb: bool,
        shared_b: bool,
        kernel: MatmulKernel,
    ) -> Result<(), MatmulSetupError> {
        let f32_ty = f32::elem_type_native();
        let (lhs, rhs, dst) = if shared_b && !ta {
            // One GEMM over every batch row: the projections' `[.., m, k] · [k, n]`.
            (view(a, None, na * m, k, false), view(b, None, k, n, tb), view(out, None, na * m, n, false))
        } else {
            let nb = if shared_b { 1 } else { na };
            (view(a, Some(na), m, k, ta), view(b, Some(nb), k, n, tb), view(out, Some(na), m, n, false))
        };
        let (lhs, rhs) = (InputBinding::new(lhs, f32_ty), InputBinding::new(rhs, f32_ty));
        let mut dtypes = MatmulElems::from_single_dtype(f32_ty);
        let launch = |routine: Routine, dtypes: &mut MatmulElems| {
            cubek_matmul::launch::launch_ref(
                &Strategy::MultiLevel(routine),
                &g.client,
                lhs.clone(),
                rhs.clone(),
                dst.clone(),
                dtypes,
            )
        };
        match kernel {
            MatmulKernel::Own => unreachable!("our kernel is launched by the caller"),
            MatmulKernel::CubekUnit => launch(Routine::SimpleUnit(Default::default()), &mut dtypes),
            MatmulKernel::CubekDoubleUnit => launch(Routine::DoubleUnit(Default::default()), &mut dtypes),
            // `Strategy::Auto` without its panic on a refused problem: tensor cores, else the unit routine.
            MatmulKernel::CubekAuto => {
                launch(Routine::SimpleCyclicCmma(Default::default()), &mut dtypes).or_else(|_| {
                    let mut dtypes = MatmulElems::from_single_dtype(f32_ty);
                    launch(Routine::SimpleUnit(Default::default()), &mut dtypes)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::{launch, MatmulKernel};
    use crate::backend::cube::{Cube, CubeRuntime, CubeTensor};
    use crate::backend::Backend;

    /// `kernel`'s product; fails the test where cubek refused the problem (no silent fallback here).
    fn product<R: CubeRuntime>(
        g: &Cube<R>,
        a: &CubeTensor,
        b: &CubeTensor,
        ta: bool,
        tb: bool,
        kernel: MatmulKernel,
    ) -> CubeTensor {
        launch(g, a, b, ta, tb, kernel, false)
            .unwrap_or_else(|| panic!("{kernel:?} refused {:?} x {:?} (ta {ta}, tb {tb})", a.shape, b.shape))
    }

    /// Every kernel with its tolerance: the f32 kernels at 1e-5, cubek's `Auto` at 1e-2 (tf32 on CUDA).
    fn kernels() -> Vec<(MatmulKernel, f64)> {
        #[allow(unused_mut)]
        let mut k = vec![(MatmulKernel::Own, 1e-5)];
        #[cfg(feature = "cubek")]
        k.extend([
            (MatmulKernel::CubekUnit, 1e-5),
            (MatmulKernel::CubekDoubleUnit, 1e-5),
            (MatmulKernel::CubekAuto, 1e-2),
        ]);
        k
    }

    #[test]
    fn matmul_matches_cpu_for_every_kernel_transpose_and_odd_sizes() {
        let (c, mut r) = (cpu(), rng(11));
        for (kernel, tol) in kernels() {
            let g = gpu().with_matmul(kernel);
            // Odd sizes straddle our 16-wide tiles and cubek's vector widths; (2, 64, 64, 64) is aligned, so
            // cubek takes its vectorised loads there.
            for &(batch, m, k, n) in &[(1, 1, 1, 1), (3, 17, 33, 5), (2, 40, 7, 65), (1, 129, 64, 31), (2, 64, 64, 64)]
            {
                for ta in [false, true] {
                    for tb in [false, true] {
                        let sa = if ta { [batch, k, m] } else { [batch, m, k] };
                        let sb = if tb { [batch, n, k] } else { [batch, k, n] };
                        let (ag, ac) = pair(&g, &mut r, &sa);
                        let (bg, bc) = pair(&g, &mut r, &sb);
                        let what = format!("{kernel:?} matmul {batch}x{m}x{k}x{n} ta {ta} tb {tb}");
                        assert_close(
                            &what,
                            &g,
                            &product(&g, &ag, &bg, ta, tb, kernel),
                            &c.matmul(&ac, &bc, ta, tb),
                            tol,
                        );
                        // Shared rank-2 right operand.
                        let sb2 = if tb { [n, k] } else { [k, n] };
                        let (bg2, bc2) = pair(&g, &mut r, &sb2);
                        assert_close(
                            &format!("{what} shared b"),
                            &g,
                            &product(&g, &ag, &bg2, ta, tb, kernel),
                            &c.matmul(&ac, &bc2, ta, tb),
                            tol,
                        );
                    }
                }
            }
            // Four-dimensional batches, as the layers use them: [B, H, L, d] x [B, H, S, d]ᵀ.
            let (qg, qc) = pair(&g, &mut r, &[2, 3, 9, 8]);
            let (kg, kc) = pair(&g, &mut r, &[2, 3, 11, 8]);
            assert_close(
                &format!("{kernel:?} matmul 4d"),
                &g,
                &product(&g, &qg, &kg, false, true, kernel),
                &c.matmul(&qc, &kc, false, true),
                tol,
            );
            // Through `Backend::matmul` (the kernel set by `with_matmul`).
            assert_close(
                &format!("{kernel:?} Backend::matmul"),
                &g,
                &g.matmul(&qg, &kg, false, true),
                &c.matmul(&qc, &kc, false, true),
                tol,
            );
            // A batch-of-one rank-3 `b` shared by a batch of `a`.
            let (ag, ac) = pair(&g, &mut r, &[3, 5, 6]);
            let (bg, bc) = pair(&g, &mut r, &[1, 6, 4]);
            assert_close(
                &format!("{kernel:?} matmul batch-1 b"),
                &g,
                &product(&g, &ag, &bg, false, false, kernel),
                &c.matmul(&ac, &bc, false, false),
                tol,
            );
        }
    }
}
