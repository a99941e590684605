#!/usr/bin/env bash
# A bad layout under mpirun: graft parity exits 2 and says so in one line (from rank 0 only).
#   parity_layout_error.sh MPIRUN GRAFT EXPECTED_TEXT [mpirun flags ...] -- [graft parity args ...]
set -u
mpirun="$1" graft="$2" expect="$3"
shift 3
flags=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do flags+=("$1"); shift; done
shift
err=$("$mpirun" "${flags[@]}" -np 2 "$graft" parity "$@" 2>&1 >/dev/null)
rc=$?
lines=$(printf '%s\n' "$err" | grep -c '^graft parity: ' || true)
others=$(printf '%s\n' "$err" | grep -c '^rank [0-9]*: ' || true)
if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || [ "$others" -ne 0 ]; then
  echo "expected exit 2 and one 'graft parity:' line, got exit $rc, $lines lines, $others per-rank:"
  printf '%s\n' "$err"
  exit 1
fi
if ! printf '%s\n' "$err" | grep -q -- "$expect"; then
  echo "the error does not say '$expect':"
  printf '%s\n' "$err"
  exit 1
fi
printf '%s\n' "$err" | grep '^graft parity: '
