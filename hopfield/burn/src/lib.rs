//! Modern Hopfield layers (Ramsauer et al., "Hopfield Networks is All You Need"; hflayers) as
//! [burn](https://burn.dev) 0.22 modules.
//!
//! The configurations are `hopfield`'s own ([`HopfieldConfig`], [`HopfieldPoolingConfig`],
//! [`HopfieldLayerConfig`], [`HopfieldEncoderLayerConfig`]): every hflayers option with its default and
//! `hopfield`'s validation. [`HopfieldInit::init_burn`] builds the burn module on a device; its forward is
//! burn tensor ops, so burn's autodiff gives every gradient, and the modules compose with burn's `Linear`,
//! optimisers and records like any `#[derive(Module)]`. With `fused_association` on, the retrieval runs
//! `hopfield`'s streaming association kernels as a burn backend operation ([`fused`]) on NdArray and on
//! burn's CubeCL devices (wgpu, CUDA), with its own backward registered for autodiff: memory `O(L·d)`
//! instead of the `L × S` association matrix.
//!
//! ```
//! use burn::tensor::{Device, Tensor, Distribution};
//! use hopfield::layers::{HopfieldConfig, HopfieldPoolingConfig};
//! use hopfield_burn::HopfieldInit;
//!
//! # #[allow(deprecated)] // NdArray: the CPU backend the fused retrieval supports.
//! let device = Device::ndarray().autodiff();
//! // A bag of 10 instances of 166 features pooled into one vector (the MIL model of the paper).
//! let pooling = HopfieldPoolingConfig::new(166)
//!     .hopfield(HopfieldConfig::new(166).hidden_size(32).num_heads(4).scaling(0.1))
//!     .init_burn(&device)
//!     .unwrap();
//! let bag = Tensor::<3>::random([1, 10, 166], Distribution::Normal(0.0, 1.0), &device).require_grad();
//! let pooled = pooling.forward(bag.clone(), None).unwrap(); // [1, 166]
//! let grads = pooled.sum().backward();
//! let d_bag = bag.grad(&grads).unwrap();
//! assert_eq!(d_bag.dims(), [1, 10, 166]);
//! ```
//!
//! Parameters are named as hflayers' state_dict (`association_core.in_proj_weight`,
//! `norm_stored_pattern.weight`, `pooling_weights`, …): [`Hopfield::from_host`] and `to_host` convert
//! to and from `hopfield`'s parameter structs, which read and write hflayers' safetensors
//! ([`load_hflayers`] does both steps).

pub mod encoder;
pub mod fused;
pub mod hopfield;
pub mod ops;
pub mod params;
pub mod wrappers;

pub use crate::hopfield::{AssociationMask, Hopfield, HopfieldInput, HopfieldOutput};
pub use encoder::HopfieldEncoderLayer;
pub use wrappers::{HopfieldLayer, HopfieldPooling};

use ::hopfield::layers::{HopfieldConfig, HopfieldEncoderLayerConfig, HopfieldLayerConfig, HopfieldPoolingConfig};
use ::hopfield::{Cpu, Parameters, Result};
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;

/// Build the burn module of a `hopfield` configuration: validated as `hopfield` validates it, initialised
/// as hflayers initialises it (the same draws as `hopfield`'s `init` from the same seed).
pub trait HopfieldInit {
    /// The burn module.
    type Module;

    /// Validate and initialise on `device` with the given seed.
    ///
    /// # Errors
    /// The configuration's [`HopfieldError::Config`](::hopfield::HopfieldError::Config).
    fn init_burn_seeded(&self, device: &Device, seed: u64) -> Result<Self::Module>;

    /// Validate and initialise on `device` with a random seed.
    ///
    /// # Errors
    /// The configuration's [`HopfieldError::Config`](::hopfield::HopfieldError::Config).
    fn init_burn(&self, device: &Device) -> Result<Self::Module> {
        self.init_burn_seeded(device, rand::random())
    }
}

impl HopfieldInit for HopfieldConfig {
    type Module = Hopfield;
    fn init_burn_seeded(&self, device: &Device, seed: u64) -> Result<Hopfield> {
        let host = self.init(&Cpu::<f32>::new(), &mut StdRng::seed_from_u64(seed))?;
        Ok(Hopfield::from_host(host.spec, &host.params, device))
    }
}

