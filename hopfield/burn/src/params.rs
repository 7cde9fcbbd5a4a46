//! The learned tensors of a Hopfield association as burn parameters, named as hflayers' state_dict
//! (`association_core.in_proj_weight`, `norm_stored_pattern.weight`, …), and their conversion from and to
//! `hopfield`'s parameter structs (which read and write hflayers' safetensors).

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use hopfield::backend::CpuTensor;
use hopfield::layers::norm::LayerNormParams;
use hopfield::{Backend as _, Cpu};

/// The host backend the conversions go through (`hopfield`'s CPU backend in f32).
pub(crate) fn host() -> Cpu<f32> {
    Cpu::<f32>::new()
}

/// A host tensor of `hopfield` as a burn tensor of rank `D` on `device`.
pub(crate) fn to_burn<const D: usize>(t: &CpuTensor<f32>, device: &Device) -> Tensor<D> {
    let cpu = host();
    let shape = cpu.shape(t);
    assert_eq!(shape.len(), D, "a parameter of shape {shape:?} is not of rank {D}");
    Tensor::from_data(TensorData::new(cpu.to_vec(t), shape), device)
}

/// A burn tensor back on the host.
pub(crate) fn to_host<const D: usize>(t: &Tensor<D>) -> CpuTensor<f32> {
    let data = t.to_data().convert::<f32>();
    let shape = data.shape().to_vec();
    host().from_vec(data.try_to_vec::<f32>().expect("f32 data"), &shape)
}

/// An optional learned tensor.
pub(crate) fn param<const D: usize>(t: &Option<CpuTensor<f32>>, device: &Device) -> Option<Param<Tensor<D>>> {
    t.as_ref().map(|t| Param::from_tensor(to_burn(t, device)))
}

pub(crate) fn host_param<const D: usize>(p: &Option<Param<Tensor<D>>>) -> Option<CpuTensor<f32>> {
    p.as_ref().map(|p| to_host(&p.val()))
}

/// A layer norm's affine parameters (`weight`, `bias`, as PyTorch names them).
///
/// # Shapes
/// `weight [n]`, `bias [n]`.
#[derive(Module, Debug)]
pub struct Affine {
    /// Scale `γ`.
    pub weight: Param<Tensor<1>>,
    /// Shift `β`.
    pub bias: Param<Tensor<1>>,
}

impl Affine {
    pub(crate) fn from_host(p: &LayerNormParams<Cpu<f32>>, device: &Device) -> Self {
        Affine {
            weight: Param::from_tensor(to_burn(&p.weight, device)),
            bias: Param::from_tensor(to_burn(&p.bias, device)),
        }
    }
    pub(crate) fn to_host(&self) -> LayerNormParams<Cpu<f32>> {
        LayerNormParams { weight: to_host(&self.weight.val()), bias: to_host(&self.bias.val()) }
    }
}

/// The output projection `association_core.out_proj.{weight, bias}`.
///
/// # Shapes
/// `weight [output, H·pattern]`, `bias [output]`.
#[derive(Module, Debug)]
pub struct OutProj {
    /// Weight, PyTorch's `[out, in]` layout.
    pub weight: Param<Tensor<2>>,
    /// Bias (absent without `input_bias`).
    pub bias: Option<Param<Tensor<1>>>,
}

/// hflayers' `association_core`: the projections, the Hopfield-space norm, the bias patterns and (not in
/// hflayers) the learnable entmax α. A field is `None` where the configuration does not create it; see
/// the layers crate's `HopfieldParams` for each tensor's meaning.
///
/// # Shapes
/// `in_proj_weight [(q? H·hd) + (k? H·hd) + (v? H·pd), input]` (packed, when all inputs share one size),
/// else `q_proj_weight [H·hd, input]`, `k_proj_weight [H·hd, stored]`, `v_proj_weight [H·pd, projection]`;
/// `in_proj_bias [(q? H·hd) + (k? H·hd) + H·pd]`; `p_norm_weight`, `p_norm_bias [hd]`;
/// `bias_k [1, 1, H·hd]`, `bias_v [1, 1, H·pd]`; `entmax_pre_alpha [H]`.
#[derive(Module, Debug)]
pub struct AssociationCore {
    /// Packed q/k/v projection.
    pub in_proj_weight: Option<Param<Tensor<2>>>,
    /// Separate query projection.
    pub q_proj_weight: Option<Param<Tensor<2>>>,
    /// Separate key projection.
    pub k_proj_weight: Option<Param<Tensor<2>>>,
    /// Separate value projection.
    pub v_proj_weight: Option<Param<Tensor<2>>>,
    /// Packed projection biases.
    pub in_proj_bias: Option<Param<Tensor<1>>>,
    /// Hopfield-space norm scale (shared by heads).
    pub p_norm_weight: Option<Param<Tensor<1>>>,
    /// Hopfield-space norm shift.
    pub p_norm_bias: Option<Param<Tensor<1>>>,
    /// Output projection.
    pub out_proj: Option<OutProj>,
    /// Learned bias stored pattern.
    pub bias_k: Option<Param<Tensor<3>>>,
    /// Its pattern projection.
    pub bias_v: Option<Param<Tensor<3>>>,
    /// Learnable entmax α per head, `α = 1 + sigmoid(pre_alpha)`.
    pub entmax_pre_alpha: Option<Param<Tensor<1>>>,
}
