//! `HopfieldParams`: the learned tensors of a `Hopfield`, stored exactly as hflayers' state_dict lays them
//! out (so an hflayers checkpoint loads unchanged), and used as the gradient struct too.

use super::config::{Dims, HopfieldConfig};
use crate::backend::Backend;
use crate::element::Element;
use crate::init;
use crate::layers::norm::LayerNormParams;
use crate::params::Parameters;
use rand::Rng;

/// Parameters (and gradients) of a [`Hopfield`](super::Hopfield). Each field is `None` where the config
/// does not create it; the comments give the state_dict name and shape.
#[derive(Clone, Debug, Parameters)]
pub struct HopfieldParams<B: Backend> {
    /// `association_core.in_proj_weight`, `[(q? H·hd) + (k? H·hd) + (v? H·pd), input]`: packed q/k/v
    /// projections when all inputs share one size.
    #[param(rename = "association_core.in_proj_weight")]
    pub in_proj_weight: Option<B::Tensor>,
    /// `association_core.q_proj_weight`, `[H·hd, input]`.
    #[param(rename = "association_core.q_proj_weight")]
    pub q_proj_weight: Option<B::Tensor>,
    /// `association_core.k_proj_weight`, `[H·hd, stored]`.
    #[param(rename = "association_core.k_proj_weight")]
    pub k_proj_weight: Option<B::Tensor>,
    /// `association_core.v_proj_weight`, `[H·pd, projection]` (`[H·pd, H·hd]` when connected).
    #[param(rename = "association_core.v_proj_weight")]
    pub v_proj_weight: Option<B::Tensor>,
    /// `association_core.in_proj_bias`, `[(q? H·hd) + (k? H·hd) + H·pd]`.
    #[param(rename = "association_core.in_proj_bias")]
    pub in_proj_bias: Option<B::Tensor>,
    /// `association_core.p_norm_weight`, `[hd]`: Hopfield-space norm, shared by heads.
    #[param(rename = "association_core.p_norm_weight")]
    pub p_norm_weight: Option<B::Tensor>,
    /// `association_core.p_norm_bias`, `[hd]`.
    #[param(rename = "association_core.p_norm_bias")]
    pub p_norm_bias: Option<B::Tensor>,
    /// `association_core.out_proj.weight`, `[output, H·pd]`.
    #[param(rename = "association_core.out_proj.weight")]
    pub out_proj_weight: Option<B::Tensor>,
    /// `association_core.out_proj.bias`, `[output]`.
    #[param(rename = "association_core.out_proj.bias")]
    pub out_proj_bias: Option<B::Tensor>,
    /// `association_core.bias_k`, `[1, 1, H·hd]`: the concatenated bias stored pattern.
    #[param(rename = "association_core.bias_k")]
    pub bias_k: Option<B::Tensor>,
    /// `association_core.bias_v`, `[1, 1, H·pd]`: its pattern projection.
    #[param(rename = "association_core.bias_v")]
    pub bias_v: Option<B::Tensor>,
    /// `association_core.entmax_pre_alpha`, `[H]` (not in hflayers): the learnable entmax α per head,
    /// `α = 1 + sigmoid(pre_alpha)` (`retrieval: entmax` with `learnable`).
    #[param(rename = "association_core.entmax_pre_alpha")]
    pub entmax_pre_alpha: Option<B::Tensor>,
    /// `norm_stored_pattern.{weight,bias}`, `[stored]`.
    pub norm_stored_pattern: Option<LayerNormParams<B>>,
    /// `norm_state_pattern.{weight,bias}`, `[input]`.
    pub norm_state_pattern: Option<LayerNormParams<B>>,
    /// `norm_pattern_projection.{weight,bias}`, `[projection]`.
    pub norm_pattern_projection: Option<LayerNormParams<B>>,
}

/// Where one of q, k, v takes its projection from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProjSlot {
    /// First row in `in_proj_weight` (when packed) and first entry in `in_proj_bias`.
    pub offset: usize,
    /// Rows (= bias entries).
    pub rows: usize,
}

/// Row layout of the packed projections: `None` for a static input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProjLayout {
    pub q: Option<ProjSlot>,
    pub k: Option<ProjSlot>,
    pub v: Option<ProjSlot>,
}

