// CUDA RMSNorm/LayerNorm forward and backward against the CPU reference (f64 accumulation).
#include "kernels/norm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct NormCase {
  int64_t rows, cols;
  bool layer, zero_centered;
  DType dt, w_dt;
};

std::string norm_name(const ::testing::TestParamInfo<NormCase>& i) {
  const NormCase& c = i.param;
  return str(c.layer ? "layernorm_" : "rmsnorm_", c.rows, "x", c.cols,
             c.zero_centered ? "_zc_" : "_", dtype_name(c.dt), "_w", dtype_name(c.w_dt));
}

class CudaNorm : public ::testing::TestWithParam<NormCase> {};

// Row statistics and column sums are reduced in f32 on the GPU and in f64 on the CPU; over n
// terms of magnitude <= ~3 the f32 sum is typically within sqrt(n) u of the exact one.
Tol norm_tol(DType dt, int64_t n) {
  Tol t = tol_for(dt);
  t.atol += 4.0 * std::sqrt(static_cast<double>(n)) * kU32;
  return t;
}

TEST_P(CudaNorm, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const NormCase c = GetParam();
  auto rng = rng_for(norm_name({c, 0}));
  const Shape xs{c.rows, c.cols};
  Tensor x = random_host(xs, rng, c.dt, -2.0f, 2.0f);
  Tensor gamma = random_host({c.cols}, rng, c.w_dt, 0.5f, 1.5f);
  Tensor beta = random_host({c.cols}, rng, c.w_dt);
  Tensor dy = random_host(xs, rng, c.dt);
  Tensor dg0 = random_host({c.cols}, rng), db0 = random_host({c.cols}, rng);

  // CPU reference (f32 storage of the same rounded values).
  Tensor y_h = Tensor::empty(xs, DType::kF32), rstd_h = Tensor::empty({c.rows}, DType::kF32);
  Tensor mean_h = Tensor::empty({c.rows}, DType::kF32), dx_h = Tensor::empty(xs, DType::kF32);
  Tensor dg_h = dg0.clone(), db_h = db0.clone();
  NormFwdParams f;
  f.rows = c.rows, f.cols = c.cols, f.eps = 1e-5f, f.zero_centered_gamma = c.zero_centered;
  NormFwdParams fc = f;
  fc.x = x.raw(), fc.gamma = gamma.raw(), fc.beta = c.layer ? beta.raw() : nullptr;
  fc.y = y_h.raw(), fc.rstd = rstd_h.data<float>();
  fc.mean = c.layer ? mean_h.data<float>() : nullptr;  // RMSNorm saves no mean
  NormBwdParams bw;
  bw.rows = c.rows, bw.cols = c.cols, bw.zero_centered_gamma = c.zero_centered;
  NormBwdParams bc = bw;
  bc.dy = dy.raw(), bc.x = x.raw(), bc.gamma = gamma.raw(), bc.rstd = rstd_h.data<float>();
  bc.mean = c.layer ? mean_h.data<float>() : nullptr, bc.dx = dx_h.raw();
  bc.dgamma = dg_h.data<float>();
  bc.dbeta = c.layer ? db_h.data<float>() : nullptr;
  if (c.layer) {
    layernorm_fwd(fc);
    layernorm_bwd(bc);
  } else {
    rmsnorm_fwd(fc);
    rmsnorm_bwd(bc);
  }

  Tensor x_d = to_gpu(x, c.dt), g_d = to_gpu(gamma, c.w_dt), b_d = to_gpu(beta, c.w_dt);
  Tensor y_d = poisoned(xs, c.dt), rstd_d = poisoned({c.rows}, DType::kF32);
  Tensor mean_d = poisoned({c.rows}, DType::kF32);
  NormFwdParams fg = f;
  fg.x = x_d.raw(), fg.gamma = g_d.raw(), fg.beta = c.layer ? b_d.raw() : nullptr;
  fg.y = y_d.raw(), fg.rstd = static_cast<float*>(rstd_d.raw());
  fg.mean = c.layer ? static_cast<float*>(mean_d.raw()) : nullptr;
  fg.dtype = c.dt, fg.weight_dtype = c.w_dt, fg.device = gpu();
  // Backward uses the CPU's statistics so that it is checked on its own.
  Tensor dy_d = to_gpu(dy, c.dt), dx_d = poisoned(xs, c.dt);
  Tensor rstd_ref = rstd_h.to(gpu()), mean_ref = mean_h.to(gpu());
  Tensor dg_d = dg0.to(gpu()), db_d = db0.to(gpu());
  NormBwdParams bg = bw;
  bg.dy = dy_d.raw(), bg.x = x_d.raw(), bg.gamma = g_d.raw();
  bg.rstd = static_cast<const float*>(rstd_ref.raw());
  bg.mean = c.layer ? static_cast<const float*>(mean_ref.raw()) : nullptr;
  bg.dx = dx_d.raw();
  bg.dgamma = static_cast<float*>(dg_d.raw());
  bg.dbeta = c.layer ? static_cast<float*>(db_d.raw()) : nullptr;
  bg.dtype = c.dt, bg.weight_dtype = c.w_dt, bg.device = gpu();
  if (c.layer) {
    layernorm_fwd(fg);
    layernorm_bwd(bg);
  } else {
    rmsnorm_fwd(fg);
    rmsnorm_bwd(bg);
  }
  const Tol t_row = norm_tol(c.dt, c.cols);
  expect_close(y_d, y_h, t_row, "y");
  expect_close(rstd_d, rstd_h, norm_tol(DType::kF32, c.cols), "rstd");
  if (c.layer) expect_close(mean_d, mean_h, norm_tol(DType::kF32, c.cols), "mean");
  expect_close(dx_d, dx_h, t_row, "dx");
  expect_close(dg_d, dg_h, norm_tol(DType::kF32, c.rows), "dgamma");
  if (c.layer) expect_close(db_d, db_h, norm_tol(DType::kF32, c.rows), "dbeta");
}

