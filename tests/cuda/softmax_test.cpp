// CUDA row softmax (forward/backward, scaled, rows of -inf) against the CPU reference (f64).
#include "kernels/softmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct SoftmaxCase {
  int64_t rows, cols;
  float scale;
  DType dt;
};

class CudaSoftmax : public ::testing::TestWithParam<SoftmaxCase> {};

TEST_P(CudaSoftmax, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const SoftmaxCase c = GetParam();
  auto rng = rng_for(str(c.rows, "x", c.cols, dtype_name(c.dt)));
  const Shape s{c.rows, c.cols};
  Tensor x = random_host(s, rng, c.dt, -5.0f, 5.0f);
  // Row 0 fully masked (-inf) and a few -inf entries elsewhere, as attention masks produce.
  float* xp = x.data<float>();
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < c.cols; ++j) xp[j] = ninf;
  for (int64_t r = 1; r < c.rows; r += 3) xp[r * c.cols + (r % c.cols)] = ninf;
  Tensor dy = random_host(s, rng, c.dt);
  Tensor y_h = Tensor::empty(s, DType::kF32), dx_h = Tensor::empty(s, DType::kF32);
  SoftmaxFwdParams f;
  f.rows = c.rows, f.cols = c.cols, f.scale = c.scale;
  SoftmaxBwdParams b;
  b.rows = c.rows, b.cols = c.cols, b.scale = c.scale;
  SoftmaxFwdParams fc = f;
  fc.x = x.raw(), fc.y = y_h.raw();
  softmax_fwd(fc);
  SoftmaxBwdParams bc = b;
  bc.dy = dy.raw(), bc.y = y_h.raw(), bc.dx = dx_h.raw();
  softmax_bwd(bc);

  Tensor x_d = to_gpu(x, c.dt), dy_d = to_gpu(dy, c.dt), y_d = poisoned(s, c.dt);
  Tensor y_ref = to_gpu(y_h, c.dt), dx_d = poisoned(s, c.dt);
  SoftmaxFwdParams fg = f;
  fg.x = x_d.raw(), fg.y = y_d.raw(), fg.dtype = c.dt, fg.device = gpu();
  softmax_fwd(fg);
  SoftmaxBwdParams bg = b;
  bg.dy = dy_d.raw(), bg.y = y_ref.raw(), bg.dx = dx_d.raw(), bg.dtype = c.dt, bg.device = gpu();
  softmax_bwd(bg);
  // The backward reads y in the activation dtype; for bf16 the CPU reference reads the same
  // rounded y so both compute from identical inputs.
  Tensor y_in = to_host_f32(y_ref);
  bc.y = y_in.raw();
  softmax_bwd(bc);
  Tol t = tol_for(c.dt);
  t.atol += 4.0 * std::sqrt(static_cast<double>(c.cols)) * kU32;  // f32 vs f64 row sums
  expect_close(y_d, y_h, t, "y");
  expect_close(dx_d, dx_h, t, "dx");
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaSoftmax,
    ::testing::Values(SoftmaxCase{71, 229, 1.0f, F}, SoftmaxCase{29, 541, 0.125f, F},
                      SoftmaxCase{4, 1, 1.0f, F}, SoftmaxCase{7, 4099, 0.5f, F},
                      SoftmaxCase{71, 229, 1.0f, B}, SoftmaxCase{29, 541, 0.125f, B}));

}  // namespace
}  // namespace graft
