#!/usr/bin/env bash
# Session 3, call 1: FP8 GPU path first run — kernel/layer/train tests, parity --fp8 on the GPU,
# 1B bench bf16 vs delayed (profiled), and where graft train's first 1B steps spend their time.
set -uo pipefail
b=build-gpu/gpubin
L=/tmp/logs; mkdir -p $L
st() { echo "== $(date -u +%H:%M:%S) $*" | tee -a $L/stages.log; }
pk() { tar czf $OUT/logs.tgz -C /tmp logs; }
ts() { while IFS= read -r l; do echo "$(date -u +%H:%M:%S.%N | cut -c1-12) $l"; done; }
st fp8 tests
timeout 100 $b/test_cuda --gtest_brief=1 --gtest_filter='*Fp8*' > $L/t_fp8.log 2>&1; echo "t_fp8 rc=$?" | tee -a $L/stages.log; pk
st parity fp8
for fx in llama-gqa qwen3-qknorm gemma-mqa; do for r in delayed current; do
timeout 25 $b/graft parity --checkpoint tests/fixtures/hf/$fx --device cuda --dtype bf16 --layers te --fp8 $r >> $L/parity_fp8.jsonl 2>> $L/parity_fp8.err; echo "parity $fx $r rc=$?" | tee -a $L/stages.log; done; done; pk
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
st bench bf16
timeout 60 $b/graft bench "${B1[@]}" > $L/b1_none.json 2> $L/b1_none.err; echo "b1 none rc=$?" | tee -a $L/stages.log; pk
st bench delayed
timeout 75 $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --profile > $L/b1_delayed.json 2> >(ts > $L/b1_delayed.err); echo "b1 delayed rc=$?" | tee -a $L/stages.log; pk
st train 1b
timeout 60 $b/graft train "${B1[@]}" --set train.steps=3 --set train.grad_accum=2 --set logging.every=1 --set checkpoint.dir= --set logging.progress=plain 2>&1 | ts > $L/train1b.log; echo "train rc=${PIPESTATUS[0]}" | tee -a $L/stages.log; pk
st rest of test_cuda
timeout 100 $b/test_cuda --gtest_brief=1 --gtest_filter='-*Fp8*' > $L/t_rest.log 2>&1; echo "t_rest rc=$?" | tee -a $L/stages.log; pk
st done; pk
grep -hE "FAILED|PASSED" $L/t_fp8.log $L/t_rest.log | head -20
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
for l in open(os.path.join(L,'parity_fp8.jsonl')) if os.path.exists(os.path.join(L,'parity_fp8.jsonl')) else []:
    try:
        r=json.loads(l); print({k:r.get(k) for k in ['checkpoint','fp8','pass','logits_rel_err','loss_abs_err']})
    except Exception: pass
for n in ['b1_none','b1_delayed']:
    try:
        r=json.loads(open(os.path.join(L,n+'.json')).read().strip().splitlines()[-1])
        print(f"{n:12} {r['ms_per_step']:8.1f} ms  mem {r['peak_mem_gib']:.2f} GiB attn {r.get('attention')} fp8 {r.get('fp8')} loss {r.get('last_loss')}")
    except Exception as e: print(n,'err',e)
PY
grep rc= $L/stages.log | grep -v rc=0
tail -5 $L/train1b.log
