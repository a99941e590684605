// RMSNorm / LayerNorm fused with the FP8 cast (TE's LayerNormLinear and LayerNormMLP in FP8: the
// normalised activations are written only in FP8, with their transpose for the wgrad GEMM).
//
//   y    = norm(x)                 kernels/norm.h's math (RMSNorm or LayerNorm, gamma / 1 + gamma,
//                                  beta), never written in high precision; rstd (and mean, for
//                                  LayerNorm) are written per row for the norm's backward
//   q    = fp8(y * scale)          then as fp8_quantize (kernels/fp8.h) on y: round to nearest
//   qt   = q transposed              even, saturate; amax = max(amax, max |y|), NaN wins;
//   amax, scale_inv = 1 / scale      each optional
// y is evaluated in f32 and cast from f32 (the unfused GPU path rounds it to x's dtype first).
//
// Current scaling needs the amax of y before the cast, so it runs two passes over x:
//   1. q and qt null: the statistics and the amax of y only (nothing is cast, scale unused);
//   2. stats_given: rstd / mean hold what pass 1 wrote for this same x and are read instead of
//      computed again (the result is the one a single call would give); q / qt written.
// Delayed scaling (the scale known before the step) is a single call. rows 0: nothing is written.
//
// CPU reference: cpu::rmsnorm_fwd / layernorm_fwd (f64 statistics, y rounded to f32) into a
// temporary, then cpu::fp8_quantize (or cpu::amax_reduce). It takes f32 only and computes the
// statistics again under stats_given (the same values). The CUDA kernel's f32 statistics differ
// from it by rounding, so a byte may differ where y * scale lies within that rounding of a
// midpoint between two FP8 codes (tests/cuda/fp8_norm_test.cpp).
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct Fp8NormQuantizeParams {
  // [rows, cols] in dtype (f32, bf16, f16; f32 on the CPU), independent of weight_dtype: an
  // f32 residual stream (precision.residual: f32) is normalised from f32 with bf16 gamma / beta.
  const void* x = nullptr;
  const void* gamma = nullptr;  // [cols] in weight_dtype
  const void* beta = nullptr;   // [cols], LayerNorm only, optional
  bool layer_norm = false;      // LayerNorm (subtract the mean) or RMSNorm
  float eps = 1e-5f;
  bool zero_centered_gamma = false;
  float* rstd = nullptr;  // [rows], written (read under stats_given)
  float* mean = nullptr;  // [rows], LayerNorm, written (read under stats_given)
  bool stats_given = false;
  void* q = nullptr;   // [rows, cols] fp8, optional
  void* qt = nullptr;  // [cols, rows] fp8, optional
  DType fp8 = DType::kF8E4M3;
  const float* scale = nullptr;  // [1]; needed when q or qt is set
  float* amax = nullptr;         // [1] optional, accumulated with max
  float* scale_inv = nullptr;    // [1] optional, written
  int64_t rows = 0, cols = 0;
  DType dtype = DType::kF32;         // x
  DType weight_dtype = DType::kF32;  // gamma, beta
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void fp8_norm_quantize(const Fp8NormQuantizeParams& p);
}  // namespace cpu

inline void fp8_norm_quantize(const Fp8NormQuantizeParams& p) {
  GRAFT_DISPATCH(fp8_norm_quantize, p);
}

}  // namespace graft
