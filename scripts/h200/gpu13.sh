#!/usr/bin/env bash
# Session 4, call 2: the helper branches' kernels (FP8 casts, norm backward, qkv split), lazy
# gradient zeroing and CUDA-graph steps on the GPU; the fp8_weights loss question; the deep
# 1B-shaped parity fixture (written by transformers in the background while the tests run); the
# SM clock during the step; per-shape GEMM times inside the step.
set -uo pipefail
BUDGET=${BUDGET:-420}
source "$(dirname "$0")/common.sh"
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv,noheader -lms 100 > $L/smi_$1.csv 2>/dev/null & echo $!; }
st deep fixture in the background
( timeout 300 python3 scripts/make-deep-fixture.py --out /tmp/deep-llama > $L/deep_make.log 2>&1; echo "deep_make rc=$?" >> $L/stages.log ) &
DEEP=$!
st tests
timeout $(tl 120) $b/test_cuda --gtest_brief=1 > $L/test_cuda.log 2>&1; rc test_cuda $?
st fp8_weights question
S=(--recipe recipes/tiny-cpu.yaml --set train.batch_size=2 --set data.seq_len=32 --set model.layers=te --set device=cuda --set model.config.hidden_size=1024 --set model.config.intermediate_size=4096 --set model.config.num_attention_heads=16 --set model.config.num_hidden_layers=2 --steps 6 --warmup 0)
for v in "bf16 delayed false" "bf16 delayed true" "f32 delayed false" "bf16 none false"; do set -- $v
  timeout $(tl 30) $b/graft bench "${S[@]}" --set precision.params=$1 --set precision.fp8.recipe=$2 --set precision.fp8.fp8_weights=$3 > $L/w_$1_$2_$3.json 2> $L/w_$1_$2_$3.err; rc "w $v" $?
done
st timings
timeout $(tl 60) $b/test_cuda --gtest_filter='*DISABLED_*' --gtest_also_run_disabled_tests > $L/timings.log 2>&1; rc timings $?
st bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
P=$(smi te)
timeout $(tl 45) $b/graft bench "${B1[@]}" > $L/b1_te.json 2> $L/b1_te.err; rc b1_te $?
kill $P
timeout $(tl 45) $b/graft bench "${B1[@]}" --set train.cuda_graph=true > $L/b1_graph.json 2> $L/b1_graph.err; rc b1_graph $?
timeout $(tl 45) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --profile > $L/b1_fp8.json 2> $L/b1_fp8.err; rc b1_fp8 $?
GRAFT_PROFILE_SHAPES=1 timeout $(tl 45) $b/graft bench "${B1[@]}" --profile --steps 3 > $L/b1_shapes.json 2> $L/b1_shapes.err; rc b1_shapes $?
wait $DEEP
st deep parity
: > $L/deep_parity.jsonl
for run in "bf16 te"; do set -- $run
  timeout $(tl 170) $b/graft parity --checkpoint /tmp/deep-llama --device cuda --dtype $1 --layers $2 2>&1 > $L/dp.out | ts >> $L/deep_parity.err
  r=$?; tail -1 $L/dp.out | sed "s/^/{\"_run\":\"$1 $2 rc=$r\"} /" >> $L/deep_parity.jsonl; echo "deep parity $1 $2 rc=$r" >> $L/stages.log; pk
done
cp /tmp/deep-llama/reference_lowp.json $L/ 2>/dev/null
st done; pk
python3 - $L <<'PY'
import json,sys,os,csv,statistics as stt
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception: return None
for n in sorted(os.listdir(L)):
    if n.startswith('w_') and n.endswith('.json'):
        r=last(n); print(n, r and (r['first_loss'], r['last_loss'], r['peak_mem_gib']))
for n in ['b1_te','b1_graph','b1_fp8','b1_shapes']:
    r=last(n+'.json')
    if r: print(f"{n:9} {r['ms_per_step']:7.1f} ms (min {r['ms_min']}) mem {r['peak_mem_gib']:.2f} {r.get('cuda_graph')} loss {r.get('first_loss')}->{r.get('last_loss')}")
    else: print(n,'none')
for n in ['b1_fp8','b1_shapes']:
    r=last(n+'.json')
    if r and r.get('profile'): print(n, 'profile', [(f['family'], round(f['ms_per_step'],2), f['calls_per_step']) for f in r['profile']['families']][:40])
for w in ['te','floor']:
    p=os.path.join(L,'smi_'+w+'.csv')
    if os.path.exists(p):
        rows=[r for r in csv.reader(open(p)) if len(r)>4]
        try:
            sm=[float(r[1].split()[0]) for r in rows]; pw=[float(r[3].split()[0]) for r in rows]
            busy=[(s,q) for s,q in zip(sm,pw) if q>300]
            print('smi',w,len(rows),'samples; power>300W:',len(busy),'median sm MHz',stt.median([s for s,_ in busy]) if busy else None,'median W',stt.median([q for _,q in busy]) if busy else None, 'reasons', sorted(set(r[5].strip() for r in rows))[:6])
        except Exception as e: print('smi',w,'parse',e)
for l in open(os.path.join(L,'floor.jsonl')) if os.path.exists(os.path.join(L,'floor.jsonl')) else []: print('floor', l.strip()[:300])
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED" $L/test_cuda.log | head -20
grep -hE "GB/s|ms" $L/timings.log | grep -v "^\[graft\]\|OK \]\|RUN" | head -40
grep -h "CUDA graph" $L/b1_graph.err | head -3
cut -c1-700 $L/deep_parity.jsonl
cat $L/reference_lowp.json 2>/dev/null | cut -c1-300