impl HopfieldInit for HopfieldPoolingConfig {
    type Module = HopfieldPooling;
    fn init_burn_seeded(&self, device: &Device, seed: u64) -> Result<HopfieldPooling> {
        let host = self.init(&Cpu::<f32>::new(), &mut StdRng::seed_from_u64(seed))?;
        HopfieldPooling::from_host(self.clone(), &host.params, device)
    }
}

impl HopfieldInit for HopfieldLayerConfig {
    type Module = HopfieldLayer;
    fn init_burn_seeded(&self, device: &Device, seed: u64) -> Result<HopfieldLayer> {
        let host = self.init(&Cpu::<f32>::new(), &mut StdRng::seed_from_u64(seed))?;
        HopfieldLayer::from_host(self.clone(), &host.params, device)
    }
}

impl HopfieldInit for HopfieldEncoderLayerConfig {
    type Module = HopfieldEncoderLayer;
    fn init_burn_seeded(&self, device: &Device, seed: u64) -> Result<HopfieldEncoderLayer> {
        let host = self.init(&Cpu::<f32>::new(), &mut StdRng::seed_from_u64(seed))?;
        HopfieldEncoderLayer::from_host(self.clone(), &host.params, device)
    }
}

/// A module's parameters read from an hflayers state_dict in safetensors (`prefix` as in
/// `hopfield::io::load_state_dict`; `strict` rejects missing and unexpected names), through `hopfield`'s
/// loader, which checks every name and shape.
///
/// # Errors
/// An unreadable file, a missing, unexpected or misshapen tensor, or an invalid configuration.
pub fn load_hflayers<C: HopfieldInit + HostParams>(
    config: &C,
    path: impl AsRef<Path>,
    prefix: &str,
    strict: bool,
    device: &Device,
) -> Result<C::Module> {
    let map = ::hopfield::io::read_safetensors(path)?;
    config.load_host(&map, prefix, strict, device)
}

/// Configurations whose host parameters `hopfield::io` loads (implemented for the four configurations).
pub trait HostParams: HopfieldInit {
    /// Initialise on the host, load `map` into the parameters, and build the burn module.
    ///
    /// # Errors
    /// As [`load_hflayers`].
    fn load_host(
        &self,
        map: &::hopfield::io::TensorMap,
        prefix: &str,
        strict: bool,
        device: &Device,
    ) -> Result<Self::Module>;
}

macro_rules! host_params {
    ($cfg:ty, $build:expr) => {
        impl HostParams for $cfg {
            fn load_host(
                &self,
                map: &::hopfield::io::TensorMap,
                prefix: &str,
                strict: bool,
                device: &Device,
            ) -> Result<Self::Module> {
                let cpu = Cpu::<f32>::new();
                let mut host = self.init(&cpu, &mut StdRng::seed_from_u64(0))?;
                ::hopfield::io::load_state_dict(&cpu, &mut host.params, map, prefix, strict)?;
                #[allow(clippy::redundant_closure_call)]
                ($build)(self, host, device)
            }
        }
    };
}

host_params!(HopfieldConfig, |_: &HopfieldConfig, h: ::hopfield::layers::Hopfield<Cpu<f32>>, d: &Device| Ok(
    Hopfield::from_host(h.spec, &h.params, d)
));
host_params!(HopfieldPoolingConfig, |c: &HopfieldPoolingConfig,
                                     h: ::hopfield::layers::HopfieldPooling<Cpu<f32>>,
                                     d: &Device| HopfieldPooling::from_host(
    c.clone(),
    &h.params,
    d
));
host_params!(HopfieldLayerConfig, |c: &HopfieldLayerConfig,
                                   h: ::hopfield::layers::HopfieldLayer<Cpu<f32>>,
                                   d: &Device| HopfieldLayer::from_host(
    c.clone(),
    &h.params,
    d
));
host_params!(HopfieldEncoderLayerConfig, |c: &HopfieldEncoderLayerConfig,
                                          h: ::hopfield::layers::HopfieldEncoderLayer<Cpu<f32>>,
                                          d: &Device| {
    HopfieldEncoderLayer::from_host(c.clone(), &h.params, d)
});

/// The parameter count of a `hopfield` parameter struct (for comparisons with burn's `num_params`).
pub fn host_param_count<P: Parameters<Cpu<f32>>>(p: &P) -> usize {
    let cpu = Cpu::<f32>::new();
    let mut n = 0;
    p.visit(&mut |_, t, _| n += ::hopfield::Backend::shape(&cpu, t).iter().product::<usize>());
    n
}
