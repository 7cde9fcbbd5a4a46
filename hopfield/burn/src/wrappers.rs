//! `HopfieldPooling` (learned queries pool a set) and `HopfieldLayer` (learned stored patterns as an
//! associative lookup) as burn modules around [`Hopfield`], as hflayers builds them.

use crate::hopfield::{AssociationMask, Hopfield, HopfieldInput, HopfieldOutput};
use crate::params::{to_burn, to_host};
use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Tensor};
use hopfield::layers::{HopfieldLayerConfig, HopfieldLayerParams, HopfieldPoolingConfig, HopfieldPoolingParams};
use hopfield::{Cpu, HopfieldError, Result};

/// Repeat `[1, Q, n]` learned patterns for `batch` samples in the configured layout.
fn per_sample(w: Tensor<3>, batch: usize, batch_first: bool) -> Tensor<3> {
    if batch_first {
        w.repeat_dim(0, batch)
    } else {
        w.swap_dims(0, 1).repeat_dim(1, batch)
    }
}

fn batch_of(x: &Tensor<3>, batch_first: bool) -> usize {
    x.dims()[if batch_first { 0 } else { 1 }]
}

fn learned(t: Tensor<3>, trainable: bool) -> Param<Tensor<3>> {
    let p = Param::from_tensor(t);
    if trainable {
        p
    } else {
        p.set_require_grad(false)
    }
}

/// hflayers' `HopfieldPooling`: `quantity` learned state patterns retrieve from the input set; the outputs
/// are concatenated.
///
/// # Shapes
/// stored `[B, S, stored]`, projection `[B, S, projection]` (sequence-first without `batch_first`),
/// padding mask `[B, S]` → `[B, quantity·output]`.
#[derive(Module, Debug)]
pub struct HopfieldPooling {
    /// `pooling_weights` `[1, quantity, input]`.
    pub pooling_weights: Param<Tensor<3>>,
    /// `hopfield.*`.
    pub hopfield: Hopfield,
    /// The configuration.
    #[module(skip)]
    pub config: HopfieldPoolingConfig,
}

impl HopfieldPooling {
    /// A module with `hopfield`'s parameters on `device`.
    pub fn from_host(
        config: HopfieldPoolingConfig,
        p: &HopfieldPoolingParams<Cpu<f32>>,
        device: &Device,
    ) -> Result<Self> {
        let spec = config.hopfield.spec()?;
        Ok(HopfieldPooling {
            pooling_weights: learned(to_burn(&p.pooling_weights, device), config.trainable),
            hopfield: Hopfield::from_host(spec, &p.hopfield, device),
            config,
        })
    }

    /// The parameters as `hopfield`'s struct on the host.
    pub fn to_host(&self) -> HopfieldPoolingParams<Cpu<f32>> {
        HopfieldPoolingParams {
            pooling_weights: to_host(&self.pooling_weights.val()),
            hopfield: self.hopfield.to_host(),
            trainable: self.config.trainable,
        }
    }

    /// Pool `x` (stored pattern = pattern projection), with an optional padding mask `[B, S]`.
    pub fn forward(&self, x: Tensor<3>, padding_mask: Option<Tensor<2, Bool>>) -> Result<Tensor<2>> {
        Ok(self.forward_full(x.clone(), x, padding_mask, None, false)?.0)
    }

    /// Pool with separate stored patterns and projections, any masks, and (on request) the association
    /// matrix `[B, H, quantity, S']`.
    pub fn forward_full(
        &self,
        stored: Tensor<3>,
        projection: Tensor<3>,
        padding_mask: Option<Tensor<2, Bool>>,
        association_mask: Option<AssociationMask>,
        return_association: bool,
    ) -> Result<(Tensor<2>, HopfieldOutput)> {
        let bf = self.hopfield.spec.config.batch_first;
        let state = per_sample(self.pooling_weights.val(), batch_of(&stored, bf), bf);
        let input = HopfieldInput {
            stored,
            state,
            projection,
            stored_pattern_padding_mask: padding_mask,
            association_mask,
            return_association,
            return_projected_patterns: false,
        };
        let out = self.hopfield.forward(input)?;
        let y = if bf { out.output.clone() } else { out.output.clone().swap_dims(0, 1) };
        let [b, q, o] = y.dims();
        Ok((y.reshape([b, q * o]), out))
    }
}

/// hflayers' `HopfieldLayer`: the input (state patterns) retrieves from `quantity` learned stored patterns
/// and their targets (the same tensor unless `lookup_weights_as_separated`).
///
/// # Shapes
/// input `[B, L, input]` → `[B, L, output]` (sequence-first without `batch_first`).
#[derive(Module, Debug)]
pub struct HopfieldLayer {
    /// `lookup_weights` `[1, quantity, stored]`.
    pub lookup_weights: Param<Tensor<3>>,
    /// `target_weights` `[1, quantity, projection]` (separated lookups only).
    pub target_weights: Option<Param<Tensor<3>>>,
    /// `hopfield.*`.
    pub hopfield: Hopfield,
    /// The configuration.
    #[module(skip)]
    pub config: HopfieldLayerConfig,
}

impl HopfieldLayer {
    /// A module with `hopfield`'s parameters on `device`.
    pub fn from_host(config: HopfieldLayerConfig, p: &HopfieldLayerParams<Cpu<f32>>, device: &Device) -> Result<Self> {
        let spec = config.hopfield.spec()?;
        Ok(HopfieldLayer {
            lookup_weights: learned(to_burn(&p.lookup_weights, device), config.trainable),
            target_weights: p
                .target_weights
                .as_ref()
                .map(|t| learned(to_burn(t, device), config.lookup_targets_as_trainable)),
            hopfield: Hopfield::from_host(spec, &p.hopfield, device),
            config,
        })
    }

    /// The parameters as `hopfield`'s struct on the host.
    pub fn to_host(&self) -> HopfieldLayerParams<Cpu<f32>> {
        HopfieldLayerParams {
            lookup_weights: to_host(&self.lookup_weights.val()),
            target_weights: self.target_weights.as_ref().map(|t| to_host(&t.val())),
            hopfield: self.hopfield.to_host(),
            trainable: self.config.trainable,
            targets_trainable: self.config.lookup_targets_as_trainable,
        }
    }

    /// Look `input` up.
    pub fn forward(&self, input: Tensor<3>) -> Result<Tensor<3>> {
        Ok(self.forward_full(input, None, None, false)?.output)
    }

    /// Look up with masks over the stored patterns and (on request) the association matrix.
    pub fn forward_full(
        &self,
        input: Tensor<3>,
        padding_mask: Option<Tensor<2, Bool>>,
        association_mask: Option<AssociationMask>,
        return_association: bool,
    ) -> Result<HopfieldOutput> {
        if padding_mask.as_ref().is_some_and(|m| m.dims()[1] != self.config.quantity) {
            return Err(HopfieldError::shape(
                "hopfield_burn.hopfield_layer.padding_mask",
                format!("[B, {}] (one entry per stored pattern)", self.config.quantity),
                &padding_mask.unwrap().dims(),
            ));
        }
        let bf = self.hopfield.spec.config.batch_first;
        let batch = batch_of(&input, bf);
        let stored = per_sample(self.lookup_weights.val(), batch, bf);
        let projection = match &self.target_weights {
            Some(t) => per_sample(t.val(), batch, bf),
            None => stored.clone(),
        };
        self.hopfield.forward(HopfieldInput {
            stored,
            state: input,
            projection,
            stored_pattern_padding_mask: padding_mask,
            association_mask,
            return_association,
            return_projected_patterns: false,
        })
    }
}
