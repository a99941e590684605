// The trainer's figures beyond the loss: mfu, peak memory, and the paragraph that ends a run.
//
// mfu = flops/token (model_flops_per_token of framework/train/bench.h, at data.seq_len) ·
// tokens/s (global) / (peak · devices). The peak (per device, TFLOP/s) is logging.peak_tflops when
// given; otherwise on CUDA it is measured once at start as graft bench does (median of 10 bf16
// 8192³ GEMMs through the same GEMM entry point, so mfu is relative to what this GPU's GEMM
// reaches, not the datasheet); on the CPU there is no meaningful peak and mfu is left out.
// peak_mem_gib: the device allocator's peak on CUDA (device_backend().peak_bytes), the process's
// maximum resident set (getrusage ru_maxrss) on the CPU; this rank's (rank 0 writes metrics).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "framework/core/device.h"
#include "framework/recipe/recipe.h"

namespace graft {

struct MfuMeter {
  double flops_per_token = 0;
  double peak_tflops = 0;  // per device; 0 = unknown (no mfu)
  int64_t devices = 1;
  std::string source;  // how the peak was found, for the start-up message ("" = none)
  std::optional<double> mfu(double tokens_per_s) const;
};

// Measures the GEMM peak on CUDA when logging.peak_tflops is 0 (then resets the memory peak).
MfuMeter make_mfu_meter(const Recipe& r, const ModelConfig& model, Device device, int64_t devices);

double peak_mem_gib(Device device);

struct RunSummary {
  int64_t first_step = 0, last_step = 0;  // steps first+1..last ran in this invocation
  double tokens = 0;                      // trained on in this invocation
  double total_tokens = 0;                // since step 0 (more than `tokens` after a resume)
  double wall_s = 0;
  std::optional<double> best_eval, last_eval;
  int64_t best_eval_step = 0, last_eval_step = 0;
  bool eval_configured = false;
  std::string last_checkpoint;  // "" = none written
  std::string hf_export;        // "" = none written
};

// "summary: 180 steps (1..180), 368,640 tokens in 2m15s (2,731 tokens/s); best eval loss 2.0412
// (ppl 7.70) at step 180, last 2.0412 at step 180; last checkpoint runs/tiny/step-00000180;
// no HF export (graft export --checkpoint runs/tiny/step-00000180 --out DIR writes one)."
std::string format_summary(const RunSummary& s);

// 368640 -> "368,640"
std::string with_commas(double value);

}  // namespace graft
