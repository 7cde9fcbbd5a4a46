//! `Hopfield`: hflayers' association module as a burn module. Its configuration is `hopfield`'s
//! [`HopfieldConfig`] (the same options, defaults and validation); its forward is burn tensor ops, so burn's
//! autodiff gives every gradient. The computation follows `hopfield::layers::hopfield` step by step,
//! including its fixes of hflayers' bugs (see that module's docs).

use crate::ops::{self, additive, beta_tensor, broadcast_heads, layer_norm, linear, merge_heads, split_heads};
use crate::params::{host_param, param, to_burn, to_host, Affine, AssociationCore, OutProj};
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use hopfield::layers::hopfield::MAX_UNBOUNDED_STEPS;
use hopfield::layers::hopfield::{Convergence, HopfieldConfig, HopfieldParams, HopfieldSpec, Retrieval};
use hopfield::{Cpu, HopfieldError, Result};

/// Which associations a [`HopfieldInput`] hides or biases.
#[derive(Clone, Debug)]
pub enum AssociationMask {
    /// `[L, S]`, `true` hides the association of state `l` with stored pattern `s` in every sample and head.
    Shared(Tensor<2, Bool>),
    /// `[B·H, L, S]` (index `b·H + h`), `true` hides.
    PerHead(Tensor<3, Bool>),
    /// `[1 | B·H, L, S]` added to the scores (`-inf` hides).
    Additive(Tensor<3>),
}

/// What a [`Hopfield`] associates: stored patterns (keys), state patterns (queries), pattern projections
/// (values), optional masks and what to return.
///
/// # Shapes
/// With `batch_first` (the default): stored `[B, S, stored]`, state `[B, L, input]`, projection
/// `[B, S, projection]`; else the first two axes swap. Padding mask `[B, S]` (`true` = padded).
#[derive(Clone, Debug)]
pub struct HopfieldInput {
    /// Stored patterns (keys).
    pub stored: Tensor<3>,
    /// State patterns (queries).
    pub state: Tensor<3>,
    /// Pattern projections (values).
    pub projection: Tensor<3>,
    /// Hides stored patterns per sample.
    pub stored_pattern_padding_mask: Option<Tensor<2, Bool>>,
    /// Hides (or biases) single associations.
    pub association_mask: Option<AssociationMask>,
    /// Return the association matrix.
    pub return_association: bool,
    /// Return the projected patterns.
    pub return_projected_patterns: bool,
}

impl HopfieldInput {
    /// Self-association: one tensor is stored pattern, state pattern and pattern projection.
    pub fn single(x: Tensor<3>) -> Self {
        Self::new(x.clone(), x.clone(), x)
    }
    /// Three separate tensors.
    pub fn new(stored: Tensor<3>, state: Tensor<3>, projection: Tensor<3>) -> Self {
        HopfieldInput {
            stored,
            state,
            projection,
            stored_pattern_padding_mask: None,
            association_mask: None,
            return_association: false,
            return_projected_patterns: false,
        }
    }
    /// Add a padding mask `[B, S]`.
    pub fn padding_mask(mut self, mask: Tensor<2, Bool>) -> Self {
        self.stored_pattern_padding_mask = Some(mask);
        self
    }
    /// Add an association mask.
    pub fn association_mask(mut self, mask: AssociationMask) -> Self {
        self.association_mask = Some(mask);
        self
    }
    /// Ask for the association matrix.
    pub fn with_association(mut self) -> Self {
        self.return_association = true;
        self
    }
    /// Ask for the projected patterns.
    pub fn with_projected_patterns(mut self) -> Self {
        self.return_projected_patterns = true;
        self
    }
}

