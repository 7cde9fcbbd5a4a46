use hopfield::layers::{HopfieldConfig, HopfieldInput};
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};
fn cpu_time() -> f64 {
    let mut ru: libc_rusage = unsafe { std::mem::zeroed() };
    unsafe { getrusage(0, &mut ru) };
    ru.utime.0 as f64 + ru.utime.1 as f64 * 1e-6 + ru.stime.0 as f64 + ru.stime.1 as f64 * 1e-6
}
#[repr(C)] struct libc_rusage { utime: (i64, i64), stime: (i64, i64), rest: [i64; 14] }
extern "C" { fn getrusage(who: i32, usage: *mut libc_rusage) -> i32; }
fn main() {
    let be = Cpu::<f32>::new();
    let mut rng = StdRng::seed_from_u64(0);
    let steps: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(0);
    let cfg = HopfieldConfig::new(512).num_heads(8).update_steps_max(Some(steps)).update_steps_eps(1e-30);
    let layer = cfg.init(&be, &mut rng).unwrap();
    let x = be.from_vec((0..8*256*512).map(|_| rng.gen_range(-1.0..1.0)).collect(), &[8, 256, 512]);
    let inp = HopfieldInput::single(x.clone());
    let dy = x.clone();
    for it in 0..4 {
        let (t0, w0) = (cpu_time(), std::time::Instant::now());
        let (_, cache) = layer.forward(&be, &inp).unwrap();
        let (t1, w1) = (cpu_time(), std::time::Instant::now());
        let mut g = layer.zero_grads(&be);
        layer.backward(&be, &cache, &dy, &mut g).unwrap();
        let t2 = cpu_time();
        println!("iter {it}: fwd cpu {:.0} ms wall {:.0} ms | bwd cpu {:.0} ms wall {:.0} ms", (t1-t0)*1e3, (w1-w0).as_secs_f64()*1e3, (t2-t1)*1e3, w1.elapsed().as_secs_f64()*1e3);
    }
}
