//! The CubeCL backend: every [`Backend`] op as our own `#[cube]` kernels, for any CubeCL runtime (f32).
//!
//! Tensors are dense row-major device buffers ([`CubeTensor`]); they stay on the device between ops.
//! Host transfers happen only in `from_vec`/`to_vec`, in the scalar reductions (`sum`, `sum_squares`,
//! `sum_squares_all`, `all_finite`: per-cube partial results are read back, once per call, and summed in
//! f64) and in `head_distance`
//! (`[B·H]` partial norms). Every op is out-of-place on the device, including the `&mut` ones
//! (`axpy`, `slice_add`, `adam_step`): a tensor handle may be shared by clones, so writing into it in
//! place would change the clones too (`Cpu` tensors copy on write, so their clones never see a write either).
//!
//! One file per kernel family, each with its host wrappers (shape checks by `debug_assert!`, launch
//! limits by assertion: the layer code has validated user shapes) and its tests against [`Cpu`](super::Cpu).
//!
//! `dropout_mask` is drawn on the host with the same `StdRng` stream as `Cpu` and uploaded, so both
//! backends give the same mask for the same seed.
//!
//! With [`Cube::poisoned`], every output buffer is filled with NaN before the kernel that should write
//! it runs: an element a kernel forgets to write shows up as NaN in the tests.

mod association;
mod elementwise;
mod layout;
mod matmul;
mod norm;
mod reduce;
mod rows;
mod softmax;
mod sparse;

use super::{AdamStep, Backend, ScoreBias};
use crate::activation::Activation;
use cubecl::prelude::*;
use cubecl::server::Handle;
use std::fmt;
use std::marker::PhantomData;

pub use matmul::MatmulKernel;

/// Units per cube of the element-wise and row kernels (a power of two, ≤ every runtime's limit).
pub(crate) const BLOCK: u32 = 256;
/// [`BLOCK`] as an index (a plain constant, so `#[cube]` code sees it at compile time).
pub(crate) const BLOCK_SIZE: usize = 256;

/// The score that stands for `-inf` inside the softmax kernels, which WGSL cannot write as a literal: the
/// running maxima start at it and padded tile columns get it. Any real score is above it and a `-inf` bias
/// stays below it, so a row whose maximum is still `MASKED_SCORE` after every column is fully masked; such a
/// row yields zeros (and `lse = -inf` from the association), the convention of [`Backend`].
pub(crate) const MASKED_SCORE: f32 = -3.0e38;

/// [`MASKED_SCORE`] as an f32 value in `#[cube]` code (a Rust `const` there is a comptime value).
#[cube]
pub(crate) fn masked_score() -> f32 {
    f32::new(MASKED_SCORE)
}

/// A dense row-major f32 tensor on a CubeCL device.
#[derive(Clone)]
pub struct CubeTensor {
    pub(crate) handle: Handle,
    pub(crate) shape: Vec<usize>,
}

impl CubeTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A tensor over an existing device buffer that holds `shape` densely in row-major order as f32, from
    /// its first byte (another CubeCL library's buffer, on the same client as the [`Cube`] it is used with:
    /// `hopfield-burn` runs our kernels on burn's tensors this way, without a copy).
    pub fn from_handle(handle: Handle, shape: Vec<usize>) -> Self {
        CubeTensor { handle, shape }
    }
    /// The device buffer (dense, row-major f32) and the shape, for another CubeCL library to adopt.
    pub fn into_parts(self) -> (Handle, Vec<usize>) {
        (self.handle, self.shape)
    }
    /// The buffer as a kernel argument.
    pub(crate) fn arg(&self) -> BufferArg {
        // SAFETY: the buffer was allocated with at least `max(len, 1)` f32 (see `Cube::alloc`).
        unsafe { BufferArg::from_raw_parts(self.handle.clone(), self.len().max(1)) }
    }
}

