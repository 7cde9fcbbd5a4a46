//! Forward pass of `Hopfield`: norms → projections → heads → update iteration → retrieval → output.

use super::input::{score_biases, HopfieldInput, HopfieldOutput};
use super::{
    broadcast_heads, merge_heads, split_heads, FusedCache, HopfieldCache, HopfieldParams, HopfieldSpec,
    MAX_UNBOUNDED_STEPS,
};
use crate::backend::{Backend, ScoreBias};
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::layers::hopfield::config::Convergence;
use crate::layers::hopfield::params::ProjSlot;
use crate::layers::linear::linear_forward;
use crate::layers::norm::LayerNormCache;

impl HopfieldSpec {
    /// The projection weight of one slot: a row block of `in_proj_weight`, or the separate weight.
    pub(crate) fn proj_weight<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        slot: ProjSlot,
        separate: &Option<B::Tensor>,
    ) -> B::Tensor {
        match (&p.in_proj_weight, separate) {
            (Some(w), _) => backend.slice(w, 0, slot.offset, slot.rows),
            (None, Some(w)) => w.clone(),
            (None, None) => unreachable!("a projected input has a weight"),
        }
    }

    /// The bias block `[offset, offset + rows)` of `in_proj_bias`.
    pub(crate) fn proj_bias<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        offset: usize,
        rows: usize,
    ) -> Option<B::Tensor> {
        p.in_proj_bias.as_ref().map(|b| backend.slice(b, 0, offset, rows))
    }

    /// Offset of the value bias block (it exists even for a static value, as in hflayers).
    pub(crate) fn v_bias_offset(&self) -> usize {
        self.layout.q.map_or(0, |s| s.rows) + self.layout.k.map_or(0, |s| s.rows)
    }

    fn check_inputs<B: Backend>(&self, backend: &B, input: &HopfieldInput<B>) -> Result<(usize, usize, usize)> {
        let d = &self.dims;
        let (ks, qs, vs) =
            (backend.shape(&input.stored), backend.shape(&input.state), backend.shape(&input.projection));
        let bf = self.config.batch_first;
        let layout = if bf { "[B, N, features]" } else { "[N, B, features]" };
        for (s, name, feat) in [
            (&ks, "hopfield.forward(stored)", d.stored),
            (&qs, "hopfield.forward(state)", d.input),
            (&vs, "hopfield.forward(projection)", d.projection),
        ] {
            if s.len() != 3 || s[2] != feat {
                return Err(HopfieldError::shape(name, format!("{layout} with {feat} features"), s));
            }
        }
        let (bi, si) = if bf { (0, 1) } else { (1, 0) };
        if qs[bi] != ks[bi] || vs[bi] != ks[bi] {
            return Err(HopfieldError::shape(
                "hopfield.forward(batch)",
                format!("the same batch size {} for stored, state and projection", ks[bi]),
                &[ks[bi], qs[bi], vs[bi]],
            ));
        }
        if vs[si] != ks[si] {
            return Err(HopfieldError::shape(
                "hopfield.forward(projection)",
                format!("as many pattern projections as stored patterns ({})", ks[si]),
                &vs,
            ));
        }
        if ks[si] == 0 || qs[si] == 0 || ks[bi] == 0 {
            return Err(HopfieldError::shape("hopfield.forward", "non-empty batch and sequences", &ks));
        }
        Ok((ks[bi], qs[si], ks[si]))
    }

    /// Forward pass with explicit parameters (`dropout_seed` = training mode).
    pub fn forward<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        input: &HopfieldInput<B>,
        dropout_seed: Option<u64>,
    ) -> Result<(HopfieldOutput<B>, HopfieldCache<B>)> {
        let (b, l, s) = self.check_inputs(backend, input)?;
        let (c, d) = (&self.config, &self.dims);
        let h = d.heads;
        let to_bf = |t: &B::Tensor| if c.batch_first { t.clone() } else { backend.permute(t, &[1, 0, 2]) };
        let (stored, state, projection) = (to_bf(&input.stored), to_bf(&input.state), to_bf(&input.projection));

        // Input layer norms.
        let norm = |x: B::Tensor, on: bool, eps: f64, params: &Option<crate::layers::norm::LayerNormParams<B>>| {
            if !on {
                return (x, None);
            }
            let (w, bias) = params.as_ref().map(|p| (&p.weight, &p.bias)).unzip();
            let (y, stats) = backend.layer_norm(&x, w, bias, B::Elem::of(eps));
            (y, Some(LayerNormCache { x, stats }))
        };
        let (stored_n, ln_stored) =
            norm(stored, c.normalize_stored_pattern, c.normalize_stored_pattern_eps, &p.norm_stored_pattern);
        let (state_n, ln_state) =
            norm(state, c.normalize_state_pattern, c.normalize_state_pattern_eps, &p.norm_state_pattern);
        let (projection_n, ln_projection) = norm(
            projection,
            c.normalize_pattern_projection,
            c.normalize_pattern_projection_eps,
            &p.norm_pattern_projection,
        );

        // Projections into the Hopfield space, split into heads.
        let q = match self.layout.q {
            None => broadcast_heads(backend, &state_n, h),
            Some(slot) => {
                let w = self.proj_weight(backend, p, slot, &p.q_proj_weight);
                split_heads(
                    backend,
                    &linear_forward(backend, &state_n, &w, self.proj_bias(backend, p, slot.offset, slot.rows).as_ref()),
                    h,
                )
            }
        };
        let mut k_flat = match self.layout.k {
            None => None,
            Some(slot) => {
                let w = self.proj_weight(backend, p, slot, &p.k_proj_weight);
                Some(linear_forward(
                    backend,
                    &stored_n,
                    &w,
                    self.proj_bias(backend, p, slot.offset, slot.rows).as_ref(),
                ))
            }
        };
        let connected = match (c.pattern_projection_as_connected, self.layout.k) {
            (true, Some(slot)) => {
                let w = self.proj_weight(backend, p, slot, &p.k_proj_weight);
                Some(linear_forward(
                    backend,
                    &projection_n,
                    &w,
                    self.proj_bias(backend, p, slot.offset, slot.rows).as_ref(),
                ))
            }
            _ => None,
        };
        let v_in = connected.as_ref().unwrap_or(&projection_n);
        let v_flat = match self.layout.v {
            None => connected.clone(),
            Some(slot) => {
                let w = self.proj_weight(backend, p, slot, &p.v_proj_weight);
                Some(linear_forward(
                    backend,
                    v_in,
                    &w,
                    self.proj_bias(backend, p, self.v_bias_offset(), slot.rows).as_ref(),
                ))
            }
        };
        let mut k = match k_flat.take() {
            Some(kf) => split_heads(backend, &kf, h),
            None => broadcast_heads(backend, &stored_n, h),
        };
        let mut v = match v_flat {
            Some(vf) => split_heads(backend, &vf, h),
            None => broadcast_heads(backend, &projection_n, h),
        };

        // Per-head layer norm in the Hopfield space (shared affine parameters).
        let (mut q, mut hs_q, mut hs_k) = (q, None, None);
        if c.normalize_hopfield_space {
            let eps = B::Elem::of(c.normalize_hopfield_space_eps);
            let (w, bias) = (p.p_norm_weight.as_ref(), p.p_norm_bias.as_ref());
            let (qn, qs) = backend.layer_norm(&q, w, bias, eps);
            let (kn, ks) = backend.layer_norm(&k, w, bias, eps);
            hs_q = Some(LayerNormCache { x: q, stats: qs });
            hs_k = Some(LayerNormCache { x: k, stats: ks });
            q = qn;
            k = kn;
        }

        // Appended patterns: the learned bias pattern, then the zero pattern.
        let mut extra = 0;
        if let (Some(bk), Some(bv)) = (&p.bias_k, &p.bias_v) {
            let per_head = |t: &B::Tensor, dim: usize| backend.expand(&backend.reshape(t, &[1, h, 1, dim]), 0, b);
            k = backend.concat(&k, &per_head(bk, d.head), 2);
            v = backend.concat(&v, &per_head(bv, d.pattern), 2);
            extra += 1;
        }
        if c.add_zero_association {
            k = backend.concat(&k, &backend.zeros(&[b, h, 1, d.head]), 2);
            v = backend.concat(&v, &backend.zeros(&[b, h, 1, d.pattern]), 2);
            extra += 1;
        }
        let (padding, association) = score_biases(backend, input, (b, h, l, s), extra)?;
        let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };

        let beta: Vec<B::Elem> = d.beta.iter().map(|&x| B::Elem::of(x)).collect();
        let dropout_active = dropout_seed.is_some() && c.dropout > 0.0;
        let fused_ok = (c.convergence == Convergence::State || d.steps_max.iter().all(|m| *m == Some(0)))
            && c.retrieval.is_softmax();
        if c.fused_association && !input.return_association && !dropout_active && fused_ok {
            let (retrieved, fused, steps, actives) =
                self.fused_retrieval(backend, &q, &k, &v, &beta, padding, association);
            let merged = merge_heads(backend, &retrieved);
            return Ok(self.finish(
                backend,
                p,
                input,
                merged,
                (b, l, s),
                FwdCache {
                    ln_stored,
                    ln_state,
                    ln_projection,
                    stored_n,
                    state_n,
                    projection_n,
                    connected,
                    hs_q,
                    hs_k,
                    q,
                    k,
                    v,
                    assocs: Vec::new(),
                    states: Vec::new(),
                    active: actives,
                    dropout: None,
                    fused: Some(fused),
                },
                steps,
            ));
        }

        // Association and update iteration, per head until its step budget or convergence.
        let alpha = self.entmax_alphas(backend, p);
        let normalize = |scores: &B::Tensor| self.normalize(backend, scores, &beta, &bias, alpha.as_deref());
        let a0 = normalize(&backend.matmul(&q, &k, false, true));
        let mut assocs = vec![a0];
        let (mut states, mut actives) = (Vec::new(), Vec::new());
        let mut active: Vec<bool> = d.steps_max.iter().map(|m| m.is_none_or(|m| m > 0)).collect();
        let mut steps = vec![0usize; h];
        let mut t = 0;
        while active.iter().any(|&a| a) && t < MAX_UNBOUNDED_STEPS {
            let a_prev = assocs.last().unwrap();
            let xi = backend.matmul(a_prev, &k, false, false);
            let a_new = normalize(&backend.matmul(&xi, &k, false, true));
            let a_t = if active.iter().all(|&a| a) { a_new } else { backend.select_heads(&a_new, a_prev, &active) };
            t += 1;
            let dist = match c.convergence {
                Convergence::Association => backend.head_distance(&a_t, a_prev),
                Convergence::State => backend.head_distance(&xi, states.last().unwrap_or(&q)),
            };
            let next = self.next_active(&active, t, &dist, &mut steps);
            states.push(xi);
            assocs.push(a_t);
            actives.push(std::mem::replace(&mut active, next));
        }

        // Retrieval: (dropped-out) association times projected patterns, heads merged, output projection.
        let a_final = assocs.last().unwrap();
        let dropout = match dropout_seed {
            Some(seed) if c.dropout > 0.0 => Some(backend.dropout_mask(&backend.shape(a_final), c.dropout, seed)),
            _ => None,
        };
        let a_used = match &dropout {
            Some(m) => backend.mul(a_final, m),
            None => a_final.clone(),
        };
        let merged = merge_heads(backend, &backend.matmul(&a_used, &v, false, false));
        Ok(self.finish(
            backend,
            p,
            input,
            merged,
            (b, l, s),
            FwdCache {
                ln_stored,
                ln_state,
                ln_projection,
                stored_n,
                state_n,
                projection_n,
                connected,
                hs_q,
                hs_k,
                q,
                k,
                v,
                assocs,
                states,
                active: actives,
                dropout,
                fused: None,
            },
            steps,
        ))
    }

    /// Which heads keep iterating after step `t` (counting the step just done for the active ones).
    fn next_active(&self, active: &[bool], t: usize, dist: &[impl Element], steps: &mut [usize]) -> Vec<bool> {
        let d = &self.dims;
        for (hh, st) in steps.iter_mut().enumerate() {
            *st += active[hh] as usize;
        }
        (0..d.heads)
            .map(|hh| active[hh] && d.steps_max[hh].is_none_or(|m| t < m) && dist[hh].f64() > d.steps_eps[hh])
            .collect()
    }

    /// The fused path: `u₀ = q`; each step `ξ_t = assoc(u_{t−1}, K, K)` and `u_t = ξ_t` on the heads still
    /// active (else `u_{t−1}`), which is exactly `ξ_t = A_{t−1} K` of the materialised loop; the output is
    /// `assoc(u_T, K, V)`. Convergence is tested on states (`Convergence::State`).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fused_retrieval<B: Backend>(
        &self,
        backend: &B,
        q: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
        beta: &[B::Elem],
        padding: Option<B::Tensor>,
        association: Option<B::Tensor>,
    ) -> (B::Tensor, FusedCache<B>, Vec<usize>, Vec<Vec<bool>>) {
        let d = &self.dims;
        let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };
        let mut drivers = vec![q.clone()];
        let mut step_outs = Vec::new();
        let mut actives = Vec::new();
        let mut active: Vec<bool> = d.steps_max.iter().map(|m| m.is_none_or(|m| m > 0)).collect();
        let mut steps = vec![0usize; d.heads];
        let mut t = 0;
        while active.iter().any(|&a| a) && t < MAX_UNBOUNDED_STEPS {
            let u_prev = drivers.last().unwrap();
            let (xi, lse) = backend.association(u_prev, k, k, beta, &bias);
            t += 1;
            let prev_state = step_outs.last().map_or(q, |(x, _): &(B::Tensor, B::Tensor)| x);
            let dist = backend.head_distance(&xi, prev_state);
            let u = if active.iter().all(|&a| a) { xi.clone() } else { backend.select_heads(&xi, u_prev, &active) };
            let next = self.next_active(&active, t, &dist, &mut steps);
            drivers.push(u);
            step_outs.push((xi, lse));
            actives.push(std::mem::replace(&mut active, next));
        }
        let (out, lse) = backend.association(drivers.last().unwrap(), k, v, beta, &bias);
        (out.clone(), FusedCache { padding, association, drivers, steps: step_outs, out, lse }, steps, actives)
    }

    /// Output projection and activation, shared by both paths.
    #[allow(clippy::too_many_arguments)]
    fn finish<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        input: &HopfieldInput<B>,
        merged: B::Tensor,
        sizes: (usize, usize, usize),
        fc: FwdCache<B>,
        steps: Vec<usize>,
    ) -> (HopfieldOutput<B>, HopfieldCache<B>) {
        let (c, d) = (&self.config, &self.dims);
        let mut y = match &p.out_proj_weight {
            Some(w) => linear_forward(backend, &merged, w, p.out_proj_bias.as_ref()),
            None => merged.clone(),
        };
        let pre_activation = d.activation.map(|act| {
            let pre = y.clone();
            y = backend.activation(&pre, act);
            pre
        });
        let output = if c.batch_first { y } else { backend.permute(&y, &[1, 0, 2]) };
        let out = HopfieldOutput {
            output,
            association: if input.return_association { fc.assocs.last().cloned() } else { None },
            projected_patterns: input.return_projected_patterns.then(|| fc.v.clone()),
            update_steps: steps,
        };
        let cache = HopfieldCache {
            sizes,
            ln_stored: fc.ln_stored,
            ln_state: fc.ln_state,
            ln_projection: fc.ln_projection,
            stored_n: fc.stored_n,
            state_n: fc.state_n,
            projection_n: fc.projection_n,
            connected: fc.connected,
            hs_q: fc.hs_q,
            hs_k: fc.hs_k,
            q: fc.q,
            k: fc.k,
            v: fc.v,
            assocs: fc.assocs,
            states: fc.states,
            active: fc.active,
            dropout: fc.dropout,
            fused: fc.fused,
            merged,
            pre_activation,
        };
        (out, cache)
    }
}

/// The forward intermediates both paths hand to [`HopfieldSpec::finish`].
struct FwdCache<B: Backend> {
    ln_stored: Option<LayerNormCache<B>>,
    ln_state: Option<LayerNormCache<B>>,
    ln_projection: Option<LayerNormCache<B>>,
    stored_n: B::Tensor,
    state_n: B::Tensor,
    projection_n: B::Tensor,
    connected: Option<B::Tensor>,
    hs_q: Option<LayerNormCache<B>>,
    hs_k: Option<LayerNormCache<B>>,
    q: B::Tensor,
    k: B::Tensor,
    v: B::Tensor,
    assocs: Vec<B::Tensor>,
    states: Vec<B::Tensor>,
    active: Vec<Vec<bool>>,
    dropout: Option<B::Tensor>,
    fused: Option<FusedCache<B>>,
}
