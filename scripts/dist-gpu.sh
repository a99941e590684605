#!/usr/bin/env bash
# The one-GPU checks of the distributed foundation, in one device call (logs under $OUT, a table
# last):
#   1. test_cuda (the caching allocator's cross-stream test with the rest) and test_parallel
#      (NCCL at world size 1);
#   2. graft_mpi_tests under mpirun -np 2 on the one GPU (MPI-staged CUDA tensors: MpiCuda.*);
#   3. a small Llama (the tiny recipe, bf16, cuda) for 20 steps: one process with batch 8 against
#      mpirun -np 2 over the MPI-staged backend with dp2 (batch 4 per rank) and dp2 + ZeRO;
#   4. an impossible layout (two ranks, one GPU, NCCL): one line, exit 2;
#   5. graft bench on the Llama 3.2 1B workload with te layers, the new tree against the landed
#      main before this work (build-old/graft), alternating, twice each.
# Needs: build-gpu/gpubin/{graft,test_cuda,test_parallel,graft_mpi_tests} (scripts/gpu-build.sh),
# build-old/graft (the same build of the previous main), .shared/bench/{tiny.yaml,data_tiny}.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${LOGDIR:-/tmp/dist-out}"  # every log; $OUT gets them as one archive (8 files come back)
mkdir -p "$out"
stages="${STAGES:-tests train bench}"
want() { [[ " $stages " == *" $1 "* ]]; }
bin=build-gpu/gpubin
export NCCL_NVLS_ENABLE=0
mpi=(mpirun --allow-run-as-root --oversubscribe -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH)
stage() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/stages.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

if want tests; then
stage "test_cuda, test_parallel"
timeout 200 $bin/test_cuda --gtest_brief=1 > "$out/test_cuda.log" 2>&1
echo "test_cuda rc=$?" | tee -a "$out/stages.log"
timeout 100 $bin/test_parallel > "$out/test_parallel.log" 2>&1
echo "test_parallel rc=$?" | tee -a "$out/stages.log"
stage "graft_mpi_tests -np 2 on one GPU"
timeout 120 "${mpi[@]}" -np 2 $bin/graft_mpi_tests > "$out/mpi_tests.log" 2>&1
echo "graft_mpi_tests np2 rc=$?" | tee -a "$out/stages.log"
fi

if want train; then
stage "tiny Llama bf16, 20 steps: 1 GPU vs dp2 and dp2+zero (mpi-staged)"
common=(--recipe .shared/bench/tiny.yaml --set device=cuda --set precision.params=bf16
        --set train.steps=20 --set schedule.warmup_steps=2 --set train.sample_tokens=0
        --set logging.every=1 --set logging.progress=plain)
timeout 120 $bin/graft train "${common[@]}" --set train.batch_size=8 \
  --metrics-out "$out/gpu1.jsonl" > "$out/gpu1.log" 2>&1
echo "train 1 gpu rc=$?" | tee -a "$out/stages.log"
timeout 180 "${mpi[@]}" -np 2 $bin/graft train "${common[@]}" --set train.batch_size=4 \
  --set parallel.backend=mpi --metrics-out "$out/dp2.jsonl" > "$out/dp2.log" 2>&1
echo "train dp2 rc=$?" | tee -a "$out/stages.log"
timeout 180 "${mpi[@]}" -np 2 $bin/graft train "${common[@]}" --set train.batch_size=4 \
  --set parallel.backend=mpi --set parallel.zero=1 --metrics-out "$out/dp2z.jsonl" \
  > "$out/dp2z.log" 2>&1
echo "train dp2 zero rc=$?" | tee -a "$out/stages.log"

stage "impossible layout: 2 ranks on 1 GPU with nccl"
timeout 60 "${mpi[@]}" -np 2 $bin/graft train "${common[@]}" --set parallel.backend=nccl \
  > "$out/layout.log" 2>&1
echo "layout rc=$?" | tee -a "$out/stages.log"
grep "graft train" "$out/layout.log" | tee -a "$out/stages.log"
fi

: >> "$out/bench.jsonl"
if want bench; then
stage "bench llama-3.2-1b te: old, new, old, new"
for round in ${ROUNDS:-1 2}; do
  for which in old new; do
    b=$bin/graft
    [ "$which" = old ] && b=build-old/graft
    timeout 150 $b bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=te \
      > "$out/bench_$which$round.json" 2> "$out/bench_$which$round.err"
    echo "bench $which $round rc=$?" | tee -a "$out/stages.log"
    sed "s/^/{\"which\": \"$which\", \"r\": $round, \"bench\": /; s/$/}/" \
      "$out/bench_$which$round.json" >> "$out/bench.jsonl"
  done
done
fi

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def losses(f):
    p = os.path.join(out, f)
    return [json.loads(l)["loss"] for l in open(p)] if os.path.exists(p) else []
g, d, z = losses("gpu1.jsonl"), losses("dp2.jsonl"), losses("dp2z.jsonl")
print("| run | steps | loss step 1 | loss step 20 | max abs diff vs 1 GPU |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, l in (("1 GPU, batch 8", g), ("dp2 mpi-staged", d), ("dp2 + ZeRO", z)):
    diff = max((abs(a - b) for a, b in zip(l, g)), default=float("nan"))
    print(f"| {name} | {len(l)} | {l[0] if l else 'n/a'} | {l[-1] if l else 'n/a'} | {diff:.3e} |")
print()
print("| bench (te, 1B, 4x2048) | ms/step | tok/s | peak GiB |")
print("| --- | ---: | ---: | ---: |")
for line in open(os.path.join(out, "bench.jsonl")):
    try:
        r = json.loads(line)
        b = r["bench"]
        print(f"| {r['which']} #{r['r']} | {b['ms_per_step']:.1f} | {b['tokens_per_s']:.0f} | {b['peak_mem_gib']:.1f} |")
    except Exception as e:
        print("| bench line unreadable |", line.strip()[:80])
PY
cat "$out/stages.log"
[ -n "${OUT:-}" ] && tar czf "$OUT/dist-logs.tgz" -C "$out" .
