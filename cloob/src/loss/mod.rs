//! Contrastive losses of CLOOB and CLIP with explicit gradients, written against the [`Backend`] trait.
//!
//! With `X`, `Y` the L2-normalised image and text embeddings (`[N, d]`, row `i` of each a matching pair)
//! and `s = τ⁻¹` the inverse temperature:
//!
//! | [`LossKind`] | anchors/candidates | objective |
//! |---|---|---|
//! | `Cloob` | `(U_x, U_y)`, `(V_y, V_x)` after Hopfield retrieval | InfoLOOB |
//! | `Clip` | `(X, Y)`, `(Y, X)` | InfoNCE |
//! | `ClipHopfield` | `(U_x, U_y)`, `(V_y, V_x)` | InfoNCE |
//! | `InfoLoob` | `(X, Y)`, `(Y, X)` | InfoLOOB |
//!
//! with `U_x = R(X; X)`, `U_y = R(Y; X)`, `V_x = R(X; Y)`, `V_y = R(Y; Y)`,
//! `R(Q; M) = rownorm(softmax(β Q Mᵀ) M)` ([`Retrieval`]), and for a pair `(a, b)` the logits `s·a bᵀ`:
//! - InfoNCE: `CE(s·a bᵀ, arange N)`; the loss is the mean of the two pairs (CLIP's
//!   `(CE_img + CE_txt)/2`).
//! - InfoLOOB: `mean_i(−s a_i·b_i + lse_{j≠i} s a_i·b_j)` ([`info_loob_logits`]); the two pairs are
//!   combined by [`LoobScale`]: `τ·(L₁ + L₂)` as cloob's `methods.py` (the default, and the fixtures), or
//!   `(L₁ + L₂)/2`.
//!
//! Gradients reach the un-normalised embeddings through [`l2_normalize_backward`] and the temperature as
//! `∂L/∂s` and `∂L/∂ log s` (the model stores `log s`). A model that already normalises its embeddings
//! calls [`contrastive_loss_normalized`] instead.
//!
//! ```
//! use cloob::loss::{contrastive_loss, LossConfig, LossKind};
//! use hopfield::{Backend, Cpu};
//!
//! let cpu = Cpu::<f64>::new();
//! let image = cpu.from_vec(vec![1.0, 0.2, -0.3, 0.9, 0.5, 0.5], &[3, 2]);
//! let text = cpu.from_vec(vec![0.8, 0.1, 0.0, 1.0, 0.4, 0.6], &[3, 2]);
//! let out = contrastive_loss(&cpu, &LossConfig::new(LossKind::Cloob), &image, &text, 30.0)?;
//! assert_eq!(cpu.shape(&out.d_image), [3, 2]);
//! assert!(out.loss.is_finite() && out.d_log_inv_tau.is_finite());
//! # Ok::<(), hopfield::HopfieldError>(())
//! ```

mod normalize;
mod objective;
mod retrieval;

pub use normalize::{l2_normalize, l2_normalize_backward, L2NormCache};
pub use objective::info_loob_logits;
pub use retrieval::{retrieve_all, retrieve_all_backward, Retrieval, RetrievalCache, Retrieved, RetrievedCache};

use hopfield::{Backend, Element, HopfieldError, Result};
use objective::{pair, Objective, PairGrad};
use serde::{Deserialize, Serialize};

/// Which contrastive loss: CLOOB, CLIP, and the two ablations of the CLOOB paper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Hopfield retrieval + InfoLOOB.
    #[default]
    Cloob,
    /// InfoNCE on the embeddings (CLIP).
    Clip,
    /// Hopfield retrieval + InfoNCE (ablation).
    ClipHopfield,
    /// InfoLOOB on the embeddings, no retrieval (ablation).
    InfoLoob,
}

impl LossKind {
    /// Whether the embeddings go through Hopfield retrieval first.
    pub fn uses_hopfield(self) -> bool {
        matches!(self, LossKind::Cloob | LossKind::ClipHopfield)
    }
    fn objective(self) -> Objective {
        match self {
            LossKind::Clip | LossKind::ClipHopfield => Objective::InfoNce,
            LossKind::Cloob | LossKind::InfoLoob => Objective::InfoLoob,
        }
    }
}

