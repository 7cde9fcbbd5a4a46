//! Named element-wise activations (the association activation of `Hopfield`, the MLP activations of the
//! encoder layers). Parsing an unknown name is an error, unlike hflayers' `getattr(torch, name, None)`,
//! which silently applies nothing.

use crate::element::Element;
use crate::error::HopfieldError;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// An element-wise activation with a known derivative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x`.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Exact GELU, `x Φ(x)` (PyTorch's default `gelu`).
    Gelu,
    /// GELU with the tanh approximation (`approximate='tanh'`).
    GeluTanh,
    /// CLIP's `x σ(1.702 x)`.
    QuickGelu,
    /// `x σ(x)` (a.k.a. swish).
    Silu,
    /// `x` for x > 0, `e^x − 1` otherwise.
    Elu,
    /// Scaled ELU with PyTorch's constants.
    Selu,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl Activation {
    /// Every accepted name, for error messages and CLIs.
    pub const NAMES: &'static [&'static str] =
        &["identity", "relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "quick_gelu", "silu", "elu", "selu", "softplus"];

    /// Apply to one value.
    #[inline]
    pub fn forward<E: Element>(self, x: E) -> E {
        let xf = x.f64();
        let y = match self {
            Activation::Identity => return x,
            Activation::Relu => return if x > E::zero() { x } else { E::zero() },
            Activation::Tanh => return x.tanh(),
            Activation::Sigmoid => sigmoid(xf),
            Activation::Gelu => return x.gelu(),
            Activation::GeluTanh => 0.5 * xf * (1.0 + (GELU_C * (xf + 0.044715 * xf * xf * xf)).tanh()),
            Activation::QuickGelu => xf * sigmoid(1.702 * xf),
            Activation::Silu => xf * sigmoid(xf),
            Activation::Elu => {
                if xf > 0.0 {
                    xf
                } else {
                    xf.exp_m1()
                }
            }
            Activation::Selu => SELU_SCALE * if xf > 0.0 { xf } else { SELU_ALPHA * xf.exp_m1() },
            Activation::Softplus => softplus(xf),
        };
        E::of(y)
    }

    /// Derivative `dy/dx` at `x`.
    #[inline]
    pub fn derivative<E: Element>(self, x: E) -> E {
        let xf = x.f64();
        let d = match self {
            Activation::Identity => 1.0,
            Activation::Relu => {
                if xf > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => {
                let t = xf.tanh();
                1.0 - t * t
            }
            Activation::Sigmoid => {
                let s = sigmoid(xf);
                s * (1.0 - s)
            }
            Activation::Gelu => return x.gelu_derivative(),
            Activation::GeluTanh => {
                let u = GELU_C * (xf + 0.044715 * xf * xf * xf);
                let t = u.tanh();
                0.5 * (1.0 + t) + 0.5 * xf * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * xf * xf)
            }
            Activation::QuickGelu => {
                let s = sigmoid(1.702 * xf);
                s + 1.702 * xf * s * (1.0 - s)
            }
            Activation::Silu => {
                let s = sigmoid(xf);
                s + xf * s * (1.0 - s)
            }
            Activation::Elu => {
                if xf > 0.0 {
                    1.0
                } else {
                    xf.exp()
                }
            }
            Activation::Selu => SELU_SCALE * if xf > 0.0 { 1.0 } else { SELU_ALPHA * xf.exp() },
            Activation::Softplus => sigmoid(xf),
        };
        E::of(d)
    }
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn softplus(x: f64) -> f64 {
    // PyTorch's threshold of 20 keeps large inputs exact.
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

impl FromStr for Activation {
    type Err = HopfieldError;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "identity" | "linear" | "none" => Activation::Identity,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "gelu" => Activation::Gelu,
            "gelu_tanh" => Activation::GeluTanh,
            "quick_gelu" | "quickgelu" => Activation::QuickGelu,
            "silu" | "swish" => Activation::Silu,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            "softplus" => Activation::Softplus,
            other => {
                return Err(HopfieldError::config(
                    "activation",
                    format!("unknown activation `{other}`; known: {}", Activation::NAMES.join(", ")),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        for name in Activation::NAMES {
            let act: Activation = name.parse().unwrap();
            for &x in &[-2.3f64, -0.7, 0.3, 1.9] {
                let h = 1e-6;
                let fd = (act.forward(x + h) - act.forward(x - h)) / (2.0 * h);
                assert!((fd - act.derivative(x)).abs() < 1e-6, "{name} at {x}: fd {fd} vs {}", act.derivative(x));
            }
        }
    }

    #[test]
    fn unknown_name_is_an_error() {
        let err = "relu6".parse::<Activation>().unwrap_err();
        assert!(err.to_string().contains("relu6"));
    }
}
