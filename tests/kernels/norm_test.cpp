// RMSNorm / LayerNorm: forward against the formula in double, backward against central
// differences of that double reference (loss = sum(y * w), so dy = w).
#include "kernels/norm.h"

#include <cmath>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;
using test::randn;

struct NormCase {
  bool layernorm;
  int64_t rows, cols;
  bool zero_centered;
  bool with_beta;
};

std::string case_name(const testing::TestParamInfo<NormCase>& i) {
  const NormCase& c = i.param;
  return str(c.layernorm ? "layernorm_" : "rmsnorm_", c.rows, "x", c.cols,
             c.zero_centered ? "_zc" : "", c.with_beta ? "_beta" : "");
}

constexpr double kEps = 1e-5;

// y = x̂ g (+ beta), written out in double.
std::vector<double> ref_norm(const NormCase& c, const std::vector<double>& x,
                             const std::vector<double>& gamma, const std::vector<double>& beta) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < c.rows; ++r) {
    double mean = 0.0, var = 0.0;
    if (c.layernorm) {
      for (int64_t j = 0; j < c.cols; ++j) mean += x[r * c.cols + j];
      mean /= c.cols;
    }
    for (int64_t j = 0; j < c.cols; ++j) var += std::pow(x[r * c.cols + j] - mean, 2);
    const double rstd = 1.0 / std::sqrt(var / c.cols + kEps);
    for (int64_t j = 0; j < c.cols; ++j) {
      const double g = c.zero_centered ? 1.0 + gamma[j] : gamma[j];
      y[r * c.cols + j] = (x[r * c.cols + j] - mean) * rstd * g + (c.with_beta ? beta[j] : 0.0);
    }
  }
  return y;
}

struct NormRun {
  std::vector<float> y, rstd, mean, dx, dgamma, dbeta;
};

NormRun run_kernels(const NormCase& c, const std::vector<float>& x, const std::vector<float>& gamma,
                    const std::vector<float>& beta, const std::vector<float>& dy,
                    const std::vector<float>& dgamma0, const std::vector<float>& dbeta0) {
  NormRun o;
  o.y.assign(x.size(), NAN), o.rstd.assign(c.rows, NAN), o.mean.assign(c.rows, NAN);
  NormFwdParams f;
  f.x = x.data(), f.gamma = gamma.data(), f.beta = c.with_beta ? beta.data() : nullptr;
  f.y = o.y.data(), f.rstd = o.rstd.data(), f.mean = c.layernorm ? o.mean.data() : nullptr;
  f.rows = c.rows, f.cols = c.cols, f.eps = static_cast<float>(kEps);
  f.zero_centered_gamma = c.zero_centered;
  c.layernorm ? layernorm_fwd(f) : rmsnorm_fwd(f);

  o.dx.assign(x.size(), NAN), o.dgamma = dgamma0, o.dbeta = dbeta0;
  NormBwdParams b;
  b.dy = dy.data(), b.x = x.data(), b.gamma = gamma.data(), b.rstd = o.rstd.data();
  b.mean = c.layernorm ? o.mean.data() : nullptr, b.dx = o.dx.data(), b.dgamma = o.dgamma.data();
  b.dbeta = c.with_beta ? o.dbeta.data() : nullptr;
  b.rows = c.rows, b.cols = c.cols, b.zero_centered_gamma = c.zero_centered;
  c.layernorm ? layernorm_bwd(b) : rmsnorm_bwd(b);
  return o;
}

class NormSweep : public testing::TestWithParam<NormCase> {};

TEST_P(NormSweep, ForwardMatchesFormula) {
  const NormCase c = GetParam();
  const auto x = randn(c.rows * c.cols, 1, 2.0f), gamma = randn(c.cols, 2), beta = randn(c.cols, 3);
  const auto dy = randn(x.size(), 4);
  const NormRun o = run_kernels(c, x, gamma, beta, dy, std::vector<float>(c.cols, 0.0f),
                                std::vector<float>(c.cols, 0.0f));
  const auto ref = ref_norm(c, test::to_double(x), test::to_double(gamma), test::to_double(beta));
  // f32 storage of y (relative 2^-24) plus f32 inputs to the row statistics: 1e-6 is ~10 ulp.
  EXPECT_LT(max_rel_err(o.y, ref), 1e-6);
}

