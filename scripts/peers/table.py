"""Issue 11's side-by-side table from one run of scripts/bench-peers.sh: the PyTorch peers' JSON lines
(peers.jsonl), our criterion medians (target/criterion/…/new/estimates.json) and association_probe's lines
(probe.jsonl). Usage: python3 table.py OUTDIR CRITERION_DIR"""
import json, math, platform, subprocess, sys, time
from pathlib import Path

out, crit = Path(sys.argv[1]), Path(sys.argv[2])
peers = {}
for line in (out / "peers.jsonl").read_text().splitlines():
    if line.startswith("{"):
        r = json.loads(line)
        peers[r.get("case")] = r


def criterion_ms(name):
    # criterion keeps a `group/case` as folders, but a `c.bench_function` name's slashes as underscores.
    for f in (crit / name / "new" / "estimates.json", crit / name.replace("/", "_") / "new" / "estimates.json"):
        if f.exists():
            return json.loads(f.read_text())["median"]["point_estimate"] / 1e6
    return None


probe = {}
f = out / "probe.jsonl"
if f.exists():
    for line in f.read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            probe[(r["l"], r["what"])] = r

rows = [
    ("Hopfield self-association B8 S256 D512 H8, fwd+bwd", "self_steps0",
     criterion_ms("hopfield_cpu_f32/tuned/self_assoc_b8_s256_d512_h8_steps0"), 0.8),
    ("same, 3 update steps", "self_steps3", criterion_ms("hopfield_cpu_f32/tuned/self_assoc_b8_s256_d512_h8_steps3"), 0.4),
    ("static retrieval N512 d512 β14.3 (CLOOB's)", "static_retrieval",
     criterion_ms("hopfield_cpu_f32/tuned/static_retrieval_n512_d512_beta14.3"), 0.7),
    ("one head L = S = 4096, d 64, fwd+bwd (ours fused)", "long_4096", probe.get((4096, "fwd_bwd"), {}).get("ms"), 0.8),
    ("one head L = S = 8192, d 64, fwd+bwd (ours fused)", "long_8192", probe.get((8192, "fwd_bwd"), {}).get("ms"), 0.6),
    ("CLOOB training step, the peer's model, batch 128", "cloob_peer_b128", criterion_ms("cloob_peer_b128"), 0.67),
    ("CLIP training step, same", "clip_peer_b128", criterion_ms("clip_peer_b128"), 0.67),
]
cpu = "unknown CPU"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
threads = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
flags = set()
try:
    flags = set(next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")))
except (OSError, StopIteration):
    pass
vector = " ".join(f for f in ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile", "avx2", "fma") if f in flags)
print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu} ({threads} cores, "
      f"{platform.system()}), PyTorch first, then ours, in one run of scripts/bench-peers.sh.\n")
print(f"Processor: {cpu}; vector features: {vector or 'none of AVX2/AVX-512'}; {threads} cores.\n")
print("| case | PyTorch ms | ours ms | ours / PyTorch | target | met |")
print("|---|---:|---:|---:|---:|---|")
for name, key, ours, target in rows:
    p = peers.get(key, {}).get("ms")
    have = p is not None and ours is not None and not math.isnan(p)
    ratio = ours / p if have else None
    mem = ""
    if key.startswith("long_"):
        l = int(key.split("_")[1])
        ours_mem = probe.get((l, "memory"), {}).get("growth_mib")
        mem = f" (PyTorch +{peers.get(key, {}).get('rss_growth_mib')} MiB, ours +{ours_mem} MiB)"
    print(f"| {name}{mem} | {f'{p:.1f}' if have else 'n/a'} | {f'{ours:.1f}' if ours else 'n/a'} | "
          f"{f'{ratio:.2f}' if ratio else 'n/a'} | ≤ {target} | {'yes' if ratio and ratio <= target else 'no'} |")
print("\nPyTorch: medians of 7 (the long rows: fastest of 3); ours: criterion medians (the long rows: "
      "association_probe, fastest of 3, the raw fused association without the layer's projections).")

# f32 GEMM throughput of each kernel beside MKL's on the same shapes (sgemm_probe.jsonl, gemm_peer.jsonl).
gemm = {}
for name in ("gemm_peer.jsonl", "sgemm_probe.jsonl"):
    f = out / name
    if f.exists():
        for line in f.read_text().splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                gemm.setdefault(r["shape"], {})[r["kernel"]] = r["gflops"]
if gemm:
    kernels = ["pytorch-mkl", "matrixmultiply", "avx512"]
    print("\nf32 GEMM, GFLOP/s (best of 7, the threads above; ours split in row parts over rayon as the backend "
          "splits a product):\n")
    print("| m×k×n | " + " | ".join(kernels) + " |")
    print("|---|" + "---:|" * len(kernels))
    for shape, got in gemm.items():
        print(f"| {shape} | " + " | ".join(str(got.get(k, "n/a")) for k in kernels) + " |")
