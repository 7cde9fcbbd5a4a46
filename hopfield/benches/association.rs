//! The fused association per backend, forward and forward + backward, each timed with a device sync:
//! `association/cpu` (blocked CPU algorithm), `association/wgpu` and `association/cuda` (our streaming
//! CubeCL kernels; built with `--features wgpu` / `cuda`). Sizes: one head of L = S = 2048, d = 64 on the
//! CPU; L = S = 1024 on wgpu (lavapipe, software Vulkan, in CI: at 2048 one forward + backward took 21 s on
//! a 2-core machine and the bench 5.5 minutes); B = 8, H = 8, L = S = 4096, d = 64 on CUDA, where the
//! materialised path (`L × S` with the backend's own ops, the hflayers-style computation) is timed too.

use criterion::{criterion_group, criterion_main, Criterion};
use hopfield_layers::backend::reference;
use hopfield_layers::backend::ScoreBias;
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn bench_backend<B: Backend<Elem = f32>>(
    c: &mut Criterion,
    group: &str,
    be: &B,
    sync: &dyn Fn(),
    dims: [usize; 5],
    materialised_too: bool,
) {
    let [b, h, l, s, d] = dims;
    let mut rng = StdRng::seed_from_u64(0);
    let mut t = |shape: &[usize]| {
        be.from_vec((0..shape.iter().product::<usize>()).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape)
    };
    let (q, k, v, d_out) = (t(&[b, h, l, d]), t(&[b, h, s, d]), t(&[b, h, s, d]), t(&[b, h, l, d]));
    let beta = vec![1.0 / (d as f32).sqrt(); h];
    let bias = ScoreBias::default();
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    let tag = format!("b{b}_h{h}_l{l}_s{s}_d{d}");
    g.bench_function(format!("fused_fwd_{tag}"), |it| {
        it.iter(|| {
            let r = be.association(&q, &k, &v, &beta, &bias);
            sync();
            r
        })
    });
    g.bench_function(format!("fused_fwd_bwd_{tag}"), |it| {
        it.iter(|| {
            let (o, lse) = be.association(&q, &k, &v, &beta, &bias);
            let r = be.association_backward(&q, &k, &v, &beta, &bias, &o, &lse, &d_out);
            sync();
            r
        })
    });
    if materialised_too {
        g.bench_function(format!("materialised_fwd_{tag}"), |it| {
            it.iter(|| {
                let r = reference::association(be, &q, &k, &v, &beta, &bias);
                sync();
                r
            })
        });
        g.bench_function(format!("materialised_fwd_bwd_{tag}"), |it| {
            it.iter(|| {
                let r = reference::association(be, &q, &k, &v, &beta, &bias);
                let g = reference::association_backward(be, &q, &k, &v, &beta, &bias, &d_out);
                sync();
                (r, g)
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_backend(c, "association/cpu", &Cpu::<f32>::with_tuned_allocator(), &|| {}, [1, 1, 2048, 2048, 64], false);
    #[cfg(feature = "wgpu")]
    {
        match hopfield_layers::backend::cube::Wgpu::wgpu() {
            Ok(be) => bench_backend(
                c,
                "association/wgpu",
                &be,
                &|| be.sync().expect("device sync"),
                [1, 1, 1024, 1024, 64],
                false,
            ),
            Err(e) => eprintln!("association/wgpu skipped: {e}"),
        }
    }
    #[cfg(feature = "cuda")]
    match hopfield_layers::backend::cube::Cuda::cuda(0) {
        Ok(be) => {
            bench_backend(c, "association/cuda", &be, &|| be.sync().expect("device sync"), [8, 8, 4096, 4096, 64], true)
        }
        Err(e) => eprintln!("association/cuda skipped: {e}"),
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(group);
