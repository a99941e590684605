#!/usr/bin/env bash
# The main job: set up what is missing, build, and train the embedded CPU default recipe
# (a small Llama on the byte-level text of /usr/share/common-licenses), then print a sample.
# Extra arguments go to `graft train` (e.g. --set train.steps=100).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" graft  # the executable only; scripts/test.sh builds the tests
cd "$root"
exec "${GRAFT_BUILD_DIR:-$root/build}/bin/graft" train --recipe recipes/tiny-cpu.yaml "$@"
