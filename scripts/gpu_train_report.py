"""The training rows of the GPU check (scripts/gpu-run.sh): reads the logs of the CUDA runs of cloob-pretrain,
their peak device memory (nvidia-smi samples), the CPU run of the same seed, the criterion log of the
`cuda/` train-step bench and the PyTorch peer's JSON lines, and prints a Markdown table.

Usage: python3 gpu_train_report.py LOGDIR"""
import json, re, statistics, sys
from pathlib import Path

log = Path(sys.argv[1])


def losses(run):
    rows = [json.loads(l) for l in (log / "runs" / run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return [r for r in rows if "loss" in r]


def peak_mib(name):
    f = log / f"{name}.mem"
    vals = [int(v) for v in re.findall(r"\d+", f.read_text())] if f.exists() else []
    base = vals[0] if vals else 0
    return max(vals) - base if vals else None


print("| run | steps | samples/s (median after step 10) | peak device memory (MiB, above idle) | last loss |")
print("|---|---:|---:|---:|---:|")
for run in ["tiny-cuda", "small-cuda"]:
    try:
        rows = losses(run)
    except OSError as e:
        print(f"| {run} | missing ({e}) | | | |")
        continue
    sps = statistics.median(r["samples_per_s"] for r in rows[10:]) if len(rows) > 10 else float("nan")
    print(f"| {run} | {len(rows)} | {sps:.0f} | {peak_mib(run)} | {rows[-1]['loss']:.4f} |")

try:
    gpu, cpu = losses("tiny-cuda")[:20], losses("tiny-cpu")[:20]
    worst = max(abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(gpu, cpu))
    print(f"\ntiny, first {min(len(gpu), len(cpu))} steps, CUDA vs CPU (seed 0): max relative loss difference {worst:.2e}")
    for a, b in zip(gpu, cpu):
        print(f"  step {a['step']:>3}  cuda {a['loss']:.7f}  cpu {b['loss']:.7f}")
except (OSError, ValueError) as e:
    print(f"\nloss curve comparison missing: {e}")

ours = {}
bench = log / "train_step.log"
if bench.exists():
    text = bench.read_text()
    for case, value, unit in re.findall(r"(cuda/\w+)\s+time:\s+\[[\d.]+ \w+ ([\d.]+) (\w+)", text):
        ours[case.removeprefix("cuda/")] = float(value) * {"s": 1e3, "ms": 1.0, "µs": 1e-3, "us": 1e-3}[unit]
peer = {}
peer_log = log / "peer.jsonl"
if peer_log.exists():
    for line in peer_log.read_text().splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            peer[r["case"]] = r
print("\n| training step, peer model, batch 128 | PyTorch ms | ours ms | ours / PyTorch | PyTorch peak MiB |")
print("|---|---:|---:|---:|---:|")
for case in ["cloob_peer_b128", "clip_peer_b128"]:
    p, o = peer.get(case, {}).get("ms"), ours.get(case)
    ratio = f"{o / p:.2f}" if p and o else "n/a"
    print(f"| {case} | {p if p else 'n/a'} | {f'{o:.1f}' if o else 'n/a'} | {ratio} | {peer.get(case, {}).get('peak_mib')} |")
