#!/usr/bin/env bash
# Mid-session GPU check: kernels, NCCL world 1, multi-rank (mpi-staged) tests incl. tp, tp train
# vs 1 GPU, parity --tp 2 on the fixtures in bf16/f32, bench te/ref with profile.
set -uo pipefail
b=build-gpu/gpubin
o=$OUT
export NCCL_NVLS_ENABLE=0
mpi=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)
st() { echo "== $(date -u +%H:%M:%S) $*" | tee -a $o/stages.log; }
st test_cuda
timeout 240 $b/test_cuda --gtest_brief=1 > $o/test_cuda.log 2>&1; echo "test_cuda rc=$?" | tee -a $o/stages.log
grep -E "FAILED|PASSED|SKIPPED \]" $o/test_cuda.log | head -30
st mpi_tests np2
timeout 200 "${mpi[@]}" -np 2 $b/graft_mpi_tests --gtest_brief=1 > $o/mpi_tests.log 2>&1; echo "mpi np2 rc=$?" | tee -a $o/stages.log
grep -E "FAILED|PASSED" $o/mpi_tests.log | sort | uniq -c | head -20
st train tp
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=bf16 --set train.steps=20 --set schedule.warmup_steps=2 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain)
timeout 100 $b/graft train "${c[@]}" --metrics-out $o/g1.jsonl > $o/g1.log 2>&1; echo "1gpu rc=$?" | tee -a $o/stages.log
timeout 120 "${mpi[@]}" -np 2 $b/graft train "${c[@]}" --set parallel.tp=2 --set parallel.backend=mpi --metrics-out $o/tp2.jsonl > $o/tp2.log 2>&1; echo "tp2 rc=$?" | tee -a $o/stages.log
timeout 120 "${mpi[@]}" -np 2 $b/graft train "${c[@]}" --set parallel.tp=2 --set parallel.sequence_parallel=true --set parallel.backend=mpi --set model.layers=te --metrics-out $o/tp2sp.jsonl > $o/tp2sp.log 2>&1; echo "tp2 sp te rc=$?" | tee -a $o/stages.log
timeout 120 "${mpi[@]}" -np 2 $b/graft train "${c[@]}" --set parallel.cp=2 --set parallel.backend=mpi --metrics-out $o/cp2.jsonl > $o/cp2.log 2>&1; echo "cp2 rc=$?" | tee -a $o/stages.log
python3 - $o <<'PY'
import json,sys,os
o=sys.argv[1]
def L(n):
    p=os.path.join(o,n)
    return [json.loads(l)['loss'] for l in open(p) if l.startswith('{')] if os.path.exists(p) else []
a=L('g1.jsonl')
for n in ['tp2.jsonl','tp2sp.jsonl','cp2.jsonl']:
    b=L(n)
    if a and b: print(n, 'steps', len(b), 'first', b[0], 'last', b[-1], '1gpu last', a[-1], 'max diff', max(abs(x-y) for x,y in zip(a,b)))
PY
st parity tp2
: > $o/parity.jsonl
for fx in llama-gqa gemma-mqa qwen3-qknorm; do for dt in bf16; do for l in reference te; do
 timeout 60 "${mpi[@]}" -np 2 $b/graft parity --checkpoint tests/fixtures/hf/$fx --device cuda --dtype $dt --layers $l --tp 2 --backend mpi >> $o/parity.jsonl 2>> $o/parity.err; echo "parity tp2 $fx $dt $l rc=$?" >> $o/stages.log
done; done; done
grep -c '"pass":true' $o/parity.jsonl; grep -c . $o/parity.jsonl
st bench
timeout 150 $b/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=te --profile --train-loop > $o/bench_te.json 2> $o/bench_te.err; echo "bench te rc=$?" | tee -a $o/stages.log
timeout 120 $b/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=reference > $o/bench_ref.json 2> $o/bench_ref.err; echo "bench ref rc=$?" | tee -a $o/stages.log
st floor
timeout 150 python3 .shared/bench/floor.py > $o/floor.jsonl 2> $o/floor.err; echo "floor rc=$?" | tee -a $o/stages.log
cat $o/floor.jsonl
st done
cat $o/stages.log | grep -v "^parity" | tail -20
grep -h rc= $o/stages.log | grep -v "rc=0" 
python3 -c "
import json
for n in ['bench_te','bench_ref']:
    try:
        r=json.load(open('$o/'+n+'.json'))
        print(n, r.get('ms_per_step'), 'mem', r.get('peak_mem_gib'), 'attn', r.get('attention'))
    except Exception as e: print(n, 'err', e)
"
grep -h "profile:" $o/bench_te.err | head -30