// Analytic backward vs central differences (h = 1e-6) of the double reference. The difference
// quotient errs by ~h² f''' + 1e-16 / h ~ 1e-10; the kernel's f32 outputs by ~1e-7 relative, so
// 2e-5 relative to the gradient's largest entry leaves margin and still catches any wrong term.
// Small shapes only (finite differences cost O(n²)). dx is rstd * (dy g - x̂ (...)), a difference
// of terms of size rstd |dy g|; with rstd saved in f32 (as every fused kernel does) its absolute
// error is ~2^-23 rstd |dy g|, which for cols = 1 (dx ~ eps / x², nearly full cancellation) is
// most of dx. So dx errors are measured against max(|dx|, max rstd |dy g|), the natural scale.
class NormGradSweep : public testing::TestWithParam<NormCase> {};

TEST_P(NormGradSweep, BackwardMatchesFiniteDifferences) {
  const NormCase c = GetParam();
  const auto x = randn(c.rows * c.cols, 5, 2.0f), gamma = randn(c.cols, 6), beta = randn(c.cols, 7);
  const auto w = randn(x.size(), 8);  // dy
  const auto dgamma0 = randn(c.cols, 9), dbeta0 = randn(c.cols, 10);
  const NormRun o = run_kernels(c, x, gamma, beta, w, dgamma0, dbeta0);
  const auto xd = test::to_double(x), gd = test::to_double(gamma), bd = test::to_double(beta);
  const auto wd = test::to_double(w);

  const auto gx = test::numeric_grad(
      [&](const std::vector<double>& v) { return test::dot(ref_norm(c, v, gd, bd), wd); }, xd);
  double scale = 0.0;
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; ++j)
      scale = std::max(
          scale, double(o.rstd[r]) *
                     std::abs(w[r * c.cols + j] * (c.zero_centered ? 1 + gamma[j] : gamma[j])));
  EXPECT_LT(max_rel_err(o.dx, gx, scale), 2e-5);
  // Parameter gradients accumulate onto what was there (+=).
  auto gg = test::numeric_grad(
      [&](const std::vector<double>& v) { return test::dot(ref_norm(c, xd, v, bd), wd); }, gd);
  for (int64_t j = 0; j < c.cols; ++j) gg[j] += dgamma0[j];
  EXPECT_LT(max_rel_err(o.dgamma, gg), 2e-5);
  if (c.with_beta) {
    auto gb = test::numeric_grad(
        [&](const std::vector<double>& v) { return test::dot(ref_norm(c, xd, gd, v), wd); }, bd);
    for (int64_t j = 0; j < c.cols; ++j) gb[j] += dbeta0[j];
    EXPECT_LT(max_rel_err(o.dbeta, gb), 2e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, NormSweep,
    testing::Values(NormCase{false, 71, 229, false, false}, NormCase{false, 71, 229, true, false},
                    NormCase{false, 3, 1, false, false}, NormCase{false, 1, 4096, true, false},
                    NormCase{true, 71, 229, false, true}, NormCase{true, 29, 541, true, false},
                    NormCase{true, 3, 2, false, true}),
    case_name);

INSTANTIATE_TEST_SUITE_P(
    Small, NormGradSweep,
    testing::Values(NormCase{false, 3, 1, false, false}, NormCase{false, 7, 24, true, false},
                    NormCase{false, 5, 13, false, false}, NormCase{true, 3, 2, false, true},
                    NormCase{true, 5, 13, false, true}, NormCase{true, 4, 17, true, true},
                    NormCase{true, 6, 9, false, false}),
    case_name);

// accumulate = false (a stale gradient's first contribution) writes dgamma/dbeta without reading
// them (NaN here): bit for bit the accumulate into zeros; dx is unchanged.
TEST_P(NormSweep, BackwardWritesWeightGradientsWithoutReading) {
  const NormCase c = GetParam();
  const auto x = randn(c.rows * c.cols, 11, 2.0f), gamma = randn(c.cols, 12);
  const auto beta = randn(c.cols, 13), dy = randn(x.size(), 14);
  const std::vector<float> zeros(c.cols, 0.0f);
  const NormRun added = run_kernels(c, x, gamma, beta, dy, zeros, zeros);
  std::vector<float> dg(c.cols, NAN), db(c.cols, NAN), dx(x.size(), NAN);
  NormBwdParams b;
  b.dy = dy.data(), b.x = x.data(), b.gamma = gamma.data(), b.rstd = added.rstd.data();
  b.mean = c.layernorm ? added.mean.data() : nullptr, b.dx = dx.data(), b.dgamma = dg.data();
  b.dbeta = c.with_beta ? db.data() : nullptr;
  b.rows = c.rows, b.cols = c.cols, b.zero_centered_gamma = c.zero_centered;
  b.accumulate = false;
  c.layernorm ? layernorm_bwd(b) : rmsnorm_bwd(b);
  EXPECT_EQ(dg, added.dgamma);
  if (c.with_beta) EXPECT_EQ(db, added.dbeta);
  EXPECT_EQ(dx, added.dx);
}

TEST(Norm, SavedStatisticsAreTheRowRstdAndMean) {
  const std::vector<float> x = {1, 2, 3, 4, -1, 0.5f, 2, 0};
  const std::vector<float> gamma(4, 1.0f);
  std::vector<float> y(8), rstd(2), mean(2);
  NormFwdParams f;
  f.x = x.data(), f.gamma = gamma.data(), f.y = y.data(), f.rstd = rstd.data();
  f.mean = mean.data(), f.rows = 2, f.cols = 4, f.eps = 0.0f;
  layernorm_fwd(f);
  for (int r = 0; r < 2; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 4; ++j) m += x[r * 4 + j] / 4.0;
    for (int j = 0; j < 4; ++j) v += std::pow(x[r * 4 + j] - m, 2) / 4.0;
    EXPECT_NEAR(mean[r], m, 1e-6);
    EXPECT_NEAR(rstd[r], 1.0 / std::sqrt(v), 1e-6);
  }
  f.mean = nullptr;
  rmsnorm_fwd(f);
  for (int r = 0; r < 2; ++r) {
    double ms = 0;
    for (int j = 0; j < 4; ++j) ms += x[r * 4 + j] * x[r * 4 + j] / 4.0;
    EXPECT_NEAR(rstd[r], 1.0 / std::sqrt(ms), 1e-6);
  }
}

