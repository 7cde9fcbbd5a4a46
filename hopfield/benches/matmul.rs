//! Matrix products on the Cube backend: our tiled kernel (`own`) against cubek-matmul's unit routines
//! (`cubek_unit`, `cubek_double_unit`; f32 throughout) and, on CUDA, what cubek's `Auto` picks there
//! (`cubek_auto`: tensor cores, so tf32). Each timing includes a device sync; criterion's throughput is
//! in multiply-adds × 2, so its `elem/s` read as FLOP/s. cubek is on with `wgpu` and `cuda`.
//!
//! Shapes are the layers' own: per-head scores `[B·H, L, d] · [B·H, S, d]ᵀ`, the association's values
//! `[B·H, L, S] · [B·H, S, d]`, and an input projection `[B·L, D] · [D, D]`. On wgpu (Mesa's lavapipe,
//! software Vulkan on the CPU in CI) B·H = 64, L = S = 256, d = 64 and B·L = 2048, D = 512; on CUDA the
//! association bench's B = 8, H = 8, L = S = 4096, d = 64 and B·L = 32768, D = 512 too.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hopfield_layers::backend::cube::{Cube, CubeRuntime, MatmulKernel};
use hopfield_layers::Backend;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `a · op(b)` with `op` a transpose when `tb`.
struct Case {
    name: String,
    a: Vec<usize>,
    b: Vec<usize>,
    tb: bool,
}

fn cases(bh: usize, l: usize, d: usize, rows: usize, dm: usize) -> Vec<Case> {
    vec![
        Case { name: format!("scores_{bh}x{l}x{d}_t"), a: vec![bh, l, d], b: vec![bh, l, d], tb: true },
        Case { name: format!("values_{bh}x{l}x{l}x{d}"), a: vec![bh, l, l], b: vec![bh, l, d], tb: false },
        Case { name: format!("projection_{rows}x{dm}x{dm}"), a: vec![rows, dm], b: vec![dm, dm], tb: false },
    ]
}

fn bench_cube<R: CubeRuntime>(c: &mut Criterion, group: &str, be: &Cube<R>, kernels: &[MatmulKernel], cases: &[Case]) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut t = |shape: &[usize]| {
        be.from_vec((0..shape.iter().product::<usize>()).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape)
    };
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for case in cases {
        let (a, b) = (t(&case.a), t(&case.b));
        let (m, k) = (case.a[case.a.len() - 2], case.a[case.a.len() - 1]);
        let n = if case.tb { case.b[case.b.len() - 2] } else { case.b[case.b.len() - 1] };
        let batch: usize = case.a[..case.a.len() - 2].iter().product();
        g.throughput(Throughput::Elements((2 * batch * m * n * k) as u64));
        for &kernel in kernels {
            let be = be.clone().with_matmul(kernel);
            let name = kernel.name();
            g.bench_function(format!("{}/{name}", case.name), |it| {
                it.iter(|| {
                    let r = be.matmul(&a, &b, false, case.tb);
                    be.sync().expect("device sync");
                    r
                })
            });
        }
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    #[allow(unused_mut)]
    let mut kernels = vec![MatmulKernel::Own];
    #[cfg(feature = "cubek")]
    kernels.extend([MatmulKernel::CubekUnit, MatmulKernel::CubekDoubleUnit]);
    #[cfg(feature = "wgpu")]
    match hopfield_layers::backend::cube::Wgpu::wgpu() {
        Ok(be) => bench_cube(c, "matmul/wgpu", &be, &kernels, &cases(64, 256, 64, 2048, 512)),
        Err(e) => eprintln!("matmul/wgpu skipped: {e}"),
    }
    #[cfg(feature = "cuda")]
    match hopfield_layers::backend::cube::Cuda::cuda(0) {
        Ok(be) => {
            #[cfg(feature = "cubek")]
            kernels.push(MatmulKernel::CubekAuto);
            let mut all = cases(64, 256, 64, 2048, 512);
            all.extend(cases(64, 4096, 64, 32768, 512));
            bench_cube(c, "matmul/cuda", &be, &kernels, &all)
        }
        Err(e) => eprintln!("matmul/cuda skipped: {e}"),
    }
    let _ = (c, &kernels);
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(group);
