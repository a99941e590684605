#!/usr/bin/env bash
# Session 3, call 3: main after the fused kernels — every GPU test, then the headline table from one
# call: floor, graft te/reference bf16, te FP8 delayed/current (1B and 4 x 8B layers), PyTorch
# baselines, tiny 200-step FP8 vs bf16 (every step logged), the recipe's own loop.
set -uo pipefail
BUDGET=${BUDGET:-500}
source "$(dirname "$0")/common.sh"
st test_cuda
timeout $(tl 90) $b/test_cuda --gtest_brief=1 > $L/test_cuda.log 2>&1; rc test_cuda $?
timeout $(tl 40) $b/test_cuda --gtest_filter='CudaBench.DISABLED_FusedKernelTimings' --gtest_also_run_disabled_tests > $L/fused_timings.log 2>&1; rc fused_timings $?
st floor
timeout $(tl 60) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?
B1=(--recipe recipes/llama-3.2-1b.yaml)
B8=(--recipe recipes/llama-3-8b.yaml --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
st bench 1b
timeout $(tl 55) $b/graft bench "${B1[@]}" --set model.layers=te --profile > $L/b1_te.json 2> >(ts > $L/b1_te.err); rc b1_te $?
timeout $(tl 55) $b/graft bench "${B1[@]}" --set model.layers=reference > $L/b1_ref.json 2> $L/b1_ref.err; rc b1_ref $?
timeout $(tl 55) $b/graft bench "${B1[@]}" --set model.layers=te --set precision.fp8.recipe=delayed --profile > $L/b1_delayed.json 2> $L/b1_delayed.err; rc b1_delayed $?
timeout $(tl 55) $b/graft bench "${B1[@]}" --set model.layers=te --set precision.fp8.recipe=current > $L/b1_current.json 2> $L/b1_current.err; rc b1_current $?
st hf_baseline
timeout $(tl 170) python3 .shared/bench/hf_baseline.py amp-eager,bf16-eager,amp-compile > $L/hf.jsonl 2> $L/hf.err; rc hf $?
st bench 8b4
timeout $(tl 60) $b/graft bench "${B8[@]}" --set model.layers=te > $L/b8_te.json 2> >(ts > $L/b8_te.err); rc b8_te $?
timeout $(tl 60) $b/graft bench "${B8[@]}" --set model.layers=te --set precision.fp8.recipe=delayed > $L/b8_delayed.json 2> $L/b8_delayed.err; rc b8_delayed $?
st tiny 200
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=bf16 --set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir=)
for r in none delayed current; do timeout $(tl 30) $b/graft train "${c[@]}" --set model.layers=te --set precision.fp8.recipe=$r --metrics-out $L/tiny_$r.jsonl > $L/tiny_$r.log 2>&1; rc tiny_$r $?; done
timeout $(tl 30) $b/graft train "${c[@]}" --set model.layers=reference --metrics-out $L/tiny_ref.jsonl > $L/tiny_ref.log 2>&1; rc tiny_ref $?
st train loop
timeout $(tl 70) $b/graft bench "${B1[@]}" --set model.layers=te --train-loop --steps 3 --warmup 1 > $L/b1_loop.json 2> >(ts > $L/b1_loop.err); rc b1_loop $?
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception as e: return None
for f in ['floor.jsonl','hf.jsonl']:
    for l in open(os.path.join(L,f)) if os.path.exists(os.path.join(L,f)) else []: print(f[:5], l.strip()[:260])
for n in ['b1_te','b1_ref','b1_delayed','b1_current','b8_te','b8_delayed']:
    r=last(n+'.json')
    if r: print(f"{n:12} {r['ms_per_step']:8.1f} ms  mem {r['peak_mem_gib']:.2f} GiB tok/s {r['tokens_per_s']} attn {r.get('attention')} fp8 {r.get('fp8')} loss {r.get('last_loss')}")
    else: print(n,'none')
r=last('b1_loop.json'); print('loop', r and r.get('train_loop'), r and r.get('ms_per_step'))
def losses(n):
    p=os.path.join(L,n)
    return [json.loads(l)['loss'] for l in open(p) if l.startswith('{')] if os.path.exists(p) else []
a=losses('tiny_none.jsonl')
m=lambda x: sum(x[-10:])/len(x[-10:])
for r in ['delayed','current','ref']:
    b=losses(f'tiny_{r}.jsonl')
    if a and b: print('tiny200',r,'steps',len(b),'last10',round(m(b),4),'te bf16 last10',round(m(a),4),'rel',round((m(b)-m(a))/m(a),4))
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -E "FAILED|PASSED" $L/test_cuda.log | head
grep -h "set-up" $L/b1_te.err $L/b8_te.err
