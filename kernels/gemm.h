// GEMM: C = alpha * op(A) * op(B) + beta * C (+ bias[j] added to every row of column j).
//
// Row-major throughout. op(A) is [m, k] (A stored [m, k], or [k, m] when trans_a); op(B) is
// [k, n] (B stored [k, n], or [n, k] when trans_b); C is [m, n]. Leading dimensions are in
// elements (0 = tight: the stored row length). Strided-batched: `batch` products, the b-th using
// A + b*stride_a, B + b*stride_b, C + b*stride_c (elements); the bias is shared by the batch.
// Accumulate rule: C is written when beta == 0 (its old contents, even NaN, are ignored), and
// scaled-and-added otherwise. Accumulation is in f32 (at least).
//
// A and B share one dtype (f32, bf16 or f16); C is f32 or bf16 (f16 on CUDA too); the bias is
// f32 or the dtype of C. The CPU path converts bf16/f16 inputs to f32 and calls OpenBLAS sgemm.
// The Linear layer's y = x W^T + b is gemm(a = x [rows, in], b = W [out, in], trans_b = true).
#pragma once

#include <cstdint>
#include <string>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct GemmParams {
  const void* a = nullptr;     // [m, k], or [k, m] when trans_a; row stride lda
  const void* b = nullptr;     // [k, n], or [n, k] when trans_b; row stride ldb
  void* c = nullptr;           // [m, n], row stride ldc
  const void* bias = nullptr;  // optional [n], added to each row of C
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;  // 0 = tight
  float alpha = 1.0f, beta = 0.0f;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries
  DType dtype = DType::kF32;                         // of A and B
  DType c_dtype = DType::kF32;                       // of C
  DType bias_dtype = DType::kF32;                    // of bias: f32 or c_dtype
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void gemm(const GemmParams& p);
}  // namespace cpu

// "gemm MxNxK TN bf16->f32 +=" (op(A) op(B) transposes, C dtype, accumulate): the profile name
// under GRAFT_PROFILE_SHAPES (kernels/profile.h).
std::string gemm_profile_name(const GemmParams& p);

inline void gemm(const GemmParams& p) { GRAFT_DISPATCH_DETAIL(gemm, p, gemm_profile_name(p)); }

}  // namespace graft