impl ProjLayout {
    pub fn new(c: &HopfieldConfig, d: &Dims) -> Self {
        let hd = d.heads * d.head;
        let pd = d.heads * d.pattern;
        let mut offset = 0;
        let mut slot = |is_static: bool, rows: usize| {
            (!is_static).then(|| {
                let s = ProjSlot { offset, rows };
                offset += rows;
                s
            })
        };
        let q = slot(c.state_pattern_as_static, hd);
        let k = slot(c.stored_pattern_as_static, hd);
        let v = slot(c.pattern_projection_as_static, pd);
        ProjLayout { q, k, v }
    }
    /// Whether anything is projected (hflayers' `num_non_static > 0`).
    pub fn any(&self) -> bool {
        self.q.is_some() || self.k.is_some() || self.v.is_some()
    }
}

impl<B: Backend> HopfieldParams<B> {
    /// hflayers' initialisation: projections N(0, 0.02²), biases zero, bias patterns N(0, 0.02²), norms 1/0.
    pub(crate) fn init(backend: &B, c: &HopfieldConfig, d: &Dims, rng: &mut impl Rng) -> Self {
        let layout = ProjLayout::new(c, d);
        let (hd, pd) = (d.heads * d.head, d.heads * d.pattern);
        let std = 0.02;
        let mut p = HopfieldParams::<B> {
            in_proj_weight: None,
            q_proj_weight: None,
            k_proj_weight: None,
            v_proj_weight: None,
            in_proj_bias: None,
            p_norm_weight: None,
            p_norm_bias: None,
            out_proj_weight: None,
            out_proj_bias: None,
            bias_k: None,
            bias_v: None,
            entmax_pre_alpha: None,
            norm_stored_pattern: None,
            norm_state_pattern: None,
            norm_pattern_projection: None,
        };
        if d.combined_in_proj {
            let rows = [layout.q, layout.k, layout.v].iter().flatten().map(|s| s.rows).sum::<usize>();
            if rows > 0 {
                p.in_proj_weight = Some(init::normal(backend, &[rows, d.input], std, rng));
            }
        } else {
            if layout.q.is_some() {
                p.q_proj_weight = Some(init::normal(backend, &[hd, d.input], std, rng));
            }
            if layout.k.is_some() {
                p.k_proj_weight = Some(init::normal(backend, &[hd, d.stored], std, rng));
            }
            if layout.v.is_some() {
                let cols = if c.pattern_projection_as_connected { hd } else { d.projection };
                p.v_proj_weight = Some(init::normal(backend, &[pd, cols], std, rng));
            }
        }
        if c.input_bias && layout.any() {
            let n = layout.q.map_or(0, |s| s.rows) + layout.k.map_or(0, |s| s.rows) + pd;
            p.in_proj_bias = Some(backend.zeros(&[n]));
        }
        if c.normalize_hopfield_space_affine {
            p.p_norm_weight = Some(backend.full(&[d.head], B::Elem::of(1.0)));
            p.p_norm_bias = Some(backend.zeros(&[d.head]));
        }
        if !c.disable_out_projection {
            p.out_proj_weight = Some(init::normal(backend, &[d.output, pd], std, rng));
            p.out_proj_bias = c.input_bias.then(|| backend.zeros(&[d.output]));
        }
        if c.concat_bias_pattern {
            p.bias_k = (!c.stored_pattern_as_static).then(|| init::normal(backend, &[1, 1, hd], std, rng));
            p.bias_v = (!c.pattern_projection_as_static).then(|| init::normal(backend, &[1, 1, pd], std, rng));
        }
        if let super::Retrieval::Entmax { alpha, learnable: true } = c.retrieval {
            let pre = super::retrieval::pre_alpha_of(alpha);
            p.entmax_pre_alpha = Some(backend.full(&[d.heads], B::Elem::of(pre)));
        }
        let ln = |on: bool, affine: bool, n: usize| {
            (on && affine).then(|| LayerNormParams::<B> {
                weight: backend.full(&[n], B::Elem::of(1.0)),
                bias: backend.zeros(&[n]),
            })
        };
        p.norm_stored_pattern = ln(c.normalize_stored_pattern, c.normalize_stored_pattern_affine, d.stored);
        p.norm_state_pattern = ln(c.normalize_state_pattern, c.normalize_state_pattern_affine, d.input);
        p.norm_pattern_projection =
            ln(c.normalize_pattern_projection, c.normalize_pattern_projection_affine, d.projection);
        p
    }
}
