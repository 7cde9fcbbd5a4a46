#!/usr/bin/env bash
# Build, on this (CPU) machine, everything the GPU machine runs, and pack it into .gpu/ (git-ignored):
#   .gpu/bin.tar.xz      stripped `cuda,cubek` binaries: the kernel tests (hopfield lib), the layer and fixture
#                        tests, the association_probe timing example, the association and matmul benches,
#                        cloob-pretrain and cloob's train-step bench (its `cuda/` cases)
#   .gpu/fixtures/       the hflayers golden cases; .gpu/sparse-fixtures/ the sparse retrieval cases
#   .gpu/gpu-run.sh, .gpu/gpu_compare.py, .gpu/gpu_peer_step.py, .gpu/gpu_train_report.py   the runner and its
#                        helpers (needs only the NVIDIA driver, xz and PyTorch there)
# Then on the GPU machine, from the directory holding .gpu/:  bash .gpu/gpu-run.sh
# (Before that, on this machine: the same binaries start and report `NoSuchDevice`: bash .gpu/gpu-run.sh --no-gpu.)
# Needs scripts/setup-tracel-llvm.sh once (CubeCL's CUDA backend links LLVM). No GPU needed here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# The release profile as is (no debug info): a profile override here would rebuild every dependency. The
# copies are stripped before packing (what travels is limited to 64 MiB).

scripts/setup-tracel-llvm.sh >/dev/null

out=.gpu
rm -rf "$out"
mkdir -p "$out/fixtures" "$out/sparse-fixtures"

# Executables of a cargo build, from its JSON messages.
executables() {
    python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"): print(m["executable"])'
}

# One feature set for everything (`--release --features cuda,cubek` on the root package, wgpu stays on by
# default): the builds share their artifacts with `cargo build --release --features cuda,cubek --tests
# --benches`. The hopfield lib tests are built with the root package selected too, so that features unify
# the same way (hopfield alone would rebuild the dependency tree). With `cuda` built in, the tests run on
# CUDA device 0; with `cubek`, the layers' matrix products go through cubek-matmul (the kernel tests check
# our kernel and cubek's routines one by one) and the matmul bench compares the two (docs/cubecl.md).
features=cuda,cubek,cloob/cuda
{
    cargo test --release --no-run --message-format=json -p hopfield-workspace -p hopfield --features $features --lib
    cargo test --release --no-run --message-format=json -p hopfield-workspace -p hopfield --features $features --test cube_backend --test hflayers_fixtures --test retrieval
    cargo build --release --message-format=json --features $features --example association_probe
    cargo build --release --message-format=json -p hopfield-workspace -p hopfield --features $features --bench association --bench matmul
    cargo build --release --message-format=json -p hopfield-workspace -p cloob --features $features --bin cloob-pretrain --bench train_step
} | executables > "$out/executables.txt"

mkdir -p "$out/stage"
while read -r exe; do
    base=$(basename "$exe")
    case "$base" in
        hopfield-*) name=kernel_tests ;;
        cube_backend-*) name=layer_tests ;;
        hflayers_fixtures-*) name=fixture_tests ;;
        retrieval-*) name=retrieval_tests ;;
        association_probe) name=association_probe ;;
        association-*) name=association_bench ;;
        matmul-*) name=matmul_bench ;;
        cloob-pretrain) name=cloob_pretrain ;;
        train_step-*) name=train_step_bench ;;
        *) continue ;;
    esac
    cp "$exe" "$out/stage/$name"
    strip --strip-all "$out/stage/$name"
done < "$out/executables.txt"
for name in kernel_tests layer_tests fixture_tests retrieval_tests association_probe association_bench matmul_bench \
    cloob_pretrain train_step_bench; do
    [ -x "$out/stage/$name" ] || { echo "missing binary: $name" >&2; exit 1; }
done
# One xz stream over all binaries with a dictionary larger than one binary: they share most of their code
# (CubeCL, LLVM), which then compresses once instead of five times.
tar -C "$out/stage" -cf - . | xz -T1 -9 --lzma2=preset=9,dict=512MiB > "$out/bin.tar.xz"
rm -rf "$out/stage"

cp hopfield/tests/fixtures/hflayers/* "$out/fixtures/"
cp hopfield/tests/fixtures/sparse/* "$out/sparse-fixtures/"
cp scripts/gpu-run.sh scripts/gpu_compare.py scripts/gpu_peer_step.py scripts/gpu_train_report.py "$out/"
du -sh "$out"/bin.tar.xz "$out"
total=$(du -sm "$out" | cut -f1)
if [ "$total" -gt 60 ]; then
    echo "warning: $out is ${total} MiB; the GPU machine takes at most 64 MiB" >&2
fi
