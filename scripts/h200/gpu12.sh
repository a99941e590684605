#!/usr/bin/env bash
# Session 4, call 1: every GPU test (CudaFp8Weights re-run), GEMM algorithm tuning
# (GRAFT_GEMM_TUNE) against the heuristic on the 1B (bf16, FP8) and 4 × 8B steps, the deep
# 1B-shaped parity fixture written by transformers, and the tiny Llama in FP8 at lr 1e-3.
set -uo pipefail
BUDGET=${BUDGET:-420}
source "$(dirname "$0")/common.sh"
st tests
timeout $(tl 150) $b/test_cuda --gtest_brief=1 > $L/test_cuda.log 2>&1; rc test_cuda $?
st tune
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te --steps 6 --warmup 2)
B8=(--recipe recipes/llama-3-8b.yaml --set model.layers=te --set model.config.num_hidden_layers=4 --set data.seq_len=8192 --steps 6 --warmup 2)
for t in 0 2; do
  GRAFT_GEMM_TUNE=$t timeout $(tl 45) $b/graft bench "${B1[@]}" > $L/b1_t$t.json 2> $L/b1_t$t.err; rc b1_t$t $?
  GRAFT_GEMM_TUNE=$t timeout $(tl 45) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed > $L/b1f_t$t.json 2> $L/b1f_t$t.err; rc b1f_t$t $?
  GRAFT_GEMM_TUNE=$t timeout $(tl 45) $b/graft bench "${B8[@]}" > $L/b8_t$t.json 2> $L/b8_t$t.err; rc b8_t$t $?
done
st tiny fp8 lr 1e-3
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir= --set optim.lr=1e-3 --set model.layers=te --set precision.params=bf16)
timeout $(tl 30) $b/graft train "${c[@]}" --metrics-out $L/tiny_bf16_lr1e3.jsonl > $L/tiny_bf16.log 2>&1; rc tiny_bf16 $?
timeout $(tl 30) $b/graft train "${c[@]}" --set precision.fp8.recipe=delayed --metrics-out $L/tiny_fp8_lr1e3.jsonl > $L/tiny_fp8.log 2>&1; rc tiny_fp8 $?
st deep fixture
timeout $(tl 150) python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; rc deep_make $?
: > $L/deep_parity.jsonl
for run in "bf16 te" "bf16 reference" "f32 te"; do set -- $run
  timeout $(tl 60) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 > $L/dp.out 2>> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $1 $2 rc=$r" >> $L/stages.log; pk
done
cp /tmp/deep-llama/reference_lowp.json $L/ 2>/dev/null
st done; pk
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|tests ran|PASSED" $L/test_cuda.log | head -20
for n in b1_t0 b1_t2 b1f_t0 b1f_t2 b8_t0 b8_t2; do tail -1 $L/$n.json 2>/dev/null | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print('$n', r['ms_per_step'], r['ms_min'], r['peak_mem_gib'], r['last_loss'])" 2>/dev/null || echo "$n none"; done
grep -h "gemm tune" $L/b1_t2.err | sort | uniq | cut -c1-150 | head -30
for n in tiny_bf16_lr1e3 tiny_fp8_lr1e3; do python3 -c "
import json; L=[json.loads(l) for l in open('$L/$n.jsonl') if '\"loss\"' in l]; L=[x['loss'] for x in L if 'loss' in x]; print('$n', len(L), sum(L[-10:])/10)" 2>/dev/null; done
cut -c1-600 $L/deep_parity.jsonl
cat $L/reference_lowp.json 2>/dev/null | cut -c1-400
