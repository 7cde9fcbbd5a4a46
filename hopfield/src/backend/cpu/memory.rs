//! Opt-in tuning of glibc's allocator so that freed tensor memory stays inside the process.
//!
//! Every op of the CPU backend returns a fresh tensor, so a layer's forward + backward allocates and frees
//! dozens of multi-megabyte buffers. glibc's defaults hand such buffers back to the kernel on `free`
//! (`munmap`, or trimming the heap top), and the next allocation then pays one page fault plus a page
//! clear per 4 KiB: on the self-association benchmark (B=8 S=256 D=512 H=8, f32, fwd+bwd) that was ≈ 25 %
//! of the time, ≈ 307 ms untuned against ≈ 200 ms tuned (`cargo bench -p hopfield --bench layers` reports
//! both). Raising the mmap and trim thresholds makes glibc keep and reuse that memory; the price is that
//! the process holds on to its peak heap size, as every ML runtime's caching allocator does.
//!
//! The setting is process-wide, so the library never applies it by itself: programs opt in by calling
//! [`tune_allocator`] (or [`Cpu::with_tuned_allocator`](super::Cpu::with_tuned_allocator)).

use std::sync::OnceLock;

/// Environment variable that, set to `0`, makes [`tune_allocator`] leave glibc's settings untouched (to
/// measure or rule out the tuning in a program that opts in, without rebuilding it).
pub const MALLOC_TUNING_ENV: &str = "HOPFIELD_CPU_MALLOC_TUNING";

static TUNED: OnceLock<bool> = OnceLock::new();

/// Make glibc keep freed memory for reuse instead of returning it to the kernel (once per process; later
/// calls do nothing). Returns whether the tuning is in effect: `false` off glibc, or when
/// `HOPFIELD_CPU_MALLOC_TUNING=0` ([`MALLOC_TUNING_ENV`]).
///
/// It changes the allocator of the whole process, not only the CPU backend's: call it from a program's
/// `main` (a binary, a bench), never from a library.
pub fn tune_allocator() -> bool {
    *TUNED.get_or_init(|| {
        if std::env::var(MALLOC_TUNING_ENV).is_ok_and(|v| v == "0") {
            return false;
        }
        tune()
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() -> bool {
    // Buffers up to 32 MiB (glibc's ceiling for this setting on 64-bit) come from the heap, not mmap;
    // up to 1 GiB of free heap top is kept instead of trimmed; the heap grows in 64 MiB steps.
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    let ok = unsafe {
        [
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20),
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30),
            libc::mallopt(libc::M_TOP_PAD, 64 << 20),
        ]
    };
    ok.iter().all(|&r| r == 1)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() -> bool {
    false
}
