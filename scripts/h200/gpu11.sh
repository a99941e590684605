#!/usr/bin/env bash
# Session 3, call 5 (last): fp8_weights after its fix, te at tp > KV heads on the GPU (MPI-staged
# np2), and the tiny Llama's 200 steps on the GPU in f32 (reference layers) for the CPU comparison.
set -uo pipefail
BUDGET=${BUDGET:-180}
source "$(dirname "$0")/common.sh"
st tests
timeout $(tl 40) $b/test_cuda --gtest_brief=1 --gtest_filter='*Fp8*' > $L/t_fp8.log 2>&1; rc t_fp8 $?
st kv replication np2
: > $L/parity.jsonl
for dt in f32 bf16; do for lay in "--tp 2" "--tp 2 --sequence-parallel"; do
 timeout $(tl 20) "${mpi[@]}" $b/graft parity --checkpoint tests/fixtures/hf/gemma-mqa --device cuda --dtype $dt --layers te $lay --backend mpi > $L/p.out 2>> $L/parity.err
 r=$?; tail -1 $L/p.out | sed "s/^/{\"_run\":\"$lay $dt rc=$r\"} /" >> $L/parity.jsonl; echo "parity gemma te $lay $dt rc=$r" >> $L/stages.log
done; done; pk
timeout $(tl 40) "${mpi[@]}" $b/graft_mpi_tests --gtest_filter='TpModelCuda.*:TpPlugin.*' > $L/tpcuda.log 2>&1; rc tpcuda $?
st tiny f32 ref
c=(--recipe .shared/bench/tiny.yaml --set device=cuda --set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain --set checkpoint.dir=)
timeout $(tl 20) $b/graft train "${c[@]}" --set precision.params=f32 --set model.layers=reference --metrics-out $L/tiny_ref_f32.jsonl > $L/tiny_ref_f32.log 2>&1; rc tiny_ref_f32 $?
st fp8_weights bench
B1=(--recipe recipes/llama-3.2-1b.yaml --set model.layers=te --set precision.fp8.recipe=delayed --steps 5 --warmup 2)
timeout $(tl 35) $b/graft bench "${B1[@]}" --set precision.fp8.fp8_weights=true > $L/b1_fp8w.json 2> $L/b1_fp8w.err; rc b1_fp8w $?
timeout $(tl 35) $b/graft bench "${B1[@]}" > $L/b1_fp8.json 2> $L/b1_fp8.err; rc b1_fp8 $?
st done; pk
grep -h rc= $L/stages.log | grep -v "rc=0"
grep -hE "FAILED|PASSED" $L/t_fp8.log $L/tpcuda.log | head
cut -c1-400 $L/parity.jsonl
for n in b1_fp8w b1_fp8; do tail -1 $L/$n.json | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print('$n', r['ms_per_step'], r['peak_mem_gib'], r['first_loss'], r['last_loss'])"; done
