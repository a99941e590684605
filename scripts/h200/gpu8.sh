#!/usr/bin/env bash
# Session 3, call 2: fixed tests, floor + FP8 vs bf16 benches (1B, 4 x 8B layers), 200-step tiny
# FP8 vs bf16 on the GPU, train-loop bench, and the multi-rank (MPI-staged) checks of issue 9.
set -uo pipefail
BUDGET=${BUDGET:-500}
source "$(dirname "$0")/common.sh"
st tests
timeout $(tl 50) $b/test_cuda --gtest_filter='CudaAdamW.*:Bench.GpuProfile*:CudaFp8Layers.*' > $L/t_fixed.log 2>&1; rc t_fixed $?
st floor
timeout $(tl 100) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
B8=(--recipe recipes/llama-3-8b.yaml --set model.layers=te --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
for r in none delayed current; do st bench 1b $r
 timeout $(tl 50) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=$r --profile > $L/b1_$r.json 2> $L/b1_$r.err; rc b1_$r $?; done
for r in none delayed current; do st bench 8b4 $r
 timeout $(tl 50) $b/graft bench "${B8[@]}" --set precision.fp8.recipe=$r > $L/b8_$r.json 2> $L/b8_$r.err; rc b8_$r $?; done
st tiny 200
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=bf16 --set model.layers=te --set train.steps=200 --set train.sample_tokens=0 --set logging.every=10 --set logging.progress=plain --set checkpoint.dir=)
for r in none delayed current; do timeout $(tl 40) $b/graft train "${c[@]}" --set precision.fp8.recipe=$r --metrics-out $L/tiny_$r.jsonl > $L/tiny_$r.log 2>&1; rc tiny_$r $?; done
st train loop
timeout $(tl 60) $b/graft bench "${B1[@]}" --train-loop --steps 3 --warmup 1 > $L/b1_loop.json 2> $L/b1_loop.err; rc b1_loop $?
st plugin np2
timeout $(tl 60) "${mpi[@]}" $b/graft_mpi_tests --gtest_filter='TpPlugin.*' > $L/plugin.log 2>&1; rc plugin $?
st cp2 train
t=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=bf16 --set train.steps=20 --set schedule.warmup_steps=2 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir=)
timeout $(tl 40) $b/graft train "${t[@]}" --metrics-out $L/g1.jsonl > $L/g1.log 2>&1; rc g1 $?
timeout $(tl 60) "${mpi[@]}" $b/graft train "${t[@]}" --set parallel.cp=2 --set parallel.backend=mpi --metrics-out $L/cp2.jsonl > $L/cp2.log 2>&1; rc cp2 $?
st parity layouts
: > $L/parity.jsonl
for lay in "--cp 2" "--tp 2 --sequence-parallel" "--tp 2"; do for dt in f32 bf16; do for fx in llama-gqa gemma-mqa qwen3-qknorm; do for l in reference te; do
 [ "$lay" = "--tp 2" ] && [ $dt = bf16 ] && continue
 timeout $(tl 25) "${mpi[@]}" $b/graft parity --checkpoint tests/fixtures/hf/$fx --device cuda --dtype $dt --layers $l $lay --backend mpi > $L/p.out 2>> $L/parity.err
 r=$?; tail -1 $L/p.out | sed "s/^/{\"_run\":\"$lay $dt $fx $l rc=$r\"} /" >> $L/parity.jsonl; echo "parity $lay $dt $fx $l rc=$r" >> $L/stages.log
done; done; done; done; pk
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception as e: return None
for l in open(os.path.join(L,'floor.jsonl')) if os.path.exists(os.path.join(L,'floor.jsonl')) else []: print('floor', l.strip()[:300])
for n in ['b1_none','b1_delayed','b1_current','b8_none','b8_delayed','b8_current']:
    r=last(n+'.json')
    if r: print(f"{n:12} {r['ms_per_step']:8.1f} ms  mem {r['peak_mem_gib']:.2f} GiB attn {r.get('attention')} fp8 {r.get('fp8')} loss {r.get('last_loss')} prof {bool(r.get('profile'))}")
    else: print(n,'none')
r=last('b1_loop.json'); print('loop', r and r.get('train_loop'))
def losses(n):
    p=os.path.join(L,n)
    return [json.loads(l)['loss'] for l in open(p) if l.startswith('{')] if os.path.exists(p) else []
a=losses('tiny_none.jsonl')
for r in ['delayed','current']:
    b=losses(f'tiny_{r}.jsonl')
    if a and b: print('tiny200',r,'steps',len(b),'last',b[-1],'bf16 last',a[-1],'rel',(b[-1]-a[-1])/a[-1])
a=losses('g1.jsonl'); b=losses('cp2.jsonl')
if a and b: print('cp2 steps',len(b),'last',b[-1],'1gpu',a[-1],'maxdiff',max(abs(x-y) for x,y in zip(a,b)))
n=p=0
for l in open(os.path.join(L,'parity.jsonl')):
    n+=1; p+= '"pass":true' in l
print('parity lines',n,'pass',p)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -E "PASSED|FAILED" $L/t_fixed.log $L/plugin.log | head
