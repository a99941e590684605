#!/usr/bin/env bash
# The GPU run of issue 5, in one device call: kernel tests, HF parity in f32 and bf16 with both
# layer sets, the 200-step small-Llama training on the GPU (f32 against the CPU run of the same
# recipe, and bf16), the Llama-3.2-1B training-step benchmark with reference and te layers, and
# the Hugging Face + PyTorch baseline, minutes apart on the same GPU. Logs go to $OUT (default
# ./bench-out); a summary table is printed last.
#
# Needs (built and prepared on the development machine, carried to the GPU machine):
#   build-gpu/gpubin/{graft,test_cuda}     scripts/gpu-build.sh graft test_cuda
#   .shared/bench/hf_baseline.py           copied from ../shared/bench (git-ignored)
#   .shared/bench/tiny.yaml, data_tiny/    recipes/tiny-cpu.yaml reading the prepared byte tokens
#                                          of its license texts (so both machines see one dataset)
#   .shared/bench/cpu_f32.jsonl            graft train --recipe .shared/bench/tiny.yaml
#                                          --set train.steps=200 --set train.sample_tokens=0
#                                          --set logging.every=1 --metrics-out ... (on the CPU)
#
#   run: carry ["build-gpu/gpubin", ".shared"], command "scripts/bench-gpu.sh"
#
# STAGES (default all: "tests parity train bench baseline") picks stages; keep bench and baseline
# in one invocation so that their ratio comes from one machine minutes apart. The stage "speed"
# (issue 11, not in the default) runs graft bench --profile --train-loop on the 1B shape with both
# layer sets, the 4-layer Llama-3-8B shape at 1 x 8192 with --profile, and .shared/bench/floor.py
# (copied from ../shared/bench): STAGES="speed baseline" gives the issue's table from one call.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-out}"
mkdir -p "$out"
bin=build-gpu/gpubin
sb=.shared/bench
stages="${STAGES:-tests parity train bench baseline}"
want() { [[ " $stages " == *" $1 "* ]]; }
stage() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/stages.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
cat "$out/gpu.txt"

if want tests; then
stage "test_cuda"
timeout 150 $bin/test_cuda --gtest_brief=1 > "$out/test_cuda.log" 2>&1
echo "test_cuda rc=$?" >> "$out/stages.log"
tail -3 "$out/test_cuda.log"
fi

if want parity; then
stage "parity"
: > "$out/parity.jsonl"
for fx in llama-gqa gemma-mqa qwen3-qknorm; do
  for dt in f32 bf16; do
    for layers in reference te; do
      timeout 60 $bin/graft parity --checkpoint tests/fixtures/hf/$fx --device cuda \
        --dtype $dt --layers $layers >> "$out/parity.jsonl" 2>> "$out/parity.err"
      echo "parity $fx $dt $layers rc=$?" >> "$out/stages.log"
    done
  done
done
fi

if want train; then
stage "train tiny 200 steps: gpu f32, gpu bf16"
common=(--set train.steps=200 --set train.sample_tokens=0 --set logging.every=1 --set device=cuda)
timeout 120 $bin/graft train --recipe $sb/tiny.yaml "${common[@]}" \
  --metrics-out "$out/gpu_f32.jsonl" > "$out/train_gpu_f32.log" 2>&1
echo "train gpu f32 rc=$?" >> "$out/stages.log"
timeout 120 $bin/graft train --recipe $sb/tiny.yaml "${common[@]}" --set precision.params=bf16 \
  --metrics-out "$out/gpu_bf16.jsonl" > "$out/train_gpu_bf16.log" 2>&1
echo "train gpu bf16 rc=$?" >> "$out/stages.log"
cp $sb/cpu_f32.jsonl "$out/cpu_f32.jsonl"
fi

if want bench; then
stage "graft bench llama-3.2-1b"
: > "$out/bench.jsonl"
for layers in reference te; do
  timeout 150 $bin/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=$layers \
    >> "$out/bench.jsonl" 2> "$out/bench_$layers.err"
  echo "bench $layers rc=$?" >> "$out/stages.log"
done
fi

if want speed; then
stage "issue 11: bench --profile (--train-loop), 4 x 8B layers, floor"
: > "$out/speed.jsonl"
for layers in te reference; do
  timeout 300 $bin/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=$layers \
    --profile --train-loop >> "$out/speed.jsonl" 2> "$out/speed_$layers.err"
  echo "speed 1b $layers rc=$?" >> "$out/stages.log"
done
timeout 200 $bin/graft bench --recipe recipes/llama-3-8b.yaml --set model.layers=te \
  --set model.config.num_hidden_layers=4 --set data.seq_len=8192 --set train.batch_size=1 \
  --profile >> "$out/speed.jsonl" 2> "$out/speed_8b.err"
