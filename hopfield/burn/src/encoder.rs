//! hflayers' `HopfieldEncoderLayer` as a burn module: a transformer encoder layer whose self-attention is a
//! Hopfield self-association, post-norm (PyTorch's default) or pre-norm, as `hopfield::layers::encoder`.

use crate::hopfield::{AssociationMask, Hopfield, HopfieldInput};
use crate::ops::{activate, layer_norm, linear};
use crate::params::{param, to_burn, to_host, Affine};
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Bool, Device, Tensor};
use hopfield::layers::linear::LinearParams;
use hopfield::layers::{EncoderParams, HopfieldEncoderLayerConfig};
use hopfield::{Activation, Cpu, HopfieldError, Result};

/// A linear map with PyTorch's names (`weight [out, in]`, `bias [out]`).
#[derive(Module, Debug)]
pub struct TorchLinear {
    /// `[out, in]`.
    pub weight: Param<Tensor<2>>,
    /// `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
}

impl TorchLinear {
    fn from_host(p: &LinearParams<Cpu<f32>>, device: &Device) -> Self {
        TorchLinear { weight: Param::from_tensor(to_burn(&p.weight, device)), bias: param(&p.bias, device) }
    }
    fn to_host(&self) -> LinearParams<Cpu<f32>> {
        LinearParams { weight: to_host(&self.weight.val()), bias: self.bias.as_ref().map(|b| to_host(&b.val())) }
    }
    /// `x·Wᵀ + b`.
    ///
    /// # Shapes
    /// `[B, N, in]` → `[B, N, out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(x, self.weight.val(), self.bias.as_ref().map(|b| b.val()))
    }
}

/// A Hopfield encoder layer (hflayers' names: `hopfield_association`, `linear_residual`, `linear_output`,
/// `norm_residual`, `norm_output`).
///
/// # Shapes
/// `src [B, N, width]` (sequence-first without `batch_first`) → the same.
#[derive(Module, Debug)]
pub struct HopfieldEncoderLayer {
    /// The self-association.
    pub hopfield_association: Hopfield,
    /// width → dim_feedforward.
    pub linear_residual: TorchLinear,
    /// dim_feedforward → width.
    pub linear_output: TorchLinear,
    /// Norm after (post-norm) or before (pre-norm) the association.
    pub norm_residual: Affine,
    /// Norm after or before the feed-forward block.
    pub norm_output: Affine,
    /// Dropout on the association's output, the hidden layer and the feed-forward output.
    pub dropout: Dropout,
    /// The configuration.
    #[module(skip)]
    pub config: HopfieldEncoderLayerConfig,
    #[module(skip)]
    activation: Activation,
}

impl HopfieldEncoderLayer {
    /// A module with `hopfield`'s parameters on `device`.
    ///
    /// # Errors
    /// The configuration's errors (as `hopfield` validates it).
    pub fn from_host(config: HopfieldEncoderLayerConfig, p: &EncoderParams<Cpu<f32>>, device: &Device) -> Result<Self> {
        let spec = config.hopfield.spec()?;
        let activation: Activation =
            config.activation.parse().map_err(|e: HopfieldError| HopfieldError::config("activation", e.to_string()))?;
        Ok(HopfieldEncoderLayer {
            hopfield_association: Hopfield::from_host(spec, &p.hopfield_association, device),
            linear_residual: TorchLinear::from_host(&p.linear_residual, device),
            linear_output: TorchLinear::from_host(&p.linear_output, device),
            norm_residual: Affine::from_host(&p.norm_residual, device),
            norm_output: Affine::from_host(&p.norm_output, device),
            dropout: DropoutConfig::new(config.dropout).init(),
            config,
            activation,
        })
    }

    /// The parameters as `hopfield`'s struct on the host.
    pub fn to_host(&self) -> EncoderParams<Cpu<f32>> {
        EncoderParams {
            hopfield_association: self.hopfield_association.to_host(),
            linear_residual: self.linear_residual.to_host(),
            linear_output: self.linear_output.to_host(),
            norm_residual: self.norm_residual.to_host(),
            norm_output: self.norm_output.to_host(),
        }
    }

    fn norm(&self, a: &Affine, x: Tensor<3>) -> Tensor<3> {
        layer_norm(x, self.config.layer_norm_eps, Some((a.weight.val(), a.bias.val())))
    }

    fn mlp(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = activate(self.linear_residual.forward(x), self.activation);
        self.linear_output.forward(self.dropout.forward(hidden))
    }

    /// The layer on `src` with an optional association mask (`src_mask`) and padding mask `[B, N]`.
    ///
    /// # Errors
    /// [`HopfieldError::Shape`] for a `src` or mask of the wrong shape.
    pub fn forward(
        &self,
        src: Tensor<3>,
        src_mask: Option<AssociationMask>,
        src_key_padding_mask: Option<Tensor<2, Bool>>,
    ) -> Result<Tensor<3>> {
        let width = self.hopfield_association.spec.dims.input;
        if src.dims()[2] != width {
            return Err(HopfieldError::shape(
                "hopfield_burn.encoder_layer.forward(src)",
                format!("[.., .., {width}]"),
                &src.dims(),
            ));
        }
        let assoc = |x: Tensor<3>| -> Result<Tensor<3>> {
            let mut input = HopfieldInput::single(x);
            input.association_mask = src_mask.clone();
            input.stored_pattern_padding_mask = src_key_padding_mask.clone();
            Ok(self.dropout.forward(self.hopfield_association.forward(input)?.output))
        };
        if self.config.norm_first {
            let x = src.clone() + assoc(self.norm(&self.norm_residual, src))?;
            let m = self.mlp(self.norm(&self.norm_output, x.clone()));
            Ok(x + self.dropout.forward(m))
        } else {
            let n1 = self.norm(&self.norm_residual, src.clone() + assoc(src)?);
            let m = self.mlp(n1.clone());
            Ok(self.norm(&self.norm_output, n1 + self.dropout.forward(m)))
        }
    }
}
