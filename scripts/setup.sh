#!/usr/bin/env bash
# Sets up whatever is missing on a fresh Debian 12 / Ubuntu 24.04 machine, then configures and
# builds graft in ./build (quick when already done). Sourced by scripts/main.sh and scripts/test.sh.
#   GRAFT_BUILD_DIR   build folder (default: build)
#   GRAFT_CUDA        ON / OFF / AUTO (default AUTO: on when /usr/local/cuda/bin/nvcc exists)
#   GRAFT_JOBS        parallel compile jobs (default: number of cores)
# Arguments: build targets (default: everything, tests included).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GRAFT_BUILD_DIR:-$root/build}"
jobs="${GRAFT_JOBS:-$(nproc)}"

packages=(cmake ninja-build g++ ccache pkg-config libyaml-cpp-dev libboost-program-options-dev
          libopenmpi-dev openmpi-bin libgtest-dev nlohmann-json3-dev libopenblas-dev
          clang clang-format libclang-rt-dev procps zlib1g-dev libzstd-dev
          libprotobuf-dev protobuf-compiler python3-venv libpcre2-dev libunistring-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if command -v ccache >/dev/null; then
  export CCACHE_DIR="${CCACHE_DIR:-$root/.cache/ccache}"
  ccache --max-size=5G >/dev/null 2>&1 || true
fi

if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGRAFT_CUDA="${GRAFT_CUDA:-AUTO}"
fi
cmake --build "$build" -j "$jobs" ${1:+--target "$@"}
