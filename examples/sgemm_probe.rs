//! f32 matrix-product throughput of each CPU kernel this processor can run, on the shapes the layers and
//! the CLOOB training step use, split over rayon's pool as the backend splits them (set
//! `RAYON_NUM_THREADS`). One JSON line per shape and kernel on stdout (GFLOP/s, best of the repetitions);
//! `scripts/peers/gemm_peer.py` measures PyTorch (MKL) on the same shapes for `scripts/bench-peers.sh`.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release --example sgemm_probe -- [REPS]
//! ```

use hopfield::backend::cpu::{sgemm_parallel, CpuInfo, SgemmKernel};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

/// (m, k, n, a transposed, b transposed, what it is).
const SHAPES: &[(usize, usize, usize, bool, bool, &str)] = &[
    (2048, 2048, 2048, false, false, "square"),
    (16384, 128, 512, false, false, "layer"),
    (16384, 512, 128, false, false, "layer"),
    (8320, 128, 384, false, true, "step: x·Wᵀ (qkv)"),
    (8320, 512, 128, false, true, "step: x·Wᵀ (mlp out)"),
    (8320, 384, 128, false, false, "step: dy·W"),
    (128, 8320, 384, true, false, "step: xᵀ·dy"),
];

fn main() {
    let reps: usize = match std::env::args().nth(1).map(|s| s.parse()) {
        None => 7,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("error: REPS must be a positive integer");
            std::process::exit(2);
        }
    };
    eprintln!("cpu: {}", CpuInfo::detect());
    let kernels: Vec<SgemmKernel> =
        [SgemmKernel::Matrixmultiply, SgemmKernel::Avx512].into_iter().filter(|k| k.available()).collect();
    let mut rng = StdRng::seed_from_u64(0);
    for &(m, k, n, ta, tb, what) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut c = vec![0.0f32; m * n];
        for &kernel in &kernels {
            let mut best = f64::INFINITY;
            for _ in 0..reps + 1 {
                let t = Instant::now();
                if let Err(e) = sgemm_parallel(kernel, (m, k, n), &a, ta, &b, tb, &mut c) {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
            let shape = format!("{m}x{k}x{n}{}{}", if ta { " aT" } else { "" }, if tb { " bT" } else { "" });
            println!(
                r#"{{"shape": "{shape}", "what": "{what}", "kernel": "{}", "gflops": {gflops:.1}}}"#,
                kernel.name()
            );
        }
    }
}
