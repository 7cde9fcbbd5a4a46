//! The retrieval choice: which row normaliser turns association scores into weights.
//!
//! hflayers retrieves with softmax only. The variants here follow the field since: sparsemax (Hu et al.,
//! "On Sparse Modern Hopfield Model", NeurIPS 2023), α-entmax with α fixed or learned (the generalized sparse
//! model of STanHop, ICLR 2024) and softmax₁ ("Outlier-Efficient Hopfield Layers", ICML 2024). Each comes
//! with its energy in [`crate::energy`].

use super::{HopfieldParams, HopfieldSpec};
use crate::backend::{Backend, ScoreBias};
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a query's scores `z = β·ξ·Kᵀ (+ masks)` become retrieval weights. Every variant gives a masked
/// entry zero weight and a fully masked row zero weights.
///
/// JSON: `"softmax"`, `"sparsemax"`, `"softmax1"`, `{"entmax": {"alpha": 1.5}}`,
/// `{"entmax": {"alpha": 1.5, "learnable": true}}`. Command lines parse the forms of [`FromStr`]:
/// `softmax`, `sparsemax`, `softmax1`, `entmax15`, `entmax:1.3`, `entmax:1.5:learnable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Retrieval {
    /// `softmax(z)`: the paper's and hflayers' retrieval (the default; results unchanged).
    #[default]
    Softmax,
    /// `sparsemax(z) = [z − τ]₊`: sparse retrieval; a pattern whose score leads the others by at least 1
    /// is retrieved exactly.
    Sparsemax,
    /// `α-entmax(z) = [(α−1)z − τ]₊^{1/(α−1)}`, `1 < α ≤ 2` (α = 2 is sparsemax, α → 1 softmax).
    Entmax {
        /// α, or the initial α of every head when `learnable`.
        alpha: f64,
        /// Learn one α per head: the parameter `association_core.entmax_pre_alpha` `[H]` with
        /// `α = 1 + sigmoid(pre_alpha)`, so α stays in (1, 2).
        #[serde(default)]
        learnable: bool,
    },
    /// `softmax₁(z)ᵢ = exp(zᵢ) / (1 + Σⱼ exp(zⱼ))`: a query may retrieve (almost) nothing.
    Softmax1,
}

impl Retrieval {
    /// Check α's range.
    pub fn validate(&self) -> Result<()> {
        if let Retrieval::Entmax { alpha, learnable } = *self {
            if !(alpha > 1.0 && alpha <= 2.0) {
                return Err(HopfieldError::config("retrieval", format!("entmax α must lie in (1, 2], got {alpha}")));
            }
            if learnable && alpha >= 2.0 {
                return Err(HopfieldError::config(
                    "retrieval",
                    "a learnable entmax α starts inside (1, 2) (α = 1 + sigmoid(pre_alpha)); got α = 2",
                ));
            }
        }
        Ok(())
    }

    /// Whether the fused streaming association computes this retrieval (softmax only; the others use the
    /// materialised path even when `fused_association` is set).
    pub fn is_softmax(&self) -> bool {
        *self == Retrieval::Softmax
    }

    /// The fixed α of an entmax-family retrieval (2 for sparsemax), `None` for the softmax family.
    pub fn entmax_alpha(&self) -> Option<f64> {
        match *self {
            Retrieval::Sparsemax => Some(2.0),
            Retrieval::Entmax { alpha, .. } => Some(alpha),
            _ => None,
        }
    }
}

impl fmt::Display for Retrieval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retrieval::Softmax => write!(f, "softmax"),
            Retrieval::Sparsemax => write!(f, "sparsemax"),
            Retrieval::Softmax1 => write!(f, "softmax1"),
            Retrieval::Entmax { alpha, learnable: false } => write!(f, "entmax:{alpha}"),
            Retrieval::Entmax { alpha, learnable: true } => write!(f, "entmax:{alpha}:learnable"),
        }
    }
}

impl FromStr for Retrieval {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let expected = "softmax, sparsemax, softmax1, entmax15, entmax:ALPHA or entmax:ALPHA:learnable";
        let r = match s {
            "softmax" => Retrieval::Softmax,
            "sparsemax" => Retrieval::Sparsemax,
            "softmax1" => Retrieval::Softmax1,
            "entmax15" => Retrieval::Entmax { alpha: 1.5, learnable: false },
            _ => {
                let mut parts = s.split(':');
                let (Some("entmax"), Some(a)) = (parts.next(), parts.next()) else {
                    return Err(format!("unknown retrieval {s:?}: expected {expected}"));
                };
                let alpha: f64 = a.parse().map_err(|_| format!("retrieval {s:?}: α {a:?} is not a number"))?;
                let learnable = match parts.next() {
                    None => false,
                    Some("learnable") => true,
                    Some(x) => return Err(format!("retrieval {s:?}: unknown suffix {x:?}: expected {expected}")),
                };
                if parts.next().is_some() {
                    return Err(format!("retrieval {s:?}: expected {expected}"));
                }
                Retrieval::Entmax { alpha, learnable }
            }
        };
        r.validate().map_err(|e| e.to_string())?;
        Ok(r)
    }
}

