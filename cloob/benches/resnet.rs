//! CLIP's RN50 image tower, forward + backward on the CPU backend in f32 (batch-norm batch statistics, as
//! in training), at a fixed batch: `cargo bench --workspace --bench resnet [-- BATCH REPS]` (default 8 × 224²,
//! 3 timed passes after one warm-up). Its PyTorch peer is scripts/peers/resnet_peer.py (open_clip's RN50,
//! the same batch and threads); run both in one sitting on the same machine.

use cloob::resnet::ResNetConfig;
use hopfield::layers::{Layer, Mode};
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (batch, reps) = (args.first().copied().unwrap_or(8), args.get(1).copied().unwrap_or(3));
    let cpu = Cpu::<f32>::new();
    let mut rng = StdRng::seed_from_u64(0);
    let config = ResNetConfig::rn50();
    let net = config.init(&cpu, &mut rng).expect("RN50 validates");
    let side = config.image_size;
    let images =
        cpu.from_vec((0..batch * 3 * side * side).map(|_| rng.gen_range(-1.0..1.0)).collect(), &[batch, 3, side, side]);
    let d_out = cpu.from_vec(
        (0..batch * config.output_dim).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        &[batch, config.output_dim],
    );
    let pass = || {
        let t0 = Instant::now();
        let (_, cache) = net.forward(&cpu, &net, &images, Mode::Train { seed: 0 }).unwrap();
        let fwd = t0.elapsed().as_secs_f64();
        let mut grads = net.zero_grads(&cpu);
        net.backward(&cpu, &net, &cache, &d_out, &mut grads).unwrap();
        (fwd, t0.elapsed().as_secs_f64())
    };
    pass();
    let mut times: Vec<(f64, f64)> = (0..reps).map(|_| pass()).collect();
    times.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (fwd, total) = times[times.len() / 2];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{{\"case\": \"rn50_fwd_bwd\", \"impl\": \"cloob-cpu-f32\", \"batch\": {batch}, \"image\": {side}, \"threads\": {threads}, \"forward_s\": {fwd:.3}, \"total_s\": {total:.3}, \"stat\": \"median of {reps}\"}}"
    );
}
