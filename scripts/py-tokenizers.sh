#!/usr/bin/env bash
# Prints the path of a python3 that can `import tokenizers` (the Hugging Face package the
# tokenizer parity test compares with). When none can, installs it from PyPI into a venv,
# .cache/pyenv (GRAFT_PYENV overrides), first. Exits 1 with the reason on stderr when it cannot.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${GRAFT_PYENV:-$root/.cache/pyenv}"
has() { [ -x "$1" ] && "$1" -c 'import tokenizers' 2>/dev/null; }
if has "$venv/bin/python"; then echo "$venv/bin/python"; exit 0; fi
if command -v python3 >/dev/null && has "$(command -v python3)"; then command -v python3; exit 0; fi
command -v python3 >/dev/null || { echo "py-tokenizers: no python3" >&2; exit 1; }
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9  # one install at a time
if ! has "$venv/bin/python"; then
  if [ ! -x "$venv/bin/pip" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 ||
      { echo "py-tokenizers: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  fi
  echo "py-tokenizers: pip install tokenizers into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check tokenizers >&2 ||
    { echo "py-tokenizers: pip install tokenizers failed (no access to PyPI?)" >&2; exit 1; }
fi
has "$venv/bin/python" || { echo "py-tokenizers: tokenizers installed but not importable" >&2; exit 1; }
echo "$venv/bin/python"