/// The result of a [`Hopfield`] forward pass.
#[derive(Clone, Debug)]
pub struct HopfieldOutput {
    /// `[B, L, output]` (batch-first) or `[L, B, output]`.
    pub output: Tensor<3>,
    /// The association matrix `[B, H, L, S']` before dropout, on request (`S'` counts bias/zero patterns).
    /// `None` on the fused path, which never forms it.
    pub association: Option<Tensor<4>>,
    /// Projected patterns `[B, H, S', pd]`, on request.
    pub projected_patterns: Option<Tensor<4>>,
    /// Further update steps each head ran (0 = the first association only).
    pub update_steps: Vec<usize>,
}

/// hflayers' `Hopfield` as a burn module. Build it with `init` of [`crate::HopfieldInit`] on a
/// [`HopfieldConfig`]; the parameter names follow hflayers' state_dict.
///
/// # Shapes
/// See [`HopfieldInput`] → output `[B, L, output]`.
#[derive(Module, Debug)]
pub struct Hopfield {
    /// `association_core.*`.
    pub association_core: AssociationCore,
    /// `norm_stored_pattern.*` `[stored]`.
    pub norm_stored_pattern: Option<Affine>,
    /// `norm_state_pattern.*` `[input]`.
    pub norm_state_pattern: Option<Affine>,
    /// `norm_pattern_projection.*` `[projection]`.
    pub norm_pattern_projection: Option<Affine>,
    /// Dropout on the association matrix (active in training: an autodiff device and `train` mode).
    pub dropout: Dropout,
    /// The validated configuration and its derived sizes.
    #[module(skip)]
    pub spec: HopfieldSpec,
}

impl Hopfield {
    /// A module with `hopfield`'s parameters (e.g. initialised by `hopfield`, or loaded from an hflayers
    /// safetensors file with `hopfield::io::load_state_dict`) on `device`.
    pub fn from_host(spec: HopfieldSpec, p: &HopfieldParams<Cpu<f32>>, device: &Device) -> Self {
        let out_proj = p
            .out_proj_weight
            .as_ref()
            .map(|w| OutProj { weight: Param::from_tensor(to_burn(w, device)), bias: param(&p.out_proj_bias, device) });
        Hopfield {
            association_core: AssociationCore {
                in_proj_weight: param(&p.in_proj_weight, device),
                q_proj_weight: param(&p.q_proj_weight, device),
                k_proj_weight: param(&p.k_proj_weight, device),
                v_proj_weight: param(&p.v_proj_weight, device),
                in_proj_bias: param(&p.in_proj_bias, device),
                p_norm_weight: param(&p.p_norm_weight, device),
                p_norm_bias: param(&p.p_norm_bias, device),
                out_proj,
                bias_k: param(&p.bias_k, device),
                bias_v: param(&p.bias_v, device),
                entmax_pre_alpha: param(&p.entmax_pre_alpha, device),
            },
            norm_stored_pattern: p.norm_stored_pattern.as_ref().map(|n| Affine::from_host(n, device)),
            norm_state_pattern: p.norm_state_pattern.as_ref().map(|n| Affine::from_host(n, device)),
            norm_pattern_projection: p.norm_pattern_projection.as_ref().map(|n| Affine::from_host(n, device)),
            dropout: DropoutConfig::new(spec.config.dropout).init(),
            spec,
        }
    }

