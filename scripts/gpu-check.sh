#!/usr/bin/env bash
# Build, on this (CPU) machine, everything the GPU machine runs, and pack it into .gpu/ (git-ignored):
#   .gpu/bin/*.xz        stripped `cuda` binaries: the kernel tests (hopfield lib), the layer and fixture
#                        tests, the association_probe timing example, the association bench
#   .gpu/fixtures/       the hflayers golden cases
#   .gpu/gpu-run.sh, .gpu/gpu_compare.py   the runner (needs only the NVIDIA driver, xz and PyTorch there)
# Then on the GPU machine, from the directory holding .gpu/:  bash .gpu/gpu-run.sh
# Needs scripts/setup-tracel-llvm.sh once (CubeCL's CUDA backend links LLVM). No GPU needed here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# Small binaries: no debug info, stripped (the limit for what travels is 64 MiB).
export CARGO_PROFILE_TEST_DEBUG=false CARGO_PROFILE_TEST_STRIP=true
export CARGO_PROFILE_BENCH_DEBUG=false CARGO_PROFILE_BENCH_STRIP=true
export CARGO_PROFILE_RELEASE_STRIP=true

scripts/setup-tracel-llvm.sh >/dev/null

out=.gpu
rm -rf "$out"
mkdir -p "$out/bin" "$out/fixtures"

# Executables of a cargo build, from its JSON messages.
executables() {
    python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"): print(m["executable"])'
}

{
    cargo test --no-run --message-format=json -p hopfield --features cuda --lib
    cargo test --no-run --message-format=json --features cuda --test cube_backend --test hflayers_fixtures
    cargo build --release --message-format=json --features cuda --example association_probe
    cargo bench --no-run --message-format=json --features cuda --bench association
} | executables > "$out/executables.txt"

while read -r exe; do
    base=$(basename "$exe")
    case "$base" in
        hopfield-*) name=kernel_tests ;;
        cube_backend-*) name=layer_tests ;;
        hflayers_fixtures-*) name=fixture_tests ;;
        association_probe) name=association_probe ;;
        association-*) name=association_bench ;;
        *) continue ;;
    esac
    xz -T0 -6 -c "$exe" > "$out/bin/$name.xz"
done < "$out/executables.txt"

cp ../shared/fixtures/hflayers/* "$out/fixtures/"
cp scripts/gpu-run.sh scripts/gpu_compare.py "$out/"
du -sh "$out"/bin/* "$out"
total=$(du -sm "$out" | cut -f1)
if [ "$total" -gt 60 ]; then
    echo "warning: $out is ${total} MiB; the GPU machine takes at most 64 MiB" >&2
fi
