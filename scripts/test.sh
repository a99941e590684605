#!/usr/bin/env bash
# The whole test suite: set up what is missing (Debian packages; the Python venv .cache/pyenv via
# scripts/pyenv.sh), build, run every test (GPU tests skip without a GPU), the safetensors header
# fuzzer for a bounded time, and the clang-format check.
#   FUZZ_SECONDS  fuzzing time (default 60; 0 skips the fuzzer)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${GRAFT_BUILD_DIR:-$root/build}"
start=$(date +%s)
"$root/scripts/setup.sh"
built=$(date +%s)
echo "test: build took $((built - start)) s"

echo "test: clang-format check"
cd "$root"
git ls-files -- '*.h' '*.cpp' '*.cu' '*.cuh' | xargs -r clang-format --dry-run -Werror

# Python packages the tests read graft's files with (python.tensorboard), in .cache/pyenv.
echo "test: python packages (.cache/pyenv)"
"$root/scripts/pyenv.sh" tensorboard pyarrow >/dev/null ||
  echo "test: the tensorboard package could not be installed: python.tensorboard will SKIP"
# The Hugging Face tokenizers package for tokenizer.hf_parity (a venv under .cache/ if needed).
"$root/scripts/py-tokenizers.sh" >/dev/null ||
  echo "test: the tokenizers package cannot be installed: tokenizer.hf_parity will skip"

echo "test: ctest"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 600

if [ "${FUZZ_SECONDS:-60}" != "0" ] && [ -x "$root/scripts/fuzz.sh" ]; then
  echo "test: fuzzing the safetensors header parser for ${FUZZ_SECONDS:-60} s"
  "$root/scripts/fuzz.sh"
fi
echo "test: all passed in $(( $(date +%s) - start )) s"
