#!/usr/bin/env bash
# The GPU run of issue 10 (FP8), in one device call: the FP8 kernel and layer tests, parity in
# FP8 on the GPU, 200 steps of the tiny Llama in bf16 and in FP8 (delayed, current) with a
# mid-run FP8 resume, and the benchmarks of issue 10's speed targets — Llama 3.2 1B at 4 x 2048
# and four Llama-3-8B layers at 1 x 8192, each in bf16, FP8 delayed and FP8 current — next to
# ../shared/bench/floor.py in the same call, so every ratio comes from one machine minutes apart.
# Logs go to $OUT (default ./bench-out); a summary is printed last.
#
# Needs (as scripts/bench-gpu.sh): build-gpu/gpubin/{graft,test_cuda} (scripts/gpu-build.sh),
# .shared/bench/floor.py, .shared/bench/tiny.yaml and its data_tiny/ (docs/performance.md).
#
#   run: carry ["build-gpu/gpubin", ".shared"], command "scripts/bench-fp8-gpu.sh"
#
# STAGES (default "tests parity train bench") picks stages.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-out}"
mkdir -p "$out"
bin=build-gpu/gpubin
sb=.shared/bench
stages="${STAGES:-tests parity train bench}"
want() { [[ " $stages " == *" $1 "* ]]; }
stage() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/stages.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"

if want tests; then
  stage "test_cuda FP8"
  timeout 240 $bin/test_cuda --gtest_filter='*Fp8*' --gtest_brief=1 > "$out/test_cuda_fp8.log" 2>&1
  echo "test_cuda fp8 rc=$?" >> "$out/stages.log"
  tail -3 "$out/test_cuda_fp8.log"
fi

if want parity; then
  stage "parity --fp8"
  : > "$out/parity_fp8.jsonl"
  for fx in llama-gqa gemma-mqa qwen3-qknorm; do
    for dt in f32 bf16; do
      for r in delayed current; do
        timeout 60 $bin/graft parity --checkpoint tests/fixtures/hf/$fx --device cuda --dtype $dt \
          --layers te --fp8 $r >> "$out/parity_fp8.jsonl" 2>> "$out/parity_fp8.err"
        echo "parity $fx $dt $r rc=$?" >> "$out/stages.log"
      done
    done
  done
fi

if want train; then
  stage "train tiny 200 steps: bf16, fp8 delayed, fp8 current, fp8 delayed resumed at 100"
  common=(--recipe $sb/tiny.yaml --set train.steps=200 --set train.sample_tokens=0
          --set logging.every=1 --set device=cuda --set precision.params=bf16 --set model.layers=te)
  for r in none delayed current; do
    timeout 200 $bin/graft train "${common[@]}" --set precision.fp8.recipe=$r \
      --metrics-out "$out/train_$r.jsonl" > "$out/train_$r.log" 2>&1
    echo "train $r rc=$?" >> "$out/stages.log"
  done
  rm -rf "$out/ck"
  ck=(--set precision.fp8.recipe=delayed --set checkpoint.dir="$out/ck")
  timeout 200 $bin/graft train "${common[@]}" "${ck[@]}" --set train.stop_after=100 \
    --metrics-out "$out/train_resume.jsonl" > "$out/train_resume1.log" 2>&1
  timeout 200 $bin/graft train "${common[@]}" "${ck[@]}" \
    --metrics-out "$out/train_resume.jsonl" > "$out/train_resume2.log" 2>&1
  echo "train resume rc=$?" >> "$out/stages.log"
fi