echo "speed 8b-4layers rc=$?" >> "$out/stages.log"
timeout 200 python3 $sb/floor.py > "$out/floor.jsonl" 2> "$out/floor.err"
echo "floor rc=$?" >> "$out/stages.log"
fi

if want baseline; then
stage "hf_baseline.py"
timeout 240 python3 $sb/hf_baseline.py > "$out/hf_baseline.jsonl" 2> "$out/hf_baseline.err"
echo "hf_baseline rc=$?" >> "$out/stages.log"
fi
stage "done"

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def rows(name):
    p = os.path.join(out, name)
    if not os.path.exists(p): return []
    r = []
    for line in open(p):
        line = line.strip()
        if line.startswith("{"):
            try: r.append(json.loads(line))
            except ValueError: pass
    return r
print("\n## parity (rel errors; pass)")
for r in rows("parity.jsonl"):
    print(f"{r['arch']:6} {r['dtype']:4} {r['layers']:9} logits {r['logits_rel_err']:.2e} "
          f"padded {r['padded_logits_rel_err']:.2e} loss {r['loss_abs_err']:.2e} "
          f"grad {r['grad_max_rel_err']:.2e} step1 {r['step1_max_rel_err']:.2e} "
          f"gen {r['generate_match']} pass {r['pass']}")
cpu, g32, g16 = rows("cpu_f32.jsonl"), rows("gpu_f32.jsonl"), rows("gpu_bf16.jsonl")
print("\n## training 200 steps (tiny llama)")
if cpu and g32:
    n = min(len(cpu), len(g32))
    d = [abs(a["loss"] - b["loss"]) for a, b in zip(cpu[:n], g32[:n])]
    i = max(range(n), key=lambda k: d[k])
    print(f"gpu f32 vs cpu f32: {n} steps, max |loss diff| {d[i]:.3e} at step {cpu[i]['step']}, "
          f"final cpu {cpu[n-1]['loss']:.4f} gpu {g32[n-1]['loss']:.4f}")
for name, r in (("cpu f32", cpu), ("gpu f32", g32), ("gpu bf16", g16)):
    if r:
        last10 = sum(x["loss"] for x in r[-10:]) / len(r[-10:])
        print(f"{name:8}: loss step1 {r[0]['loss']:.4f}, mean of last 10 {last10:.4f}, "
              f"tokens/s (last) {r[-1]['tokens_per_s']:.0f}")
print("\n## llama-3.2-1b training step, batch 4 x 2048")
print(f"{'run':28} {'ms/step':>8} {'tok/s':>8} {'TFLOP/s':>8} {'MFU':>6} {'mem GiB':>8}")
for r in rows("bench.jsonl"):
    print(f"{'graft ' + r['layers'] + ' ' + r['dtype']:28} {r['ms_per_step']:8.1f} "
          f"{r['tokens_per_s']:8.0f} {r['model_tflops']:8.1f} {r['mfu'] or 0:6.3f} "
          f"{r['peak_mem_gib']:8.1f}  gemm peak {r['gemm_peak_tflops']}")
for r in rows("speed.jsonl"):
    tl = r.get("train_loop") or {}
    print(f"{'graft ' + r['layers'] + ' L' + str(r['num_layers']) + ' s' + str(r['seq']):28} "
          f"{r['ms_per_step']:8.1f} {r['tokens_per_s']:8.0f} {r['model_tflops']:8.1f} "
          f"{r['mfu'] or 0:6.3f} {r['peak_mem_gib']:8.1f}  attention {r['attention']}"
          + (f"  train loop {tl['tokens_per_s']:.0f} tok/s (grad_accum {tl['grad_accum']})"
             if tl else ""))
    prof = r.get("profile")
    if prof:
        print(f"    profiled step {prof['step_ms']:.1f} ms, unattributed {prof['unattributed_ms']:.1f}")
        for f in prof["families"]:
            print(f"    {f['family']:22} {f['ms_per_step']:8.2f} ms  {f['calls_per_step']:6.0f} calls")
for r in rows("floor.jsonl"):
    print("floor", r)
for r in rows("hf_baseline.jsonl"):
    if "mode" in r and "ms_per_step" in r:
        print(f"{'pytorch ' + r['mode']:28} {r['ms_per_step']:8.1f} {r['tokens_per_s']:8.0f} "
              f"{r['model_tflops']:8.1f} {r['mfu_vs_measured_gemm']:6.3f} {r['peak_mem_gib']:8.1f}")
    elif "ceiling_bf16_gemm_tflops" in r:
        print(f"(pytorch ceilings: bf16 GEMM {r['ceiling_bf16_gemm_tflops']} TFLOP/s, "
              f"copy {r['ceiling_copy_tb_s']} TB/s, {r['gpu']})")
    else:
        print("pytorch", r)
PY
