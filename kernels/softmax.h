// Row softmax over a [rows, cols] matrix, with an optional scale on the input.
//   forward:  y_ij = exp(s x_ij - max_k s x_ik) / sum_k exp(s x_ik - max_k s x_ik)
//   backward: dx_ij = s y_ij (dy_ij - sum_k dy_ik y_ik)
// Accumulate rule: y and dx are written (=); y may alias x, dx may alias dy. A row of -inf gives
// zeros (no NaN). The CPU path requires f32 and accumulates in f64.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct SoftmaxFwdParams {
  const void* x = nullptr;  // [rows, cols]
  void* y = nullptr;        // [rows, cols]
  int64_t rows = 0, cols = 0;
  float scale = 1.0f;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct SoftmaxBwdParams {
  const void* dy = nullptr;  // [rows, cols]
  const void* y = nullptr;   // [rows, cols], the forward output
  void* dx = nullptr;        // [rows, cols] (=)
  int64_t rows = 0, cols = 0;
  float scale = 1.0f;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void softmax_fwd(const SoftmaxFwdParams& p);
void softmax_bwd(const SoftmaxBwdParams& p);
}  // namespace cpu

inline void softmax_fwd(const SoftmaxFwdParams& p) { GRAFT_DISPATCH(softmax_fwd, p); }
inline void softmax_bwd(const SoftmaxBwdParams& p) { GRAFT_DISPATCH(softmax_bwd, p); }

}  // namespace graft
