//! Choosing the backend at start-up: `--device cpu|wgpu|cuda[:N]` of the binaries and examples.
//!
//! Generic code takes `B: Backend`; a program picks the concrete backend once, from a [`Device`], and runs
//! its generic entry point on it through [`Device::run`] with an [`OnBackend`] (a generic function as a
//! value). The dispatch lives here, where the `wgpu` and `cuda` features are known, so that a crate built
//! on `hopfield` needs no feature of its own to offer every device this build has.
//!
//! ```
//! use hopfield_layers::backend::device::{Device, OnBackend};
//! use hopfield_layers::Backend;
//!
//! struct SumOfOnes(usize);
//! impl OnBackend for SumOfOnes {
//!     type Output = f64;
//!     fn run<B: Backend<Elem = f32>>(self, backend: B) -> f64 {
//!         let t = backend.full(&[self.0], 1.0);
//!         backend.sum(&t) as f64
//!     }
//! }
//! let device: Device = "cpu".parse()?;
//! assert_eq!(device.run(SumOfOnes(3))?, 3.0);
//! # Ok::<(), hopfield_layers::HopfieldError>(())
//! ```

use super::{Backend, Cpu};
use crate::error::{HopfieldError, Result};
use std::fmt;
use std::str::FromStr;

/// Where a program runs: the CPU (ndarray, the default), a GPU through wgpu, or a CUDA GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// [`Cpu<f32>`](Cpu): any machine.
    #[default]
    Cpu,
    /// The CubeCL backend on the default wgpu adapter (Vulkan, Metal, DX12; Mesa's lavapipe on a machine
    /// without a GPU). Needs the `wgpu` feature.
    Wgpu,
    /// The CubeCL backend on CUDA device `N`. Needs the `cuda` feature.
    Cuda(usize),
}

impl Device {
    /// What each device needs, for a `--help` text.
    pub const HELP: &'static str = "cpu (default, any machine), wgpu (a Vulkan, Metal or DX12 GPU; on Linux \
        without one Mesa's lavapipe: apt install mesa-vulkan-drivers) or cuda[:N] (NVIDIA GPU N, default 0, \
        with its driver; a build with --features cuda)";

    /// Parse a `--device` flag for a command-line parser (clap's `value_parser`): the message names the
    /// accepted forms, without the error type's prefix (the parser adds the flag).
    pub fn parse_flag(s: &str) -> std::result::Result<Device, String> {
        s.parse().map_err(|e| match e {
            HopfieldError::Input { reason, .. } => reason,
            other => other.to_string(),
        })
    }

    /// Whether this build has the backend of the device (`cpu` always; `wgpu`, `cuda` with their features).
    pub fn is_built(self) -> bool {
        match self {
            Device::Cpu => true,
            Device::Wgpu => cfg!(feature = "wgpu"),
            Device::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Open the device and run `f` on its backend (f32). Fails with [`HopfieldError::Device`] when this
    /// build lacks the backend or the machine lacks the device (no adapter, no GPU, no driver), saying
    /// what to install or rebuild with.
    pub fn run<F: OnBackend>(self, f: F) -> Result<F::Output> {
        match self {
            Device::Cpu => Ok(f.run(Cpu::<f32>::new())),
            Device::Wgpu => run_wgpu(f),
            Device::Cuda(index) => run_cuda(index, f),
        }
    }
}

/// A generic function of the backend, called by [`Device::run`] on the backend it opened.
pub trait OnBackend {
    /// What the function returns.
    type Output;
    /// Run on `backend`.
    fn run<B: Backend<Elem = f32>>(self, backend: B) -> Self::Output;
}

#[cfg(feature = "wgpu")]
fn run_wgpu<F: OnBackend>(f: F) -> Result<F::Output> {
    let backend = super::cube::Wgpu::wgpu().map_err(|e| unavailable("wgpu", e, WGPU_NEEDS))?;
    Ok(f.run(backend))
}

#[cfg(not(feature = "wgpu"))]
fn run_wgpu<F: OnBackend>(_: F) -> Result<F::Output> {
    Err(HopfieldError::Device {
        backend: "wgpu",
        reason: "this build has no wgpu backend: rebuild with --features wgpu".into(),
    })
}

#[cfg(feature = "cuda")]
fn run_cuda<F: OnBackend>(index: usize, f: F) -> Result<F::Output> {
    let backend = super::cube::Cuda::cuda(index).map_err(|e| unavailable("cuda", e, CUDA_NEEDS))?;
    Ok(f.run(backend))
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<F: OnBackend>(_: usize, _: F) -> Result<F::Output> {
    Err(HopfieldError::Device {
        backend: "cuda",
        reason: "this build has no CUDA backend: rebuild with --features cuda".into(),
    })
}

#[cfg(feature = "wgpu")]
const WGPU_NEEDS: &str =
    "it needs a Vulkan, Metal or DX12 driver (on Linux without a GPU: apt install mesa-vulkan-drivers)";
#[cfg(feature = "cuda")]
const CUDA_NEEDS: &str = "it needs an NVIDIA GPU with its driver (libcuda.so)";

/// The opening error with what the device needs.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn unavailable(backend: &'static str, e: HopfieldError, needs: &str) -> HopfieldError {
    let reason = match e {
        HopfieldError::Device { reason, .. } => reason,
        other => other.to_string(),
    };
    let reason = reason.lines().next().unwrap_or("").trim().to_string();
    HopfieldError::Device { backend, reason: format!("no usable device ({reason}); {needs}") }
}

impl FromStr for Device {
    type Err = HopfieldError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || HopfieldError::input("--device", format!("`{s}` is not cpu, wgpu, cuda or cuda:N"));
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "wgpu" => Ok(Device::Wgpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Device::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Wgpu => f.write_str("wgpu"),
            Device::Cuda(0) => f.write_str("cuda"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl serde::Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_device() {
        for (s, d) in
            [("cpu", Device::Cpu), ("wgpu", Device::Wgpu), ("cuda", Device::Cuda(0)), ("cuda:3", Device::Cuda(3))]
        {
            assert_eq!(s.parse::<Device>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("CUDA:1".parse::<Device>().unwrap(), Device::Cuda(1));
        assert_eq!(Device::parse_flag("cuda:2"), Ok(Device::Cuda(2)));
        assert_eq!(Device::parse_flag("gpu").unwrap_err(), "`gpu` is not cpu, wgpu, cuda or cuda:N");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = bad.parse::<Device>().unwrap_err().to_string();
            assert!(e.contains("--device") && e.contains("cuda:N"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_device_this_build_lacks_is_a_clear_error() {
        struct Nothing;
        impl OnBackend for Nothing {
            type Output = ();
            fn run<B: Backend<Elem = f32>>(self, _: B) {}
        }
        assert!(Device::Cpu.run(Nothing).is_ok());
        if !Device::Cuda(0).is_built() {
            let e = Device::Cuda(0).run(Nothing).unwrap_err().to_string();
            assert!(e.starts_with("cuda device: ") && e.contains("--features cuda"), "{e}");
        }
        if !Device::Wgpu.is_built() {
            let e = Device::Wgpu.run(Nothing).unwrap_err().to_string();
            assert!(e.contains("--features wgpu"), "{e}");
        }
    }
}
