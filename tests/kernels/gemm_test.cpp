// GEMM against the triple loop in double: C = alpha op(A) op(B) + beta C + bias.
#include "kernels/gemm.h"

#include <cmath>
#include <limits>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::randn;

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  int64_t pad;  // extra elements per row of every operand (non-tight leading dimensions)
};

std::string case_name(const testing::TestParamInfo<GemmCase>& i) {
  const GemmCase& c = i.param;
  return str(c.m, "x", c.n, "x", c.k, c.ta ? "_tA" : "", c.tb ? "_tB" : "", c.pad ? "_pad" : "");
}

// Row-major [rows, cols] with leading dimension ld; element (r, c).
struct Mat {
  std::vector<float> v;
  int64_t ld;
  double at(int64_t r, int64_t c) const { return v[r * ld + c]; }
};

// op(X)(r, c) for a stored matrix X (transposed storage when t).
double op_at(const Mat& x, bool t, int64_t r, int64_t c) { return t ? x.at(c, r) : x.at(r, c); }

class GemmSweep : public testing::TestWithParam<GemmCase> {};

TEST_P(GemmSweep, MatchesTripleLoopWithAlphaBetaBias) {
  const GemmCase c = GetParam();
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  Mat a{randn(a_rows * (a_cols + c.pad), 1), a_cols + c.pad};
  Mat b{randn(b_rows * (b_cols + c.pad), 2), b_cols + c.pad};
  Mat cm{randn(c.m * (c.n + c.pad), 3), c.n + c.pad};
  const std::vector<float> bias = randn(c.n, 4);
  const std::vector<float> c0 = cm.v;
  const float alpha = 1.5f, beta = 0.5f;

  GemmParams p;
  p.a = a.v.data(), p.b = b.v.data(), p.c = cm.v.data(), p.bias = bias.data();
  p.m = c.m, p.n = c.n, p.k = c.k, p.trans_a = c.ta, p.trans_b = c.tb;
  p.lda = a.ld, p.ldb = b.ld, p.ldc = cm.ld, p.alpha = alpha, p.beta = beta;
  gemm(p);

  // Tolerance: f32 accumulation of k products has error <= ~k * 2^-24 * sum|a b|; we allow
  // 1e-6 * (sum |alpha a b| + |beta c| + |bias|) + 1e-6, comfortably above that bound for k < 600.
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double ref = 0.0, mag = 0.0;
      for (int64_t l = 0; l < c.k; ++l) {
        const double t = op_at(a, c.ta, i, l) * op_at(b, c.tb, l, j);
        ref += t, mag += std::abs(t);
      }
      const double c_old = c0[i * cm.ld + j];
      ref = alpha * ref + beta * c_old + bias[j];
      mag = alpha * mag + std::abs(beta * c_old) + std::abs(bias[j]);
      ASSERT_NEAR(cm.at(i, j), ref, 1e-6 * mag + 1e-6) << "at (" << i << ", " << j << ")";
    }
    for (int64_t j = c.n; j < cm.ld; ++j)  // padding between rows is untouched
      ASSERT_EQ(cm.v[i * cm.ld + j], c0[i * cm.ld + j]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GemmSweep,
    testing::Values(GemmCase{71, 229, 37, false, false, 0}, GemmCase{71, 229, 37, false, true, 0},
                    GemmCase{71, 229, 37, true, false, 3}, GemmCase{71, 229, 37, true, true, 5},
                    GemmCase{29, 541, 17, false, true, 2}, GemmCase{3, 1, 5, false, false, 0},
                    GemmCase{3, 1, 5, true, true, 1}, GemmCase{1, 1, 1, false, false, 0},
                    GemmCase{1, 64, 256, false, true, 0}),
    case_name);