impl fmt::Debug for CubeTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CubeTensor{:?}", self.shape)
    }
}

/// A CubeCL runtime the [`Cube`] backend runs on: its type parameter, so that a backend on wgpu and one on
/// CUDA are different types. Implemented by `WgpuRuntime` (feature `wgpu`) and `CudaRuntime` (feature
/// `cuda`); sealed.
pub trait CubeRuntime: sealed::Sealed + 'static {
    /// The backend's name on this runtime ([`Backend::name`]).
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
}

#[cfg(feature = "wgpu")]
pub use cubecl::wgpu::WgpuRuntime;
#[cfg(feature = "wgpu")]
impl sealed::Sealed for WgpuRuntime {}
#[cfg(feature = "wgpu")]
impl CubeRuntime for WgpuRuntime {
    const NAME: &'static str = "wgpu";
}

#[cfg(feature = "cuda")]
pub use cubecl::cuda::CudaRuntime;
#[cfg(feature = "cuda")]
impl sealed::Sealed for CudaRuntime {}
#[cfg(feature = "cuda")]
impl CubeRuntime for CudaRuntime {
    const NAME: &'static str = "cuda";
}

/// The CubeCL backend (f32) on one device of the runtime `R`. The kernels are written once against
/// CubeCL's runtime-independent client; each runtime has its own constructor (`Cube::wgpu` on
/// `Wgpu`, `Cube::cuda` on `Cuda`, each with its feature).
pub struct Cube<R: CubeRuntime> {
    pub(crate) client: Client,
    poison: bool,
    matmul: MatmulKernel,
    runtime: PhantomData<fn() -> R>,
}

impl<R: CubeRuntime> Clone for Cube<R> {
    fn clone(&self) -> Self {
        Cube { client: self.client.clone(), poison: self.poison, matmul: self.matmul, runtime: PhantomData }
    }
}

impl<R: CubeRuntime> fmt::Debug for Cube<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cube<{}>", R::NAME)
    }
}

impl<R: CubeRuntime> Cube<R> {
    /// The backend on `device` (of runtime `R`).
    fn on(device: cubecl::Device) -> Self {
        Cube { client: device.client(), poison: false, matmul: MatmulKernel::default(), runtime: PhantomData }
    }

    /// The backend on an existing CubeCL client of runtime `R`: tensors made by another library on that
    /// client (see [`CubeTensor::from_handle`]) are ours to compute on, and ours are theirs.
    pub fn from_client(client: Client) -> Self {
        Cube { client, poison: false, matmul: MatmulKernel::default(), runtime: PhantomData }
    }

    /// Run [`Backend::matmul`] with `kernel` (default: [`MatmulKernel::default`]). A clone shares the
    /// device and its tensors, so two kernels can be compared on the same inputs.
    pub fn with_matmul(mut self, kernel: MatmulKernel) -> Self {
        self.matmul = kernel;
        self
    }

    /// Fill every output buffer with NaN before its kernel runs (for tests: an unwritten output fails).
    pub fn poisoned(mut self) -> Self {
        self.poison = true;
        self
    }

    /// The CubeCL client (for device sync in benches: `client.sync()`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Block until every launched kernel has finished.
    pub fn sync(&self) -> crate::Result<()> {
        cubecl::future::block_on(self.client.sync()).map_err(|e| device_error(R::NAME, format!("{e:?}")))
    }

    /// An output buffer of `shape`: uninitialised, or NaN-filled when poisoned.
    pub(crate) fn alloc(&self, shape: &[usize]) -> CubeTensor {
        let n: usize = shape.iter().product::<usize>().max(1);
        let handle = if self.poison {
            self.client.create_from_slice(f32::as_bytes(&vec![f32::NAN; n]))
        } else {
            self.client.empty(n * std::mem::size_of::<f32>())
        };
        CubeTensor { handle, shape: shape.to_vec() }
    }

