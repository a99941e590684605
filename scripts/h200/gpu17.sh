#!/usr/bin/env bash
# Session 5, call 2: after merging the fp8dbias and residual branches — every GPU test (LazyGradGpu
# included); memory-bound and FP8 cast timings (cross-entropy with ex2.approx, the FP8
# cast+transpose with the bias gradient); graft_mpi_tests -np 2 on the one GPU (MPI-staged);
# `precision.residual: f32` on the deep fixture (its accuracy figure) and on the 1B step (its cost).
set -uo pipefail
BUDGET=${BUDGET:-540}
source "$(dirname "$0")/common.sh"
st deep fixture in the background
( timeout 300 python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; echo "deep_make rc=$?" >> $L/stages.log ) &
DEEP=$!
st tests
timeout $(tl 230) $b/test_cuda --gtest_brief=1 > $L/test_cuda.log 2>&1; rc test_cuda $?
st timings
timeout $(tl 60) $b/test_cuda --gtest_filter='*DISABLED_MemoryBoundKernelTimings:*DISABLED_Fp8CastTimings' --gtest_also_run_disabled_tests > $L/timings.log 2>&1; rc timings $?
st mpi
timeout $(tl 60) "${mpi[@]}" $b/graft_mpi_tests --gtest_filter='*Cuda*' > $L/mpi.log 2>&1; rc mpi_np2 $?
st bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
timeout $(tl 45) $b/graft bench "${B1[@]}" > $L/b1_te.json 2> $L/b1_te.err; rc b1_te $?
timeout $(tl 45) $b/graft bench "${B1[@]}" --set precision.residual=f32 > $L/b1_res32.json 2> $L/b1_res32.err; rc b1_res32 $?
timeout $(tl 45) $b/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=reference --profile --steps 3 > $L/b1_ref_prof.json 2> $L/b1_ref_prof.err; rc b1_ref_prof $?
wait $DEEP
st deep parity
: > $L/deep_parity.jsonl
for run in "bf16 te f32" "bf16 reference f32"; do set -- $run
  timeout $(tl 100) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 --residual $3 2>&1 > $L/dp.out | ts >> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 residual $3 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $* rc=$r" >> $L/stages.log; pk
done
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception: return None
for n in ['b1_te','b1_res32']:
    r=last(n+'.json')
    if r: print(f"{n:10} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} residual {r.get('residual')} loss {r.get('first_loss')}->{r.get('last_loss')}")
    else: print(n,'none')
r=last('b1_ref_prof.json')
if r and r.get('profile'): print('ref profile', r['ms_per_step'], [(f['family'], round(f['ms_per_step'],2), f['calls_per_step']) for f in r['profile']['families']][:40])
for l in open(os.path.join(L,'deep_parity.jsonl')):
    try:
        pre,js=l.split('} ',1); d=json.loads(js); t=d.get('tolerances',{})
        print(pre+'}', {k:d.get(k) for k in ['pass','logits_rel_err','padded_logits_rel_err','grad_max_rel_err','step1_max_rel_err','loss_abs_err','generate_match']})
    except Exception as e: print('parity line', l[:300], e)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED|tests ran" $L/test_cuda.log | head -20
grep -hE "PASSED|FAILED" $L/mpi.log | sort | uniq -c | head
grep -h "BENCH" $L/timings.log | head -30
