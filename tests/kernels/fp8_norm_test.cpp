// fp8_norm_quantize on the CPU (the norm fused with the FP8 cast, kernels/fp8_norm.h) against a
// computation written out here: the norm in f64 rounded to f32 (kernels/norm.h's math), then
// framework/core/dtype.cpp's reference converter on y * scale. Bytes, the transposed copy, the
// amax of y, rstd / mean and scale_inv must be exact; the amax-only pass (current scaling's first)
// writes the statistics and the amax only, and the stats_given pass gives the single call's bytes.
#include "kernels/fp8_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace graft {
namespace {

struct Expected {
  std::vector<uint8_t> q;
  std::vector<float> rstd, mean;
  float amax = 0.0f;
};

Expected expected(const std::vector<float>& x, const std::vector<float>& g,
                  const std::vector<float>& b, int64_t rows, int64_t cols, bool layer, bool zc,
                  float eps, float scale, DType fp8) {
  Expected e;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    double mean = 0, ss = 0;
    if (layer) {
      for (int64_t j = 0; j < cols; ++j) mean += xr[j];
      mean /= double(cols);
    }
    for (int64_t j = 0; j < cols; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
    const double rstd = 1.0 / std::sqrt(ss / double(cols) + eps);
    e.rstd.push_back(float(rstd));
    e.mean.push_back(float(mean));
    for (int64_t j = 0; j < cols; ++j) {
      double v = (xr[j] - mean) * rstd * (zc ? 1.0 + g[j] : double(g[j]));
      if (layer) v += b[j];
      const float y = float(v);
      e.amax = std::max(e.amax, std::fabs(y));
      e.q.push_back(fp8 == DType::kF8E4M3 ? f32_to_fp8_e4m3(y * scale)
                                          : f32_to_fp8_e5m2(y * scale));
    }
  }
  return e;
}

void check(int64_t rows, int64_t cols, bool layer, bool zc, DType fp8) {
  SCOPED_TRACE(str(rows, "x", cols, layer ? " LayerNorm" : " RMSNorm", zc ? " zero-centred" : "",
                   " ", dtype_name(fp8)));
  std::mt19937 rng(static_cast<uint32_t>(rows * 131 + cols));
  std::normal_distribution<float> n(0.3f, 1.5f);
  std::vector<float> x(static_cast<size_t>(rows * cols)), g(cols), b(cols);
  for (auto& v : x) v = n(rng);
  for (auto& v : g) v = zc ? 0.3f * n(rng) : 1.0f + 0.3f * n(rng);
  for (auto& v : b) v = 0.2f * n(rng);
  x[0] = 40.0f;  // an outlier: the rest of row 0 normalises small (subnormal codes)
  const float scale = fp8 == DType::kF8E4M3 ? 70.0f : 3000.0f, eps = 1e-5f;
  const Expected e = expected(x, g, b, rows, cols, layer, zc, eps, scale, fp8);

  std::vector<uint8_t> q(x.size(), 0xaa), qt(x.size(), 0xaa);
  std::vector<float> rstd(rows, -1.0f), mean(rows, -1.0f);
  float amax = 0.5f * e.amax, si = 0.0f;  // amax accumulates with max: this one loses
  Fp8NormQuantizeParams p;
  p.x = x.data();
  p.gamma = g.data();
  p.beta = b.data();
  p.layer_norm = layer;
  p.eps = eps;
  p.zero_centered_gamma = zc;
  p.rstd = rstd.data();
  p.mean = layer ? mean.data() : nullptr;
  p.fp8 = fp8;
  p.rows = rows;
  p.cols = cols;
  p.amax = &amax;

  // Current scaling's first pass: statistics and amax, nothing cast.
  fp8_norm_quantize(p);
  EXPECT_EQ(amax, e.amax);
  EXPECT_EQ(q, std::vector<uint8_t>(x.size(), 0xaa));
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_EQ(rstd[r], e.rstd[r]) << "row " << r;
    if (layer) {
      ASSERT_EQ(mean[r], e.mean[r]) << "row " << r;
    }
  }

  // The cast, as a single call (delayed) and as current scaling's second pass.
  for (bool given : {false, true}) {
    SCOPED_TRACE(given ? "stats_given" : "single call");
    std::fill(q.begin(), q.end(), 0xaa);
    std::fill(qt.begin(), qt.end(), 0xaa);
    amax = 0.0f;
    p.stats_given = given;
    p.q = q.data();
    p.qt = qt.data();
    p.scale = &scale;
    p.scale_inv = &si;
    fp8_norm_quantize(p);
    EXPECT_EQ(amax, e.amax);
    EXPECT_EQ(si, 1.0f / scale);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        ASSERT_EQ(q[r * cols + c], e.q[r * cols + c]) << r << ", " << c;
        ASSERT_EQ(qt[c * rows + r], e.q[r * cols + c]) << "transposed " << r << ", " << c;
      }
    }
  }
}

TEST(Fp8NormQuantize, MatchesTheNormThenTheReferenceCast) {
  for (DType fp8 : {DType::kF8E4M3, DType::kF8E5M2}) {
    check(37, 71, false, false, fp8);
    check(5, 64, true, false, fp8);
    check(33, 29, true, true, fp8);
    check(1, 1, false, true, fp8);
  }
}

TEST(Fp8NormQuantize, RejectsACastWithoutAScale) {
  std::vector<float> x(4, 1.0f), g(4, 1.0f), rstd(1);
  std::vector<uint8_t> q(4);
  Fp8NormQuantizeParams p;
  p.x = x.data();
  p.gamma = g.data();
  p.rstd = rstd.data();
  p.q = q.data();
  p.rows = 1;
  p.cols = 4;
  EXPECT_THROW(fp8_norm_quantize(p), Error);
}

}  // namespace
}  // namespace graft