// accumulate = false (a stale gradient's first contribution): dgamma/dbeta written without being
// read (NaN before), bit for bit the accumulate into zeros.
TEST_P(CudaNorm, BackwardWritesWeightGradientsWithoutReading) {
  GRAFT_REQUIRE_CUDA();
  const NormCase c = GetParam();
  auto rng = rng_for(norm_name({c, 0}) + "_write");
  const Shape xs{c.rows, c.cols};
  Tensor x_d = to_gpu(random_host(xs, rng, c.dt, -2.0f, 2.0f), c.dt);
  Tensor g_d = to_gpu(random_host({c.cols}, rng, c.w_dt, 0.5f, 1.5f), c.w_dt);
  Tensor dy_d = to_gpu(random_host(xs, rng, c.dt), c.dt);
  Tensor rstd_d = Tensor::empty({c.rows}, DType::kF32, gpu());
  Tensor mean_d = Tensor::empty({c.rows}, DType::kF32, gpu());
  Tensor y_d = Tensor::empty(xs, c.dt, gpu()), dx_d = Tensor::empty(xs, c.dt, gpu());
  NormFwdParams f;
  f.x = x_d.raw(), f.gamma = g_d.raw(), f.y = y_d.raw();
  f.rstd = static_cast<float*>(rstd_d.raw());
  f.mean = c.layer ? static_cast<float*>(mean_d.raw()) : nullptr;
  f.rows = c.rows, f.cols = c.cols, f.zero_centered_gamma = c.zero_centered;
  f.dtype = c.dt, f.weight_dtype = c.w_dt, f.device = gpu();
  c.layer ? layernorm_fwd(f) : rmsnorm_fwd(f);
  Tensor nan = Tensor::full({c.cols}, std::nanf(""), DType::kF32);
  Tensor dg_w = nan.to(gpu()), db_w = nan.to(gpu());
  Tensor dg_a = Tensor::zeros({c.cols}, DType::kF32, gpu());
  Tensor db_a = Tensor::zeros({c.cols}, DType::kF32, gpu());
  NormBwdParams b;
  b.dy = dy_d.raw(), b.x = x_d.raw(), b.gamma = g_d.raw(), b.rstd = f.rstd, b.mean = f.mean;
  b.dx = dx_d.raw(), b.rows = c.rows, b.cols = c.cols, b.zero_centered_gamma = c.zero_centered;
  b.dtype = c.dt, b.weight_dtype = c.w_dt, b.device = gpu();
  for (bool write : {true, false}) {
    NormBwdParams p = b;
    p.dgamma = static_cast<float*>((write ? dg_w : dg_a).raw());
    p.dbeta = c.layer ? static_cast<float*>((write ? db_w : db_a).raw()) : nullptr;
    p.accumulate = !write;
    c.layer ? layernorm_bwd(p) : rmsnorm_bwd(p);
  }
  EXPECT_EQ(to_host_f32(dg_w).to_f32_vector(), to_host_f32(dg_a).to_f32_vector());
  if (c.layer) EXPECT_EQ(to_host_f32(db_w).to_f32_vector(), to_host_f32(db_a).to_f32_vector());
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaNorm,
    ::testing::Values(NormCase{71, 229, false, false, F, F}, NormCase{29, 541, false, true, F, F},
                      NormCase{1, 2048, false, false, F, F}, NormCase{71, 229, true, false, F, F},
                      NormCase{29, 541, true, false, F, F}, NormCase{71, 229, false, false, B, B},
                      NormCase{29, 541, false, true, B, F}, NormCase{130, 2048, false, false, B, B},
                      NormCase{29, 541, true, false, B, B},
                      // 16-byte vector path (cols % 8 == 0): LayerNorm, f32 weights, (1 + w)
                      NormCase{33, 264, true, false, B, F}, NormCase{17, 64, false, true, B, B},
                      NormCase{5, 8, true, false, F, F}),
    norm_name);

