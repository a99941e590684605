// CUDA RMSNorm / LayerNorm with an f32 residual stream and bf16 activations (kernels/norm.h,
// residual_dtype = f32; precision.residual: f32) against the CPU reference run on the same
// storage types (the CPU kernel takes bf16 and f32 storage and computes in f64):
//   forward, no residual:  x f32 (the stream) -> y bf16
//   forward, residual:     x bf16 (the branch) + residual f32 -> residual_out f32, y bf16
//   backward:              dy bf16, x f32, dresidual f32 -> dx f32
// over shapes that take each path (elements, 8-vectors held in registers, the loop kernels) and
// bf16 and f32 norm weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/norm.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct Case {
  int64_t rows, cols;
  bool layer, zero_centered;
  DType w_dt;
};

std::string case_name(const ::testing::TestParamInfo<Case>& i) {
  const Case& c = i.param;
  return str(c.layer ? "layernorm_" : "rmsnorm_", c.rows, "x", c.cols, c.zero_centered ? "_zc" : "",
             "_w", dtype_name(c.w_dt));
}

// As tests/cuda/norm_test.cpp: f32 row reductions on the GPU against f64 on the CPU.
Tol row_tol(DType dt, int64_t n) {
  Tol t = tol_for(dt);
  t.atol += 4.0 * std::sqrt(static_cast<double>(n)) * kU32;
  return t;
}
Tol column_tol(int64_t rows) {
  const double m = static_cast<double>(std::max<int64_t>(1, (rows + 63) / 64));
  Tol t = row_tol(DType::kF32, rows);
  t.atol += 4.0 * std::sqrt(static_cast<double>(rows) * m) * kU32;
  return t;
}

class CudaNormResidual : public ::testing::TestWithParam<Case> {};

