#!/usr/bin/env bash
# Session 5, call 5: the 4 x Llama-3-8B workload with both layer sets beside floor.py in one call
# (gpu19.sh ran te and FP8 only); the tiny Llama's 200 steps on the GPU in f32 and bf16, to set
# against the CPU f32 run of the same prepared tokens on the development machine.
set -uo pipefail
BUDGET=${BUDGET:-150}
source "$(dirname "$0")/common.sh"
st floor
timeout $(tl 40) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?
B8=(--recipe recipes/llama-3-8b.yaml --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
st bench
timeout $(tl 40) $b/graft bench "${B8[@]}" --set model.layers=te > $L/b8_te.json 2> $L/b8_te.err; rc b8_te $?
timeout $(tl 40) $b/graft bench "${B8[@]}" --set model.layers=reference > $L/b8_ref.json 2> $L/b8_ref.err; rc b8_ref $?
st tiny 200
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir=)
for dt in f32 bf16; do timeout $(tl 30) $b/graft train "${c[@]}" --set precision.params=$dt --metrics-out $OUT/tiny_gpu_$dt.jsonl > $L/tiny_$dt.log 2>&1; rc tiny_$dt $?; done
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
for l in open(os.path.join(L,'floor.jsonl')): print('floor', l.strip()[:400])
for n in ['b8_te','b8_ref']:
    try:
        r=json.loads(open(os.path.join(L,n+'.json')).read().strip().splitlines()[-1])
        print(f"{n:8} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} tok/s {r['tokens_per_s']} {r.get('attention')} {r.get('layers')}")
    except Exception as e: print(n, 'none', e)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"; true