// The fused residual add against the CPU reference of add-then-norm. s = x + r is one f32 add
// rounded to the storage dtype on both sides, so it must match exactly; y, dx are held to the
// same tolerances as the unfused kernels (dx + dresidual is one more f32 add before rounding).
class CudaNormAdd : public ::testing::TestWithParam<NormCase> {};

TEST_P(CudaNormAdd, FusedAddMatchesCpu) {
  GRAFT_REQUIRE_CUDA();
  const NormCase c = GetParam();
  auto rng = rng_for(norm_name({c, 0}));
  const Shape xs{c.rows, c.cols};
  Tensor x = random_host(xs, rng, c.dt, -2.0f, 2.0f), r = random_host(xs, rng, c.dt, -2.0f, 2.0f);
  Tensor gamma = random_host({c.cols}, rng, c.w_dt, 0.5f, 1.5f);
  Tensor beta = random_host({c.cols}, rng, c.w_dt);
  Tensor dy = random_host(xs, rng, c.dt), dres = random_host(xs, rng, c.dt);

  // CPU: s = round_dt(x + r) (what the device stores), then the f32 reference on s.
  Tensor s_h = Tensor::empty(xs, DType::kF32);
  for (int64_t i = 0; i < s_h.numel(); ++i)
    s_h.data<float>()[i] = x.data<float>()[i] + r.data<float>()[i];
  s_h = s_h.to(c.dt).to(DType::kF32);
  Tensor y_h = Tensor::empty(xs, DType::kF32), rstd_h = Tensor::empty({c.rows}, DType::kF32);
  Tensor mean_h = Tensor::empty({c.rows}, DType::kF32), dx_h = Tensor::empty(xs, DType::kF32);
  NormFwdParams fc;
  fc.rows = c.rows, fc.cols = c.cols, fc.eps = 1e-5f, fc.zero_centered_gamma = c.zero_centered;
  NormFwdParams fg = fc;
  fc.x = s_h.raw(), fc.gamma = gamma.raw(), fc.beta = c.layer ? beta.raw() : nullptr;
  fc.y = y_h.raw(), fc.rstd = rstd_h.data<float>();
  fc.mean = c.layer ? mean_h.data<float>() : nullptr;
  NormBwdParams bc;
  bc.rows = c.rows, bc.cols = c.cols, bc.zero_centered_gamma = c.zero_centered;
  NormBwdParams bg = bc;
  bc.dy = dy.raw(), bc.x = s_h.raw(), bc.gamma = gamma.raw(), bc.rstd = rstd_h.data<float>();
  bc.mean = c.layer ? mean_h.data<float>() : nullptr, bc.dx = dx_h.raw();
  bc.dresidual = dres.raw();
  c.layer ? layernorm_fwd(fc) : rmsnorm_fwd(fc);
  c.layer ? layernorm_bwd(bc) : rmsnorm_bwd(bc);

  Tensor x_d = to_gpu(x, c.dt), r_d = to_gpu(r, c.dt), g_d = to_gpu(gamma, c.w_dt);
  Tensor b_d = to_gpu(beta, c.w_dt), s_d = poisoned(xs, c.dt), y_d = poisoned(xs, c.dt);
  Tensor rstd_d = poisoned({c.rows}, DType::kF32), mean_d = poisoned({c.rows}, DType::kF32);
  fg.x = x_d.raw(), fg.residual = r_d.raw(), fg.residual_out = s_d.raw();
  fg.gamma = g_d.raw(), fg.beta = c.layer ? b_d.raw() : nullptr, fg.y = y_d.raw();
  fg.rstd = static_cast<float*>(rstd_d.raw());
  fg.mean = c.layer ? static_cast<float*>(mean_d.raw()) : nullptr;
  fg.dtype = c.dt, fg.weight_dtype = c.w_dt, fg.device = gpu();
  c.layer ? layernorm_fwd(fg) : rmsnorm_fwd(fg);
  Tensor dy_d = to_gpu(dy, c.dt), dres_d = to_gpu(dres, c.dt), dx_d = poisoned(xs, c.dt);
  Tensor s_ref = to_gpu(s_h, c.dt), rstd_ref = rstd_h.to(gpu()), mean_ref = mean_h.to(gpu());
  bg.dy = dy_d.raw(), bg.x = s_ref.raw(), bg.gamma = g_d.raw();
  bg.rstd = static_cast<const float*>(rstd_ref.raw());
  bg.mean = c.layer ? static_cast<const float*>(mean_ref.raw()) : nullptr;
  bg.dx = dx_d.raw(), bg.dresidual = dres_d.raw();
  bg.dtype = c.dt, bg.weight_dtype = c.w_dt, bg.device = gpu();
  c.layer ? layernorm_bwd(bg) : rmsnorm_bwd(bg);

  EXPECT_EQ(to_host_f32(s_d).to_f32_vector(), s_h.to_f32_vector());
  const Tol t_row = norm_tol(c.dt, c.cols);
  expect_close(y_d, y_h, t_row, "y");
  expect_close(rstd_d, rstd_h, norm_tol(DType::kF32, c.cols), "rstd");
  if (c.layer) expect_close(mean_d, mean_h, norm_tol(DType::kF32, c.cols), "mean");
  expect_close(dx_d, dx_h, t_row, "dx");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaNormAdd,
    ::testing::Values(NormCase{71, 229, false, false, F, F}, NormCase{29, 541, true, false, B, B},
                      NormCase{130, 2048, false, false, B, B},  // vector path, Llama rows
                      NormCase{33, 264, true, false, B, F}, NormCase{17, 64, false, true, B, B}),
    norm_name);

// y may alias x (in place) and dx may alias dy.
TEST(CudaNormAlias, InPlaceMatchesOutOfPlace) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  Tensor x = random_host({29, 541}, rng), gamma = random_host({541}, rng);
  Tensor x_d = to_gpu(x, DType::kF32), g_d = to_gpu(gamma, DType::kF32);
  Tensor y_d = poisoned({29, 541}, DType::kF32), inplace = x_d.clone();
  NormFwdParams p;
  p.rows = 29, p.cols = 541, p.gamma = g_d.raw(), p.device = gpu();
  p.x = x_d.raw(), p.y = y_d.raw();
  rmsnorm_fwd(p);
  p.x = inplace.raw(), p.y = inplace.raw();
  rmsnorm_fwd(p);
  EXPECT_EQ(to_host_f32(inplace).to_f32_vector(), to_host_f32(y_d).to_f32_vector());
}

}  // namespace
}  // namespace graft
