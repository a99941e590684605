#!/usr/bin/env bash
# Session 5, call 4 (headline): floor.py, the PyTorch baselines and graft in one call — te,
# reference, FP8 delayed / current / fp8_weights, precision.residual f32, te and FP8 profiles, the
# 4 x 8B workload in bf16 and FP8, and the recipe's own loop.
set -uo pipefail
BUDGET=${BUDGET:-540}
source "$(dirname "$0")/common.sh"
st floor
timeout $(tl 60) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?
st hf_baseline
timeout $(tl 170) python3 .shared/bench/hf_baseline.py amp-eager,bf16-eager,amp-compile > $L/hf.jsonl 2> $L/hf.err; rc hf $?
st bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
B8=(--recipe recipes/llama-3-8b.yaml --set model.layers=te --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
bench() { local n=$1; shift; timeout $(tl 40) $b/graft bench "$@" > $L/$n.json 2> $L/$n.err; rc $n $?; }
bench b1_te "${B1[@]}"
bench b1_delayed "${B1[@]}" --set precision.fp8.recipe=delayed
bench b1_ref --recipe recipes/llama-3.2-1b.yaml --set model.layers=reference
bench b8_te "${B8[@]}"
bench b8_delayed "${B8[@]}" --set precision.fp8.recipe=delayed
bench b1_current "${B1[@]}" --set precision.fp8.recipe=current
bench b1_fp8w "${B1[@]}" --set precision.fp8.recipe=delayed --set precision.fp8.fp8_weights=true
bench b1_res32 "${B1[@]}" --set precision.residual=f32
bench b1_te_prof "${B1[@]}" --profile --steps 3
bench b1_delayed_prof "${B1[@]}" --set precision.fp8.recipe=delayed --profile --steps 3
st loop
timeout $(tl 50) $b/graft bench "${B1[@]}" --train-loop --steps 3 --warmup 1 > $L/b1_loop.json 2> $L/b1_loop.err; rc b1_loop $?
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception: return None
for l in open(os.path.join(L,'floor.jsonl')) if os.path.exists(os.path.join(L,'floor.jsonl')) else []: print('floor', l.strip()[:400])
for l in open(os.path.join(L,'hf.jsonl')) if os.path.exists(os.path.join(L,'hf.jsonl')) else []: print('hf', l.strip()[:220])
for n in ['b1_te','b1_ref','b1_delayed','b1_current','b1_fp8w','b1_res32','b8_te','b8_delayed','b1_te_prof','b1_delayed_prof','b1_loop']:
    r=last(n+'.json')
    if r: print(f"{n:15} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} tok/s {r['tokens_per_s']} {r.get('attention')} {r.get('fp8')} res {r.get('residual')} loss {r.get('first_loss')}->{r.get('last_loss')} loop {r.get('train_loop')}")
    else: print(n,'none')
for n in ['b1_te_prof','b1_delayed_prof']:
    r=last(n+'.json')
    if r and r.get('profile'): print(n, [(f['family'], round(f['ms_per_step'],2), f['calls_per_step']) for f in r['profile']['families']][:40])
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
