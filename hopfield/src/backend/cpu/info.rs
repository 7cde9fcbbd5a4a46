//! What the CPU backend runs on: the processor, the vector width its kernels use and the thread count,
//! for programs to print at start-up so that a report says what ran.

use super::sgemm::{cpu_vector_bits, sgemm_kernel, SgemmKernel};
use std::fmt;

/// The processor and the CPU backend's choices on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuInfo {
    /// The processor's brand string (CPUID on x86-64), or the architecture's name elsewhere.
    pub model: String,
    /// The widest SIMD registers the processor has, in bits.
    pub vector_bits: u32,
    /// The x86 vector extensions detected, widest first (`avx512f`, `avx2`, `fma`, …).
    pub features: Vec<&'static str>,
    /// The f32 matrix-product kernel in use.
    pub sgemm: SgemmKernel,
    /// Threads of rayon's pool, which runs every parallel op of the backend.
    pub threads: usize,
}

impl CpuInfo {
    /// Reads the processor and the backend's choices (the sgemm kernel is decided here if it was not yet).
    pub fn detect() -> Self {
        CpuInfo {
            model: brand_string().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            vector_bits: cpu_vector_bits(),
            features: features(),
            sgemm: sgemm_kernel(),
            threads: rayon::current_num_threads(),
        }
    }
}

impl fmt::Display for CpuInfo {
    /// One line: `Intel(R) Xeon(R) Processor · avx512f avx2 fma · sgemm avx512 (512-bit) · 2 threads`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let features = if self.features.is_empty() { "no AVX".to_string() } else { self.features.join(" ") };
        write!(
            f,
            "{} · {features} · sgemm {} ({}-bit) · {} threads",
            self.model,
            self.sgemm.name(),
            self.sgemm.vector_bits(),
            self.threads
        )
    }
}

/// The vector extensions the kernels may use, as detected at run time.
fn features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx");
    }
    found
}

/// The CPUID brand string (leaves 0x8000_0002..=0x8000_0004), trimmed.
fn brand_string() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        if __cpuid(0x8000_0000).eax < 0x8000_0004 {
            return None;
        }
        let mut bytes = Vec::with_capacity(48);
        for leaf in 0x8000_0002u32..=0x8000_0004 {
            let r = __cpuid(leaf);
            for word in [r.eax, r.ebx, r.ecx, r.edx] {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
        }
        let s = String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string();
        (!s.is_empty()).then_some(s)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_processor_the_kernel_and_the_threads() {
        let info = CpuInfo::detect();
        let line = info.to_string();
        assert!(!info.model.is_empty());
        assert!(line.contains(&format!("sgemm {}", info.sgemm.name())), "{line}");
        assert!(line.ends_with(&format!("{} threads", info.threads)), "{line}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(info.features.contains(&"avx512f"), info.vector_bits == 512, "{line}");
    }
}
