#!/usr/bin/env bash
# On the GPU machine (no Rust: the NVIDIA driver, xz and python3 with PyTorch), from the folder that holds
# .gpu/ (made by scripts/gpu-check.sh):   bash .gpu/gpu-run.sh
# 1. the `cuda` kernel tests, layer tests, hflayers and sparse retrieval fixtures and the retrieval
#    properties against the CPU oracle (built in);
# 2. timings of our fused association (and of our materialised path) at B=8, H=8, L=S=4096, d=64:
#    fwd, fwd+bwd, and 3 update steps + retrieval, next to PyTorch's scaled_dot_product_attention and the
#    hflayers-style unfused computation, as a table;
# 3. our matmul kernel against cubek-matmul's (hopfield/benches/matmul.rs, criterion medians in matmul.txt).
# Logs go to $OUT when set. Target: < 6 minutes.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
log="${OUT:-$work}"
mkdir -p "$log"
export HOPFIELD_FIXTURES="$here/fixtures" HOPFIELD_SPARSE_FIXTURES="$here/sparse-fixtures" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# PyTorch's wheels carry the CUDA user-space libraries (nvrtc, …): let CubeCL find them too.
nv=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
if [ -n "$nv" ]; then
    for d in "$nv"/*/lib; do LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
    export LD_LIBRARY_PATH
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

xz -dc "$here/bin.tar.xz" | tar -C "$work" -xf -

if [ "${1:-}" = "--no-gpu" ]; then
    # On a machine without a GPU: every binary must start and report the missing device, not crash.
    for b in kernel_tests layer_tests fixture_tests retrieval_tests; do
        "$work/$b" --test-threads=1 > "$log/$b.log" 2>&1
        echo "$b: exit $?; $(grep -m1 -o 'cuda device: [^(]*' "$log/$b.log" || echo 'no device message')"
    done
    "$work/association_probe" cuda 1 1 64 64 16 0 1; echo "association_probe: exit $?"
    "$work/association_bench" --bench association/cuda 2>&1 | grep -m1 "association/cuda"; echo "association_bench: exit ${PIPESTATUS[0]}"
    "$work/matmul_bench" --bench matmul/cuda 2>&1 | grep -m1 "matmul/cuda"; echo "matmul_bench: exit ${PIPESTATUS[0]}"
    "$work/train_step_bench" --bench cuda/ 2>&1 | grep -m1 "cuda/"; echo "train_step_bench: exit ${PIPESTATUS[0]}"
    "$work/cloob_pretrain" --device cuda --steps 1 --quiet --logs "$work/runs" > "$log/pretrain.log" 2>&1
    echo "cloob_pretrain --device cuda: exit $? ($(head -c 160 "$log/pretrain.log"))"
    "$work/cloob_pretrain" --device cpu --steps 2 --batch-size 8 --eval-size 8 --quiet --logs "$work/runs" > "$log/pretrain.log" 2>&1
    echo "cloob_pretrain --device cpu: exit $?"
    rm -rf "$work"
    exit 0
fi

fail=0
run_tests() {  # name, binary, timeout
    echo "== $1"
    if timeout "$3" "$work/$2" --test-threads=4 > "$log/$2.log" 2>&1; then
        grep -E "^test result" "$log/$2.log"
    else
        fail=1
        grep -E "^test .*FAILED|panicked|^test result|No such|error" "$log/$2.log" | head -20
        tail -5 "$log/$2.log"
    fi
}
run_tests "kernel tests (every op vs Cpu<f32>)" kernel_tests 150
run_tests "layer tests (Hopfield, pooling, lookup, encoder/decoder, fused vs Cpu<f32>)" layer_tests 150
run_tests "hflayers and sparse retrieval fixtures" fixture_tests 90
run_tests "retrieval properties (energy, exact sparsemax retrieval, masks)" retrieval_tests 60

echo "== timings (ms, best of 5 after a warm-up)"
probe="$work/association_probe"
: > "$log/ours.jsonl"
for steps in 0 3; do
    timeout 120 "$probe" cuda 8 8 4096 4096 64 $steps 5 fused >> "$log/ours.jsonl" || fail=1
    timeout 120 "$probe" cuda 8 8 4096 4096 64 $steps 3 materialised >> "$log/ours.jsonl" || fail=1
done
timeout 180 python3 "$here/gpu_compare.py" "$log/ours.jsonl" | tee "$log/table.txt" || fail=1

echo "== matmul: ours vs cubek-matmul (criterion medians; thrpt elem/s = FLOP/s)"
# Sample sizes as in the bench; 3 s of measurement per case keeps the 24 cases near two minutes.
timeout 300 "$work/matmul_bench" --bench matmul/cuda --measurement-time 3 --warm-up-time 1 > "$log/matmul.log" 2>&1 || fail=1
grep -A2 "^matmul/cuda" "$log/matmul.log" | grep -E "^matmul|time:|thrpt:" | paste - - - | tee "$log/matmul.txt"

echo "== training on CUDA: cloob-pretrain, the train-step bench, the PyTorch peer"
mkdir -p "$log/runs"
pretrain() {  # name, timeout, flags…
    local name=$1 limit=$2; shift 2
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$log/$name.mem" 2>/dev/null &
    local smi=$!
    timeout "$limit" "$work/cloob_pretrain" --quiet --logs "$log/runs" --name "$name" --zeroshot-frequency 0 \
        --save-frequency 0 --eval-size 200 "$@" > "$log/$name.log" 2>&1 || { fail=1; tail -3 "$log/$name.log"; }
    kill $smi 2>/dev/null
}
pretrain tiny-cuda 150 --device cuda --steps 200
pretrain small-cuda 150 --device cuda --model small --batch-size 256 --steps 50
# The CPU run of the same seed and schedule (200 steps), stopped after 20.
timeout 120 "$work/cloob_pretrain" --quiet --logs "$log/runs" --name tiny-cpu --zeroshot-frequency 0 --save-frequency 0 \
    --device cpu --steps 200 --stop-after 20 > "$log/tiny-cpu.log" 2>&1 || { fail=1; tail -3 "$log/tiny-cpu.log"; }
timeout 150 "$work/train_step_bench" --bench cuda/ --measurement-time 5 --warm-up-time 2 > "$log/train_step.log" 2>&1 || fail=1
timeout 120 python3 "$here/gpu_peer_step.py" cuda > "$log/peer.jsonl" 2>&1 || { fail=1; tail -3 "$log/peer.jsonl"; }
python3 "$here/gpu_train_report.py" "$log" | tee "$log/train.txt"
rm -rf "$work"
exit $fail
