//! Scalar types the backends compute in.

use num_traits::{Float, FromPrimitive, ToPrimitive};
use std::fmt::{Debug, Display};

/// A float the CPU backend (ndarray + matrixmultiply) and the layers can compute in: `f32` or `f64`.
pub trait Element:
    Float
    + FromPrimitive
    + ToPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + 'static
{
    /// safetensors dtype name.
    const DTYPE: &'static str;
    /// Convert from `f64` (rounding for `f32`).
    fn of(x: f64) -> Self {
        <Self as FromPrimitive>::from_f64(x).expect("f64 converts to every Element")
    }
    /// Convert to `f64`.
    fn f64(self) -> f64 {
        ToPrimitive::to_f64(&self).expect("every Element converts to f64")
    }
    /// `C ← α·A·B + β·C` on strided matrices (A m×k, B k×n, C m×n), through matrixmultiply.
    ///
    /// # Safety
    /// The pointers and strides must describe valid matrices of those sizes, C must not alias A or B,
    /// and C may be uninitialised only when `beta` is zero.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
    /// `x ← exp(x)` for every element (the softmax hot loop).
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
}

impl Element for f32 {
    const DTYPE: &'static str = "F32";
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
    fn exp_in_place(xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = exp_f32(*x));
    }
}
impl Element for f64 {
    const DTYPE: &'static str = "F64";
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

/// `exp(x)` for f32 in straight-line code the compiler vectorises (SSE2 is enough): Cody–Waite range
/// reduction `x = n·ln2 + r`, Cephes' degree-7 polynomial for `e^r`, and `2^n` built from the exponent
/// bits. Relative error ≤ 2 ulp for −87 ≤ x ≤ 88; below −87 (e⁻⁸⁷ ≈ 1.6·10⁻³⁸,
/// and −∞, a masked score) it gives exactly 0, above 88 +∞; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer without a rounding instruction.
    const SHIFT: f32 = 12_582_912.0;
    // max/min, not clamp: a NaN input becomes a finite value here and NaN comes back through `x` below.
    #[allow(clippy::manual_clamp)]
    let xc = x.max(-87.0).min(88.0);
    let t = xc * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let er = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((t.to_bits() as i32 - SHIFT.to_bits() as i32 + 127) as u32) << 23);
    let y = er * two_n;
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn fast_exp_is_within_two_ulp_and_exact_at_the_edges() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 2.5 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        let mut xs = [0.5f32, -3.0, f32::NEG_INFINITY];
        <f32 as super::Element>::exp_in_place(&mut xs);
        assert_eq!(xs[2], 0.0);
        assert!((xs[0] - 0.5f32.exp()).abs() < 1e-6);
    }
}
