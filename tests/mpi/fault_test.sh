#!/usr/bin/env bash
# A rank that stops (SIGSTOP) or dies (SIGKILL) in the middle of a training loop must not hang
# the others: mpirun has to exit non-zero within parallel.timeout_s (5 s) + 30 s, and the output
# must carry graft's line naming the collective and the group.
#   fault_test.sh MPIRUN GRAFT_MPI_TESTS sigstop|sigkill [extra mpirun flags...]
set -uo pipefail
mpirun="$1" binary="$2" kind="$3"
shift 3
limit=35
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
SECONDS=0
timeout -s KILL 120 "$mpirun" "$@" -np 2 "$binary" "--fault=$kind" >"$log" 2>&1
rc=$?
elapsed=$SECONDS
cat "$log"
echo "fault_test: $kind: mpirun exited with $rc after ${elapsed} s"
fail=0
if [ "$rc" -eq 0 ]; then
  echo "fault_test: FAIL: mpirun exited 0"
  fail=1
fi
if [ "$rc" -eq 137 ] && ! grep -q "collective all_reduce on group dp" "$log"; then
  echo "fault_test: FAIL: killed by the 120 s guard: the surviving rank hung"
  fail=1
fi
if [ "$elapsed" -gt "$limit" ]; then
  echo "fault_test: FAIL: took more than $limit s"
  fail=1
fi
if ! grep -Eq "^rank 0: .*collective all_reduce on group dp \(2 ranks, mpi\)" "$log"; then
  echo "fault_test: FAIL: no line from rank 0 naming the collective all_reduce and the group dp"
  fail=1
fi
exit "$fail"
