#!/usr/bin/env bash
# Builds and runs tests/downstream: a crate outside the workspace, as a user writes one, that depends on
# hopfield-layers by path and version under the renamed key `hl`, uses rand 0.9 itself, derives
# `Parameters` for its own Linear → ReLU → HopfieldPooling → Linear model and trains it with AdamW; it exits
# non-zero unless the loss decreases. Its lock file is committed (`--locked`); the build shares this
# workspace's target directory, so the dependencies it has in common with the release build are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
# Outside the workspace, so `cargo fmt --all` does not see it.
rustfmt --edition 2021 --check tests/downstream/src/main.rs
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo run --release --locked --manifest-path tests/downstream/Cargo.toml