if want bench; then
  stage "bench: 1B and 8B-layers in bf16 / fp8 delayed / fp8 current, and floor.py"
  : > "$out/bench_fp8.jsonl"
  eightb=(--recipe recipes/llama-3-8b.yaml --set model.config.num_hidden_layers=4
          --set train.batch_size=1 --set data.seq_len=8192)
  for r in none delayed current; do
    timeout 150 $bin/graft bench --recipe recipes/llama-3.2-1b.yaml --set model.layers=te \
      --set precision.fp8.recipe=$r >> "$out/bench_fp8.jsonl" 2> "$out/bench_1b_$r.err"
    echo "bench 1b $r rc=$?" >> "$out/stages.log"
    timeout 200 $bin/graft bench "${eightb[@]}" --set precision.fp8.recipe=$r \
      >> "$out/bench_fp8.jsonl" 2> "$out/bench_8b_$r.err"
    echo "bench 8b-layers $r rc=$?" >> "$out/stages.log"
  done
  # The per-region breakdown (casts, GEMMs, scale update) of the 1B step, events around each region.
  GRAFT_FP8_PROFILE=1 timeout 150 $bin/graft bench --recipe recipes/llama-3.2-1b.yaml \
    --set model.layers=te --set precision.fp8.recipe=delayed > "$out/bench_fp8_profile.jsonl" \
    2> "$out/bench_fp8_profile.err"
  echo "bench 1b delayed profiled rc=$?" >> "$out/stages.log"
  timeout 240 python3 $sb/floor.py > "$out/floor.jsonl" 2> "$out/floor.err"
  echo "floor rc=$?" >> "$out/stages.log"
fi
stage "done"

python3 - "$out" <<'PY'
import json, os, sys
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
print("\n## parity --fp8 (cuda)")
for r in rows("parity_fp8.jsonl"):
    print(f"{r['arch']:6} {r['dtype']:4} {r['fp8']:8} logits {r['logits_rel_err']:.3f} "
          f"padded {r['padded_logits_rel_err']:.3f} loss {r['loss_abs_err']:.2e} "
          f"grad {r['grad_max_rel_err']:.3f} step1 {r['step1_max_rel_err']:.2e} "
          f"gen {r['generate_match']} pass {r['pass']}")
print("\n## tiny llama, 200 steps, bf16 te on cuda")
runs = {r: rows(f"train_{r}.jsonl") for r in ("none", "delayed", "current")}
base = runs["none"]
for r, m in runs.items():
    if not m: continue
    last10 = sum(x["loss"] for x in m[-10:]) / len(m[-10:])
    rel = "" if not base or r == "none" else \
        f", vs bf16 {100 * (m[-1]['loss'] - base[-1]['loss']) / base[-1]['loss']:+.2f}%"
    print(f"{r:8}: final loss {m[-1]['loss']:.4f}, mean of last 10 {last10:.4f}{rel}")
res, full = rows("train_resume.jsonl"), runs["delayed"]
if res and full:
    same = [a["loss"] == b["loss"] for a, b in zip(res, full)]
    print(f"resume at 100 in fp8 delayed: {sum(same)}/{len(same)} steps bit-identical to the "
          f"uninterrupted run")
print("\n## bench (ms/step, peak GiB)")
b = rows("bench_fp8.jsonl")
for r in b:
    print(f"{r['arch']} {r['num_layers']} layers {r['batch']}x{r['seq']} fp8 {r['fp8']:8} "
          f"{r['ms_per_step']:8.1f} ms  {r['tokens_per_s']:8.0f} tok/s  {r['peak_mem_gib']:6.1f} GiB")
for shape in sorted({(r["num_layers"], r["seq"]) for r in b}):
    g = {r["fp8"]: r for r in b if (r["num_layers"], r["seq"]) == shape}
    if "none" in g:
        for k in ("delayed", "current"):
            if k in g:
                print(f"{shape}: {k} / bf16 = {g[k]['ms_per_step'] / g['none']['ms_per_step']:.3f}")
for r in rows("bench_fp8_profile.jsonl"):
    print("1B delayed, FP8 regions per step (ms):", json.dumps(r.get("fp8_breakdown_ms")),
          f"(step {r['ms_per_step']:.1f} ms with the events)")
for r in rows("floor.jsonl"):
    print(f"floor {r['shape']}: bf16 {r['bf16_floor_ms']} ms, fp8 {r['fp8_floor_ms']} ms")
PY
