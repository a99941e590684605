#!/usr/bin/env bash
# Session 4, call 3: every GPU test of the merged helper branches (per-test times), and the deep
# 1B-shaped parity fixture (transformers, written in the background while the tests run) in bf16
# with the reference layers (call 2 ran te).
set -uo pipefail
BUDGET=${BUDGET:-380}
source "$(dirname "$0")/common.sh"
st deep fixture in the background
( timeout 300 python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; echo "deep_make rc=$?" >> $L/stages.log ) &
DEEP=$!
st tests
timeout $(tl 200) $b/test_cuda --gtest_print_time=1 2>&1 | grep -E "^\[ *(OK|FAILED|SKIPPED|RUN) *\]|Failure|Expected|Which is|evaluates|PASSED|tests ran" | ts > $L/test_cuda.log; rc test_cuda $?
wait $DEEP
st deep parity
: > $L/deep_parity.jsonl
for run in "bf16 reference"; do set -- $run
  timeout $(tl 150) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 2>&1 > $L/dp.out | ts >> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $1 $2 rc=$r" >> $L/stages.log; pk
done
cp /tmp/deep-llama/reference_lowp.json $L/ 2>/dev/null
st done; pk
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -E "FAILED|PASSED|tests ran" $L/test_cuda.log | head -20
grep -E "OK \]" $L/test_cuda.log | sed -E 's/.*OK \] ([^ ]+) \(([0-9]+) ms\)/\2 \1/' | sort -rn | head -8
tail -2 $L/test_cuda.log
cut -c1-900 $L/deep_parity.jsonl
cat $L/reference_lowp.json 2>/dev/null | cut -c1-300