TEST(Gemm, BetaZeroIgnoresNaNInC) {
  const int64_t m = 5, n = 7, k = 3;
  std::vector<float> a = randn(m * k, 5), b = randn(k * n, 6);
  std::vector<float> c(m * n, std::numeric_limits<float>::quiet_NaN());
  GemmParams p;
  p.a = a.data(), p.b = b.data(), p.c = c.data(), p.m = m, p.n = n, p.k = k;
  gemm(p);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0.0;
      for (int64_t l = 0; l < k; ++l) ref += double(a[i * k + l]) * b[l * n + j];
      ASSERT_NEAR(c[i * n + j], ref, 1e-5);
    }
}

TEST(Gemm, EmptyInnerDimensionGivesBetaCPlusBias) {
  std::vector<float> c = {1, 2, 3, 4, 5, 6}, bias = {10, 20, 30};
  GemmParams p;
  p.c = c.data(), p.bias = bias.data(), p.m = 2, p.n = 3, p.k = 0, p.beta = 2.0f;
  gemm(p);
  EXPECT_EQ(c, (std::vector<float>{12, 24, 36, 18, 30, 42}));
}

TEST(Gemm, StridedBatchedEqualsSeparateCalls) {
  const int64_t batch = 3, m = 9, n = 11, k = 6, sa = m * k + 4, sb = k * n + 2, sc = m * n + 7;
  std::vector<float> a = randn(batch * sa, 7), b = randn(batch * sb, 8);
  std::vector<float> c(batch * sc, 0.0f), c_ref(batch * sc, 0.0f);
  GemmParams p;
  p.a = a.data(), p.b = b.data(), p.c = c.data(), p.m = m, p.n = n, p.k = k;
  p.batch = batch, p.stride_a = sa, p.stride_b = sb, p.stride_c = sc;
  gemm(p);
  for (int64_t i = 0; i < batch; ++i) {
    GemmParams q;
    q.a = a.data() + i * sa, q.b = b.data() + i * sb, q.c = c_ref.data() + i * sc;
    q.m = m, q.n = n, q.k = k;
    gemm(q);
  }
  EXPECT_EQ(c, c_ref);
}

// bf16 operands: the reference uses the bf16-rounded inputs in double; a bf16 C adds one
// rounding (relative 2^-9) on top of the f32 accumulation error.
TEST(Gemm, Bf16InputsAndOutput) {
  const int64_t m = 13, n = 17, k = 29;
  std::vector<float> af = randn(m * k, 9), bf = randn(n * k, 10), bias = randn(n, 11);
  std::vector<uint16_t> a(m * k), b(n * k), c(m * n), bias16(n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = f32_to_bf16(af[i]);
  for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(bf[i]);
  for (int64_t i = 0; i < n; ++i) bias16[i] = f32_to_bf16(bias[i]);
  std::vector<float> c32(m * n);
  GemmParams p;
  p.a = a.data(), p.b = b.data(), p.m = m, p.n = n, p.k = k, p.trans_b = true;
  p.dtype = DType::kBF16;
  p.c = c32.data();  // bf16 in, f32 out
  gemm(p);
  p.c = c.data(), p.c_dtype = DType::kBF16, p.bias = bias16.data(), p.bias_dtype = DType::kBF16;
  gemm(p);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0.0, mag = 0.0;
      for (int64_t l = 0; l < k; ++l) {
        const double t = double(bf16_to_f32(a[i * k + l])) * bf16_to_f32(b[j * k + l]);
        ref += t, mag += std::abs(t);
      }
      ASSERT_NEAR(c32[i * n + j], ref, 1e-6 * mag + 1e-6);
      const double with_bias = ref + bf16_to_f32(bias16[j]);
      ASSERT_NEAR(bf16_to_f32(c[i * n + j]), with_bias,
                  std::abs(with_bias) / 256.0 + 1e-6 * mag + 1e-6);
    }
}

TEST(Gemm, RejectsUnsupportedDtypes) {
  float x = 0;
  GemmParams p;
  p.a = &x, p.b = &x, p.c = &x, p.m = p.n = p.k = 1;
  p.dtype = DType::kI32;
  EXPECT_THROW(gemm(p), Error);
  p.dtype = DType::kF32, p.c_dtype = DType::kF8E4M3;
  EXPECT_THROW(gemm(p), Error);
}

}  // namespace
}  // namespace graft
