#!/usr/bin/env bash
# A test in which one rank waits for another that has left it must not hang graft_mpi_tests: the
# per-test watchdog (GRAFT_MPI_TEST_TIMEOUT_S, here 5 s) names the test and ends the job, well
# before the 120 s guard.
#   stuck_test.sh MPIRUN GRAFT_MPI_TESTS [extra mpirun flags...]
set -uo pipefail
mpirun="$1" binary="$2"
shift 2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
SECONDS=0
timeout -s KILL 120 "$mpirun" "$@" -x GRAFT_MPI_TEST_TIMEOUT_S=5 -np 2 "$binary" \
  --gtest_also_run_disabled_tests --gtest_filter='MpiHarness.DISABLED_*' >"$log" 2>&1
rc=$?
elapsed=$SECONDS
cat "$log"
echo "stuck_test: mpirun exited with $rc after ${elapsed} s"
fail=0
[ "$rc" -eq 0 ] && { echo "stuck_test: FAIL: mpirun exited 0"; fail=1; }
[ "$rc" -eq 137 ] && { echo "stuck_test: FAIL: killed by the 120 s guard: the job hung"; fail=1; }
[ "$elapsed" -gt 40 ] && { echo "stuck_test: FAIL: took more than 40 s"; fail=1; }
if ! grep -q "rank 0: MpiHarness.DISABLED_RankZeroWaitsForARankThatLeft still running after 5 s" "$log"; then
  echo "stuck_test: FAIL: no line from rank 0 naming the stuck test"
  fail=1
fi
exit "$fail"
