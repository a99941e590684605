// RMSNorm and LayerNorm over the last dimension of a [rows, cols] matrix.
//
//   RMSNorm:   rstd = 1 / sqrt(mean_j(x_j^2) + eps);            x̂ = x * rstd
//   LayerNorm: mean = mean_j(x_j); rstd = 1 / sqrt(mean_j((x_j - mean)^2) + eps); x̂ = (x - mean) *
//   rstd y = x̂ * g (+ beta for LayerNorm, when given), with g = gamma, or g = 1 + gamma when
//   zero_centered_gamma (Gemma).
// Forward saves rstd (and mean for LayerNorm) per row in f32 for the backward.
// Backward, with dx̂ = dy * g:
//   RMSNorm:   dx = rstd * (dx̂ - x̂ * mean_j(dx̂ * x̂))
//   LayerNorm: dx = rstd * (dx̂ - mean_j(dx̂) - x̂ * mean_j(dx̂ * x̂))
//   dgamma += sum_rows(dy * x̂), dbeta += sum_rows(dy).
// Accumulate rule: y and dx are written (=); dgamma and dbeta accumulate (+=), always in f32, or
// are written (=, their old contents never read) when !accumulate (a step's first contribution).
// Rows are contiguous (row stride = cols). x/y/dy/dx share `dtype`; gamma/beta have `weight_dtype`.
// The CPU path computes in f64 from f32, bf16 or f16 storage.
//
// Fused residual add (TE / Apex style, one pass instead of an add kernel and a norm kernel):
//   forward with `residual`:   s = round(x + residual) (in `dtype`, as a separate add would
//     store it), written to residual_out (the next residual, and the x the backward needs); the
//     norm is of s.
//   backward with `dresidual`: dx = round(norm_dx + dresidual) (one rounding: the gradient that
//     reaches s through the residual branch joins the norm's input gradient in f32).
// The fused calls are profiled as their own families (rmsnorm_fwd_add, rmsnorm_bwd_add,
// layernorm_fwd_add, layernorm_bwd_add).
//
// An f32 residual stream (precision.residual: f32, TE's fp32_residual_connection) with 16-bit
// activations: the stream's tensors take `residual_dtype` = f32 while the normalised output y and
// the gradient dy arriving from the branch stay in `dtype`:
//   forward without `residual`: x (the stream itself) in residual_dtype, y in dtype;
//   forward with `residual`:    x (the branch output) in dtype, residual and residual_out in
//     residual_dtype; s = x + residual is added and kept in f32 (no rounding to dtype);
//   backward: dy in dtype; x (the saved stream), dx and dresidual in residual_dtype.
// residual_dtype == dtype (the default) is the single-dtype case above. The CPU path takes f32,
// bf16 and f16 storage in any of these combinations; CUDA takes residual_dtype == dtype, or
// residual_dtype f32 with dtype bf16 and weight_dtype bf16 or f32 (the model's activations are
// f32 or bf16: layers/reference/common.h).
#pragma once

#include <cstdint>
#include <optional>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct NormFwdParams {
  const void* x = nullptr;         // [rows, cols]
  const void* gamma = nullptr;     // [cols]
  const void* beta = nullptr;      // [cols], LayerNorm only, optional
  void* y = nullptr;               // [rows, cols]; may alias x (not residual_out)
  const void* residual = nullptr;  // [rows, cols], optional: normalise x + residual
  void* residual_out = nullptr;    // [rows, cols], x + residual (=); needed with residual; may
                                   // alias x or residual
  float* rstd = nullptr;           // [rows], optional (needed by backward)
  float* mean = nullptr;           // [rows], LayerNorm only, optional (needed by backward)
  int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  bool zero_centered_gamma = false;
  DType dtype = DType::kF32;         // x, y
  DType weight_dtype = DType::kF32;  // gamma, beta
  // residual, residual_out, and x when there is no residual (see above); unset = dtype.
  std::optional<DType> residual_dtype;
  Device device;
  void* stream = nullptr;

  // The dtypes of x and of residual / residual_out.
  DType x_type() const { return residual ? dtype : residual_type(); }
  DType residual_type() const { return residual_dtype.value_or(dtype); }
};

struct NormBwdParams {
  const void* dy = nullptr;         // [rows, cols]
  const void* x = nullptr;          // [rows, cols], the forward input
  const void* gamma = nullptr;      // [cols]
  const float* rstd = nullptr;      // [rows], from forward
  const float* mean = nullptr;      // [rows], from forward (LayerNorm)
  void* dx = nullptr;               // [rows, cols] (=); may alias dy
  const void* dresidual = nullptr;  // [rows, cols], optional: added into dx; may alias dx or dy
  float* dgamma = nullptr;          // [cols] (+=), optional
  float* dbeta = nullptr;           // [cols] (+=), LayerNorm only, optional
  bool accumulate = true;           // dgamma, dbeta: += (true) or = (false)
  int64_t rows = 0, cols = 0;
  bool zero_centered_gamma = false;
  DType dtype = DType::kF32;            // dy (and x, dx, dresidual unless residual_dtype is set)
  DType weight_dtype = DType::kF32;     // gamma
  std::optional<DType> residual_dtype;  // x, dx, dresidual (see above); unset = dtype
  Device device;
  void* stream = nullptr;

  DType residual_type() const { return residual_dtype.value_or(dtype); }
};

namespace cpu {
void rmsnorm_fwd(const NormFwdParams& p);
void rmsnorm_bwd(const NormBwdParams& p);
void layernorm_fwd(const NormFwdParams& p);
void layernorm_bwd(const NormBwdParams& p);
// The same functions under the fused families' names (the profile tells them apart).
inline void rmsnorm_fwd_add(const NormFwdParams& p) { rmsnorm_fwd(p); }
inline void rmsnorm_bwd_add(const NormBwdParams& p) { rmsnorm_bwd(p); }
inline void layernorm_fwd_add(const NormFwdParams& p) { layernorm_fwd(p); }
inline void layernorm_bwd_add(const NormBwdParams& p) { layernorm_bwd(p); }
}  // namespace cpu

inline void rmsnorm_fwd(const NormFwdParams& p) {
  if (p.residual)
    GRAFT_DISPATCH(rmsnorm_fwd_add, p);
  else
    GRAFT_DISPATCH(rmsnorm_fwd, p);
}
inline void rmsnorm_bwd(const NormBwdParams& p) {
  if (p.dresidual)
    GRAFT_DISPATCH(rmsnorm_bwd_add, p);
  else
    GRAFT_DISPATCH(rmsnorm_bwd, p);
}
inline void layernorm_fwd(const NormFwdParams& p) {
  if (p.residual)
    GRAFT_DISPATCH(layernorm_fwd_add, p);
  else
    GRAFT_DISPATCH(layernorm_fwd, p);
}
inline void layernorm_bwd(const NormBwdParams& p) {
  if (p.dresidual)
    GRAFT_DISPATCH(layernorm_bwd_add, p);
  else
    GRAFT_DISPATCH(layernorm_bwd, p);
}

}  // namespace graft