    /// Upload a small host array of indices (shapes, strides, flags).
    pub(crate) fn upload_u32(&self, data: &[u32]) -> BufferArg {
        let data = if data.is_empty() { &[0u32][..] } else { data };
        let handle = self.client.create_from_slice(u32::as_bytes(data));
        // SAFETY: the buffer holds exactly `data.len()` u32.
        unsafe { BufferArg::from_raw_parts(handle, data.len()) }
    }

    /// Upload a small host array of f32 (per-head β).
    pub(crate) fn upload_f32(&self, data: &[f32]) -> BufferArg {
        let data = if data.is_empty() { &[0f32][..] } else { data };
        let handle = self.client.create_from_slice(f32::as_bytes(data));
        // SAFETY: the buffer holds exactly `data.len()` f32.
        unsafe { BufferArg::from_raw_parts(handle, data.len()) }
    }

    /// A one-element placeholder for an absent optional input (its comptime flag is off).
    pub(crate) fn dummy(&self) -> BufferArg {
        self.upload_f32(&[0.0])
    }

    pub(crate) fn read(&self, t: &CubeTensor) -> Vec<f32> {
        if t.is_empty() {
            return Vec::new();
        }
        let bytes = self.client.read_one(t.handle.clone()).expect("read a device buffer");
        f32::from_bytes(&bytes)[..t.len()].to_vec()
    }
}

/// [`Cube`] on wgpu (Vulkan, Metal, DX12; lavapipe in CI).
#[cfg(feature = "wgpu")]
pub type Wgpu = Cube<WgpuRuntime>;

#[cfg(feature = "wgpu")]
impl Cube<WgpuRuntime> {
    /// The default wgpu adapter (on a CPU-only machine Mesa's lavapipe), or
    /// [`HopfieldError::Device`](crate::HopfieldError::Device) when the machine has none.
    pub fn wgpu() -> crate::Result<Self> {
        let device = cubecl::Device::wgpu(cubecl::device::WgpuDeviceKind::default())
            .map_err(|e| device_error(WgpuRuntime::NAME, e))?;
        Ok(Self::on(device))
    }
}

/// [`Cube`] on CUDA.
#[cfg(feature = "cuda")]
pub type Cuda = Cube<CudaRuntime>;

#[cfg(feature = "cuda")]
impl Cube<CudaRuntime> {
    /// CUDA device `index`, or [`HopfieldError::Device`](crate::HopfieldError::Device) when there is
    /// none (no GPU, no driver).
    pub fn cuda(index: usize) -> crate::Result<Self> {
        let device = cubecl::Device::cuda(index).map_err(|e| device_error(CudaRuntime::NAME, e))?;
        Ok(Self::on(device))
    }
}

/// A missing or failed device.
fn device_error(backend: &'static str, reason: impl ToString) -> crate::HopfieldError {
    crate::HopfieldError::Device { backend, reason: reason.to_string() }
}

/// Launch geometry of a 1-D kernel over `n` items: `BLOCK` units per cube, cubes spread over x and y
/// (each at most 65 535). Kernels index with `ABSOLUTE_POS` and guard `< n`.
pub(crate) fn grid_1d(n: usize) -> (CubeCount, CubeDim) {
    let (cubes, dim) = grid_cubes(n.div_ceil(BLOCK as usize));
    (cubes, dim)
}

/// `cubes` cubes of `BLOCK` units (one per row for the row kernels); `CUBE_POS` is the linear cube index.
pub(crate) fn grid_cubes(cubes: usize) -> (CubeCount, CubeDim) {
    let cubes = cubes.max(1);
    let x = cubes.min(65_535);
    let y = cubes.div_ceil(x);
    assert!(y <= 65_535, "launch of {cubes} cubes exceeds the grid limit");
    (CubeCount::Static(x as u32, y as u32, 1), CubeDim::new_1d(BLOCK))
}

