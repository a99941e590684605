#!/usr/bin/env bash
# Session 4, call 4 (final): the headline table from one call — floor.py, the PyTorch baselines,
# graft te / reference / FP8 (delayed, current, fp8_weights) / CUDA graph / recompute on the 1B,
# 4 × 8B layers, the recipe loop, Gemma 2B — with the SM clock sampled during floor.py's GEMMs
# and graft's step; and the GPU tests changed since call 3 (4 × 8B in FP8 current and the cast timings were left out for time).
set -uo pipefail
BUDGET=${BUDGET:-500}
source "$(dirname "$0")/common.sh"
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader -lms 50 > $L/smi_$1.csv 2>/dev/null & echo $!; }
st tests
timeout $(tl 40) $b/test_cuda --gtest_brief=1 --gtest_filter='CudaFp8ActBwd*:CudaFp8Weights*' > $L/t.log 2>&1; rc tests $?
st parity llama-gqa
: > $L/parity.jsonl
for run in "bf16 reference" "bf16 te" "f32 te"; do set -- $run
  timeout $(tl 30) $b/graft parity --checkpoint tests/fixtures/hf/llama-gqa --device cuda --dtype $1 --layers $2 > $L/p.out 2>> $L/parity.err
  r=$?; tail -1 $L/p.out | sed "s/^/{\"_run\":\"$1 $2 rc=$r\"} /" >> $L/parity.jsonl; echo "parity llama-gqa $1 $2 rc=$r" >> $L/stages.log
done; pk
st floor
P=$(smi floor); timeout $(tl 45) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?; kill $P
st hf_baseline
timeout $(tl 170) python3 .shared/bench/hf_baseline.py amp-eager,bf16-eager,amp-compile > $L/hf.jsonl 2> $L/hf.err; rc hf $?
st bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
B8=(--recipe recipes/llama-3-8b.yaml --set model.layers=te --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
P=$(smi te); timeout $(tl 40) $b/graft bench "${B1[@]}" > $L/b1_te.json 2> $L/b1_te.err; rc b1_te $?; kill $P
timeout $(tl 40) $b/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=reference > $L/b1_ref.json 2> $L/b1_ref.err; rc b1_ref $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed > $L/b1_delayed.json 2> $L/b1_delayed.err; rc b1_delayed $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=current > $L/b1_current.json 2> $L/b1_current.err; rc b1_current $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --set precision.fp8.fp8_weights=true > $L/b1_fp8w.json 2> $L/b1_fp8w.err; rc b1_fp8w $?
timeout $(tl 40) $b/graft bench "${B8[@]}" > $L/b8_te.json 2> $L/b8_te.err; rc b8_te $?
timeout $(tl 40) $b/graft bench "${B8[@]}" --set precision.fp8.recipe=delayed > $L/b8_delayed.json 2> $L/b8_delayed.err; rc b8_delayed $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set train.cuda_graph=true > $L/b1_graph.json 2> $L/b1_graph.err; rc b1_graph $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set train.recompute=true > $L/b1_recompute.json 2> $L/b1_recompute.err; rc b1_recompute $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --profile --steps 3 > $L/b1_delayed_prof.json 2> $L/b1_delayed_prof.err; rc b1_delayed_prof $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --profile --steps 3 > $L/b1_te_prof.json 2> $L/b1_te_prof.err; rc b1_te_prof $?
st loop
timeout $(tl 50) $b/graft bench "${B1[@]}" --train-loop --steps 3 --warmup 1 > $L/b1_loop.json 2> $L/b1_loop.err; rc b1_loop $?
timeout $(tl 40) $b/graft bench --recipe recipes/gemma-2b.yaml --steps 3 > $L/gemma.json 2> $L/gemma.err; rc gemma $?
st done; pk
python3 - $L <<'PY'
import json,sys,os,csv,statistics as stt
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception: return None
for l in open(os.path.join(L,'floor.jsonl')) if os.path.exists(os.path.join(L,'floor.jsonl')) else []: print('floor', l.strip()[:260])
for l in open(os.path.join(L,'hf.jsonl')) if os.path.exists(os.path.join(L,'hf.jsonl')) else []: print('hf', l.strip()[:200])
for n in ['b1_te','b1_ref','b1_delayed','b1_current','b1_fp8w','b8_te','b8_delayed','b8_current','b1_graph','b1_recompute','gemma']:
    r=last(n+'.json')
    if r: print(f"{n:12} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} tok/s {r['tokens_per_s']} {r.get('attention')} {r.get('fp8')} graph {r.get('cuda_graph')} loss {r.get('first_loss')}->{r.get('last_loss')}")
    else: print(n,'none')
r=last('b1_loop.json'); print('loop', r and r.get('train_loop'))
for n in ['b1_te_prof','b1_delayed_prof']:
    r=last(n+'.json')
    if r and r.get('profile'): print(n, r['profile']['step_ms'], 'unattr', r['profile']['unattributed_ms'], [(f['family'], round(f['ms_per_step'],2), f['calls_per_step']) for f in r['profile']['families']][:26])
for w in ['floor','te']:
    p=os.path.join(L,'smi_'+w+'.csv')
    if os.path.exists(p):
        rows=[r for r in csv.reader(open(p)) if len(r)>3]
        try:
            b=[(float(r[1].split()[0]), float(r[2].split()[0]), r[3].strip()) for r in rows]
            busy=[x for x in b if x[1]>400]
            print('smi',w,len(b),'samples, >400 W:',len(busy),'median SM MHz',stt.median([x[0] for x in busy]) if busy else None,'median W',stt.median([x[1] for x in busy]) if busy else None,'power-capped share',round(sum(1 for x in busy if int(x[2],16)&4)/max(len(busy),1),2))
        except Exception as e: print('smi',w,'parse',e)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED" $L/t.log | head
grep -h "BENCH" $L/timing.log | head -30
grep -h "CUDA graph" $L/b1_graph.err | head -2
cut -c1-420 $L/parity.jsonl
