//! Forward + backward of one Hopfield self-association layer (stored = state = projection) in f32 on the
//! CPU: `hopfield-burn` on burn's NdArray backend, the backward by burn's autodiff
//! (`autodiff/<case>/burn_ndarray_autodiff`), against `hopfield`'s `Cpu<f32>` with its explicit backward
//! (`autodiff/<case>/hopfield_cpu_f32`). Cases: `hopfield/benches/layers.rs`'s self-association B=8 S=256
//! D=512 H=8 (0 update steps), and B=4 S=64 D=128 H=4 for a quick look.
//!
//! Both layers hold the same parameters (the same seed) and see the same input and output gradient; the
//! setup checks that their outputs agree. Both compute the gradients of the input and of every parameter.
//! glibc's allocator is tuned first (`hopfield::backend::cpu::tune_allocator`, process-wide, so for both).
//!
//! ```text
//! cargo bench -p hopfield-burn --bench autodiff
//! ```

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hopfield::backend::cpu::tune_allocator;
use hopfield::layers::{HopfieldConfig, HopfieldInput, Layer, Mode};
use hopfield::{Backend, Cpu};
use hopfield_burn::HopfieldInit;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// `n` values uniform in [-1, 1).
fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

fn case(c: &mut Criterion, name: &str, cfg: HopfieldConfig, [b, s, d]: [usize; 3]) {
    let mut rng = StdRng::seed_from_u64(1);
    let (x, dy) = (values(&mut rng, b * s * d), values(&mut rng, b * s * d));

    let cpu = Cpu::<f32>::new();
    let layer = cfg.init(&cpu, &mut StdRng::seed_from_u64(0)).unwrap();
    let x_host = cpu.from_vec(x.clone(), &[b, s, d]);
    let dy_host = cpu.from_vec(dy.clone(), &[b, s, d]);
    let input = HopfieldInput::single(x_host);

    #[allow(deprecated)] // NdArray: burn deprecates it for Flex, but it is the CPU backend hopfield-burn supports.
    let device = Device::ndarray().autodiff();
    let module = cfg.init_burn_seeded(&device, 0).unwrap();
    let x_burn = Tensor::<3>::from_data(TensorData::new(x, [b, s, d]), &device).require_grad();
    let dy_burn = Tensor::<3>::from_data(TensorData::new(dy, [b, s, d]), &device);
    let burn_output = || module.forward(hopfield_burn::HopfieldInput::single(x_burn.clone())).unwrap().output;

    let (host_out, _) = layer.forward(&cpu, layer.params(), &input, Mode::Eval).unwrap();
    let burn_out = burn_output().into_data().iter::<f32>().collect::<Vec<_>>();
    let diff = cpu.to_vec(&host_out.output).iter().zip(&burn_out).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-3, "{name}: burn's output differs from hopfield's by {diff}");

    let mut group = c.benchmark_group(format!("autodiff/{name}"));
    group.bench_function("hopfield_cpu_f32", |bench| {
        bench.iter(|| {
            let (_, cache) = layer.forward(&cpu, layer.params(), &input, Mode::Eval).unwrap();
            let mut grads = layer.zero_grads(&cpu);
            layer.backward(&cpu, layer.params(), &cache, &dy_host, &mut grads).unwrap()
        })
    });
    group.bench_function("burn_ndarray_autodiff", |bench| {
        bench.iter(|| {
            // ⟨output, dy⟩ has gradient dy with respect to the output, as the explicit backward receives.
            let grads = (burn_output() * dy_burn.clone()).sum().backward();
            black_box(x_burn.grad(&grads).expect("the input requires its gradient"))
        })
    });
    group.finish();
}

fn cases(c: &mut Criterion) {
    if !tune_allocator() {
        eprintln!("allocator tuning is off (not glibc, or HOPFIELD_CPU_MALLOC_TUNING=0)");
    }
    case(c, "self_assoc_b4_s64_d128_h4_steps0", HopfieldConfig::new(128).num_heads(4), [4, 64, 128]);
    case(c, "self_assoc_b8_s256_d512_h8_steps0", HopfieldConfig::new(512).num_heads(8), [8, 256, 512]);
}

criterion_group! {
    name = group;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = cases
}
criterion_main!(group);