/// Row-major strides of `shape`.
pub(crate) fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl<R: CubeRuntime> Backend for Cube<R> {
    type Elem = f32;
    type Tensor = CubeTensor;

    fn name(&self) -> &'static str {
        R::NAME
    }

    fn from_vec(&self, data: Vec<f32>, shape: &[usize]) -> CubeTensor {
        assert_eq!(data.len(), shape.iter().product::<usize>(), "from_vec: data length vs shape {shape:?}");
        let data = if data.is_empty() { vec![0.0] } else { data };
        CubeTensor { handle: self.client.create_from_slice(f32::as_bytes(&data)), shape: shape.to_vec() }
    }
    fn to_vec(&self, t: &CubeTensor) -> Vec<f32> {
        self.read(t)
    }
    fn shape(&self, t: &CubeTensor) -> Vec<usize> {
        t.shape.clone()
    }
    fn full(&self, shape: &[usize], value: f32) -> CubeTensor {
        elementwise::fill(self, shape, value)
    }

    fn reshape(&self, t: &CubeTensor, shape: &[usize]) -> CubeTensor {
        assert_eq!(t.len(), shape.iter().product::<usize>(), "reshape {:?} to {shape:?}", t.shape);
        CubeTensor { handle: t.handle.clone(), shape: shape.to_vec() }
    }
    fn permute(&self, t: &CubeTensor, axes: &[usize]) -> CubeTensor {
        layout::permute(self, t, axes)
    }
    fn concat(&self, a: &CubeTensor, b: &CubeTensor, axis: usize) -> CubeTensor {
        layout::concat(self, a, b, axis)
    }
    fn slice(&self, t: &CubeTensor, axis: usize, start: usize, len: usize) -> CubeTensor {
        layout::slice(self, t, axis, start, len)
    }
    fn slice_add(&self, dst: &mut CubeTensor, axis: usize, start: usize, src: &CubeTensor) {
        *dst = layout::slice_add(self, dst, axis, start, src);
    }
    fn expand(&self, t: &CubeTensor, axis: usize, n: usize) -> CubeTensor {
        layout::expand(self, t, axis, n)
    }
    fn sum_axis(&self, t: &CubeTensor, axis: usize) -> CubeTensor {
        reduce::sum_axis(self, t, axis)
    }
    fn max_axis(&self, t: &CubeTensor, axis: usize) -> CubeTensor {
        reduce::max_axis(self, t, axis)
    }
    fn gather_rows(&self, table: &CubeTensor, ids: &[usize]) -> CubeTensor {
        rows::gather_rows(self, table, ids)
    }
    fn scatter_add_rows(&self, dst: &mut CubeTensor, ids: &[usize], src: &CubeTensor) {
        *dst = rows::scatter_add_rows(self, dst, ids, src);
    }

    fn add(&self, a: &CubeTensor, b: &CubeTensor) -> CubeTensor {
        elementwise::binary(self, a, b, elementwise::Op::Add)
    }
    fn sub(&self, a: &CubeTensor, b: &CubeTensor) -> CubeTensor {
        elementwise::binary(self, a, b, elementwise::Op::Sub)
    }
    fn mul(&self, a: &CubeTensor, b: &CubeTensor) -> CubeTensor {
        elementwise::binary(self, a, b, elementwise::Op::Mul)
    }
    fn scale(&self, a: &CubeTensor, s: f32) -> CubeTensor {
        elementwise::axpby(self, 0.0, a, s, a)
    }
    fn axpy(&self, y: &mut CubeTensor, alpha: f32, x: &CubeTensor) {
        *y = elementwise::axpby(self, alpha, x, 1.0, y);
    }
    fn activation(&self, x: &CubeTensor, act: Activation) -> CubeTensor {
        elementwise::activation(self, x, act)
    }
    fn activation_backward(&self, x: &CubeTensor, dy: &CubeTensor, act: Activation) -> CubeTensor {
        elementwise::activation_backward(self, x, dy, act)
    }
    fn unary(&self, x: &CubeTensor, op: super::Unary) -> CubeTensor {
        elementwise::unary(self, x, op)
    }

    fn sum(&self, t: &CubeTensor) -> f32 {
        reduce::total(self, t, reduce::Total::Sum) as f32
    }
    fn sum_squares(&self, t: &CubeTensor) -> f32 {
        reduce::total(self, t, reduce::Total::SumSquares) as f32
    }
    fn all_finite(&self, t: &CubeTensor) -> bool {
        reduce::total(self, t, reduce::Total::NonFinite) == 0.0
    }
    fn sum_squares_all(&self, ts: &[&CubeTensor]) -> f64 {
        reduce::sum_squares_all(self, ts)
    }

    fn matmul(&self, a: &CubeTensor, b: &CubeTensor, ta: bool, tb: bool) -> CubeTensor {
        matmul::matmul(self, a, b, ta, tb, self.matmul)
    }
    fn add_bias(&self, x: &CubeTensor, bias: &CubeTensor) -> CubeTensor {
        elementwise::add_bias(self, x, bias)
    }
    fn sum_rows(&self, x: &CubeTensor) -> CubeTensor {
        let n = *x.shape.last().expect("sum_rows of a scalar");
        let rows = x.len() / n.max(1);
        let s = reduce::sum_axis(self, &self.reshape(x, &[rows, n]), 0);
        self.reshape(&s, &[n])
    }

    fn layer_norm(
        &self,
        x: &CubeTensor,
        weight: Option<&CubeTensor>,
        bias: Option<&CubeTensor>,
        eps: f32,
    ) -> (CubeTensor, CubeTensor) {
        norm::layer_norm(self, x, weight, bias, eps)
    }
    fn layer_norm_backward(
        &self,
        x: &CubeTensor,
        stats: &CubeTensor,
        weight: Option<&CubeTensor>,
        dy: &CubeTensor,
    ) -> (CubeTensor, Option<(CubeTensor, CubeTensor)>) {
        norm::layer_norm_backward(self, x, stats, weight, dy)
    }

    fn masked_softmax(&self, scores: &CubeTensor, beta: &[f32], bias: &ScoreBias<'_, CubeTensor>) -> CubeTensor {
        softmax::masked_softmax(self, scores, beta, bias, false)
    }
    fn masked_softmax1(&self, scores: &CubeTensor, beta: &[f32], bias: &ScoreBias<'_, CubeTensor>) -> CubeTensor {
        softmax::masked_softmax(self, scores, beta, bias, true)
    }
    fn masked_entmax(
        &self,
        scores: &CubeTensor,
        beta: &[f32],
        bias: &ScoreBias<'_, CubeTensor>,
        alpha: &[f32],
    ) -> CubeTensor {
        sparse::masked_entmax(self, scores, beta, bias, alpha)
    }
    fn masked_entmax_backward(
        &self,
        probs: &CubeTensor,
        d_probs: &CubeTensor,
        beta: &[f32],
        alpha: &[f32],
        with_alpha: bool,
    ) -> (CubeTensor, Option<CubeTensor>) {
        sparse::masked_entmax_backward(self, probs, d_probs, beta, alpha, with_alpha)
    }
    fn masked_softmax_backward(&self, probs: &CubeTensor, d_probs: &CubeTensor, beta: &[f32]) -> CubeTensor {
        softmax::masked_softmax_backward(self, probs, d_probs, beta)
    }
    fn association(
        &self,
        q: &CubeTensor,
        k: &CubeTensor,
        v: &CubeTensor,
        beta: &[f32],
        bias: &ScoreBias<'_, CubeTensor>,
    ) -> (CubeTensor, CubeTensor) {
        association::association(self, q, k, v, beta, bias)
    }
    fn association_backward(
        &self,
        q: &CubeTensor,
        k: &CubeTensor,
        v: &CubeTensor,
        beta: &[f32],
        bias: &ScoreBias<'_, CubeTensor>,
        out: &CubeTensor,
        lse: &CubeTensor,
        d_out: &CubeTensor,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        association::association_backward(self, q, k, v, beta, bias, out, lse, d_out)
    }
    fn head_distance(&self, a: &CubeTensor, b: &CubeTensor) -> Vec<f32> {
        reduce::head_distance(self, a, b)
    }
    fn select_heads(&self, new: &CubeTensor, old: &CubeTensor, take_new: &[bool]) -> CubeTensor {
        layout::select_heads(self, new, old, take_new)
    }
    fn dropout_mask(&self, shape: &[usize], p: f64, seed: u64) -> CubeTensor {
        // Drawn on the host with the CPU backend's generator stream: the same seed gives the same mask.
        let mask = super::Cpu::<f32>::new().dropout_mask(shape, p, seed);
        self.from_vec(mask.iter().copied().collect(), shape)
    }

    fn adam_step(
        &self,
        param: &mut CubeTensor,
        grad: &CubeTensor,
        m: &mut CubeTensor,
        v: &mut CubeTensor,
        hp: AdamStep,
    ) {
        let (p2, m2, v2) = elementwise::adam_step(self, param, grad, m, v, hp);
        *param = p2;
        *m = m2;
        *v = v2;
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Shared by the kernel tests: a poisoned GPU backend (CUDA device 0 when built, else wgpu), random
    //! tensors, comparison with `Cpu`.
    use super::*;
    use crate::backend::Cpu;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    // CUDA when built (the GPU machine's binaries), else wgpu (lavapipe in CI).
    #[cfg(feature = "cuda")]
    pub type G = Cuda;
    #[cfg(not(feature = "cuda"))]
    pub type G = Wgpu;

    /// The poisoned test device; no device fails the test (never a silent skip).
    #[cfg(feature = "cuda")]
    pub fn gpu() -> G {
        Cuda::cuda(0).unwrap_or_else(|e| panic!("{e}")).poisoned()
    }
    #[cfg(not(feature = "cuda"))]
    pub fn gpu() -> G {
        Wgpu::wgpu().unwrap_or_else(|e| panic!("{e} (install mesa-vulkan-drivers libvulkan1)")).poisoned()
    }
    pub fn cpu() -> Cpu<f32> {
        Cpu::new()
    }
    pub fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }
    pub fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }
    /// The same random tensor on both backends.
    pub fn pair(g: &G, rng: &mut StdRng, shape: &[usize]) -> (CubeTensor, crate::backend::CpuTensor<f32>) {
        let v = rand_vec(rng, shape.iter().product());
        (g.from_vec(v.clone(), shape), cpu().from_vec(v, shape))
    }
    /// `max |a − b| / max(max |b|, 1e-2)` must be ≤ `tol`, shapes equal, no NaN.
    pub fn assert_close(what: &str, g: &G, a: &CubeTensor, b: &crate::backend::CpuTensor<f32>, tol: f64) {
        assert_eq!(a.shape, b.shape(), "{what}: shape");
        assert_close_vec(what, &g.to_vec(a), &b.iter().copied().collect::<Vec<_>>(), tol);
    }
    pub fn assert_close_vec(what: &str, a: &[f32], b: &[f32], tol: f64) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1e-2f64, |m, &v| m.max((v as f64).abs()));
        let mut diff = 0.0f64;
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(!x.is_nan() || y.is_nan(), "{what}: NaN at {i} (unwritten output?)");
            if x.is_infinite() || y.is_infinite() {
                assert_eq!(x, y, "{what}: at {i}");
                continue;
            }
            diff = diff.max((x as f64 - y as f64).abs());
        }
        assert!(diff / scale <= tol, "{what}: relative error {:.3e} > {tol:.0e}", diff / scale);
    }
}
