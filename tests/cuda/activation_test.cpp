// CUDA activations (plain and gated, forward and backward) against the CPU reference (f64).
#include "kernels/activation.h"

#include <gtest/gtest.h>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct ActCase {
  Activation act;
  int64_t rows, cols;
  DType dt;
};

std::string act_name(const ::testing::TestParamInfo<ActCase>& i) {
  return str(activation_name(i.param.act), "_", i.param.rows, "x", i.param.cols, "_",
             dtype_name(i.param.dt));
}

class CudaActivation : public ::testing::TestWithParam<ActCase> {};

TEST_P(CudaActivation, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const ActCase c = GetParam();
  auto rng = rng_for(act_name({c, 0}));
  const int64_t in_cols = activation_is_gated(c.act) ? 2 * c.cols : c.cols;
  Tensor x = random_host({c.rows, in_cols}, rng, c.dt, -4.0f, 4.0f);
  Tensor dy = random_host({c.rows, c.cols}, rng, c.dt);
  Tensor y_h = Tensor::empty({c.rows, c.cols}, DType::kF32);
  Tensor dx_h = Tensor::empty({c.rows, in_cols}, DType::kF32);
  ActFwdParams f;
  f.rows = c.rows, f.cols = c.cols, f.act = c.act;
  ActBwdParams b;
  b.rows = c.rows, b.cols = c.cols, b.act = c.act;
  ActFwdParams fc = f;
  fc.x = x.raw(), fc.y = y_h.raw();
  activation_fwd(fc);
  ActBwdParams bc = b;
  bc.dy = dy.raw(), bc.x = x.raw(), bc.dx = dx_h.raw();
  activation_bwd(bc);

  Tensor x_d = to_gpu(x, c.dt), dy_d = to_gpu(dy, c.dt);
  Tensor y_d = poisoned({c.rows, c.cols}, c.dt), dx_d = poisoned({c.rows, in_cols}, c.dt);
  ActFwdParams fg = f;
  fg.x = x_d.raw(), fg.y = y_d.raw(), fg.dtype = c.dt, fg.device = gpu();
  activation_fwd(fg);
  ActBwdParams bg = b;
  bg.dy = dy_d.raw(), bg.x = x_d.raw(), bg.dx = dx_d.raw(), bg.dtype = c.dt, bg.device = gpu();
  activation_bwd(bg);
  // f32 transcendental functions (expf, erff, tanhf) are within 2 ulp; the CPU evaluates in
  // f64, so a few ulp of relative error plus a small absolute term near the zeros.
  Tol t = tol_for(c.dt);
  expect_close(y_d, y_h, t, "y");
  expect_close(dx_d, dx_h, t, "dx");
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(
    All, CudaActivation,
    ::testing::Values(
        ActCase{Activation::kGelu, 71, 229, F}, ActCase{Activation::kGeluTanh, 29, 541, F},
        ActCase{Activation::kSilu, 71, 229, F}, ActCase{Activation::kRelu, 29, 541, F},
        ActCase{Activation::kSquaredRelu, 71, 229, F}, ActCase{Activation::kQGelu, 29, 541, F},
        ActCase{Activation::kSwiglu, 71, 229, F}, ActCase{Activation::kGeglu, 29, 541, F},
        ActCase{Activation::kReglu, 1, 229, F}, ActCase{Activation::kSwiglu, 29, 541, B},
        ActCase{Activation::kGeglu, 71, 229, B}, ActCase{Activation::kGelu, 29, 541, B},
        // cols % 8 == 0: the 16-byte vector path, gated and plain, bf16 and f32
        ActCase{Activation::kSwiglu, 33, 264, B}, ActCase{Activation::kSwiglu, 7, 64, F},
        ActCase{Activation::kGeglu, 5, 8, B}, ActCase{Activation::kSilu, 9, 136, B}),
    act_name);

}  // namespace
}  // namespace graft
