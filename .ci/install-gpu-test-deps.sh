#!/usr/bin/env bash
# Software Vulkan (Mesa lavapipe) for the CubeCL `wgpu` kernel tests on CPU-only CI machines.
# The default wgpu adapter is then llvmpipe; no environment variables are needed.
# Without an adapter the `wgpu` tests fail (they never skip).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
# XDG_RUNTIME_DIR=/tmp silences a harmless Mesa warning when the tests run.
