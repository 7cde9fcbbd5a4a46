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
}

impl Element for f32 {
    const DTYPE: &'static str = "F32";
}
impl Element for f64 {
    const DTYPE: &'static str = "F64";
}
