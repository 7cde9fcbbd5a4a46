#!/usr/bin/env bash
# Let CubeCL's CUDA backend (cubecl-llvm → tracel-llvm-bundler) build without downloading its LLVM bundle:
# install Debian's LLVM 22 and put, where the bundler looks for its bundle
# ($XDG_DATA_HOME or ~/.local/share)/tracel/tracel-llvm-<version>/, a sentinel `.tracel-llvm-installed`
# and a `bin/llvm-config` that forwards to `llvm-config-22`. The bundler turns every `--system-libs`
# token into a bare library name and mangles a full path such as /usr/lib/.../libz3.so, so the wrapper
# rewrites that path to `-lz3`.
#
# The bundle version is read from the tracel-llvm-bundler crate in the cargo registry (run
# `cargo fetch` first), or given as $1 (e.g. 23.1.0-4).
set -euo pipefail

version="${1:-}"
if [ -z "$version" ]; then
    crate=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tracel-llvm-bundler-* 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$crate" ] || { echo "tracel-llvm-bundler not in the cargo registry: run 'cargo fetch' or pass the version" >&2; exit 1; }
    v=$(sed -n 's/^pub const TRACEL_LLVM_VERSION: &str = "\(.*\)";/\1/p' "$crate/src/config.rs")
    r=$(sed -n 's/^pub const TRACEL_LLVM_RELEASE_NUMBER: &str = "\(.*\)";/\1/p' "$crate/src/config.rs")
    version="$v-$r"
fi

if ! command -v llvm-config-22 >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq llvm-22-dev libpolly-22-dev libzstd-dev
fi

dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-$version"
mkdir -p "$dir/bin"
wrapper=$(cat <<'WRAP'
#!/usr/bin/env bash
# Forwards to Debian's llvm-config-22 (written by scripts/setup-tracel-llvm.sh).
if [[ " $* " == *" --system-libs "* ]]; then
    llvm-config-22 "$@" | sed -E 's#(^| )/[^ ]*/libz3\.so[^ ]*#\1-lz3#g'
else
    exec llvm-config-22 "$@"
fi
WRAP
)
# Write the wrapper and the sentinel only when they change: the LLVM bundler's build script reruns when
# the sentinel's time stamp changes (llvm-sys likewise for llvm-config), and with it cubecl-llvm,
# cubecl-cuda, cubecl and everything above (a rewrite here rebuilt the whole cuda tree on every
# scripts/gpu-check.sh).
if [ "$(cat "$dir/bin/llvm-config" 2>/dev/null)" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" > "$dir/bin/llvm-config"
fi
chmod +x "$dir/bin/llvm-config"
[ -e "$dir/.tracel-llvm-installed" ] || touch "$dir/.tracel-llvm-installed"
echo "tracel-llvm $version -> $(llvm-config-22 --version) at $dir"
