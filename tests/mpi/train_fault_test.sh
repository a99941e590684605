#!/usr/bin/env bash
# `graft train` at dp2 with one rank stopped (SIGSTOP) or killed (SIGKILL, after hanging 4 s)
# after its third logged step: the job must end non-zero within parallel.timeout_s (5 s) + 30 s, and the surviving rank
# must print graft's line naming the collective in flight and its group. The signalled rank is
# found by its OMPI_COMM_WORLD_RANK=1 in /proc/PID/environ.
#   train_fault_test.sh MPIRUN GRAFT RECIPE sigstop|sigkill [extra mpirun flags...]
set -uo pipefail
mpirun="$1" graft="$2" recipe="$3" kind="$4"
shift 4
limit=35
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
metrics="$work/metrics.jsonl"
timeout -s KILL 150 "$mpirun" "$@" -np 2 "$graft" train --recipe "$recipe" \
  --set train.steps=2000 --set logging.every=1 --set logging.progress=plain \
  --set parallel.timeout_s=5 --set train.sample_tokens=0 \
  --set data.cache_dir="$work/cache" --metrics-out "$metrics" >"$work/log" 2>&1 &
job=$!
for _ in $(seq 600); do  # up to 60 s for data preparation and three steps
  [ -f "$metrics" ] && [ "$(wc -l <"$metrics")" -ge 3 ] && break
  sleep 0.1
done
victim=""
for pid in $(pgrep -f -- "$graft train --recipe $recipe"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then
    victim=$pid
  fi
done
if [ -z "$victim" ]; then
  cat "$work/log"
  echo "train_fault_test: FAIL: rank 1 not found (did training start?)"
  kill -9 "$job" 2>/dev/null
  exit 1
fi
SECONDS=0
# sigkill: stop rank 1 first and kill it 4 s later, so that rank 0 is surely waiting in a
# collective when mpirun tears the job down (a rank killed while the other computes leaves no
# collective to name: then rank 0 says "no collective was in flight", which is not this test).
if [ "$kind" = sigstop ]; then
  kill -STOP "$victim"
else
  kill -STOP "$victim"
  sleep 4
  kill -KILL "$victim"
fi
wait "$job"  # the 150 s timeout(1) guard ends a hung job
rc=$?
elapsed=$SECONDS
kill -9 "$victim" 2>/dev/null
cat "$work/log"
echo "train_fault_test: $kind of rank 1 (pid $victim): mpirun exited with $rc after ${elapsed} s"
fail=0
[ "$rc" -ne 0 ] || { echo "train_fault_test: FAIL: exit code 0"; fail=1; }
[ "$elapsed" -le "$limit" ] || { echo "train_fault_test: FAIL: more than $limit s"; fail=1; }
if ! grep -Eq "^rank 0: .*collective [a-z_]+ on group [a-z_]+ \(2 ranks, mpi\)" "$work/log"; then
  echo "train_fault_test: FAIL: no line from rank 0 naming the collective and its group"
  fail=1
fi
exit "$fail"
