#!/usr/bin/env bash
# Issue 11's side-by-side table in ONE run on this machine: the PyTorch peers first, then our benches, then
# the ratio table (headed by the processor, its vector features and cores) and the f32 GEMM table (Markdown on stdout, everything under $OUT, default target/bench-peers).
#   scripts/bench-peers.sh
# Env: VENV (default /tmp/torchvenv; made with PyTorch from PyPI when missing, about 3 GB), THREADS (default
# 2: PyTorch's intra-op threads and our rayon threads alike; our GEMMs run on rayon's pool), HFLAYERS_DIR (a folder holding the fetched
# hflayers/ package, never committed; without it the hflayers rows are n/a).
# Peers: scripts/peers/hopfield_peers.py and scripts/gpu_peer_step.py (our own plain-PyTorch mirror of the
# training step of ../shared/bench/cloob_step_peer.py) on the CPU. About 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-/tmp/torchvenv}"
THREADS="${THREADS:-2}"
OUT="${OUT:-target/bench-peers}"
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch numpy
fi
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
py="$VENV/bin/python"
# Build first, so that compiling does not overlap any timing. `--workspace` everywhere: a `-p` build unifies
# features differently and would rebuild the dependencies.
cargo bench --workspace --no-run --bench layers --bench train_step >/dev/null 2>&1
cargo build --workspace --release --example association_probe --example sgemm_probe >/dev/null 2>&1

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
echo "== PyTorch peers" >&2
PYTHONPATH="${HFLAYERS_DIR:-}" "$py" scripts/peers/hopfield_peers.py > "$OUT/peers.jsonl"
"$py" scripts/gpu_peer_step.py cpu >> "$OUT/peers.jsonl"
"$py" scripts/peers/gemm_peer.py > "$OUT/gemm_peer.jsonl"
cat "$OUT/peers.jsonl" >&2

echo "== ours" >&2
cargo bench --workspace --bench layers -- 'hopfield_cpu_f32/tuned/' > "$OUT/layers.log" 2>&1
cargo bench --workspace --bench train_step -- '^(cloob|clip)_peer_b128$' > "$OUT/train_step.log" 2>&1
: > "$OUT/probe.jsonl"
for l in 4096 8192; do
    "$target_dir"/release/examples/association_probe cpu 1 1 $l $l 64 0 3 >> "$OUT/probe.jsonl"
done
cat "$OUT/probe.jsonl" >&2
"$target_dir"/release/examples/sgemm_probe > "$OUT/sgemm_probe.jsonl"
python3 scripts/peers/table.py "$OUT" "$target_dir/criterion" | tee "$OUT/table.md"
