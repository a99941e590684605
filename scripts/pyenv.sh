#!/usr/bin/env bash
# The Python environment the tests share: a venv in .cache/pyenv (git-ignored), created with
# `python3 -m venv` when missing, with the given packages installed from PyPI when they are not
# importable yet (only the missing ones). Used by scripts/test.sh and by ctest entries that need
# Python packages (tests/python/).
#   scripts/pyenv.sh MODULE[=PIP_NAME] ...    e.g. scripts/pyenv.sh tensorboard
# Prints the venv's python on stdout; messages go to stderr. Exit 1 when the venv cannot be made
# or a package cannot be installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GRAFT_PYENV:-$root/.cache/pyenv}"
py="$venv/bin/python"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"  # tests running in parallel take turns creating and installing
flock 9
if [ ! -x "$py" ]; then
  base=python3
  [ -x /usr/bin/python3 ] && base=/usr/bin/python3  # Debian's, with python3-venv from setup.sh
  echo "pyenv: creating $venv" >&2
  "$base" -m venv "$venv" >&2 ||
    { rm -rf "$venv"; echo "pyenv: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
fi
missing=()
for spec in "$@"; do
  module="${spec%%=*}" pkg="${spec#*=}"
  "$py" -c "import $module" 2>/dev/null || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "pyenv: installing ${missing[*]} into $venv" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2 ||
    { echo "pyenv: pip install ${missing[*]} failed" >&2; exit 1; }
fi
echo "$py"
