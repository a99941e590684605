// The FP8 GEMM's bias fallback (kernels/cuda/fp8.cu), for fp8_gemm.cpp: where cuBLASLt has no
// FP8 algorithm with CUBLASLT_EPILOGUE_BIAS for the types, C[r, j] += bias[j] after the GEMM
// (in f32; with a bf16 C that rounds once more, after the GEMM's own rounding of C).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "framework/core/dtype.h"

namespace graft::cuda {

// c [m, n] row-major (bf16 or f32), bias [n] (bf16 or f32).
void fp8_gemm_add_bias(void* c, DType c_dtype, const void* bias, DType bias_dtype, int64_t m,
                       int64_t n, cudaStream_t stream);

}  // namespace graft::cuda
