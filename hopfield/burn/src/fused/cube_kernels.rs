//! [`AssociationKernels`] on burn's CubeCL backend: `hopfield`'s streaming association kernels, launched
//! on the client of burn's tensors and reading and writing burn's own buffers (a strided input is made
//! contiguous first; nothing goes through the host).

use super::{AssociationKernels, Saved};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor as BurnTensor;
use burn_cubecl::{CubeBackend, CubeDevice};
use hopfield::backend::cube::{Cube, CubeRuntime, CubeTensor};
use hopfield::backend::{Backend as _, ScoreBias};

/// Whether burn's CubeCL `device` is one our kernels are built for (wgpu, CUDA, as the features say).
pub(super) fn runs_on(device: &CubeDevice) -> bool {
    match device {
        #[cfg(feature = "wgpu")]
        CubeDevice::Wgpu(_) => true,
        #[cfg(feature = "cuda")]
        CubeDevice::Cuda(_) => true,
        _ => false,
    }
}

/// Our view of a burn tensor: the same buffer when it is dense, else a contiguous copy.
fn ours(t: &BurnTensor) -> CubeTensor {
    assert_eq!(t.dtype, DType::F32, "fused association: the CubeCL kernels take f32 tensors");
    let t = into_contiguous(t.clone());
    CubeTensor::from_handle(t.handle, t.meta.shape().to_vec())
}

/// A burn tensor over one of our outputs, on the device and client of `like`.
fn theirs(t: CubeTensor, like: &BurnTensor) -> BurnTensor {
    let (handle, shape) = t.into_parts();
    BurnTensor::new_contiguous(like.client.clone(), like.device.clone(), Shape::from(shape), handle, DType::F32)
}

fn beta32(beta: &[f64]) -> Vec<f32> {
    beta.iter().map(|&b| b as f32).collect()
}

fn forward<R: CubeRuntime>(
    q: &BurnTensor,
    k: &BurnTensor,
    v: &BurnTensor,
    beta: &[f64],
    padding: Option<&BurnTensor>,
    association: Option<&BurnTensor>,
) -> (BurnTensor, BurnTensor) {
    let kernels = Cube::<R>::from_client(q.client.clone());
    let padding = padding.map(ours);
    let association = association.map(ours);
    let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };
    let (out, lse) = kernels.association(&ours(q), &ours(k), &ours(v), &beta32(beta), &bias);
    (theirs(out, q), theirs(lse, q))
}

fn backward<R: CubeRuntime>(s: &Saved<CubeBackend>, d_out: &BurnTensor) -> [BurnTensor; 3] {
    let kernels = Cube::<R>::from_client(s.q.client.clone());
    let padding = s.padding.as_ref().map(ours);
    let association = s.association.as_ref().map(ours);
    let bias = ScoreBias { padding: padding.as_ref(), association: association.as_ref() };
    let (q, k, v) = (ours(&s.q), ours(&s.k), ours(&s.v));
    let (dq, dk, dv) =
        kernels.association_backward(&q, &k, &v, &beta32(&s.beta), &bias, &ours(&s.out), &ours(&s.lse), &ours(d_out));
    [theirs(dq, &s.q), theirs(dk, &s.k), theirs(dv, &s.v)]
}

/// The runtime whose [`Cube`] runs on `device` (only its name differs: the client decides the device).
macro_rules! on_runtime {
    ($device:expr, $f:ident($($arg:expr),*)) => {
        match $device {
            #[cfg(feature = "cuda")]
            CubeDevice::Cuda(_) => $f::<hopfield::backend::cube::CudaRuntime>($($arg),*),
            #[cfg(feature = "wgpu")]
            _ => $f::<hopfield::backend::cube::WgpuRuntime>($($arg),*),
            #[cfg(not(feature = "wgpu"))]
            _ => $f::<hopfield::backend::cube::CudaRuntime>($($arg),*),
        }
    };
}

impl AssociationKernels for CubeBackend {
    fn association_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: &[f64],
        padding: Option<FloatTensor<Self>>,
        association: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        on_runtime!(&q.device, forward(&q, &k, &v, beta, padding.as_ref(), association.as_ref()))
    }

    fn association_backward(saved: Saved<Self>, d_out: FloatTensor<Self>) -> [FloatTensor<Self>; 3] {
        on_runtime!(&saved.q.device, backward(&saved, &d_out))
    }
}

impl super::FusedAssociation for CubeBackend {
    fn fused_association(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        beta: Vec<f64>,
        padding: FloatTensor<Self>,
        association: FloatTensor<Self>,
        given: (bool, bool),
    ) -> FloatTensor<Self> {
        let (padding, association) = super::given(padding, association, given);
        Self::association_forward(q, k, v, &beta, padding, association).0
    }
}
