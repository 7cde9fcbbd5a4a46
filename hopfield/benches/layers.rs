//! Forward + backward timings of the cases the hflayers comparison uses (f32, CPU backend):
//! self-association B=8 S=256 D=512 H=8 with 0 and 3 update steps, and CLOOB's parameter-free static
//! retrieval N=512 d=512 β=14.3; after the `tuned` group, `hopfield_cpu_f32/retrieval/…` runs the steps-0
//! and static cases with each retrieval other than softmax (sparsemax, entmax-1.5, softmax₁), for their
//! cost against softmax's.
//!
//! Every case runs twice: first with glibc's default allocator settings (`hopfield_cpu_f32/untuned/…`),
//! then after [`tune_allocator`] (`hopfield_cpu_f32/tuned/…`). The tuning is process-wide and cannot be
//! undone, so the untuned group must run first: a filter that selects only `untuned` cases is fine, one that
//! selects only `tuned` cases still tunes. `HOPFIELD_CPU_MALLOC_TUNING=0` makes both groups untuned.

use criterion::{criterion_group, criterion_main, Criterion};
use hopfield_layers::backend::cpu::tune_allocator;
use hopfield_layers::layers::{HopfieldConfig, HopfieldInput, Retrieval};
use hopfield_layers::layers::{Layer, Mode};
use hopfield_layers::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn input(backend: &Cpu<f32>, rng: &mut StdRng, shape: &[usize]) -> hopfield_layers::backend::CpuTensor<f32> {
    let n = shape.iter().product();
    backend.from_vec((0..n).map(|_| rng.gen_range(-1.0..1.0)).collect(), shape)
}

fn fwd_bwd(c: &mut Criterion, name: &str, cfg: HopfieldConfig, stored: &[usize], state: &[usize]) {
    let be = Cpu::<f32>::new();
    let mut rng = StdRng::seed_from_u64(0);
    let layer = cfg.init(&be, &mut rng).unwrap();
    let k = input(&be, &mut rng, stored);
    let q = if stored == state { k.clone() } else { input(&be, &mut rng, state) };
    let inp = HopfieldInput::new(k.clone(), q, k);
    let (out, _) = layer.forward(&be, layer.params(), &inp, Mode::Eval).unwrap();
    let dy = input(&be, &mut rng, &be.shape(&out.output));
    c.bench_function(name, |b| {
        b.iter(|| {
            let (_, cache) = layer.forward(&be, layer.params(), &inp, Mode::Eval).unwrap();
            let mut grads = layer.zero_grads(&be);
            layer.backward(&be, layer.params(), &cache, &dy, &mut grads).unwrap()
        })
    });
}

fn cases(c: &mut Criterion, group: &str) {
    let base = HopfieldConfig::new(512).num_heads(8);
    let name = |case: &str| format!("hopfield_cpu_f32/{group}/{case}");
    fwd_bwd(c, &name("self_assoc_b8_s256_d512_h8_steps0"), base.clone(), &[8, 256, 512], &[8, 256, 512]);
    fwd_bwd(
        c,
        &name("self_assoc_b8_s256_d512_h8_steps3"),
        base.update_steps_max(Some(3)).update_steps_eps(1e-30),
        &[8, 256, 512],
        &[8, 256, 512],
    );
    fwd_bwd(
        c,
        &name("static_retrieval_n512_d512_beta14.3"),
        HopfieldConfig::static_retrieval(512, 14.3),
        &[1, 512, 512],
        &[1, 512, 512],
    );
}

fn untuned(c: &mut Criterion) {
    cases(c, "untuned");
}

fn tuned(c: &mut Criterion) {
    if !tune_allocator() {
        eprintln!("allocator tuning is off (not glibc, or HOPFIELD_CPU_MALLOC_TUNING=0): `tuned` is untuned");
    }
    cases(c, "tuned");
}

/// The same shapes with the other retrievals (allocator tuned: run after `tuned`).
fn retrieval(c: &mut Criterion) {
    let variants = [Retrieval::Sparsemax, Retrieval::Entmax { alpha: 1.5, learnable: false }, Retrieval::Softmax1];
    for r in variants {
        let tag = r.to_string().replace(':', "");
        let name = |case: &str| format!("hopfield_cpu_f32/retrieval/{tag}/{case}");
        let base = HopfieldConfig::new(512).num_heads(8).retrieval(r);
        fwd_bwd(c, &name("self_assoc_b8_s256_d512_h8_steps0"), base, &[8, 256, 512], &[8, 256, 512]);
        fwd_bwd(
            c,
            &name("static_retrieval_n512_d512_beta14.3"),
            HopfieldConfig::static_retrieval(512, 14.3).retrieval(r),
            &[1, 512, 512],
            &[1, 512, 512],
        );
    }
}

criterion_group! {
    name = group;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(8));
    targets = untuned, tuned, retrieval
}
criterion_main!(group);
