// AdamW (torch.optim.AdamW, decoupled weight decay) and the global gradient norm.
//
// For each element, with g = grad * grad_scale and t = step (1 for the first step):
//   p = p * (1 - lr * wd)
//   m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g²
//   p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//   param_copy = p rounded to copy_dtype (optional: the bf16 weights of a mixed-precision run)
// Accumulate rule: p, m, v are updated in place; param_copy is written (=).
// grad_scale folds gradient clipping (min(1, max_norm / norm)) and loss scaling into the step.
// Clipping on the device (no host round trip of the norm): with `norm_sq` set (a device scalar,
// the sum of g² from grad_norm with squared = true) the kernel's prologue computes, in f64 as the
// host would, norm = sqrt(*norm_sq) and multiplies grad_scale by (float)(max_norm / norm) when
// max_norm > 0 and norm > max_norm. When the norm or *loss (optional) is not finite the update
// is skipped: nothing is written (the caller learns it from the same scalars afterwards).
// Per-step scalars from memory (CUDA graphs): with `step_scalars` set, the update reads lr,
// lr / (1 - beta1^t) and sqrt(1 - beta2^t) from that [3] f32 buffer on the params' device when it
// runs (adamw_step_scalars writes them, the same bits the host path computes), instead of taking
// lr and step as launch arguments, so a captured graph replays with each step's values.
// Global norm: out = sqrt(sum over tensors and elements of g²) (or the sum of squares itself when
// `squared`, e.g. to all-reduce across ranks before the square root); written (=), f32, on device.
// f32 params/grads/moments; the CPU path accumulates the norm in f64.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct AdamWHyper {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  int64_t step = 1;  // 1-based count of steps taken including this one
  float grad_scale = 1.0f;
  const float* norm_sq = nullptr;  // optional [1], on the params' device: clip + skip on device
  double max_norm = 0.0;           // with norm_sq: clip to this global norm (<= 0: no clipping)
  const float* loss = nullptr;     // optional [1], with norm_sq: non-finite skips the update
  const float* step_scalars = nullptr;  // optional [3] AdamWStepScalars, read instead of lr, step
};

// The values of one step that a replayed graph cannot take as launch arguments; the bias
// corrections in f64 as torch computes them on the host, each rounded once to f32.
struct AdamWStepScalars {
  float lr, step_size, bc2_sqrt;  // lr, lr / (1 - beta1^t), sqrt(1 - beta2^t)
};
inline AdamWStepScalars adamw_step_scalars(float lr, float beta1, float beta2, int64_t step) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  return {lr, static_cast<float>(lr / bc1), static_cast<float>(std::sqrt(bc2))};
}
static_assert(sizeof(AdamWStepScalars) == 3 * sizeof(float), "read as float[3] by the kernels");

struct AdamWParams {
  float* param = nullptr;       // [n] f32 master weights
  const float* grad = nullptr;  // [n]
  float* m = nullptr;           // [n] first moment
  float* v = nullptr;           // [n] second moment
  void* param_copy = nullptr;   // [n] optional low-precision copy of param
  DType copy_dtype = DType::kBF16;
  int64_t n = 0;
  AdamWHyper hyper;
  Device device;
  void* stream = nullptr;
};

// One tensor of a multi-tensor step; weight_decay overrides hyper.weight_decay per tensor (so
// norms and biases can be excluded from decay).
struct AdamWTensor {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  void* param_copy = nullptr;
  int64_t n = 0;
  float weight_decay = 0.0f;
};

struct AdamWMultiParams {
  std::vector<AdamWTensor> tensors;
  DType copy_dtype = DType::kBF16;
  AdamWHyper hyper;  // weight_decay unused: each tensor has its own
  Device device;
  void* stream = nullptr;
};

struct GradNormParams {
  std::vector<const float*> grads;  // each [sizes[i]] f32
  std::vector<int64_t> sizes;
  float* out = nullptr;  // [1] f32
  bool squared = false;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void adamw_step(const AdamWParams& p);
void adamw_multi_step(const AdamWMultiParams& p);
void grad_norm(const GradNormParams& p);
}  // namespace cpu

inline void adamw_step(const AdamWParams& p) { GRAFT_DISPATCH(adamw_step, p); }
inline void adamw_multi_step(const AdamWMultiParams& p) { GRAFT_DISPATCH(adamw_multi_step, p); }
inline void grad_norm(const GradNormParams& p) { GRAFT_DISPATCH(grad_norm, p); }

}  // namespace graft
