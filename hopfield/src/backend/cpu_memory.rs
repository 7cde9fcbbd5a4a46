//! Keeping freed tensor memory inside the process (glibc only).
//!
//! Every op of the CPU backend returns a fresh tensor, so a layer's forward + backward allocates and frees
//! dozens of multi-megabyte buffers. glibc's defaults hand such buffers back to the kernel on `free`
//! (`munmap`, or trimming the heap top), and the next allocation then pays one page fault plus a page
//! clear per 4 KiB: on the self-association benchmark (B=8 S=256 D=512 H=8) that was ≈ 25 % of the
//! fwd+bwd time. Raising the mmap and trim thresholds makes glibc keep and reuse that memory; the price
//! is that the process holds on to its peak heap size, as every ML runtime's caching allocator does.

use std::sync::Once;

/// Environment variable that, set to `0`, leaves glibc's allocator settings untouched.
pub const ENV_SWITCH: &str = "HOPFIELD_CPU_MALLOC_TUNING";

static TUNE: Once = Once::new();

/// Apply the allocator settings once per process (called by [`Cpu::new`](super::Cpu::new)); does
/// nothing off glibc, or when `HOPFIELD_CPU_MALLOC_TUNING=0`.
pub fn retain_freed_memory() {
    TUNE.call_once(|| {
        if std::env::var(ENV_SWITCH).is_ok_and(|v| v == "0") {
            return;
        }
        tune();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() {
    // Buffers up to 32 MiB (glibc's ceiling for this setting on 64-bit) come from the heap, not mmap;
    // up to 1 GiB of free heap top is kept instead of trimmed; the heap grows in 64 MiB steps.
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}
