//! Single-precision GEMM for the CPU backend, chosen once per process by what the processor runs fastest.
//!
//! - [`SgemmKernel::Avx512`]: our own AVX-512 kernel (`avx512.rs`), for processors with two 512-bit FMA
//!   units per core (the README's speed section has its measured throughput beside MKL's).
//! - [`SgemmKernel::Matrixmultiply`]: the matrixmultiply crate, whose kernels were measured at or above MKL
//!   on an AMD EPYC (Zen 4 runs 512-bit operations as two 256-bit halves).
//!
//! The default is `Avx512` on Intel processors with AVX-512F and `Matrixmultiply` elsewhere, the choice
//! each family was measured with. The environment variable [`SGEMM_KERNEL_ENV`] (`avx512` or
//! `matrixmultiply`) overrides it for the whole process (read once; a kernel the CPU lacks is refused with
//! a warning). No `-C target-cpu` is needed: the AVX-512 code is compiled for that target feature alone
//! and entered only after runtime detection.
//!
//! Either kernel computes each output element as the same ordered sum whatever rows or columns of the
//! product a call covers, so splitting products over threads never changes results.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;

use crate::error::HopfieldError;
use rayon::prelude::*;
use std::sync::OnceLock;

/// The environment variable that overrides the f32 GEMM kernel: `avx512` or `matrixmultiply`.
pub const SGEMM_KERNEL_ENV: &str = "HOPFIELD_SGEMM";

/// The f32 matrix-product kernels the CPU backend can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SgemmKernel {
    /// Our AVX-512F kernel: 14 × 32 register tiles, runtime-detected.
    Avx512,
    /// The matrixmultiply crate (its own runtime dispatch among AVX-512/FMA/AVX/SSE2 kernels).
    Matrixmultiply,
}

impl SgemmKernel {
    /// A short name, as [`SGEMM_KERNEL_ENV`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            SgemmKernel::Avx512 => "avx512",
            SgemmKernel::Matrixmultiply => "matrixmultiply",
        }
    }

    /// Whether this processor can run the kernel.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            SgemmKernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            SgemmKernel::Avx512 => false,
            SgemmKernel::Matrixmultiply => true,
        }
    }

    /// The vector width the kernel computes with on this processor, in bits (matrixmultiply picks its
    /// own among its kernels: the widest the CPU has).
    pub fn vector_bits(self) -> u32 {
        match self {
            SgemmKernel::Avx512 => 512,
            SgemmKernel::Matrixmultiply => cpu_vector_bits(),
        }
    }
}

/// The widest SIMD registers this processor has, in bits (128 where nothing wider is detected).
pub fn cpu_vector_bits() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 512;
        }
        if std::arch::is_x86_feature_detected!("avx2") || std::arch::is_x86_feature_detected!("avx") {
            return 256;
        }
    }
    128
}

/// Whether the processor's vendor is Intel (CPUID leaf 0 says "GenuineIntel").
fn is_intel() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&r.ecx.to_le_bytes());
        &vendor == b"GenuineIntel"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The kernel this process uses for f32 products (decided on first use).
pub fn sgemm_kernel() -> SgemmKernel {
    static CHOSEN: OnceLock<SgemmKernel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let default = if is_intel() && SgemmKernel::Avx512.available() {
            SgemmKernel::Avx512
        } else {
            SgemmKernel::Matrixmultiply
        };
        let Ok(asked) = std::env::var(SGEMM_KERNEL_ENV) else { return default };
        let kernel = match asked.trim() {
            "avx512" => SgemmKernel::Avx512,
            "matrixmultiply" => SgemmKernel::Matrixmultiply,
            other => {
                eprintln!(
                    "warning: {SGEMM_KERNEL_ENV}={other:?} is not a kernel (avx512, matrixmultiply); using {}",
                    default.name()
                );
                return default;
            }
        };
        if !kernel.available() {
            eprintln!("warning: {SGEMM_KERNEL_ENV}={asked}: this processor cannot run it; using {}", default.name());
            return default;
        }
        kernel
    })
}

/// `C ← α·A·B + β·C` in f32 on strided matrices (A m×k, B k×n, C m×n) with the process's kernel.
///
/// # Safety
/// As [`crate::Element::gemm`]: valid matrices under those strides, C not aliasing A or B, and C may be
/// uninitialised only when `beta` is zero.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    sgemm_with(sgemm_kernel(), m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
}

/// [`sgemm`] with a given kernel (`Avx512` only where [`SgemmKernel::available`]).
///
/// # Safety
/// As [`sgemm`], and the kernel must be available on this processor.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_with(
    kernel: SgemmKernel,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    beta: f32,
    c: *mut f32,
    rsc: isize,
    csc: isize,
) {
    #[cfg(target_arch = "x86_64")]
    if kernel == SgemmKernel::Avx512 && csc == 1 && rsc >= n as isize && m > 0 && n > 0 {
        if k == 0 {
            // An empty sum: C ← β·C (C unread when β = 0), as BLAS defines it.
            for i in 0..m {
                for j in 0..n {
                    let cp = c.offset(i as isize * rsc + j as isize);
                    *cp = if beta == 0.0 { 0.0 } else { beta * *cp };
                }
            }
            return;
        }
        return avx512::sgemm(m, k, n, alpha, a, (rsa, csa), b, (rsb, csb), beta, c, rsc);
    }
    matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
}

/// `c ← op(a) · op(b)` with a chosen kernel, for measuring kernels against each other: row-major slices
/// (`a` is `m × k`, or `k × m` when `ta`; `b` is `k × n`, or `n × k` when `tb`; `c` is `m × n`), split over
/// rayon's pool in row parts as the backend splits a product whose rows outnumber its columns.
///
/// # Shapes
/// `a`: `m·k` elements, `b`: `k·n`, `c`: `m·n`.
///
/// # Errors
/// [`HopfieldError::Input`] when a slice's length differs from its shape or the kernel cannot run on
/// this processor.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_parallel(
    kernel: SgemmKernel,
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
) -> Result<(), HopfieldError> {
    let op = "sgemm_parallel";
    if a.len() != m * k || b.len() != k * n || c.len() != m * n {
        let reason =
            format!("{m}x{k}x{n} needs {} · {} → {}, got {} · {} → {}", m * k, k * n, m * n, a.len(), b.len(), c.len());
        return Err(HopfieldError::Input { op, reason });
    }
    if !kernel.available() {
        return Err(HopfieldError::Input {
            op,
            reason: format!("this processor cannot run the {} kernel", kernel.name()),
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let threads = rayon::current_num_threads().max(1);
    let chunk = m.div_ceil(threads).next_multiple_of(32).min(m);
    c.par_chunks_mut(chunk * n).enumerate().for_each(|(part, cp)| {
        let (lo, rows) = (part * chunk, cp.len() / n);
        // SAFETY: rows lo..lo+rows of `a` (lengths checked above) and this part's own rows of `c`.
        unsafe {
            let ap = a.as_ptr().offset(lo as isize * rsa);
            sgemm_with(kernel, rows, k, n, 1.0, ap, rsa, csa, b.as_ptr(), rsb, csb, 0.0, cp.as_mut_ptr(), n as isize, 1)
        }
    });
    Ok(())
}
