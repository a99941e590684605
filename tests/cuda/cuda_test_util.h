// Helpers for the CUDA kernel tests: every test compares a CUDA kernel with the CPU reference
// (kernels/cpu) on fresh random inputs, with the CUDA outputs poisoned (NaN) before the run.
//
// These files never include CUDA headers: tests/cuda is compiled in CPU-only builds too, where
// every test skips (GRAFT_REQUIRE_CUDA) and only graft's public API is linked.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/tensor.h"

#define GRAFT_REQUIRE_CUDA()                                                          \
  do {                                                                                \
    if (!::graft::cuda_available())                                                   \
      GTEST_SKIP() << "no CUDA GPU visible (or a CPU-only build): CUDA test skipped"; \
  } while (0)

namespace graft::cuda_test {

// Tolerances: |got - want| <= atol + rtol * |want| element-wise (TransformerEngine's values).
struct Tol {
  double atol, rtol;
};
constexpr Tol kF32Tol{1e-6, 5e-6};
constexpr Tol kBF16Tol{1e-5, 1e-2};
inline Tol tol_for(DType t) { return t == DType::kF32 ? kF32Tol : kBF16Tol; }
// Unit roundoff of f32 (2^-24), for tolerances derived from summation length.
constexpr double kU32 = 5.9604644775390625e-08;

inline Device gpu() { return Device::cuda(0); }

// Host time of fn() on the GPU, synchronised: the median of 10 runs after 3 warm-up runs, in ms
// (the disabled timing tests).
inline double median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  device_backend().synchronize(gpu());
  std::vector<double> t;
  for (int i = 0; i < 10; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    device_backend().synchronize(gpu());
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Seeded per test from the test's name, so a failure reproduces, but every test and every
// shape draws different values. Values are never zero-filled.
inline std::mt19937 rng_for(const std::string& salt = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string key = std::string(info->test_suite_name()) + "." + info->name() + salt;
  return std::mt19937(static_cast<uint32_t>(std::hash<std::string>{}(key)));
}

// Host f32 tensor of uniform values in [lo, hi), rounded through `dt` so that the CPU
// reference and the GPU kernel see exactly the same numbers.
inline Tensor random_host(const Shape& shape, std::mt19937& rng, DType dt = DType::kF32,
                          float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t = Tensor::empty(shape, DType::kF32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t.to(dt).to(DType::kF32);
}

// Device copy of a host f32 tensor in dtype `dt`.
inline Tensor to_gpu(const Tensor& host, DType dt) { return host.to(dt).to(gpu()); }

// Device tensor filled with NaN (so an element the kernel fails to write cannot pass).
inline Tensor poisoned(const Shape& shape, DType dt) {
  return Tensor::full(shape, std::numeric_limits<float>::quiet_NaN(), dt).to(gpu());
}

inline Tensor to_host_f32(const Tensor& t) { return t.to(Device::cpu()).to(DType::kF32); }

// Element-wise check; NaN never passes. Prints the worst element and the relative norm error.
inline void expect_close(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<float> g = to_host_f32(got).to_f32_vector();
  const std::vector<float> w = to_host_f32(want).to_f32_vector();
  int64_t bad = 0, worst = -1;
  double worst_excess = 0.0, diff2 = 0.0, ref2 = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::fabs(static_cast<double>(g[i]) - w[i]);
    const double lim = tol.atol + tol.rtol * std::fabs(static_cast<double>(w[i]));
    const bool ok = std::isfinite(g[i]) == std::isfinite(w[i]) &&
                    (!std::isfinite(w[i]) ? g[i] == w[i] : d <= lim);
    if (std::isfinite(d)) {
      diff2 += d * d;
      max_abs = std::max(max_abs, d);
    }
    ref2 += static_cast<double>(w[i]) * w[i];
    if (!ok) {
      ++bad;
      const double excess = std::isfinite(d) ? d / lim : std::numeric_limits<double>::infinity();
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  std::printf("  [%s] max|err| = %.3g, rel-norm err = %.3g (atol %.1g, rtol %.1g)\n", what.c_str(),
              max_abs, ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2), tol.atol, tol.rtol);
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size()
                    << " elements out of tolerance; worst at " << worst << ": got "
                    << (worst >= 0 ? g[worst] : 0.0f) << ", want "
                    << (worst >= 0 ? w[worst] : 0.0f);
}

}  // namespace graft::cuda_test
