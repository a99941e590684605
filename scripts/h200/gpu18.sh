#!/usr/bin/env bash
# Session 5, call 3: the deep fixture written once more, now with transformers' per-step
# top-1/top-2 margins (generate_margins), and graft parity on it: bf16 te, bf16 te with
# precision.residual f32, f32 te; while the fixture is written, the GPU tests of what changed
# since call 2 (cross-entropy's two-kernel fwd_bwd, parity) and the cross-entropy timing.
set -uo pipefail
BUDGET=${BUDGET:-330}
source "$(dirname "$0")/common.sh"
st deep fixture in the background
( timeout 240 python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; echo "deep_make rc=$?" >> $L/stages.log ) &
DEEP=$!
st tests
timeout $(tl 90) $b/test_cuda --gtest_brief=1 --gtest_filter='CudaXent*:*Parity*:CudaCrossEntropy*:CudaGraphTrain.ConstantLr*' > $L/test_cuda.log 2>&1; rc test_cuda $?
timeout $(tl 30) $b/test_cuda --gtest_filter='*DISABLED_MemoryBoundKernelTimings' --gtest_also_run_disabled_tests > $L/timings.log 2>&1; rc timings $?
wait $DEEP
st deep parity
: > $L/deep_parity.jsonl
for run in "bf16 te bf16" "bf16 te f32" "f32 te f32"; do set -- $run
  timeout $(tl 90) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 --residual $3 2>&1 > $L/dp.out | ts >> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 residual $3 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $* rc=$r" >> $L/stages.log; pk
done
cp /tmp/deep-llama/reference.json $L/ 2>/dev/null
python3 -c "
from safetensors import safe_open
f=safe_open('/tmp/deep-llama/reference.safetensors','pt'); print('margins', [round(x,4) for x in f.get_tensor('generate_margins').tolist()]); print('gen', f.get_tensor('generate_ids').tolist())" > $L/margins.txt 2>&1
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
for l in open(os.path.join(L,'deep_parity.jsonl')):
    try:
        pre,js=l.split('} ',1); d=json.loads(js)
        print(pre+'}', {k:d.get(k) for k in ['pass','logits_rel_err','padded_logits_rel_err','grad_max_rel_err','step1_max_rel_err','loss_abs_err','generate_match','generate_consistent','generate_near_ties']}, d.get('generated'))
    except Exception as e: print('parity line', l[:300], e)
try: print('lowp', json.load(open(os.path.join(L,'reference.json'))).get('transformers_lowp_logits_rel_err'))
except Exception as e: print('no reference.json', e)
PY
cat $L/margins.txt
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED|tests ran" $L/test_cuda.log | head -20
grep -h "BENCH" $L/timings.log | grep -E "copy|xent"
tail -2 $L/deep_make.log | cut -c1-300
