#!/usr/bin/env bash
# Fuzzes the safetensors header parser: configures build-fuzz with clang (libFuzzer + ASan +
# UBSan), builds only the fuzz target (and its seed corpus from the fixtures' headers), and runs
# it for ${FUZZ_SECONDS:-60} seconds. Exits non-zero when the fuzzer finds a crash; the input
# that triggers it is saved as build-fuzz/fuzz-artifacts/crash-*.
#
#   FUZZ_SECONDS=600 scripts/fuzz.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
for tool in clang clang++ cmake ninja python3; do
  command -v "$tool" > /dev/null || { echo "fuzz.sh: $tool is not installed" >&2; exit 2; }
done
if [ ! -f "$build/CMakeCache.txt" ]; then
  mkdir -p "$build"
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DGRAFT_FUZZ=ON -DGRAFT_CUDA=OFF -DGRAFT_TESTS=ON > "$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; exit 1; }
fi
ninja -C "$build" -j"${FUZZ_JOBS:-2}" safetensors_header_fuzz
corpus="$build/fuzz-corpus"       # grows across runs; the seeds stay read-only
artifacts="$build/fuzz-artifacts"
mkdir -p "$corpus" "$artifacts"
echo "fuzz.sh: running safetensors_header_fuzz for ${seconds}s"
"$build/bin/safetensors_header_fuzz" -max_total_time="$seconds" -print_final_stats=1 \
  -dict="$root/tests/fuzz/safetensors.dict" -artifact_prefix="$artifacts/" \
  "$corpus" "$build/tests/fuzz/seeds"
