//! Time (and, under `/usr/bin/time -v`, measure the memory of) the fused association on one backend.
//!
//! ```text
//! association_probe [cpu|wgpu|cuda] B H L S d [steps] [iters] [mode]
//! ```
//! `mode`: `fused` (default: `Backend::association`, streaming on backends that implement it) or
//! `materialised` (the reference path: the `L × S` matrix with the backend's own ops). Runs `steps`
//! update steps `ξ ← softmax(β ξ Kᵀ) K` then the retrieval `softmax(β ξ Kᵀ) V`, forward, then forward
//! and backward, `iters` times after one warm-up, with a device sync around each timing. Prints one JSON
//! line per measurement: `{"backend", "mode", "what", "b", "h", "l", "s", "d", "steps", "ms"}`, and (on
//! Linux) one `memory` line: resident memory once the inputs exist, the peak, and the growth between them.
//!
//! The memory check (CPU, blocked path, one warm-up forward + backward, no timed iterations):
//! ```text
//! /usr/bin/time -v target/release/examples/association_probe cpu 1 1 65536 65536 64 0 0
//! ```

use hopfield::backend::reference;
use hopfield::backend::ScoreBias;
use hopfield::{Backend, Cpu};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

struct Args {
    b: usize,
    h: usize,
    l: usize,
    s: usize,
    d: usize,
    steps: usize,
    iters: usize,
    materialised: bool,
}

fn forward<B: Backend>(
    be: &B,
    a: &Args,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    beta: &[B::Elem],
) -> (Vec<(B::Tensor, B::Tensor, B::Tensor)>, B::Tensor, B::Tensor) {
    let bias = ScoreBias::default();
    let mut saved = Vec::new();
    let mut xi = q.clone();
    for _ in 0..a.steps {
        let (x, lse) = if a.materialised {
            reference::association(be, &xi, k, k, beta, &bias)
        } else {
            be.association(&xi, k, k, beta, &bias)
        };
        saved.push((xi, x.clone(), lse));
        xi = x;
    }
    let (out, lse) = if a.materialised {
        reference::association(be, &xi, k, v, beta, &bias)
    } else {
        be.association(&xi, k, v, beta, &bias)
    };
    saved.push((xi, out.clone(), lse.clone()));
    (saved, out, lse)
}

fn backward<B: Backend>(
    be: &B,
    a: &Args,
    saved: &[(B::Tensor, B::Tensor, B::Tensor)],
    k: &B::Tensor,
    v: &B::Tensor,
    beta: &[B::Elem],
    d_out: &B::Tensor,
) -> B::Tensor {
    let bias = ScoreBias::default();
    let mut g = d_out.clone();
    let mut dk_total = None::<B::Tensor>;
    for (i, (u, out, lse)) in saved.iter().enumerate().rev() {
        let vv = if i + 1 == saved.len() { v } else { k };
        let (du, dk, dv) = if a.materialised {
            reference::association_backward(be, u, k, vv, beta, &bias, &g)
        } else {
            be.association_backward(u, k, vv, beta, &bias, out, lse, &g)
        };
        let mut acc = dk;
        if i + 1 != saved.len() {
            be.axpy(&mut acc, <B::Elem as num_traits::One>::one(), &dv);
        }
        dk_total = Some(match dk_total {
            None => acc,
            Some(mut t) => {
                be.axpy(&mut t, <B::Elem as num_traits::One>::one(), &acc);
                t
            }
        });
        g = du;
    }
    g
}

fn run<B: Backend<Elem = f32>>(be: &B, name: &str, a: &Args, sync: &dyn Fn()) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut t = |shape: &[usize]| {
        be.from_vec((0..shape.iter().product::<usize>()).map(|_| rng.gen_range(-1.0f32..1.0)).collect(), shape)
    };
    let (q, k, v) = (t(&[a.b, a.h, a.l, a.d]), t(&[a.b, a.h, a.s, a.d]), t(&[a.b, a.h, a.s, a.d]));
    let d_out = t(&[a.b, a.h, a.l, a.d]);
    let beta = vec![1.0 / (a.d as f32).sqrt(); a.h];
    let mode = if a.materialised { "materialised" } else { "fused" };
    let report = |what: &str, ms: f64| {
        println!(
            "{{\"backend\":\"{name}\",\"mode\":\"{mode}\",\"what\":\"{what}\",\"b\":{},\"h\":{},\"l\":{},\"s\":{},\
             \"d\":{},\"steps\":{},\"ms\":{ms:.4}}}",
            a.b, a.h, a.l, a.s, a.d, a.steps
        );
    };
    // Warm-up (kernel compilation), then timings.
    sync();
    let base = status_kib("VmRSS");
    let (saved, _, _) = forward(be, a, &q, &k, &v, &beta);
    backward(be, a, &saved, &k, &v, &beta, &d_out);
    drop(saved);
    sync();
    if let (Some(base), Some(peak)) = (base, status_kib("VmHWM")) {
        println!(
            "{{\"backend\":\"{name}\",\"mode\":\"{mode}\",\"what\":\"memory\",\"l\":{},\"s\":{},\"d\":{},\
             \"rss_inputs_mib\":{:.1},\"peak_rss_mib\":{:.1},\"growth_mib\":{:.1}}}",
            a.l,
            a.s,
            a.d,
            base as f64 / 1024.0,
            peak as f64 / 1024.0,
            peak.saturating_sub(base) as f64 / 1024.0
        );
    }
    let mut best_f = f64::INFINITY;
    let mut best_fb = f64::INFINITY;
    for _ in 0..a.iters {
        let t0 = Instant::now();
        let r = forward(be, a, &q, &k, &v, &beta);
        sync();
        best_f = best_f.min(t0.elapsed().as_secs_f64() * 1e3);
        drop(r);
        let t0 = Instant::now();
        let (saved, _, _) = forward(be, a, &q, &k, &v, &beta);
        let g = backward(be, a, &saved, &k, &v, &beta, &d_out);
        sync();
        best_fb = best_fb.min(t0.elapsed().as_secs_f64() * 1e3);
        drop((saved, g));
    }
    report("fwd", best_f);
    report("fwd_bwd", best_fb);
}

/// A `kB` field of `/proc/self/status` (`VmRSS`: resident now, `VmHWM`: peak resident); `None` off Linux.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| argv.get(i).map_or(default, |s| s.parse().expect("a number"));
    let backend = argv.first().map_or("cpu", |s| s.as_str()).to_string();
    let a = Args {
        b: num(1, 1),
        h: num(2, 1),
        l: num(3, 4096),
        s: num(4, 4096),
        d: num(5, 64),
        steps: num(6, 0),
        iters: num(7, 3),
        materialised: argv.get(8).is_some_and(|m| m == "materialised"),
    };
    match backend.as_str() {
        "cpu" => run(&Cpu::<f32>::with_tuned_allocator(), "cpu", &a, &|| {}),
        #[cfg(feature = "wgpu")]
        "wgpu" => match hopfield::backend::cube::Wgpu::wgpu() {
            Ok(be) => run(&be, "wgpu", &a, &|| be.sync().expect("device sync")),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        #[cfg(feature = "cuda")]
        "cuda" => match hopfield::backend::cube::Cuda::cuda(0) {
            Ok(be) => run(&be, "cuda", &a, &|| be.sync().expect("device sync")),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        other => {
            eprintln!("backend `{other}` not built (features: wgpu, cuda)");
            std::process::exit(2);
        }
    }
}