TEST_P(CudaNormResidual, MatchesTheCpuReference) {
  GRAFT_REQUIRE_CUDA();
  const Case c = GetParam();
  auto rng = rng_for(case_name({c, 0}));
  const Shape xs{c.rows, c.cols};
  // Host tensors in their storage types (the CPU reference reads them as they are).
  Tensor stream = random_host(xs, rng, DType::kF32, -2.0f, 2.0f);  // f32
  Tensor branch = random_host(xs, rng, DType::kBF16, -0.5f, 0.5f).to(DType::kBF16);
  Tensor gamma = random_host({c.cols}, rng, c.w_dt, 0.5f, 1.5f).to(c.w_dt);
  Tensor beta = random_host({c.cols}, rng, c.w_dt).to(c.w_dt);
  Tensor dy = random_host(xs, rng, DType::kBF16).to(DType::kBF16);
  Tensor dres = random_host(xs, rng, DType::kF32);
  Tensor dg0 = random_host({c.cols}, rng), db0 = random_host({c.cols}, rng);

  auto fwd = [&](const NormFwdParams& p) { c.layer ? layernorm_fwd(p) : rmsnorm_fwd(p); };
  auto bwd = [&](const NormBwdParams& p) { c.layer ? layernorm_bwd(p) : rmsnorm_bwd(p); };
  NormFwdParams f;
  f.rows = c.rows, f.cols = c.cols, f.eps = 1e-5f, f.zero_centered_gamma = c.zero_centered;
  f.dtype = DType::kBF16, f.weight_dtype = c.w_dt, f.residual_dtype = DType::kF32;
  NormBwdParams b;
  b.rows = c.rows, b.cols = c.cols, b.zero_centered_gamma = c.zero_centered;
  b.dtype = DType::kBF16, b.weight_dtype = c.w_dt, b.residual_dtype = DType::kF32;

  // CPU: the fused add (s = branch + stream), its norm, and the backward at s.
  Tensor s_h = Tensor::empty(xs, DType::kF32), y_h = Tensor::empty(xs, DType::kBF16);
  Tensor y0_h = Tensor::empty(xs, DType::kBF16);  // norm(stream), no residual
  Tensor rstd_h = Tensor::empty({c.rows}, DType::kF32),
         mean_h = Tensor::empty({c.rows}, DType::kF32);
  Tensor rstd0_h = Tensor::empty({c.rows}, DType::kF32),
         mean0_h = Tensor::empty({c.rows}, DType::kF32);
  Tensor dx_h = Tensor::empty(xs, DType::kF32), dg_h = dg0.clone(), db_h = db0.clone();
  NormFwdParams fc = f;
  fc.gamma = gamma.raw(), fc.beta = c.layer ? beta.raw() : nullptr;
  NormFwdParams f0 = fc;
  f0.x = stream.raw(), f0.y = y0_h.raw(), f0.rstd = rstd0_h.data<float>();
  f0.mean = c.layer ? mean0_h.data<float>() : nullptr;
  fwd(f0);
  fc.x = branch.raw(), fc.residual = stream.raw(), fc.residual_out = s_h.raw(), fc.y = y_h.raw();
  fc.rstd = rstd_h.data<float>(), fc.mean = c.layer ? mean_h.data<float>() : nullptr;
  fwd(fc);
  NormBwdParams bc = b;
  bc.dy = dy.raw(), bc.x = s_h.raw(), bc.gamma = gamma.raw(), bc.rstd = rstd_h.data<float>();
  bc.mean = c.layer ? mean_h.data<float>() : nullptr, bc.dresidual = dres.raw();
  bc.dx = dx_h.raw(), bc.dgamma = dg_h.data<float>();
  bc.dbeta = c.layer ? db_h.data<float>() : nullptr;
  bwd(bc);

  // GPU: the same calls on device copies (backward from the CPU's statistics and s).
  Tensor stream_d = stream.to(gpu()), branch_d = branch.to(gpu()), g_d = gamma.to(gpu());
  Tensor b_d = beta.to(gpu()), dy_d = dy.to(gpu()), dres_d = dres.to(gpu());
  Tensor s_d = poisoned(xs, DType::kF32), y_d = poisoned(xs, DType::kBF16);
  Tensor y0_d = poisoned(xs, DType::kBF16);
  Tensor rstd_d = poisoned({c.rows}, DType::kF32), mean_d = poisoned({c.rows}, DType::kF32);
  Tensor rstd0_d = poisoned({c.rows}, DType::kF32), mean0_d = poisoned({c.rows}, DType::kF32);
  NormFwdParams fg = f;
  fg.device = gpu(), fg.gamma = g_d.raw(), fg.beta = c.layer ? b_d.raw() : nullptr;
  NormFwdParams fg0 = fg;
  fg0.x = stream_d.raw(), fg0.y = y0_d.raw(), fg0.rstd = static_cast<float*>(rstd0_d.raw());
  fg0.mean = c.layer ? static_cast<float*>(mean0_d.raw()) : nullptr;
  fwd(fg0);
  fg.x = branch_d.raw(), fg.residual = stream_d.raw(), fg.residual_out = s_d.raw();
  fg.y = y_d.raw(), fg.rstd = static_cast<float*>(rstd_d.raw());
  fg.mean = c.layer ? static_cast<float*>(mean_d.raw()) : nullptr;
  fwd(fg);
  Tensor s_ref = s_h.to(gpu()), rstd_ref = rstd_h.to(gpu()), mean_ref = mean_h.to(gpu());
  Tensor dx_d = poisoned(xs, DType::kF32), dg_d = dg0.to(gpu()), db_d = db0.to(gpu());
  NormBwdParams bg = b;
  bg.device = gpu(), bg.dy = dy_d.raw(), bg.x = s_ref.raw(), bg.gamma = g_d.raw();
  bg.rstd = static_cast<const float*>(rstd_ref.raw());
  bg.mean = c.layer ? static_cast<const float*>(mean_ref.raw()) : nullptr;
  bg.dresidual = dres_d.raw(), bg.dx = dx_d.raw(), bg.dgamma = static_cast<float*>(dg_d.raw());
  bg.dbeta = c.layer ? static_cast<float*>(db_d.raw()) : nullptr;
  bwd(bg);

  // s = f32(branch) + stream is one f32 addition on both sides: exact.
  expect_close(s_d, s_h, Tol{0.0, 0.0}, "residual_out (f32)");
  expect_close(y0_d, y0_h, row_tol(DType::kBF16, c.cols), "y of the f32 stream");
  expect_close(rstd0_d, rstd0_h, row_tol(DType::kF32, c.cols), "rstd of the f32 stream");
  expect_close(y_d, y_h, row_tol(DType::kBF16, c.cols), "y of the fused add");
  expect_close(rstd_d, rstd_h, row_tol(DType::kF32, c.cols), "rstd of the fused add");
  if (c.layer) expect_close(mean_d, mean_h, row_tol(DType::kF32, c.cols), "mean");
  // dx in f32 (plus dresidual in f32): the f32 tolerance of the row reductions, not bf16's.
  expect_close(dx_d, dx_h, row_tol(DType::kF32, c.cols), "dx (f32)");
  expect_close(dg_d, dg_h, column_tol(c.rows), "dgamma");
  if (c.layer) expect_close(db_d, db_h, column_tol(c.rows), "dbeta");
}

// bf16 activations with f16 or f32 ones as the "narrow" side are not a supported mix on CUDA:
// a one-line error naming the dtypes, not a wrong result.
TEST(CudaNormResidual, RejectsOtherMixes) {
  GRAFT_REQUIRE_CUDA();
  Tensor x = Tensor::zeros({2, 8}, DType::kF32, gpu()),
         y = Tensor::zeros({2, 8}, DType::kF16, gpu());
  Tensor g = Tensor::zeros({8}, DType::kF16, gpu());
  NormFwdParams f;
  f.x = x.raw(), f.y = y.raw(), f.gamma = g.raw(), f.rows = 2, f.cols = 8;
  f.dtype = DType::kF16, f.weight_dtype = DType::kF16, f.residual_dtype = DType::kF32;
  f.device = gpu();
  EXPECT_THROW(rmsnorm_fwd(f), Error);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaNormResidual,
    ::testing::Values(Case{71, 229, false, false, DType::kBF16},    // elements, registers
                      Case{29, 541, true, false, DType::kF32},      // elements, LayerNorm
                      Case{130, 2048, false, false, DType::kBF16},  // 8-vectors (the 1B width)
                      Case{17, 64, false, true, DType::kBF16},      // Gemma's (1 + w)
                      Case{33, 4096, true, false, DType::kBF16},    // 8-vectors, LayerNorm
                      Case{5, 8192, false, false, DType::kF32},     // 1024 units: backward loops
                      Case{3, 16384, true, false, DType::kBF16}),   // the loop kernels
    case_name);

}  // namespace
}  // namespace graft