/// `sigmoid(x)`.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `pre_alpha` for an initial α: `logit(α − 1)`.
pub(crate) fn pre_alpha_of(alpha: f64) -> f64 {
    let s = alpha - 1.0;
    (s / (1.0 - s)).ln()
}

impl HopfieldSpec {
    /// α per head for this forward pass: fixed, or `1 + sigmoid(pre_alpha)` read from the parameters.
    pub(crate) fn entmax_alphas<B: Backend>(&self, backend: &B, p: &HopfieldParams<B>) -> Option<Vec<B::Elem>> {
        let h = self.dims.heads;
        match (self.config.retrieval, &p.entmax_pre_alpha) {
            (Retrieval::Entmax { learnable: true, .. }, Some(pre)) => {
                Some(backend.to_vec(pre).iter().map(|x| B::Elem::of(1.0 + sigmoid(x.f64()))).collect())
            }
            (r, _) => r.entmax_alpha().map(|a| vec![B::Elem::of(a); h]),
        }
    }

    /// The association weights of `scores` under the configured retrieval.
    pub(crate) fn normalize<B: Backend>(
        &self,
        backend: &B,
        scores: &B::Tensor,
        beta: &[B::Elem],
        bias: &ScoreBias<'_, B::Tensor>,
        alpha: Option<&[B::Elem]>,
    ) -> B::Tensor {
        match (self.config.retrieval, alpha) {
            (Retrieval::Softmax, _) => backend.masked_softmax(scores, beta, bias),
            (Retrieval::Softmax1, _) => backend.masked_softmax1(scores, beta, bias),
            (_, Some(alpha)) => backend.masked_entmax(scores, beta, bias, alpha),
            (_, None) => unreachable!("entmax retrievals have an α"),
        }
    }

    /// Backward of [`HopfieldSpec::normalize`]: the gradient w.r.t. the scores and, for a learnable α, the
    /// per-row α-derivative `[B, H, L]`.
    pub(crate) fn normalize_backward<B: Backend>(
        &self,
        backend: &B,
        probs: &B::Tensor,
        d_probs: &B::Tensor,
        beta: &[B::Elem],
        alpha: Option<&[B::Elem]>,
    ) -> (B::Tensor, Option<B::Tensor>) {
        match (self.config.retrieval, alpha) {
            (Retrieval::Softmax | Retrieval::Softmax1, _) => {
                (backend.masked_softmax_backward(probs, d_probs, beta), None)
            }
            (Retrieval::Entmax { learnable, .. }, Some(alpha)) => {
                backend.masked_entmax_backward(probs, d_probs, beta, alpha, learnable)
            }
            (_, Some(alpha)) => backend.masked_entmax_backward(probs, d_probs, beta, alpha, false),
            (_, None) => unreachable!("entmax retrievals have an α"),
        }
    }

    /// Turn the summed per-row α-derivatives `[B, H, L]` into the gradient of `pre_alpha` `[H]`:
    /// `Σ_{b,l} ∂/∂α · α'(pre)` with `α' = σ(1 − σ)`.
    pub(crate) fn pre_alpha_grad<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        d_alpha_rows: &B::Tensor,
    ) -> Option<B::Tensor> {
        let pre = p.entmax_pre_alpha.as_ref()?;
        let h = self.dims.heads;
        let per_head = backend.reshape(&backend.sum_axis(&backend.sum_axis(d_alpha_rows, 2), 0), &[h]);
        let slope: Vec<B::Elem> = backend
            .to_vec(pre)
            .iter()
            .map(|x| {
                let s = sigmoid(x.f64());
                B::Elem::of(s * (1.0 - s))
            })
            .collect();
        Some(backend.mul(&per_head, &backend.from_vec(slope, &[h])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_validates() {
        for s in ["softmax", "sparsemax", "softmax1", "entmax:1.3", "entmax:1.5:learnable"] {
            assert_eq!(s.parse::<Retrieval>().unwrap().to_string(), s);
        }
        assert_eq!("entmax15".parse::<Retrieval>().unwrap(), Retrieval::Entmax { alpha: 1.5, learnable: false });
        for bad in ["", "soft", "entmax", "entmax:x", "entmax:1", "entmax:2.5", "entmax:2:learnable", "entmax:1.5:y"] {
            assert!(bad.parse::<Retrieval>().is_err(), "{bad:?} parsed");
        }
        let json = serde_json::to_string(&Retrieval::Entmax { alpha: 1.5, learnable: true }).unwrap();
        assert_eq!(json, r#"{"entmax":{"alpha":1.5,"learnable":true}}"#);
        let r: Retrieval = serde_json::from_str(r#"{"entmax":{"alpha":1.3}}"#).unwrap();
        assert_eq!(r, Retrieval::Entmax { alpha: 1.3, learnable: false });
        assert!((1.0 + sigmoid(pre_alpha_of(1.3)) - 1.3).abs() < 1e-12);
    }
}
