// Row softmax with scale: forward against the formula in double, backward against central
// differences of it, a -inf row gives zeros.
#include "kernels/softmax.h"

#include <cmath>
#include <limits>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;

std::vector<double> ref_softmax(const std::vector<double>& x, int64_t rows, int64_t cols,
                                double s) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(s * x[r * cols + j]);
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = std::exp(s * x[r * cols + j]) / sum;
  }
  return y;
}

struct SmCase {
  int64_t rows, cols;
  float scale;
};

class SoftmaxSweep : public testing::TestWithParam<SmCase> {};

TEST_P(SoftmaxSweep, ForwardAndBackward) {
  const SmCase c = GetParam();
  const auto x = test::randn(c.rows * c.cols, 1, 3.0f);
  std::vector<float> y(x.size(), NAN);
  SoftmaxFwdParams f;
  f.x = x.data(), f.y = y.data(), f.rows = c.rows, f.cols = c.cols, f.scale = c.scale;
  softmax_fwd(f);
  const auto xd = test::to_double(x);
  // Outputs are probabilities in [0, 1] rounded once to f32: 1e-6 absolute is ~10 ulp of 1.
  EXPECT_LT(max_rel_err(y, ref_softmax(xd, c.rows, c.cols, c.scale), 1.0), 1e-6);

  if (c.rows * c.cols > 2000) return;  // finite differences on the small shapes
  const auto w = test::randn(x.size(), 2);
  std::vector<float> dx(x.size(), NAN);
  SoftmaxBwdParams b;
  b.dy = w.data(), b.y = y.data(), b.dx = dx.data(), b.rows = c.rows, b.cols = c.cols;
  b.scale = c.scale;
  softmax_bwd(b);
  const auto wd = test::to_double(w);
  const auto g = test::numeric_grad(
      [&](const std::vector<double>& v) {
        return test::dot(ref_softmax(v, c.rows, c.cols, c.scale), wd);
      },
      xd);
  // The kernel uses the f32 forward output y (2^-24 relative) and f64 sums; FD error ~1e-10.
  EXPECT_LT(max_rel_err(dx, g), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, SoftmaxSweep,
                         testing::Values(SmCase{71, 229, 1.0f}, SmCase{3, 1, 1.0f},
                                         SmCase{7, 13, 0.125f}, SmCase{4, 33, 2.5f},
                                         SmCase{1, 1000, 1.0f}));

TEST(Softmax, AllMinusInfRowGivesZerosAndStableLargeInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x = {-inf, -inf, -inf, 1000.0f, 1000.0f, -inf};
  std::vector<float> y(6, NAN);
  SoftmaxFwdParams f;
  f.x = x.data(), f.y = y.data(), f.rows = 2, f.cols = 3;
  softmax_fwd(f);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0.5f, 0.5f, 0}));
}

}  // namespace
}  // namespace graft
