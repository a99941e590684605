#!/usr/bin/env bash
# Builds graft for the GPU machines (H100/H200, Hopper) on the development machine:
# CUDA on with sm_90a code, Release, yaml-cpp and Boost.Program_options linked statically (the GPU
# machines lack Boost's library), cudart static. The stripped executables are copied to build-gpu/gpubin/
# (git-ignored, under build*/) so that a device run carries just them:
#
#   scripts/gpu-build.sh [targets...]        # default: graft test_cuda
#   run: carry ["build-gpu/gpubin"], command "build-gpu/gpubin/test_cuda --gtest_brief=1"
#
# Environment: BUILD_DIR (default build-gpu), JOBS (default 2), CUDA_ARCH (default 90a).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build-gpu}"
jobs="${JOBS:-2}"
arch="${CUDA_ARCH:-90a}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(graft test_cuda)

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRAFT_CUDA=ON \
  -DGRAFT_STATIC_DEPS=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
ninja -C "$build" -j"$jobs" "${targets[@]}"

out="$build/gpubin"
mkdir -p "$out"
for t in "${targets[@]}"; do
  if [ -x "$build/bin/$t" ]; then
    strip -o "$out/$t" "$build/bin/$t"
    echo "$out/$t: $(du -h "$out/$t" | cut -f1)"
  fi
done
# Shared libraries the GPU machine must provide (everything else is linked in).
ldd "$out/${targets[0]}" | awk '{print $1}' | grep -v -E '^(linux-vdso|/lib64)' | tr '\n' ' '
echo
