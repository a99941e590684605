#!/usr/bin/env bash
# One-GPU checks of tensor and sequence parallelism (logs under $LOGDIR, a loss table last):
#   1. graft_mpi_tests under mpirun -np 2 on the one GPU: TpModelCuda.* (tp2 and tp2 + sp on CUDA
#      tensors, MPI-staged, against a CPU process: init, loss and every gradient of 3 steps) and
#      the CPU TpModel / TpPlugin / TpCollectives suites;
#   2. test_cuda's vocab-parallel cross-entropy and sharded embedding kernels against the CPU;
#   3. the tiny Llama (.shared/bench/tiny.yaml, cuda) for 20 steps in bf16 and f32: one process
#      against mpirun -np 2 over the MPI-staged backend at tp2 and tp2 + sp, reference and te
#      layers. bf16 losses should track the one-GPU run to bf16 rounding (~1e-2 relative), f32
#      ones to ~1e-5.
# Needs: build-gpu/gpubin/{graft,test_cuda,graft_mpi_tests} (scripts/gpu-build.sh) and
# .shared/bench/{tiny.yaml,data_tiny}, as scripts/dist-gpu.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${LOGDIR:-/tmp/tp-out}"
mkdir -p "$out"
bin=build-gpu/gpubin
export NCCL_NVLS_ENABLE=0
mpi=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)
log() { echo "$*" | tee -a "$out/stages.log"; }

timeout 200 "${mpi[@]}" -np 2 $bin/graft_mpi_tests --gtest_filter='Tp*:*/TpModel.*:*TpCollectives*' \
  > "$out/mpi_tp.log" 2>&1
log "graft_mpi_tests Tp* np2 rc=$?"
timeout 120 $bin/test_cuda --gtest_filter='*VocabXent*:*EmbeddingShard*' > "$out/cuda_kernels.log" 2>&1
log "test_cuda vocab-parallel kernels rc=$?"

for dtype in bf16 f32; do
  for layers in reference te; do
    common=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=$dtype
            --set model.layers=$layers --set train.steps=20 --set schedule.warmup_steps=2
            --set train.sample_tokens=0 --set logging.every=1 --set logging.progress=plain
            --set train.batch_size=8)
    tag=${dtype}_$layers
    timeout 150 $bin/graft train "${common[@]}" --metrics-out "$out/one_$tag.jsonl" \
      > "$out/one_$tag.log" 2>&1
    log "train 1 gpu $tag rc=$?"
    timeout 200 "${mpi[@]}" -np 2 $bin/graft train "${common[@]}" --set parallel.backend=mpi \
      --set parallel.tp=2 --metrics-out "$out/tp2_$tag.jsonl" > "$out/tp2_$tag.log" 2>&1
    log "train tp2 $tag rc=$?"
    timeout 200 "${mpi[@]}" -np 2 $bin/graft train "${common[@]}" --set parallel.backend=mpi \
      --set parallel.tp=2 --set parallel.sequence_parallel=true \
      --metrics-out "$out/tp2sp_$tag.jsonl" > "$out/tp2sp_$tag.log" 2>&1
    log "train tp2+sp $tag rc=$?"
  done
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def losses(f):
    p = os.path.join(out, f)
    if not os.path.exists(p): return []
    return [json.loads(l)["loss"] for l in open(p) if l.strip()]
print("run                 steps  final loss   max rel diff vs 1 GPU")
for dtype in ("bf16", "f32"):
    for layers in ("reference", "te"):
        tag = f"{dtype}_{layers}"
        ref = losses(f"one_{tag}.jsonl")
        for kind in ("one", "tp2", "tp2sp"):
            got = losses(f"{kind}_{tag}.jsonl")
            diff = max((abs(a - b) / abs(b) for a, b in zip(got, ref)), default=float("nan"))
            final = got[-1] if got else float("nan")
            print(f"{kind + ' ' + tag:20s} {len(got):5d}  {final:10.6f}   {diff:.2e}")
PY