/// How the two InfoLOOB terms are combined; the published codes differ by the factor `s/2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoobScale {
    /// `τ·(L_img + L_txt)`: cloob's `methods.py` (what the paper trained with).
    #[default]
    TauSum,
    /// `(L_img + L_txt)/2`, no τ factor: cloob-training's rescaled loss, comparable with InfoNCE's scale.
    Mean,
}

/// Configuration of [`contrastive_loss`] (plain serde data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossConfig {
    /// Which loss.
    pub kind: LossKind,
    /// β of the Hopfield retrieval (cloob's `scale_hopfield`), used by the Hopfield kinds.
    pub hopfield_beta: f64,
    /// Combination of the two InfoLOOB terms.
    pub loob_scale: LoobScale,
    /// The row normaliser of the Hopfield retrieval: softmax (cloob's), sparsemax, entmax with a fixed α
    /// or softmax₁ (a learnable α needs a parameter, which this parameter-free retrieval does not have).
    /// softmax₁ gives softmax's loss here: it scales each retrieved row by `Σe/(1 + Σe)`, and the
    /// retrieval's row normalisation removes any per-row scale.
    pub retrieval: hopfield::layers::Retrieval,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            kind: LossKind::Cloob,
            hopfield_beta: 14.3,
            loob_scale: LoobScale::TauSum,
            retrieval: hopfield::layers::Retrieval::Softmax,
        }
    }
}

impl LossConfig {
    /// The given kind with cloob's defaults (β = 14.3, `τ·(L₁ + L₂)`).
    pub fn new(kind: LossKind) -> Self {
        LossConfig { kind, ..Default::default() }
    }
    /// Set β of the retrieval.
    pub fn hopfield_beta(mut self, beta: f64) -> Self {
        self.hopfield_beta = beta;
        self
    }
    /// Set the retrieval's row normaliser.
    pub fn retrieval(mut self, retrieval: hopfield::layers::Retrieval) -> Self {
        self.retrieval = retrieval;
        self
    }
    /// Set the InfoLOOB combination.
    pub fn loob_scale(mut self, scale: LoobScale) -> Self {
        self.loob_scale = scale;
        self
    }
}

/// Loss value and gradients of [`contrastive_loss`].
///
/// # Shapes
/// `d_image`, `d_text`: the shapes of the inputs, `[N, d]`.
#[derive(Clone, Debug)]
pub struct LossOutput<B: Backend> {
    /// The loss.
    pub loss: f64,
    /// ∂L/∂image embeddings (of the inputs given: un-normalised for [`contrastive_loss`]).
    pub d_image: B::Tensor,
    /// ∂L/∂text embeddings.
    pub d_text: B::Tensor,
    /// ∂L/∂s with `s = τ⁻¹`.
    pub d_inv_tau: f64,
    /// ∂L/∂ log s `= s·∂L/∂s`.
    pub d_log_inv_tau: f64,
    /// The four retrieved sets (Hopfield kinds only).
    pub retrieved: Option<Retrieved<B>>,
}

/// The loss of `config` on un-normalised embeddings: L2-normalises both (as the model does), then
/// [`contrastive_loss_normalized`], and carries the gradients back through the normalisation.
///
/// # Shapes
/// `image, text: [N, d]` (row `i` of each a matching pair), `N ≥ 2`.
pub fn contrastive_loss<B: Backend>(
    backend: &B,
    config: &LossConfig,
    image: &B::Tensor,
    text: &B::Tensor,
    inv_tau: f64,
) -> Result<LossOutput<B>> {
    check_inputs(backend, image, text)?;
    let (x, cx) = l2_normalize(backend, image)?;
    let (y, cy) = l2_normalize(backend, text)?;
    let mut out = contrastive_loss_normalized(backend, config, &x, &y, inv_tau)?;
    out.d_image = l2_normalize_backward(backend, &cx, &out.d_image);
    out.d_text = l2_normalize_backward(backend, &cy, &out.d_text);
    Ok(out)
}

