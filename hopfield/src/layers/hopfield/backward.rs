//! Backward pass of `Hopfield`, through every update step. Each block restates the forward line it
//! differentiates.

use super::input::HopfieldInputGrads;
use super::params::ProjSlot;
use super::{merge_heads, split_heads, sum_heads, FusedCache, HopfieldCache, HopfieldParams, HopfieldSpec};
use crate::backend::{Backend, ScoreBias};
use crate::element::Element;
use crate::error::{HopfieldError, Result};
use crate::layers::linear::linear_backward;
use crate::layers::norm::{LayerNormCache, LayerNormParams};
use num_traits::One;

impl HopfieldSpec {
    /// Backward of [`HopfieldSpec::forward`]: accumulates parameter gradients into `grads` and returns the
    /// gradients of the three inputs (in the caller's layout).
    ///
    /// # Shapes
    /// `d_output` has the output's shape.
    pub fn backward<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        cache: &HopfieldCache<B>,
        d_output: &B::Tensor,
        grads: &mut HopfieldParams<B>,
    ) -> Result<HopfieldInputGrads<B>> {
        let (c, d) = (&self.config, &self.dims);
        let (b, l, s) = cache.sizes;
        let h = d.heads;
        let expected = if c.batch_first { [b, l, d.output] } else { [l, b, d.output] };
        let got = backend.shape(d_output);
        if got != expected {
            return Err(HopfieldError::shape("hopfield.backward(d_output)", format!("{expected:?}"), &got));
        }
        let to_bf = |t: &B::Tensor| if c.batch_first { t.clone() } else { backend.permute(t, &[1, 0, 2]) };
        let one = B::Elem::one();

        // y = act(pre)
        let mut dy = to_bf(d_output);
        if let (Some(act), Some(pre)) = (d.activation, &cache.pre_activation) {
            dy = backend.activation_backward(pre, &dy, act);
        }
        // y = merged Woᵀ + bo
        let d_merged = match (&p.out_proj_weight, grads.out_proj_weight.as_mut()) {
            (Some(w), Some(dw)) => linear_backward(backend, &cache.merged, w, &dy, dw, grads.out_proj_bias.as_mut()),
            _ => dy,
        };
        // merged = merge(A_used V)
        let d_o = split_heads(backend, &d_merged, h);
        let beta: Vec<B::Elem> = d.beta.iter().map(|&x| B::Elem::of(x)).collect();
        let k = &cache.k;
        let (mut dq, mut dk, mut dv) = match &cache.fused {
            Some(f) => self.fused_backward(backend, k, &cache.v, f, &cache.active, &beta, &d_o),
            None => {
                let a_final = cache.assocs.last().ok_or_else(|| HopfieldError::Format {
                    op: "hopfield.backward",
                    reason: "the cache holds no association matrix".into(),
                })?;
                let a_used = match &cache.dropout {
                    Some(m) => backend.mul(a_final, m),
                    None => a_final.clone(),
                };
                let dv = backend.matmul(&a_used, &d_o, true, false);
                let mut da = backend.matmul(&d_o, &cache.v, false, true);
                if let Some(m) = &cache.dropout {
                    da = backend.mul(&da, m);
                }

                // Update steps, last to first: A_t = softmax(β ξ_t Kᵀ) with ξ_t = A_{t−1} K (active heads only)
                // (or the configured retrieval instead of softmax; a learnable α collects its gradient).
                let alpha = self.entmax_alphas(backend, p);
                let mut d_alpha: Option<B::Tensor> = None;
                let mut add_d_alpha = |da_rows: Option<B::Tensor>, active: Option<&[bool]>| {
                    if let Some(mut rows) = da_rows {
                        if let Some(act) = active.filter(|a| !a.iter().all(|&x| x)) {
                            rows = backend.select_heads(&rows, &backend.zeros_like(&rows), act);
                        }
                        match d_alpha.as_mut() {
                            Some(acc) => backend.axpy(acc, one, &rows),
                            None => d_alpha = Some(rows),
                        }
                    }
                };
                let mut dk = backend.zeros_like(k);
                for t in (1..cache.assocs.len()).rev() {
                    let active = &cache.active[t - 1];
                    let all = active.iter().all(|&a| a);
                    let (mut ds, da_rows) =
                        self.normalize_backward(backend, &cache.assocs[t], &da, &beta, alpha.as_deref());
                    add_d_alpha(da_rows, Some(active));
                    if !all {
                        ds = backend.select_heads(&ds, &backend.zeros_like(&ds), active);
                    }
                    let xi = &cache.states[t - 1];
                    let dxi = backend.matmul(&ds, k, false, false);
                    backend.axpy(&mut dk, one, &backend.matmul(&ds, xi, true, false));
                    let a_prev = &cache.assocs[t - 1];
                    let da_prev = backend.matmul(&dxi, k, false, true);
                    backend.axpy(&mut dk, one, &backend.matmul(a_prev, &dxi, true, false));
                    da = if all { da_prev } else { backend.select_heads(&da_prev, &da, active) };
                }
                // A_0 = softmax(β Q Kᵀ)
                let (ds0, da_rows) = self.normalize_backward(backend, &cache.assocs[0], &da, &beta, alpha.as_deref());
                add_d_alpha(da_rows, None);
                if let (Some(rows), Some(g)) = (&d_alpha, grads.entmax_pre_alpha.as_mut()) {
                    if let Some(dpre) = self.pre_alpha_grad(backend, p, rows) {
                        backend.axpy(g, one, &dpre);
                    }
                }
                let dq = backend.matmul(&ds0, k, false, false);
                backend.axpy(&mut dk, one, &backend.matmul(&ds0, &cache.q, true, false));
                (dq, dk, dv)
            }
        };

        // Appended patterns: [stored..., bias?, zero?] along the pattern axis.
        let appended_bias = p.bias_k.is_some() && p.bias_v.is_some();
        if appended_bias {
            let bias_grad = |t: &B::Tensor, dim: usize| {
                let col = backend.slice(t, 2, s, 1);
                backend.reshape(&backend.sum_axis(&col, 0), &[1, 1, h * dim])
            };
            if let Some(g) = grads.bias_k.as_mut() {
                backend.axpy(g, one, &bias_grad(&dk, d.head));
            }
            if let Some(g) = grads.bias_v.as_mut() {
                backend.axpy(g, one, &bias_grad(&dv, d.pattern));
            }
        }
        if appended_bias || c.add_zero_association {
            dk = backend.slice(&dk, 2, 0, s);
            dv = backend.slice(&dv, 2, 0, s);
        }

        // Hopfield-space norms (shared affine parameters).
        if c.normalize_hopfield_space {
            let w = p.p_norm_weight.as_ref();
            for (dt, hs) in [(&mut dq, &cache.hs_q), (&mut dk, &cache.hs_k)] {
                let hs = hs.as_ref().expect("cached with normalize_hopfield_space");
                let (dx, affine) = backend.layer_norm_backward(&hs.x, &hs.stats, w, dt);
                if let (Some((dw, db)), Some(gw), Some(gb)) =
                    (affine, grads.p_norm_weight.as_mut(), grads.p_norm_bias.as_mut())
                {
                    backend.axpy(gw, one, &dw);
                    backend.axpy(gb, one, &db);
                }
                *dt = dx;
            }
        }

        // Projections (or broadcasts of static inputs) into heads.
        let d_state_n = match self.layout.q {
            None => sum_heads(backend, &dq),
            Some(slot) => self.proj_backward(
                backend,
                p,
                &cache.state_n,
                slot,
                Which::Q,
                slot.offset,
                &merge_heads(backend, &dq),
                grads,
            ),
        };
        let d_stored_n = match self.layout.k {
            None => sum_heads(backend, &dk),
            Some(slot) => self.proj_backward(
                backend,
                p,
                &cache.stored_n,
                slot,
                Which::K,
                slot.offset,
                &merge_heads(backend, &dk),
                grads,
            ),
        };
        let d_v_in = match self.layout.v {
            None if cache.connected.is_some() => merge_heads(backend, &dv),
            None => sum_heads(backend, &dv),
            Some(slot) => {
                let v_in = cache.connected.as_ref().unwrap_or(&cache.projection_n);
                self.proj_backward(
                    backend,
                    p,
                    v_in,
                    slot,
                    Which::V,
                    self.v_bias_offset(),
                    &merge_heads(backend, &dv),
                    grads,
                )
            }
        };
        let d_projection_n = match (&cache.connected, self.layout.k) {
            (Some(_), Some(slot)) => {
                self.proj_backward(backend, p, &cache.projection_n, slot, Which::K, slot.offset, &d_v_in, grads)
            }
            _ => d_v_in,
        };

        // Input layer norms.
        let ln = |ln: &Option<LayerNormCache<B>>,
                  dx: B::Tensor,
                  g: Option<&mut LayerNormParams<B>>,
                  w: Option<&B::Tensor>| {
            match ln {
                None => dx,
                Some(cache) => {
                    let (dx, affine) = backend.layer_norm_backward(&cache.x, &cache.stats, w, &dx);
                    if let (Some((dw, db)), Some(g)) = (affine, g) {
                        backend.axpy(&mut g.weight, one, &dw);
                        backend.axpy(&mut g.bias, one, &db);
                    }
                    dx
                }
            }
        };
        let d_stored = ln(
            &cache.ln_stored,
            d_stored_n,
            grads.norm_stored_pattern.as_mut(),
            p.norm_stored_pattern.as_ref().map(|n| &n.weight),
        );
        let d_state = ln(
            &cache.ln_state,
            d_state_n,
            grads.norm_state_pattern.as_mut(),
            p.norm_state_pattern.as_ref().map(|n| &n.weight),
        );
        let d_projection = ln(
            &cache.ln_projection,
            d_projection_n,
            grads.norm_pattern_projection.as_mut(),
            p.norm_pattern_projection.as_ref().map(|n| &n.weight),
        );
        Ok(HopfieldInputGrads { stored: to_bf(&d_stored), state: to_bf(&d_state), projection: to_bf(&d_projection) })
    }

    /// Backward of the fused path (see `fused_retrieval`): `out = assoc(u_T, K, V)`,
    /// `u_t = ξ_t = assoc(u_{t−1}, K, K)` on the heads active at step `t` (else `u_{t−1}`), `u₀ = q`.
    /// Returns `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn fused_backward<B: Backend>(
        &self,
        backend: &B,
        k: &B::Tensor,
        v: &B::Tensor,
        f: &FusedCache<B>,
        active: &[Vec<bool>],
        beta: &[B::Elem],
        d_o: &B::Tensor,
    ) -> (B::Tensor, B::Tensor, B::Tensor) {
        let one = B::Elem::one();
        let bias = ScoreBias { padding: f.padding.as_ref(), association: f.association.as_ref() };
        let u_last = f.drivers.last().expect("u0 = q");
        let (mut du, mut dk, dv) = backend.association_backward(u_last, k, v, beta, &bias, &f.out, &f.lse, d_o);
        for t in (1..f.drivers.len()).rev() {
            let act = &active[t - 1];
            let all = act.iter().all(|&a| a);
            // Only active heads took ξ_t; the others passed u_{t−1} through unchanged.
            let d_xi = if all { du.clone() } else { backend.select_heads(&du, &backend.zeros_like(&du), act) };
            let (xi, lse) = &f.steps[t - 1];
            let (d_prev, dk1, dk2) = backend.association_backward(&f.drivers[t - 1], k, k, beta, &bias, xi, lse, &d_xi);
            backend.axpy(&mut dk, one, &dk1);
            backend.axpy(&mut dk, one, &dk2);
            du = if all { d_prev } else { backend.select_heads(&d_prev, &du, act) };
        }
        (du, dk, dv)
    }

    /// Backward of `y = x Wᵀ + b` for one projection slot, accumulating into the packed or separate weight
    /// and into the bias block at `bias_offset`.
    fn proj_backward<B: Backend>(
        &self,
        backend: &B,
        p: &HopfieldParams<B>,
        x: &B::Tensor,
        slot: ProjSlot,
        which: Which,
        bias_offset: usize,
        dy: &B::Tensor,
        grads: &mut HopfieldParams<B>,
    ) -> B::Tensor {
        let separate = match which {
            Which::Q => &p.q_proj_weight,
            Which::K => &p.k_proj_weight,
            Which::V => &p.v_proj_weight,
        };
        let w = self.proj_weight(backend, p, slot, separate);
        let mut dw = backend.zeros_like(&w);
        let mut db = grads.in_proj_bias.as_ref().map(|_| backend.zeros(&[slot.rows]));
        let dx = linear_backward(backend, x, &w, dy, &mut dw, db.as_mut());
        let one = B::Elem::one();
        match (grads.in_proj_weight.as_mut(), which) {
            (Some(g), _) => backend.slice_add(g, 0, slot.offset, &dw),
            (None, Which::Q) => backend.axpy(grads.q_proj_weight.as_mut().expect("q weight"), one, &dw),
            (None, Which::K) => backend.axpy(grads.k_proj_weight.as_mut().expect("k weight"), one, &dw),
            (None, Which::V) => backend.axpy(grads.v_proj_weight.as_mut().expect("v weight"), one, &dw),
        }
        if let (Some(g), Some(db)) = (grads.in_proj_bias.as_mut(), db) {
            backend.slice_add(g, 0, bias_offset, &db);
        }
        dx
    }
}

#[derive(Clone, Copy)]
enum Which {
    Q,
    K,
    V,
}
