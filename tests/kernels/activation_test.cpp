// Activations: forward against the formulas written out here in double, backward against
// central differences of those formulas, for every activation over awkward shapes.
#include "kernels/activation.h"

#include <cmath>
#include <numbers>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The plain function f of an activation (a gated activation's gate function).
double ref_f(Activation a, double x) {
  switch (a) {
    case Activation::kGelu:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::kGeluTanh:
    case Activation::kGeglu:
      return 0.5 * x *
             (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
    case Activation::kSilu:
    case Activation::kSwiglu:
      return x * sig(x);
    case Activation::kRelu:
    case Activation::kReglu:
      return std::max(x, 0.0);
    case Activation::kSquaredRelu:
      return std::pow(std::max(x, 0.0), 2);
    case Activation::kQGelu:
      return x * sig(1.702 * x);
  }
  return NAN;
}

struct ActCase {
  Activation act;
  int64_t rows, cols;
};

std::string case_name(const testing::TestParamInfo<ActCase>& i) {
  return str(activation_name(i.param.act), "_", i.param.rows, "x", i.param.cols);
}

// y for input x ([rows, cols], or [rows, 2 cols] when gated), in double.
std::vector<double> ref_fwd(const ActCase& c, const std::vector<double>& x) {
  std::vector<double> y(c.rows * c.cols);
  const bool gated = activation_is_gated(c.act);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; ++j)
      y[r * c.cols + j] = gated
                              ? ref_f(c.act, x[r * 2 * c.cols + j]) * x[r * 2 * c.cols + c.cols + j]
                              : ref_f(c.act, x[r * c.cols + j]);
  return y;
}

// Inputs in [-4, 4] kept at least 1e-3 away from 0, where relu-like functions have a kink that
// central differences (h = 1e-6) would straddle.
std::vector<float> inputs(size_t n, uint32_t seed) {
  auto x = test::uniform(n, seed, -4.0f, 4.0f);
  for (float& v : x)
    if (std::abs(v) < 1e-3f) v = 0.5f;
  return x;
}

class ActSweep : public testing::TestWithParam<ActCase> {};

TEST_P(ActSweep, ForwardMatchesFormula) {
  const ActCase c = GetParam();
  const int64_t in_cols = activation_is_gated(c.act) ? 2 * c.cols : c.cols;
  const auto x = inputs(c.rows * in_cols, 1);
  std::vector<float> y(c.rows * c.cols, NAN);
  ActFwdParams p;
  p.x = x.data(), p.y = y.data(), p.rows = c.rows, p.cols = c.cols, p.act = c.act;
  activation_fwd(p);
  // The kernel evaluates in double and rounds once to f32: 2^-24 relative, plus one more
  // rounding for the gated product's f32 inputs; 1e-6 relative to the largest output.
  EXPECT_LT(max_rel_err(y, ref_fwd(c, test::to_double(x))), 1e-6);
}

// Elementwise, so dL/dx_i for L = sum(w * y) is obtained by perturbing each input once.
// Difference-quotient error ~h² f''' ~ 1e-11; kernel rounding 2^-24 relative; tolerance 1e-6.
TEST_P(ActSweep, BackwardMatchesFiniteDifferences) {
  const ActCase c = GetParam();
  const bool gated = activation_is_gated(c.act);
  const int64_t in_cols = gated ? 2 * c.cols : c.cols;
  const auto x = inputs(c.rows * in_cols, 2);
  const auto dy = test::uniform(c.rows * c.cols, 3, -1.0f, 1.0f);
  std::vector<float> dx(x.size(), NAN);
  ActBwdParams p;
  p.dy = dy.data(), p.x = x.data(), p.dx = dx.data(), p.rows = c.rows, p.cols = c.cols;
  p.act = c.act;
  activation_bwd(p);
  const double h = 1e-6;
  std::vector<double> want(x.size());
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < in_cols; ++j) {
      // Output column touched by this input: j (plain, gate) or j - cols (up).
      const int64_t oj = j < c.cols ? j : j - c.cols;
      const double g = dy[r * c.cols + oj];
      auto xd = test::to_double(
          std::vector<float>(x.begin() + r * in_cols, x.begin() + (r + 1) * in_cols));
      const ActCase one{c.act, 1, c.cols};
      const double x0 = xd[j];
      xd[j] = x0 + h;
      const double yp = ref_fwd(one, xd)[oj];
      xd[j] = x0 - h;
      const double ym = ref_fwd(one, xd)[oj];
      want[r * in_cols + j] = g * (yp - ym) / (2 * h);
    }
  EXPECT_LT(max_rel_err(dx, want), 1e-6);
}

std::vector<ActCase> all_cases() {
  std::vector<ActCase> v;
  for (Activation a : {Activation::kGelu, Activation::kGeluTanh, Activation::kSilu,
                       Activation::kRelu, Activation::kSquaredRelu, Activation::kQGelu,
                       Activation::kSwiglu, Activation::kGeglu, Activation::kReglu})
    for (auto [r, cl] : {std::pair<int64_t, int64_t>{71, 229}, {3, 1}, {1, 24}})
      v.push_back({a, r, cl});
  return v;
}

INSTANTIATE_TEST_SUITE_P(All, ActSweep, testing::ValuesIn(all_cases()), case_name);

TEST(Activation, NamesRoundTripAndGatedness) {
  for (const char* n :
       {"gelu", "gelu_tanh", "silu", "relu", "squared_relu", "qgelu", "swiglu", "geglu", "reglu"}) {
    const auto a = activation_from_name(n);
    ASSERT_TRUE(a.has_value()) << n;
    EXPECT_STREQ(activation_name(*a), n);
  }
  EXPECT_FALSE(activation_from_name("gelu_new").has_value());
  EXPECT_TRUE(activation_is_gated(Activation::kGeglu));
  EXPECT_FALSE(activation_is_gated(Activation::kGeluTanh));
}

TEST(Activation, ReluGradientAtZeroIsZero) {
  const std::vector<float> x = {0.0f, 0.0f}, dy = {1.0f, 1.0f};
  std::vector<float> dx(2, NAN);
  ActBwdParams p;
  p.dy = dy.data(), p.x = x.data(), p.dx = dx.data(), p.rows = 1, p.cols = 2;
  p.act = Activation::kRelu;
  activation_bwd(p);
  EXPECT_EQ(dx, (std::vector<float>{0.0f, 0.0f}));
}

}  // namespace
}  // namespace graft
