#!/usr/bin/env bash
# Fetches the cuDNN frontend's C++ headers (header-only, MIT) into .cache/cudnn-frontend/include.
# Pinned version. PyPI's nvidia-cudnn-frontend distributions carry include/; the source
# distribution is preferred, and the x86-64 wheel (same headers) is used where pip offers no
# sdist. Called by CMake at configure time when the headers are missing.
set -euo pipefail
version="${CUDNN_FRONTEND_VERSION:-1.32.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/cudnn-frontend"
[ -f "$dest/include/cudnn_frontend.h" ] && exit 0
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if python3 -m pip download --quiet --no-deps --no-binary=:all: \
     "nvidia-cudnn-frontend==$version" -d "$tmp" 2>/dev/null; then
  tar -xzf "$tmp"/*.tar.gz -C "$tmp"
  cp -r "$tmp"/nvidia*cudnn*frontend-"$version"/include "$dest/"
else
  python3 -m pip download --quiet --no-deps "nvidia-cudnn-frontend==$version" -d "$tmp"
  (cd "$dest" && unzip -q -o "$tmp"/*.whl 'include/*')
fi
test -f "$dest/include/cudnn_frontend.h"
echo "cuDNN frontend $version headers in $dest/include"
