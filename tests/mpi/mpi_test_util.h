// Helpers for the multi-rank tests (graft_mpi_tests, run under mpirun): per-rank input values,
// their hand-computed reductions, and element-wise comparison that reports the first mismatch.
//
// Inputs: element i of rank r is value(i, r, dtype): multiples of 1/64 in [-15.6, 15.6] for float
// dtypes (then rounded to the dtype, which bf16 does for most of them), integers for i64 with a
// 2^40 term on every third element so 64-bit sums and maxima are exercised (i32: 10^6; u8: small
// enough that sums over 4 ranks fit).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "framework/core/dtype.h"
#include "framework/core/tensor.h"
#include "parallel/launch.h"
#include "parallel/parallel_state.h"
#include "parallel/process_group.h"

namespace graft::mpi_test {

// The value as stored in `dtype` (so expectations see what the tensor holds).
inline double value(int64_t i, int r, DType dtype) {
  const uint64_t h = (static_cast<uint64_t>(i) * 2654435761ull + r * 97531ull) % 2001;
  const int64_t k = static_cast<int64_t>(h) - 1000;
  if (dtype == DType::kU8) return static_cast<double>(h % 50);  // sums of 4 ranks fit
  if (dtype == DType::kI32) return static_cast<double>(k + (i % 3 == 0 ? r * 1000000 : 0));
  if (!dtype_is_float(dtype)) return static_cast<double>(k + (i % 3 == 0 ? r * (1ll << 40) : 0));
  const float v = static_cast<float>(k) / 64.0f;  // exact in f32 and f64
  if (dtype == DType::kBF16) return bf16_to_f32(f32_to_bf16(v));
  if (dtype == DType::kF16) return f16_to_f32(f32_to_f16(v));
  return v;
}

inline Tensor make_tensor(int64_t n, DType dtype, const std::function<double(int64_t)>& f) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = f(i);
  Tensor t = Tensor::empty({n}, dtype);
  convert_elements(v.data(), DType::kF64, t.raw(), dtype, static_cast<size_t>(n));
  return t;
}

inline std::vector<double> values_of(const Tensor& t) {
  Tensor c = t.device().is_cpu() ? t : t.to(Device::cpu());
  std::vector<double> v(c.numel());
  convert_elements(c.raw(), c.dtype(), v.data(), DType::kF64, v.size());
  return v;
}

// op over ranks of element f(r); integers exactly (avg truncates), floats in double.
inline double reduce_expected(ReduceOp op, int size, DType dtype,
                              const std::function<double(int)>& f) {
  if (!dtype_is_float(dtype)) {
    int64_t s = 0, m = INT64_MIN;
    for (int r = 0; r < size; ++r) {
      const int64_t x = static_cast<int64_t>(f(r));
      s += x;
      m = std::max(m, x);
    }
    return static_cast<double>(op == ReduceOp::kMax ? m : op == ReduceOp::kSum ? s : s / size);
  }
  double s = 0, m = -INFINITY;
  for (int r = 0; r < size; ++r) {
    s += f(r);
    m = std::max(m, f(r));
  }
  return op == ReduceOp::kMax ? m : op == ReduceOp::kSum ? s : s / size;
}

// Allowed |got - want| for a reduction result `want` in `dtype`.
//  - max, integers and anything moved without arithmetic: exact.
//  - f32 / f64: the inputs are multiples of 2^-6 below 2^4, so sums of a few ranks are exact;
//    only avg's division rounds once: 2^-24 (f32) / 2^-53 (f64) relative. We allow 4 ulps.
//  - bf16: the MPI backend sums in f32 (exact here, as above) and rounds once to bf16, whose
//    8 significant bits give a relative error of at most 2^-9; NCCL sums in bf16, rounding at
//    each of its (size - 1) steps. We allow size * 2^-8 relative, plus 2^-8 absolute for
//    sums that cancel to (near) zero.
inline double tolerance(ReduceOp op, DType dtype, double want, int size) {
  if (op == ReduceOp::kMax || !dtype_is_float(dtype)) return 0;
  const double a = std::fabs(want);
  switch (dtype) {
    case DType::kF32:
      return 4 * a * std::ldexp(1.0, -24);
    case DType::kF64:
      return 4 * a * std::ldexp(1.0, -53);
    default:
      return size * (a + 1) * std::ldexp(1.0, -8);
  }
}

// Checks every element; reports the count and the first mismatch only.
inline ::testing::AssertionResult all_close(const std::vector<double>& got,
                                            const std::function<double(int64_t)>& want,
                                            const std::function<double(double)>& tol) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
    const double w = want(i);
    if (!(std::fabs(got[i] - w) <= tol(w))) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << got.size() << " elements differ; first at " << first << ": got "
         << got[first] << ", want " << want(first) << " (tolerance " << tol(want(first)) << ")";
}

// Groups of the default layout (dp = world) over the CPU, built once per process.
inline const ParallelGroups& cpu_groups() {
  static std::shared_ptr<const ParallelGroups> g = [] {
    ParallelConfig c;
    c.timeout_s = 120;
    return make_parallel_groups(c, world_info(), Device::cpu(), "mpi-test");
  }();
  return *g;
}

}  // namespace graft::mpi_test
