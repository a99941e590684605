// `graft bench`: the speed of one full training step of a recipe's model.
//
// The recipe's model is built on the recipe's device with its precision (bf16 parameters with
// f32 master weights on a GPU; emulated bf16 on the CPU, as the trainer does) and seeded random
// weights. Each step runs on seeded random token ids [train.batch_size, data.seq_len] (one
// micro-batch; train.grad_accum is not applied): zero grads, forward, backward, global grad
// norm, clipping to optim.grad_clip, AdamW at optim.lr. Warm-up steps first, then every step is
// timed alone (CUDA events on a GPU, the steady clock on the CPU) and the median is reported.
//
// Model FLOPs per token (the formula of the PyTorch baseline, so ratios are comparable):
//   h = hidden, L = layers, f = ffn, V = vocab, kv = kv_heads · (h / heads), s = seq_len
//   dense = L · (2h² + 2h·kv + 3h·f) + h·V
//   flops/token = 6 · dense + 6 · L · s · h      (causal attention: half of 12·L·s·h)
// model_tflops = flops/token · tokens / time; mfu = model_tflops / gemm_peak_tflops, where the
// peak is the median time of a bf16 8192³ GEMM through the same GEMM entry point (cuBLASLt),
// measured in the same run (CPU: no peak, mfu null).
//
// With train_loop (graft bench --train-loop) the recipe's own loop runs afterwards, in the same
// process: a Trainer (framework/train/trainer.h) on the recipe's data with its sampler,
// train.grad_accum, logging and evaluation, for warmup + steps optimizer steps, without
// checkpoints or the end-of-run sample. Its figure is the wall time of the steps after the
// warm-up (the trainer's own clock, host syncs and logging included): train_loop.tokens_per_s =
// batch_size · grad_accum · seq_len · steps / that time. The bench step's figures stay those of
// one micro-batch per optimizer step, so both are reported side by side.
#pragma once

#include <cstdint>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "framework/model/causal_lm.h"
#include "framework/recipe/recipe.h"

namespace graft {

struct BenchOptions {
  int64_t warmup = 3;
  int64_t steps = 10;      // timed steps (>= 1)
  int64_t gemm_reps = 10;  // timed 8192³ GEMMs (GPU)
  int64_t gemm_size = 8192;
  bool train_loop = false;         // also time the recipe's own training loop (above)
  bool profile = false;            // also time each kernel family over `steps` more steps (GPU)
  std::ostream* log = &std::cerr;  // progress lines ("" to silence: nullptr)
};

// Per kernel family, per step (kernels/profile.h), from `steps` profiled steps after the timed
// ones: families sorted by time; step_ms is the profiled steps' own time (events add a little),
// unattributed_ms what no dispatched kernel accounts for (memsets, copies, launch gaps).
struct KernelProfileRow {
  std::string family;
  double ms_per_step = 0, calls_per_step = 0;
};
struct BenchProfile {
  double step_ms = 0, unattributed_ms = 0;
  std::vector<KernelProfileRow> families;
};

// The recipe's training loop timed by the trainer's clock (bench.h, train_loop).
struct TrainLoopResult {
  int64_t warmup = 0, steps = 0, grad_accum = 1;
  double ms_per_step = 0;   // per optimizer step (grad_accum micro-batches)
  double tokens_per_s = 0;  // of the timed steps
  double peak_mem_gib = 0;  // allocator peak over the loop (GPU); 0 on the CPU
  double last_loss = 0;
  std::string attention;          // what the last step's attention kernels ran
  bool cuda_graph = false;        // train.cuda_graph: the timed steps replayed a CUDA graph
  std::string cuda_graph_reason;  // why not, when train.cuda_graph was asked for ("" otherwise)
};

struct BenchResult {
  std::string arch, layers, device, dtype, attention;
  std::string fp8 = "none";      // precision.fp8.recipe
  std::string residual = "f32";  // the residual stream's dtype (precision.residual)
  bool recompute = false;        // train.recompute: activation recompute per decoder layer
  // train.cuda_graph: whether the timed steps were replays of one captured CUDA graph, and why
  // not when it was asked for and the step ran eagerly ("" otherwise).
  bool cuda_graph = false;
  std::string cuda_graph_reason;
  // GRAFT_FP8_PROFILE=1: ms per timed step of each FP8 region (layers/te/fp8_profile.h).
  std::map<std::string, double> fp8_breakdown_ms;
  std::vector<std::string> layer_types;
  int64_t params = 0, num_layers = 0, batch = 0, seq = 0;
  int64_t warmup = 0, steps = 0;
  double ms_per_step = 0, ms_min = 0, ms_max = 0;
  double tokens_per_s = 0, flops_per_token = 0, model_tflops = 0;
  std::optional<double> gemm_peak_tflops, mfu;
  double peak_mem_gib = 0;  // allocator peak (GPU); 0 on the CPU
  double first_loss = 0, last_loss = 0;
  std::optional<TrainLoopResult> train_loop;  // with BenchOptions::train_loop
  std::optional<BenchProfile> profile;        // with BenchOptions::profile on a GPU

  nlohmann::json to_json() const;       // the one line graft bench prints
  nlohmann::json profile_json() const;  // "profile" of that line (null without one)
};

// Median TFLOP/s of `reps` bf16 n³ GEMMs (bf16 out, f32 accumulation) through graft::gemm, after
// 3 untimed ones: the peak mfu is taken against (graft bench, and the trainer's metrics on CUDA).
double gemm_peak_tflops(Device dev, int64_t n, int64_t reps);

// flops/token of the formula above for `c` at sequence length `seq`.
double model_flops_per_token(const ModelConfig& c, int64_t seq);

// InputError for bad options (steps < 1, ...) or an unusable recipe.
BenchResult run_bench(const Recipe& recipe, const BenchOptions& opt = {});
// The recipe's training loop alone (what run_bench adds with train_loop).
TrainLoopResult run_train_loop_bench(const Recipe& recipe, const BenchOptions& opt);

}  // namespace graft