TEST(Norm, InPlaceForwardEqualsOutOfPlace) {
  auto x = randn(6 * 10, 11);
  const auto gamma = randn(10, 12);
  std::vector<float> y(x.size()), rstd(6);
  NormFwdParams f;
  f.x = x.data(), f.gamma = gamma.data(), f.y = y.data(), f.rows = 6, f.cols = 10;
  rmsnorm_fwd(f);
  f.y = x.data();
  rmsnorm_fwd(f);
  EXPECT_EQ(x, y);
}

// The fused residual add: norm(x + r) with s = x + r written out equals an add followed by the
// norm exactly (the same f32 sum, then the same row arithmetic), also with s written over x.
// The backward's dx + dresidual is rounded once instead of twice: the two differ by at most
// u |dx| + u |dx + dres| for u = 2^-24 (one extra rounding of each), so 2^-22 (|dx| + |dres|)
// bounds it with margin and a missing or doubled dresidual (an O(1) difference) fails.
class NormAddSweep : public testing::TestWithParam<NormCase> {};

TEST_P(NormAddSweep, FusedAddEqualsAddThenNorm) {
  const NormCase c = GetParam();
  const size_t n = static_cast<size_t>(c.rows * c.cols);
  const auto x = randn(n, 21, 2.0f), res = randn(n, 22, 2.0f), gamma = randn(c.cols, 23);
  const auto beta = randn(c.cols, 24), dy = randn(n, 25), dres = randn(n, 26);
  std::vector<float> sum(n);
  for (size_t i = 0; i < n; ++i) sum[i] = x[i] + res[i];
  const std::vector<float> zeros(c.cols, 0.0f);
  const NormRun ref = run_kernels(c, sum, gamma, beta, dy, zeros, zeros);

  std::vector<float> s_out(n, NAN), y(n, NAN), rstd(c.rows, NAN), mean(c.rows, NAN);
  NormFwdParams f;
  f.x = x.data(), f.residual = res.data(), f.residual_out = s_out.data();
  f.gamma = gamma.data(), f.beta = c.with_beta ? beta.data() : nullptr, f.y = y.data();
  f.rstd = rstd.data(), f.mean = c.layernorm ? mean.data() : nullptr;
  f.rows = c.rows, f.cols = c.cols, f.eps = static_cast<float>(kEps);
  f.zero_centered_gamma = c.zero_centered;
  c.layernorm ? layernorm_fwd(f) : rmsnorm_fwd(f);
  EXPECT_EQ(s_out, sum);
  EXPECT_EQ(y, ref.y);
  EXPECT_EQ(rstd, ref.rstd);
  auto x_inplace = x;  // residual_out aliasing x
  std::vector<float> y2(n, NAN);
  f.x = x_inplace.data(), f.residual_out = x_inplace.data(), f.y = y2.data();
  c.layernorm ? layernorm_fwd(f) : rmsnorm_fwd(f);
  EXPECT_EQ(x_inplace, sum);
  EXPECT_EQ(y2, ref.y);

  std::vector<float> dx(n, NAN), dg(c.cols, 0.0f), db(c.cols, 0.0f);
  NormBwdParams b;
  b.dy = dy.data(), b.x = sum.data(), b.gamma = gamma.data(), b.rstd = ref.rstd.data();
  b.mean = c.layernorm ? ref.mean.data() : nullptr, b.dx = dx.data(), b.dgamma = dg.data();
  b.dbeta = c.with_beta ? db.data() : nullptr, b.dresidual = dres.data();
  b.rows = c.rows, b.cols = c.cols, b.zero_centered_gamma = c.zero_centered;
  c.layernorm ? layernorm_bwd(b) : rmsnorm_bwd(b);
  for (size_t i = 0; i < n; ++i) {
    const double want = static_cast<double>(ref.dx[i]) + dres[i];
    ASSERT_NEAR(dx[i], want, 0x1p-22 * (std::abs(ref.dx[i]) + std::abs(dres[i])) + 1e-30)
        << "dx[" << i << "]";
  }
  EXPECT_EQ(dg, ref.dgamma);  // the weight gradients do not see dresidual
  if (c.with_beta) EXPECT_EQ(db, ref.dbeta);
  auto d_inplace = dres;  // dx aliasing dresidual
  b.dx = d_inplace.data(), b.dresidual = d_inplace.data(), b.dgamma = nullptr, b.dbeta = nullptr;
  c.layernorm ? layernorm_bwd(b) : rmsnorm_bwd(b);
  EXPECT_EQ(d_inplace, dx);
}

INSTANTIATE_TEST_SUITE_P(Shapes, NormAddSweep,
                         testing::Values(NormCase{false, 71, 229, false, false},
                                         NormCase{false, 5, 64, true, false},
                                         NormCase{true, 29, 541, false, true},
                                         NormCase{true, 3, 2, true, false}),
                         case_name);

TEST(Norm, ResidualNeedsAnOutputDistinctFromY) {
  std::vector<float> v(4, 1.0f);
  NormFwdParams f;
  f.x = v.data(), f.gamma = v.data(), f.y = v.data(), f.residual = v.data(), f.rows = 1;
  f.cols = 4;
  EXPECT_THROW(rmsnorm_fwd(f), Error);  // no residual_out
  f.residual_out = v.data();
  EXPECT_THROW(rmsnorm_fwd(f), Error);  // residual_out == y
}

}  // namespace
}  // namespace graft
