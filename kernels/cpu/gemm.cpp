// CPU GEMM: OpenBLAS cblas_sgemm on f32; bf16/f16 operands are converted to f32 first and a
// bf16 C is computed in an f32 buffer and rounded once. Math and conventions: kernels/gemm.h.
#include "kernels/gemm.h"

#include <cblas.h>

#include <limits>
#include <vector>

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

using detail::load;
using detail::store;

// Copies a [rows, cols] matrix with row stride ld of type t into a tight f32 buffer.
std::vector<float> to_f32(const void* src, DType t, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = load(src, t, r * ld + c);
  return out;
}

void check(const GemmParams& p) {
  detail::check_cpu(p.device, "gemm");
  GRAFT_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0 && p.batch >= 0, "gemm: bad sizes m = ", p.m,
              ", n = ", p.n, ", k = ", p.k, ", batch = ", p.batch);
  detail::check_float(p.dtype, "gemm", "dtype of A and B");
  GRAFT_CHECK(p.c_dtype == DType::kF32 || p.c_dtype == DType::kBF16,
              "gemm: the CPU kernel writes f32 or bf16 C, got ", dtype_name(p.c_dtype));
  GRAFT_CHECK(!p.bias || p.bias_dtype == DType::kF32 || p.bias_dtype == p.c_dtype,
              "gemm: bias dtype ", dtype_name(p.bias_dtype), " must be f32 or C's dtype ",
              dtype_name(p.c_dtype));
}

}  // namespace

void gemm(const GemmParams& p) {
  check(p);
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;
  // Stored shapes of A and B, and their tight leading dimensions.
  const int64_t a_rows = p.trans_a ? p.k : p.m, a_cols = p.trans_a ? p.m : p.k;
  const int64_t b_rows = p.trans_b ? p.n : p.k, b_cols = p.trans_b ? p.k : p.n;
  const int64_t lda = p.lda ? p.lda : a_cols, ldb = p.ldb ? p.ldb : b_cols;
  const int64_t ldc = p.ldc ? p.ldc : p.n;
  GRAFT_CHECK(lda >= a_cols && ldb >= b_cols && ldc >= p.n, "gemm: leading dimensions lda = ", lda,
              ", ldb = ", ldb, ", ldc = ", ldc, " smaller than rows of ", a_cols, ", ", b_cols,
              ", ", p.n);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();  // cblas takes int sizes
  GRAFT_CHECK(p.m <= kIntMax && p.n <= kIntMax && p.k <= kIntMax && lda <= kIntMax &&
                  ldb <= kIntMax && ldc <= kIntMax,
              "gemm: sizes m = ", p.m, ", n = ", p.n, ", k = ", p.k, " exceed the BLAS int range");
  GRAFT_CHECK(p.k == 0 || (p.a && p.b), "gemm: null A or B");
  GRAFT_CHECK(p.c, "gemm: null C");
  const bool f32_in = p.dtype == DType::kF32, f32_out = p.c_dtype == DType::kF32;
  const size_t a_es = dtype_size(p.dtype), c_es = dtype_size(p.c_dtype);

  for (int64_t bi = 0; bi < p.batch; ++bi) {
    const char* a = static_cast<const char*>(p.a) + bi * p.stride_a * a_es;
    const char* b = static_cast<const char*>(p.b) + bi * p.stride_b * a_es;
    char* c = static_cast<char*>(p.c) + bi * p.stride_c * c_es;

    // f32 views of the operands (converted copies when they are not f32).
    std::vector<float> a32, b32, c32;
    const float* af = reinterpret_cast<const float*>(a);
    const float* bf = reinterpret_cast<const float*>(b);
    int64_t la = lda, lb = ldb;
    if (!f32_in && p.k > 0) {
      a32 = to_f32(a, p.dtype, a_rows, a_cols, lda);
      b32 = to_f32(b, p.dtype, b_rows, b_cols, ldb);
      af = a32.data(), bf = b32.data(), la = a_cols, lb = b_cols;
    }
    float* cf = reinterpret_cast<float*>(c);
    int64_t lc = ldc;
    if (!f32_out) {
      c32.assign(static_cast<size_t>(p.m * p.n), 0.0f);
      if (p.beta != 0.0f) c32 = to_f32(c, p.c_dtype, p.m, p.n, ldc);
      cf = c32.data(), lc = p.n;
    }

    if (p.k > 0) {
      cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans,
                  p.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(p.m),
                  static_cast<int>(p.n), static_cast<int>(p.k), p.alpha, af, static_cast<int>(la),
                  bf, static_cast<int>(lb), p.beta, cf, static_cast<int>(lc));
    } else {  // empty product: C = beta * C
      for (int64_t r = 0; r < p.m; ++r)
        for (int64_t col = 0; col < p.n; ++col)
          cf[r * lc + col] = p.beta == 0.0f ? 0.0f : p.beta * cf[r * lc + col];
    }
    if (p.bias) {
      for (int64_t r = 0; r < p.m; ++r)
        for (int64_t col = 0; col < p.n; ++col) cf[r * lc + col] += load(p.bias, p.bias_dtype, col);
    }
    if (!f32_out) {
      for (int64_t r = 0; r < p.m; ++r)
        for (int64_t col = 0; col < p.n; ++col)
          store(c, p.c_dtype, r * ldc + col, cf[r * p.n + col]);
    }
  }
}

}  // namespace graft::cpu