/// The loss of `config` on embeddings that are already L2-normalised (the gradients are w.r.t. them).
///
/// # Shapes
/// `x, y: [N, d]`, unit rows, `N ≥ 2`.
pub fn contrastive_loss_normalized<B: Backend>(
    backend: &B,
    config: &LossConfig,
    x: &B::Tensor,
    y: &B::Tensor,
    inv_tau: f64,
) -> Result<LossOutput<B>> {
    let (_, d) = check_inputs(backend, x, y)?;
    if !(inv_tau.is_finite() && inv_tau > 0.0) {
        return Err(HopfieldError::input("contrastive_loss", format!("inv_tau {inv_tau} is not positive and finite")));
    }
    let s = inv_tau;
    let objective = config.kind.objective();
    // Weight w(s) of each pair's term, and dw/ds.
    let (w, dw) = match (objective, config.loob_scale) {
        (Objective::InfoLoob, LoobScale::TauSum) => (1.0 / s, -1.0 / (s * s)),
        _ => (0.5, 0.0),
    };
    let scaled = |t: B::Tensor| backend.scale(&t, B::Elem::of(w));

    // The loss and ∂L/∂s from the two pairs' device scalars, read back together: the one transfer.
    let scalars = |img: &PairGrad<B>, txt: &PairGrad<B>| {
        let value = backend.add(&img.value, &txt.value);
        let ds = backend.add(&backend.scale(&value, B::Elem::of(dw)), &scaled(backend.add(&img.ds, &txt.ds)));
        let both = backend.to_vec(&backend.concat(&scaled(value), &ds, 1));
        match (both[0].f64(), both[1].f64()) {
            (loss, ds) if loss.is_finite() && ds.is_finite() => Ok((loss, ds)),
            (loss, ds) => Err(HopfieldError::NonFinite {
                op: "contrastive_loss",
                detail: format!("loss {loss}, ∂L/∂τ⁻¹ {ds} (a zero or non-finite embedding row gives this)"),
            }),
        }
    };

    if !config.kind.uses_hopfield() {
        let img = pair(backend, objective, x, y, s);
        let txt = pair(backend, objective, y, x, s);
        let (loss, d_inv_tau) = scalars(&img, &txt)?;
        return Ok(LossOutput {
            loss,
            d_image: scaled(backend.add(&img.da, &txt.db)),
            d_text: scaled(backend.add(&img.db, &txt.da)),
            d_inv_tau,
            d_log_inv_tau: s * d_inv_tau,
            retrieved: None,
        });
    }

    let beta = config.hopfield_beta;
    if !(beta.is_finite() && beta > 0.0) {
        return Err(HopfieldError::config("hopfield_beta", format!("must be positive and finite, got {beta}")));
    }
    let r = Retrieval::with(backend, d, beta, config.retrieval)?;
    let (u, cache) = retrieve_all(backend, &r, x, y)?;
    // Image anchors: (U_x, U_y) = (xx, xy); text anchors: (V_y, V_x) = (yy, yx).
    let img = pair(backend, objective, &u.xx, &u.xy, s);
    let txt = pair(backend, objective, &u.yy, &u.yx, s);
    let (loss, d_inv_tau) = scalars(&img, &txt)?;
    let du = Retrieved { xx: scaled(img.da), xy: scaled(img.db), yy: scaled(txt.da), yx: scaled(txt.db) };
    let (d_image, d_text) = retrieve_all_backward(backend, &r, &cache, &du)?;
    Ok(LossOutput { loss, d_image, d_text, d_inv_tau, d_log_inv_tau: s * d_inv_tau, retrieved: Some(u) })
}

fn check_inputs<B: Backend>(backend: &B, x: &B::Tensor, y: &B::Tensor) -> Result<(usize, usize)> {
    let (sx, sy) = (backend.shape(x), backend.shape(y));
    if sx.len() != 2 || sx[0] < 2 || sx[1] == 0 {
        return Err(HopfieldError::shape("contrastive_loss(image)", "[N ≥ 2, d > 0]", &sx));
    }
    if sy != sx {
        return Err(HopfieldError::shape("contrastive_loss(text)", format!("the image shape {sx:?}"), &sy));
    }
    Ok((sx[0], sx[1]))
}

#[cfg(test)]
mod tests;
