#!/usr/bin/env bash
# Session 5, call 1: the deep 1B-shaped parity fixture written again (f32 reference loaded afresh,
# exact rotary frequencies) and graft's bf16 / f32 parity on it; the GPU tests (LazyGradGpu left for
# call 2); memory-bound kernel timings with the fused cross-entropy and SwiGLU; the 1B te step
# (profiled) with the fused cross-entropy; FP8 delayed with and without GRAFT_FP8_FUSED_ACT_BWD=1.
set -uo pipefail
BUDGET=${BUDGET:-560}
source "$(dirname "$0")/common.sh"
st deep fixture in the background
( timeout 300 python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; echo "deep_make rc=$?" >> $L/stages.log ) &
DEEP=$!
st tests
timeout $(tl 170) $b/test_cuda --gtest_brief=1 --gtest_filter='-LazyGradGpu.*' > $L/test_cuda.log 2>&1; rc test_cuda $?
st timings
timeout $(tl 40) $b/test_cuda --gtest_filter='*DISABLED_MemoryBoundKernelTimings' --gtest_also_run_disabled_tests > $L/timings.log 2>&1; rc timings $?
st bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
timeout $(tl 45) $b/graft bench "${B1[@]}" > $L/b1_te.json 2> $L/b1_te.err; rc b1_te $?
timeout $(tl 45) $b/graft bench "${B1[@]}" --profile --steps 3 > $L/b1_te_prof.json 2> $L/b1_te_prof.err; rc b1_te_prof $?
timeout $(tl 45) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed > $L/b1_delayed.json 2> $L/b1_delayed.err; rc b1_delayed $?
GRAFT_FP8_FUSED_ACT_BWD=1 timeout $(tl 45) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed > $L/b1_delayed_fab.json 2> $L/b1_delayed_fab.err; rc b1_delayed_fab $?
wait $DEEP
st deep parity
: > $L/deep_parity.jsonl
for run in "bf16 te" "f32 te" "bf16 reference"; do set -- $run
  timeout $(tl 150) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 2>&1 > $L/dp.out | ts >> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $1 $2 rc=$r" >> $L/stages.log; pk
done
cp /tmp/deep-llama/reference.json $L/ 2>/dev/null
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception: return None
for n in ['b1_te','b1_te_prof','b1_delayed','b1_delayed_fab']:
    r=last(n+'.json')
    if r: print(f"{n:15} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} loss {r.get('first_loss')}->{r.get('last_loss')}")
    else: print(n,'none')
r=last('b1_te_prof.json')
if r and r.get('profile'): print('profile', [(f['family'], round(f['ms_per_step'],2), f['calls_per_step']) for f in r['profile']['families']][:40])
for l in open(os.path.join(L,'deep_parity.jsonl')):
    try:
        pre,js=l.split('} ',1); d=json.loads(js); t=d.get('tolerances',{})
        print(pre+'}', {k:d.get(k) for k in ['pass','logits_rel_err','padded_logits_rel_err','grad_max_rel_err','grad_worst','step1_max_rel_err','loss_abs_err','generate_match']}, 'tol', t.get('logits_rel_err'), t.get('grad_max_rel_err'))
    except Exception as e: print('parity line', l[:300], e)
try: print('lowp', json.load(open(os.path.join(L,'reference.json'))).get('transformers_lowp_logits_rel_err'))
except Exception as e: print('no reference.json', e)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED|tests ran" $L/test_cuda.log | head -20
grep -h "BENCH" $L/timings.log | head -20
tail -3 $L/deep_make.log