    /// The parameters as `hopfield`'s struct on the host (to save as hflayers' safetensors with
    /// `hopfield::io::save_params`, or to run on `hopfield`'s own backends).
    pub fn to_host(&self) -> HopfieldParams<Cpu<f32>> {
        let c = &self.association_core;
        HopfieldParams {
            in_proj_weight: host_param(&c.in_proj_weight),
            q_proj_weight: host_param(&c.q_proj_weight),
            k_proj_weight: host_param(&c.k_proj_weight),
            v_proj_weight: host_param(&c.v_proj_weight),
            in_proj_bias: host_param(&c.in_proj_bias),
            p_norm_weight: host_param(&c.p_norm_weight),
            p_norm_bias: host_param(&c.p_norm_bias),
            out_proj_weight: c.out_proj.as_ref().map(|o| to_host(&o.weight.val())),
            out_proj_bias: c.out_proj.as_ref().and_then(|o| host_param(&o.bias)),
            bias_k: host_param(&c.bias_k),
            bias_v: host_param(&c.bias_v),
            entmax_pre_alpha: host_param(&c.entmax_pre_alpha),
            norm_stored_pattern: self.norm_stored_pattern.as_ref().map(Affine::to_host),
            norm_state_pattern: self.norm_state_pattern.as_ref().map(Affine::to_host),
            norm_pattern_projection: self.norm_pattern_projection.as_ref().map(Affine::to_host),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HopfieldConfig {
        &self.spec.config
    }

    fn check_inputs(&self, input: &HopfieldInput) -> Result<(usize, usize, usize)> {
        let d = &self.spec.dims;
        let (ks, qs, vs) = (input.stored.dims(), input.state.dims(), input.projection.dims());
        let bf = self.spec.config.batch_first;
        let layout = if bf { "[B, N, features]" } else { "[N, B, features]" };
        for (s, name, feat) in [
            (&ks, "hopfield_burn.forward(stored)", d.stored),
            (&qs, "hopfield_burn.forward(state)", d.input),
            (&vs, "hopfield_burn.forward(projection)", d.projection),
        ] {
            if s[2] != feat {
                return Err(HopfieldError::shape(name, format!("{layout} with {feat} features"), s));
            }
        }
        let (bi, si) = if bf { (0, 1) } else { (1, 0) };
        if qs[bi] != ks[bi] || vs[bi] != ks[bi] {
            return Err(HopfieldError::shape(
                "hopfield_burn.forward(batch)",
                format!("the same batch size {} for stored, state and projection", ks[bi]),
                &[ks[bi], qs[bi], vs[bi]],
            ));
        }
        if vs[si] != ks[si] {
            return Err(HopfieldError::shape(
                "hopfield_burn.forward(projection)",
                format!("as many pattern projections as stored patterns ({})", ks[si]),
                &vs,
            ));
        }
        if ks[si] == 0 || qs[si] == 0 || ks[bi] == 0 {
            return Err(HopfieldError::shape("hopfield_burn.forward", "non-empty batch and sequences", &ks));
        }
        Ok((ks[bi], qs[si], ks[si]))
    }

    /// The projection weight of one slot: a row block of `in_proj_weight`, or the separate weight.
    fn proj_weight(&self, (offset, rows): (usize, usize), separate: &Option<Param<Tensor<2>>>) -> Tensor<2> {
        match (&self.association_core.in_proj_weight, separate) {
            (Some(w), _) => {
                let w = w.val();
                let cols = w.dims()[1];
                w.slice([offset..offset + rows, 0..cols])
            }
            (None, Some(w)) => w.val(),
            (None, None) => unreachable!("a projected input has a weight"),
        }
    }

    fn proj_bias(&self, offset: usize, rows: usize) -> Option<Tensor<1>> {
        self.association_core.in_proj_bias.as_ref().map(|b| b.val().narrow(0, offset, rows))
    }

    fn norm(x: Tensor<3>, on: bool, eps: f64, affine: &Option<Affine>) -> Tensor<3> {
        if !on {
            return x;
        }
        layer_norm(x, eps, affine.as_ref().map(|a| (a.weight.val(), a.bias.val())))
    }

    /// Forward pass; dropout on the association in training (see [`Hopfield::dropout`]).
    ///
    /// # Errors
    /// [`HopfieldError::Shape`] for inputs or masks of the wrong shape.
    pub fn forward(&self, input: HopfieldInput) -> Result<HopfieldOutput> {
        let (b, l, s) = self.check_inputs(&input)?;
        let (c, d) = (&self.spec.config, &self.spec.dims);
        let h = d.heads;
        let device = input.stored.device();
        let to_bf = |t: Tensor<3>| if c.batch_first { t } else { t.swap_dims(0, 1) };
        let (stored, state, projection) = (to_bf(input.stored), to_bf(input.state), to_bf(input.projection));

        let stored_n =
            Self::norm(stored, c.normalize_stored_pattern, c.normalize_stored_pattern_eps, &self.norm_stored_pattern);
        let state_n =
            Self::norm(state, c.normalize_state_pattern, c.normalize_state_pattern_eps, &self.norm_state_pattern);
        let projection_n = Self::norm(
            projection,
            c.normalize_pattern_projection,
            c.normalize_pattern_projection_eps,
            &self.norm_pattern_projection,
        );

        // Projections into the Hopfield space, split into heads.
        let core = &self.association_core;
        let [q_slot, k_slot, v_slot] = self.spec.projection_slots();
        let q = match q_slot {
            None => broadcast_heads(state_n, h),
            Some(slot) => {
                let y = linear(state_n, self.proj_weight(slot, &core.q_proj_weight), self.proj_bias(slot.0, slot.1));
                split_heads(y, h)
            }
        };
        let k_linear = |x: Tensor<3>, slot: (usize, usize)| {
            linear(x, self.proj_weight(slot, &core.k_proj_weight), self.proj_bias(slot.0, slot.1))
        };
        let k_flat = k_slot.map(|slot| k_linear(stored_n.clone(), slot));
        let connected = match (c.pattern_projection_as_connected, k_slot) {
            (true, Some(slot)) => Some(k_linear(projection_n.clone(), slot)),
            _ => None,
        };
        let v_bias_offset = q_slot.map_or(0, |s| s.1) + k_slot.map_or(0, |s| s.1);
        let v_flat = match v_slot {
            None => connected.clone(),
            Some(slot) => {
                let v_in = connected.clone().unwrap_or(projection_n.clone());
                Some(linear(v_in, self.proj_weight(slot, &core.v_proj_weight), self.proj_bias(v_bias_offset, slot.1)))
            }
        };
        let mut k = match k_flat {
            Some(kf) => split_heads(kf, h),
            None => broadcast_heads(stored_n, h),
        };
        let mut v = match v_flat {
            Some(vf) => split_heads(vf, h),
            None => broadcast_heads(projection_n, h),
        };

        // Per-head layer norm in the Hopfield space (shared affine parameters).
        let mut q = q;
        if c.normalize_hopfield_space {
            let affine = core.p_norm_weight.as_ref().zip(core.p_norm_bias.as_ref()).map(|(w, b)| (w.val(), b.val()));
            q = layer_norm(q, c.normalize_hopfield_space_eps, affine.clone());
            k = layer_norm(k, c.normalize_hopfield_space_eps, affine);
        }

        // Appended patterns: the learned bias pattern, then the zero pattern.
        let mut extra = 0;
        if let (Some(bk), Some(bv)) = (&core.bias_k, &core.bias_v) {
            let per_head = |t: Tensor<3>, dim: usize| t.reshape([1, h, 1, dim]).repeat_dim(0, b);
            k = Tensor::cat(vec![k, per_head(bk.val(), d.head)], 2);
            v = Tensor::cat(vec![v, per_head(bv.val(), d.pattern)], 2);
            extra += 1;
        }
        if c.add_zero_association {
            k = Tensor::cat(vec![k, Tensor::zeros([b, h, 1, d.head], &device)], 2);
            v = Tensor::cat(vec![v, Tensor::zeros([b, h, 1, d.pattern], &device)], 2);
            extra += 1;
        }
        let (padding, association) =
            score_biases(input.stored_pattern_padding_mask, input.association_mask, (b, h, l, s), extra)?;

        let training = self.dropout.training.is_enabled() && device.is_autodiff() && c.dropout > 0.0;
        let fused_ok = (c.convergence == Convergence::State || d.steps_max.iter().all(|m| *m == Some(0)))
            && c.retrieval.is_softmax();
        if c.fused_association && !input.return_association && !training && fused_ok && crate::fused::supported(&device)
        {
            return Ok(self.fused_retrieval(q, k, v, padding, association, input.return_projected_patterns));
        }

        // Association and update iteration, per head until its step budget or convergence.
        let beta = beta_tensor(&d.beta, &device);
        let alpha = self.entmax_alphas()?;
        let normalize = |scores: Tensor<4>| {
            let mut z = scores * beta.clone();
            if let Some(p) = &padding {
                z = z + p.clone().reshape([b, 1, 1, s + extra]);
            }
            if let Some(a) = &association {
                z = z + a.clone();
            }
            match (c.retrieval, &alpha) {
                (Retrieval::Softmax, _) => ops::masked_softmax(z),
                (Retrieval::Softmax1, _) => ops::masked_softmax1(z),
                (_, Some(alpha)) => ops::masked_entmax(z, alpha),
                (_, None) => unreachable!("entmax retrievals have an α"),
            }
        };
        let kt = k.clone().swap_dims(2, 3);
        let mut a = normalize(q.clone().matmul(kt.clone()));
        let mut active: Vec<bool> = d.steps_max.iter().map(|m| m.is_none_or(|m| m > 0)).collect();
        let mut steps = vec![0usize; h];
        let mut prev_state = q;
        let mut t = 0;
        while active.iter().any(|&a| a) && t < MAX_UNBOUNDED_STEPS {
            let xi = a.clone().matmul(k.clone());
            let a_new = normalize(xi.clone().matmul(kt.clone()));
            let a_t = if active.iter().all(|&a| a) { a_new } else { ops::select_heads(a_new, a.clone(), &active) };
            t += 1;
            let dist = match c.convergence {
                Convergence::Association => ops::head_distance(a_t.clone(), a.clone()),
                Convergence::State => ops::head_distance(xi.clone(), prev_state.clone()),
            };
            active = self.next_active(&active, t, &dist, &mut steps);
            prev_state = xi;
            a = a_t;
        }

        let association_out = input.return_association.then(|| a.clone());
        let a_used = self.dropout.forward(a);
        let merged = merge_heads(a_used.matmul(v.clone()));
        Ok(HopfieldOutput {
            output: self.finish(merged),
            association: association_out,
            projected_patterns: input.return_projected_patterns.then_some(v),
            update_steps: steps,
        })
    }

    /// Which heads keep iterating after step `t` (counting the step just done for the active ones).
    fn next_active(&self, active: &[bool], t: usize, dist: &[f64], steps: &mut [usize]) -> Vec<bool> {
        let d = &self.spec.dims;
        for (hh, st) in steps.iter_mut().enumerate() {
            *st += active[hh] as usize;
        }
        (0..d.heads)
            .map(|hh| active[hh] && d.steps_max[hh].is_none_or(|m| t < m) && dist[hh] > d.steps_eps[hh])
            .collect()
    }

    /// The fused path: `u₀ = q`, `ξ_t = assoc(u_{t−1}, K, K)` on the heads still active, convergence on
    /// states; the output `assoc(u_T, K, V)` — as `hopfield`'s fused path.
    fn fused_retrieval(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        padding: Option<Tensor<2>>,
        association: Option<Tensor<4>>,
        return_projected: bool,
    ) -> HopfieldOutput {
        let d = &self.spec.dims;
        let assoc = |u: Tensor<4>, values: Tensor<4>| {
            crate::fused::association(u, k.clone(), values, &d.beta, padding.clone(), association.clone())
        };
        let mut active: Vec<bool> = d.steps_max.iter().map(|m| m.is_none_or(|m| m > 0)).collect();
        let mut steps = vec![0usize; d.heads];
        let (mut u, mut prev_state) = (q.clone(), q);
        let mut t = 0;
        while active.iter().any(|&a| a) && t < MAX_UNBOUNDED_STEPS {
            let xi = assoc(u.clone(), k.clone());
            t += 1;
            let dist = ops::head_distance(xi.clone(), prev_state);
            u = if active.iter().all(|&a| a) { xi.clone() } else { ops::select_heads(xi.clone(), u, &active) };
            active = self.next_active(&active, t, &dist, &mut steps);
            prev_state = xi;
        }
        let merged = merge_heads(assoc(u, v.clone()));
        HopfieldOutput {
            output: self.finish(merged),
            association: None,
            projected_patterns: return_projected.then_some(v),
            update_steps: steps,
        }
    }

    /// Output projection, activation and layout.
    fn finish(&self, merged: Tensor<3>) -> Tensor<3> {
        let mut y = match &self.association_core.out_proj {
            Some(o) => linear(merged, o.weight.val(), o.bias.as_ref().map(|b| b.val())),
            None => merged,
        };
        if let Some(act) = self.spec.dims.activation {
            y = ops::activate(y, act);
        }
        if self.spec.config.batch_first {
            y
        } else {
            y.swap_dims(0, 1)
        }
    }

    /// α per head: fixed (sparsemax: 2), or an error for a learnable α (its gradient is not implemented here).
    fn entmax_alphas(&self) -> Result<Option<Vec<f64>>> {
        let h = self.spec.dims.heads;
        match self.spec.config.retrieval {
            Retrieval::Entmax { learnable: true, .. } => Err(HopfieldError::config(
                "retrieval",
                "a learnable entmax α is not supported by hopfield-burn (use hopfield's own backends)",
            )),
            r => Ok(r.entmax_alpha().map(|a| vec![a; h])),
        }
    }
}

/// The caller's masks as additive score biases: padding `[B, S']`, association `[1|B, 1|H, L, S']`, with
/// zero (unmasked) columns for the `extra` appended bias/zero patterns.
pub(crate) fn score_biases(
    padding: Option<Tensor<2, Bool>>,
    association: Option<AssociationMask>,
    (b, h, l, s): (usize, usize, usize, usize),
    extra: usize,
) -> Result<(Option<Tensor<2>>, Option<Tensor<4>>)> {
    let pad_cols = |t: Tensor<3>| -> Tensor<3> {
        if extra == 0 {
            return t;
        }
        let [n, r, _] = t.dims();
        let zeros = Tensor::zeros([n, r, extra], &t.device());
        Tensor::cat(vec![t, zeros], 2)
    };
    let padding = match padding {
        None => None,
        Some(m) => {
            if m.dims() != [b, s] {
                return Err(HopfieldError::shape(
                    "hopfield_burn.stored_pattern_padding_mask",
                    format!("[{b}, {s}]"),
                    &m.dims(),
                ));
            }
            Some(pad_cols(additive(m).reshape([b, 1, s])).reshape([b, s + extra]))
        }
    };
    let association = match association {
        None => None,
        Some(AssociationMask::Shared(m)) => {
            if m.dims() != [l, s] {
                return Err(HopfieldError::shape("hopfield_burn.association_mask", format!("[{l}, {s}]"), &m.dims()));
            }
            Some(pad_cols(additive(m).reshape([1, l, s])).reshape([1, 1, l, s + extra]))
        }
        Some(AssociationMask::PerHead(m)) => {
            if m.dims() != [b * h, l, s] {
                return Err(HopfieldError::shape(
                    "hopfield_burn.association_mask",
                    format!("[{}, {l}, {s}]", b * h),
                    &m.dims(),
                ));
            }
            Some(pad_cols(additive(m)).reshape([b, h, l, s + extra]))
        }
        Some(AssociationMask::Additive(m)) => {
            let dims = m.dims();
            if dims[1..] != [l, s] || (dims[0] != 1 && dims[0] != b * h) {
                return Err(HopfieldError::shape(
                    "hopfield_burn.association_mask",
                    format!("[1 or {}, {l}, {s}]", b * h),
                    &dims,
                ));
            }
            if dims[0] == 1 {
                Some(pad_cols(m).reshape([1, 1, l, s + extra]))
            } else {
                Some(pad_cols(m).reshape([b, h, l, s + extra]))
            }
        }
    };
    Ok((padding, association))
}
