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
    /// `C ← α·A·B + β·C` on strided matrices (A m×k, B k×n, C m×n): f32 through the kernel
    /// [`crate::backend::cpu::sgemm_kernel`] chose for this processor, f64 through matrixmultiply.
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
    /// GELU with the exact erf, `½·x·(1 + erf(x/√2))`. The default computes in f64 through libm's erf;
    /// `f32` overrides it with a branch-free f32 erf ([`erf_f32`]) that the element loops vectorise.
    #[inline]
    fn gelu(self) -> Self {
        let x = self.f64();
        Self::of(0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)))
    }
    /// `d GELU / dx = Φ(x) + x·φ(x)`, computed as [`Element::gelu`] is.
    #[inline]
    fn gelu_derivative(self) -> Self {
        let x = self.f64();
        let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        Self::of(cdf + x * pdf)
    }
    /// CLIP's QuickGELU `x·σ(1.702·x)`. The default computes in f64 (what [`Activation::forward`] does for
    /// any element); `f32` overrides it in f32 with [`exp_f32`], which the element loops vectorise.
    ///
    /// [`Activation::forward`]: crate::activation::Activation::forward
    #[inline(always)]
    fn quick_gelu(self) -> Self {
        crate::activation::Activation::QuickGelu.forward(self)
    }
    /// `d QuickGELU / dx = s + 1.702·x·s·(1 − s)` with `s = σ(1.702·x)`, computed as
    /// [`Element::quick_gelu`] is.
    #[inline(always)]
    fn quick_gelu_derivative(self) -> Self {
        crate::activation::Activation::QuickGelu.derivative(self)
    }
}

/// erf in f32 without branches: `x·P(x²)/Q(x²)` on x clamped to [−4, 4] (erf is ±1 to f32 precision beyond),
/// the rational approximation of Eigen's and XLA's `erf` for floats (absolute error 3.8e-7 here, about 3 f32 ulp
/// near ±1, f32 rounding included). libm's erf
/// goes through f64 with branches, one element at a time; this one vectorises.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    // The published coefficients, rounded to f32 once here.
    const P: [f32; 7] = [
        -2.72614225801306e-10_f64 as f32,
        2.77068142495902e-08_f64 as f32,
        -2.10102402082508e-06_f64 as f32,
        -5.69250639462346e-05_f64 as f32,
        -7.34990630326855e-04_f64 as f32,
        -2.95459980854025e-03_f64 as f32,
        -1.60960333262415e-02_f64 as f32,
    ];
    const Q: [f32; 5] = [
        -1.45660718464996e-05_f64 as f32,
        -2.13374055278905e-04_f64 as f32,
        -1.68282697438203e-03_f64 as f32,
        -7.37332916720468e-03_f64 as f32,
        -1.42647390514189e-02_f64 as f32,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P[1..].iter().fold(P[0], |acc, &c| acc * x2 + c);
    let q = Q[1..].iter().fold(Q[0], |acc, &c| acc * x2 + c);
    x * p / q
}

/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

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
        crate::backend::cpu::sgemm::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
    fn exp_in_place(xs: &mut [f32]) {
        exp_f32_slice(xs)
    }
    #[inline(always)]
    fn gelu(self) -> f32 {
        0.5 * self * (1.0 + erf_f32(self * std::f32::consts::FRAC_1_SQRT_2))
    }
    #[inline(always)]
    fn gelu_derivative(self) -> f32 {
        let cdf = 0.5 * (1.0 + erf_f32(self * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = exp_f32(-0.5 * self * self) * FRAC_1_SQRT_2PI;
        cdf + self * pdf
    }
    #[inline(always)]
    fn quick_gelu(self) -> f32 {
        self / (1.0 + exp_f32(-1.702 * self))
    }
    #[inline(always)]
    fn quick_gelu_derivative(self) -> f32 {
        let s = 1.0 / (1.0 + exp_f32(-1.702 * self));
        s + 1.702 * self * s * (1.0 - s)
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

/// `x ← exp_f32(x)` over a slice, compiled for AVX-512F or AVX2 when the CPU has them (runtime dispatch;
/// the same IEEE operations at any width, so the same values).
fn exp_f32_slice(xs: &mut [f32]) {
    #[inline(always)]
    fn run(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = exp_f32(*x);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn w512(xs: &mut [f32]) {
            run(xs)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn w256(xs: &mut [f32]) {
            run(xs)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { w512(xs) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { w256(xs) };
        }
    }
    run(xs)
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
    use super::{erf_f32, exp_f32, Element};

    #[test]
    fn fast_erf_and_gelu_in_f32_follow_the_f64_reference() {
        let (mut erf_worst, mut gelu_worst, mut grad_worst) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..=240_000 {
            let x = -12.0 + 24.0 * i as f32 / 240_000.0;
            let xd = x as f64;
            erf_worst = erf_worst.max((erf_f32(x) as f64 - libm::erf(xd)).abs());
            let (g, g64) = (x.gelu() as f64, xd.gelu());
            // On x's scale: for x ≪ 0 the f32 sum 1 + erf(x/√2) keeps an absolute error of an ulp of 1.
            gelu_worst = gelu_worst.max((g - g64).abs() / (1.0 + xd.abs()));
            let (d, d64) = (x.gelu_derivative() as f64, xd.gelu_derivative());
            grad_worst = grad_worst.max((d - d64).abs());
        }
        assert!(erf_worst < 5e-7, "erf: worst absolute error {erf_worst:e}");
        assert!(gelu_worst < 1e-6, "gelu: worst relative error {gelu_worst:e}");
        assert!(grad_worst < 1e-6, "gelu': worst absolute error {grad_worst:e}");
        assert_eq!((erf_f32(0.0), erf_f32(f32::INFINITY), erf_f32(f32::NEG_INFINITY)), (0.0, 1.0, -1.0));
        assert_eq!((0.0f32.gelu(), (-20.0f32).gelu(), 20.0f32.gelu()), (0.0, 0.0, 20.0));
    }

    #[test]
    fn f32_quick_gelu_follows_the_f64_reference() {
        let (mut worst, mut grad_worst) = (0.0f64, 0.0f64);
        for i in 0..=240_000 {
            let x = -60.0 + 120.0 * i as f32 / 240_000.0;
            let xd = x as f64;
            worst = worst.max((x.quick_gelu() as f64 - xd.quick_gelu()).abs() / (1.0 + xd.abs()));
            grad_worst = grad_worst.max((x.quick_gelu_derivative() as f64 - xd.quick_gelu_derivative()).abs());
        }
        assert!(worst < 5e-7, "quick_gelu: worst relative error {worst:e}");
        assert!(grad_worst < 1e-6, "quick_gelu': worst absolute error {grad_worst:e}");
        assert_eq!((0.0f32.quick_gelu(), (-100.0f32).quick_gelu(), 100.0f32.quick_gelu()), (0.0, -0.0, 100.0));
        assert!(f32::NAN.quick_gelu().is_nan());
    }

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
