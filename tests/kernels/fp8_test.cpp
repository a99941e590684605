// FP8 casts and the FP8 GEMM on the CPU (the emulation CI runs): rounding, saturation, NaN,
// amax accumulation, the transposed copy, scale_inv, and the GEMM against a double-precision
// product of the dequantised operands.
#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "framework/core/error.h"

namespace graft {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::vector<uint8_t> quantize(const std::vector<float>& x, int64_t rows, int64_t cols, float scale,
                              DType fp8, float* amax, std::vector<uint8_t>* qt = nullptr,
                              float* scale_inv = nullptr) {
  std::vector<uint8_t> q(x.size());
  if (qt) qt->assign(x.size(), 0);
  Fp8QuantizeParams p;
  p.x = x.data();
  p.q = q.data();
  p.qt = qt ? qt->data() : nullptr;
  p.fp8 = fp8;
  p.rows = rows;
  p.cols = cols;
  p.scale = &scale;
  p.amax = amax;
  p.scale_inv = scale_inv;
  fp8_quantize(p);
  return q;
}

TEST(Fp8, QuantizeRoundsToNearestEvenAndSaturates) {
  // With scale 2: 0.25 * 2 = 0.5 exact; E4M3 has 3 mantissa bits, so 1.0625 lies halfway
  // between 1.0 and 1.125 and rounds to the even 1.0; 300 * 2 = 600 > 448 saturates; inf
  // saturates too; NaN stays NaN.
  const std::vector<float> x = {0.25f, 1.0625f / 2, 300.0f, -kInf, kNaN, -0.0f};
  float amax = 0.0f;
  const auto q = quantize(x, 1, 6, 2.0f, DType::kF8E4M3, &amax);
  EXPECT_EQ(fp8_e4m3_to_f32(q[0]), 0.5f);
  EXPECT_EQ(fp8_e4m3_to_f32(q[1]), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(q[2]), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(q[3]), -448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(q[4])));
  EXPECT_TRUE(std::isnan(amax)) << "a NaN in the tensor must reach the amax";
  float amax5 = 0.0f;
  const auto q5 = quantize({70000.0f, 3.0f}, 1, 2, 1.0f, DType::kF8E5M2, &amax5);
  EXPECT_EQ(fp8_e5m2_to_f32(q5[0]), 57344.0f);
  EXPECT_EQ(fp8_e5m2_to_f32(q5[1]), 3.0f);
  EXPECT_EQ(amax5, 70000.0f);
  EXPECT_EQ(fp8_max(DType::kF8E4M3), 448.0f);
  EXPECT_THROW(fp8_max(DType::kBF16), Error);
}

TEST(Fp8, AmaxAccumulatesWithMaxAndTransposeAndScaleInvAreWritten) {
  std::vector<float> x(3 * 5);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 ? -1.0f : 1.0f) * 0.1f * float(i);
  float amax = 5.0f, scale_inv = 0.0f;
  std::vector<uint8_t> qt;
  const auto q = quantize(x, 3, 5, 4.0f, DType::kF8E4M3, &amax, &qt, &scale_inv);
  EXPECT_EQ(amax, 5.0f) << "max(5, 1.4) keeps the earlier amax";
  float amax2 = 1.0f;
  quantize(x, 3, 5, 4.0f, DType::kF8E4M3, &amax2);
  EXPECT_FLOAT_EQ(amax2, 1.4f);
  EXPECT_EQ(scale_inv, 0.25f);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 5; ++c) {
      EXPECT_EQ(qt[c * 3 + r], q[r * 5 + c]);
      EXPECT_EQ(q[r * 5 + c], f32_to_fp8_e4m3(x[r * 5 + c] * 4.0f));
    }
  // Dequantise: q * scale_inv.
  std::vector<float> y(q.size());
  Fp8DequantizeParams d;
  d.q = q.data();
  d.scale_inv = &scale_inv;
  d.y = y.data();
  d.n = static_cast<int64_t>(q.size());
  fp8_dequantize(d);
  for (size_t i = 0; i < q.size(); ++i) EXPECT_EQ(y[i], fp8_e4m3_to_f32(q[i]) * 0.25f);
  float amax3 = 0.0f;
  AmaxParams a;
  a.x = x.data();
  a.n = static_cast<int64_t>(x.size());
  a.amax = &amax3;
  amax_reduce(a);
  EXPECT_FLOAT_EQ(amax3, 1.4f);
}

TEST(Fp8, GemmIsTheProductOfTheDequantisedOperands) {
  const int64_t m = 7, n = 5, k = 19;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> a(m * k), b(n * k);
  for (auto& v : a) v = u(rng);
  for (auto& v : b) v = u(rng);
  float amax = 0.0f;
  const auto qa = quantize(a, m, k, 100.0f, DType::kF8E4M3, &amax);
  const auto qb = quantize(b, n, k, 8.0f, DType::kF8E5M2, &amax);
  const float sa = 1.0f / 100.0f, sb = 1.0f / 8.0f;
  std::vector<float> c(m * n, 1.0f);
  Fp8GemmParams g;
  g.a = qa.data();
  g.b = qb.data();
  g.c = c.data();
  g.b_dtype = DType::kF8E5M2;
  g.c_dtype = DType::kF32;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a_scale_inv = &sa;
  g.b_scale_inv = &sb;
  g.alpha = 0.5f;
  g.beta = 2.0f;
  fp8_gemm(g);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l)
        s += double(fp8_e4m3_to_f32(qa[i * k + l]) * sa) * (fp8_e5m2_to_f32(qb[j * k + l]) * sb);
      // f32 sums of k = 19 exact products: a few f32 roundings of |s| <= k * 4.
      EXPECT_NEAR(c[i * n + j], 0.5 * s + 2.0, 1e-5 * k) << i << "," << j;
    }
}

}  // namespace
}  // namespace graft
