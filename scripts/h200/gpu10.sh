#!/usr/bin/env bash
# Session 3, call 4 (final): main with fp8fuse (norm+cast, fp8_weights), kvrep (te at tp > KV
# heads), skip_init builds — every GPU test, then the headline table again from one call.
set -uo pipefail
BUDGET=${BUDGET:-420}
source "$(dirname "$0")/common.sh"
st test_cuda
timeout $(tl 80) $b/test_cuda --gtest_brief=1 > $L/test_cuda.log 2>&1; rc test_cuda $?
timeout $(tl 30) $b/test_cuda --gtest_filter='CudaFp8NormBench.*' --gtest_also_run_disabled_tests > $L/fp8norm_timing.log 2>&1; rc fp8norm_timing $?
st floor
timeout $(tl 40) python3 .shared/bench/floor.py > $L/floor.jsonl 2> $L/floor.err; rc floor $?
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te)
B8=(--recipe recipes/llama-3-8b.yaml --set model.layers=te --set model.config.num_hidden_layers=4 --set train.batch_size=1 --set data.seq_len=8192)
st bench
timeout $(tl 40) $b/graft bench "${B1[@]}" --profile > $L/b1_te.json 2> $L/b1_te.err; rc b1_te $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --profile > $L/b1_delayed.json 2> $L/b1_delayed.err; rc b1_delayed $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=current > $L/b1_current.json 2> $L/b1_current.err; rc b1_current $?
timeout $(tl 40) $b/graft bench "${B1[@]}" --set precision.fp8.recipe=delayed --set precision.fp8.fp8_weights=true > $L/b1_fp8w.json 2> $L/b1_fp8w.err; rc b1_fp8w $?
timeout $(tl 40) $b/graft bench "${B8[@]}" > $L/b8_te.json 2> $L/b8_te.err; rc b8_te $?
timeout $(tl 40) $b/graft bench "${B8[@]}" --set precision.fp8.recipe=delayed > $L/b8_delayed.json 2> $L/b8_delayed.err; rc b8_delayed $?
timeout $(tl 40) $b/graft bench "${B8[@]}" --set precision.fp8.recipe=current > $L/b8_current.json 2> $L/b8_current.err; rc b8_current $?
timeout $(tl 40) $b/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=reference > $L/b1_ref.json 2> $L/b1_ref.err; rc b1_ref $?
st loop
timeout $(tl 50) $b/graft bench "${B1[@]}" --train-loop --steps 3 --warmup 1 > $L/b1_loop.json 2> $L/b1_loop.err; rc b1_loop $?
st tiny f32
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir=)
timeout $(tl 30) $b/graft train "${c[@]}" --set precision.params=f32 --set model.layers=te --metrics-out $L/tiny_f32.jsonl > $L/tiny_f32.log 2>&1; rc tiny_f32 $?
st kv replication np2
: > $L/parity.jsonl
for dt in f32 bf16; do for lay in "--tp 2" "--tp 2 --sequence-parallel"; do
 timeout $(tl 25) "${mpi[@]}" $b/graft parity --checkpoint tests/fixtures/hf/gemma-mqa --device cuda --dtype $dt --layers te $lay --backend mpi > $L/p.out 2>> $L/parity.err
 r=$?; tail -1 $L/p.out | sed "s/^/{\"_run\":\"$lay $dt rc=$r\"} /" >> $L/parity.jsonl; echo "parity gemma te $lay $dt rc=$r" >> $L/stages.log
done; done; pk
st done; pk
python3 - $L <<'PY'
import json,sys,os
L=sys.argv[1]
def last(n):
    try: return json.loads(open(os.path.join(L,n)).read().strip().splitlines()[-1])
    except Exception as e: return None
for l in open(os.path.join(L,'floor.jsonl')) if os.path.exists(os.path.join(L,'floor.jsonl')) else []: print('floor', l.strip()[:230])
for n in ['b1_te','b1_ref','b1_delayed','b1_current','b1_fp8w','b8_te','b8_delayed','b8_current']:
    r=last(n+'.json')
    if r: print(f"{n:11} {r['ms_per_step']:7.1f} ms mem {r['peak_mem_gib']:.2f} tok/s {r['tokens_per_s']} {r.get('attention')} {r.get('fp8')} loss {r.get('first_loss')}->{r.get('last_loss')}")
    else: print(n,'none')
r=last('b1_loop.json'); print('loop', r and r.get('train_loop'))
p=os.path.join(L,'tiny_f32.jsonl')
if os.path.exists(p):
    l=[json.loads(x)['loss'] for x in open(p) if x.startswith('{')]; print('tiny f32 te steps',len(l),'last10',round(sum(l[-10:])/10,4))
for l in open(os.path.join(L,'parity.jsonl')): print(l[:60], '"pass":true' in l)
PY
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -E "FAILED|PASSED" $L/test_cuda.log | head
grep -h "set-up" $L/b1_te.err $L/b8_te.err
