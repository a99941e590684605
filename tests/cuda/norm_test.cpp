// CUDA RMSNorm/LayerNorm forward and backward against the CPU reference (f64 accumulation).
#include "kernels/norm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
// dgamma / dbeta over `rows` rows: the GPU sums each block's strip of m rows in f32, then the
// strips in f64. The strip sums' rounding errors, ~sqrt(m) u of a sum of size ~sqrt(m) each,
// add up over rows / m strips to ~sqrt(rows m) u. Every GPU this runs on holds >= 64 blocks at
// once, so m <= ceil(rows / 64).
Tol column_tol(int64_t rows) {
  const double m = static_cast<double>(std::max<int64_t>(1, (rows + 63) / 64));
  Tol t = norm_tol(DType::kF32, rows);
  t.atol += 4.0 * std::sqrt(static_cast<double>(rows) * m) * kU32;
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
  expect_close(dg_d, dg_h, column_tol(c.rows), "dgamma");
  if (c.layer) expect_close(db_d, db_h, column_tol(c.rows), "dbeta");
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
                      NormCase{5, 8, true, false, F, F},
                      // Strips of rows per backward block with a short last strip (rows prime),
                      // LayerNorm's dbeta partials; 257 units (a warp of them past a power of 2)
                      NormCase{1009, 2048, false, false, B, B},
                      NormCase{4099, 2048, true, true, B, B}, NormCase{97, 2056, true, false, B, B},
                      // The element path with two columns a thread (cols % 8 != 0, > 1024)
                      NormCase{300, 2047, false, true, B, B}, NormCase{37, 1500, true, false, F, F},
                      // 1024 and 2048 units a row (two a thread): forward in registers, backward
                      // in registers or, if its block does not fit, the loop kernels
                      NormCase{3, 8192, false, false, B, F}, NormCase{9, 16384, false, false, B, B},
                      NormCase{5, 16384, true, false, F, F}, NormCase{3, 8192, true, false, B, B},
                      // Longer rows than the register kernels take: the loop kernels
                      NormCase{7, 4099, true, false, F, F}, NormCase{4, 65544, false, false, B, B}),
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
                      NormCase{33, 264, true, false, B, F}, NormCase{17, 64, false, true, B, B},
                      NormCase{1009, 2048, false, false, B, B},  // strips, a short last one
                      NormCase{300, 2047, false, false, B, B},
                      NormCase{9, 16384, true, false, B, B}),
    norm_name);

// A device copy of host f32 values in `dt` that starts one element into its allocation (`keep`
// owns it), so that no pointer is aligned for 16-byte vectors: the element path.
Tensor misaligned_gpu(const Tensor& host, DType dt, Tensor& keep) {
  std::vector<float> v = host.to_f32_vector();
  v.insert(v.begin(), 0.0f);
  keep = to_gpu(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), dt);
  return Tensor::from_blob(static_cast<char*>(keep.raw()) + dtype_size(dt), host.shape(), dt,
                           gpu());
}

// Misaligned views (cols % 8 == 0 but no pointer 16-byte aligned) take the element path and
// still match the CPU: the fused add forward and backward with dgamma, bf16.
TEST(CudaNormView, MisalignedViewsMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const int64_t rows = 133, cols = 2048;
  auto rng = rng_for();
  const Shape xs{rows, cols};
  const DType B = DType::kBF16;
  Tensor x = random_host(xs, rng, B, -2.0f, 2.0f), r = random_host(xs, rng, B, -2.0f, 2.0f);
  Tensor gamma = random_host({cols}, rng, B, 0.5f, 1.5f), dy = random_host(xs, rng, B);
  Tensor dres = random_host(xs, rng, B), dg0 = random_host({cols}, rng);
  Tensor s_h = Tensor::empty(xs, DType::kF32);
  for (int64_t i = 0; i < s_h.numel(); ++i)
    s_h.data<float>()[i] = x.data<float>()[i] + r.data<float>()[i];
  s_h = s_h.to(B).to(DType::kF32);
  Tensor y_h = Tensor::empty(xs, DType::kF32), rstd_h = Tensor::empty({rows}, DType::kF32);
  Tensor dx_h = Tensor::empty(xs, DType::kF32), dg_h = dg0.clone();
  NormFwdParams fc;
  fc.rows = rows, fc.cols = cols, fc.x = s_h.raw(), fc.gamma = gamma.raw(), fc.y = y_h.raw();
  fc.rstd = rstd_h.data<float>();
  rmsnorm_fwd(fc);
  NormBwdParams bc;
  bc.rows = rows, bc.cols = cols, bc.dy = dy.raw(), bc.x = s_h.raw(), bc.gamma = gamma.raw();
  bc.rstd = rstd_h.data<float>(), bc.dx = dx_h.raw(), bc.dresidual = dres.raw();
  bc.dgamma = dg_h.data<float>();
  rmsnorm_bwd(bc);

  Tensor k[8];
  Tensor x_d = misaligned_gpu(x, B, k[0]), r_d = misaligned_gpu(r, B, k[1]);
  const Tensor nan_h = Tensor::full(xs, std::numeric_limits<float>::quiet_NaN());
  Tensor g_d = misaligned_gpu(gamma, B, k[2]), s_d = misaligned_gpu(nan_h, B, k[3]);
  Tensor y_d = misaligned_gpu(nan_h, B, k[4]), dy_d = misaligned_gpu(dy, B, k[5]);
  Tensor dres_d = misaligned_gpu(dres, B, k[6]), dx_d = misaligned_gpu(nan_h, B, k[7]);
  Tensor rstd_d = poisoned({rows}, DType::kF32), dg_d = dg0.to(gpu());
  NormFwdParams fg;
  fg.rows = rows, fg.cols = cols, fg.x = x_d.raw(), fg.residual = r_d.raw();
  fg.residual_out = s_d.raw(), fg.gamma = g_d.raw(), fg.y = y_d.raw();
  fg.rstd = static_cast<float*>(rstd_d.raw());
  fg.dtype = fg.weight_dtype = B, fg.device = gpu();
  rmsnorm_fwd(fg);
  NormBwdParams bg;
  bg.rows = rows, bg.cols = cols, bg.dy = dy_d.raw(), bg.x = s_d.raw(), bg.gamma = g_d.raw();
  bg.rstd = fg.rstd, bg.dx = dx_d.raw(), bg.dresidual = dres_d.raw();
  bg.dgamma = static_cast<float*>(dg_d.raw());
  bg.dtype = bg.weight_dtype = B, bg.device = gpu();
  rmsnorm_bwd(bg);  // with the GPU's own s and rstd: s matches exactly, rstd within norm_tol
  EXPECT_EQ(to_host_f32(s_d).to_f32_vector(), s_h.to_f32_vector());
  const Tol t_row = norm_tol(B, cols);
  expect_close(y_d, y_h, t_row, "y");
  expect_close(rstd_d, rstd_h, norm_tol(DType::kF32, cols), "rstd");
  expect_close(dx_d, dx_h, t_row, "dx");
  expect_close(dg_d, dg_h, column_tol(rows), "dgamma");
}

// The backward is deterministic: the same inputs give bit-identical dx and dgamma / dbeta
// (the partial rows are added in a fixed order), and dx may alias dy.
TEST(CudaNormDeterminism, BackwardIsBitIdenticalAcrossRuns) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  for (const bool layer : {false, true}) {
    const int64_t rows = 2053, cols = 2048;
    const DType B = DType::kBF16;
    Tensor x = to_gpu(random_host({rows, cols}, rng, B, -2.0f, 2.0f), B);
    Tensor dy = to_gpu(random_host({rows, cols}, rng, B), B);
    Tensor g = to_gpu(random_host({cols}, rng, B, 0.5f, 1.5f), B);
    Tensor rstd = to_gpu(random_host({rows}, rng, DType::kF32, 0.5f, 1.5f), DType::kF32);
    Tensor mean = to_gpu(random_host({rows}, rng, DType::kF32), DType::kF32);
    Tensor dg0 = random_host({cols}, rng);
    std::vector<float> first[3];
    for (int run = 0; run < 3; ++run) {
      Tensor dx = dy.clone(), dg = dg0.to(gpu()), db = dg0.to(gpu());
      NormBwdParams b;
      b.rows = rows, b.cols = cols, b.dy = dx.raw(), b.x = x.raw(), b.gamma = g.raw();
      b.rstd = static_cast<const float*>(rstd.raw());
      b.mean = layer ? static_cast<const float*>(mean.raw()) : nullptr;
      b.dx = dx.raw();  // in place over dy
      b.dgamma = static_cast<float*>(dg.raw()),
      b.dbeta = layer ? static_cast<float*>(db.raw()) : nullptr;
      b.dtype = b.weight_dtype = B, b.device = gpu();
      layer ? layernorm_bwd(b) : rmsnorm_bwd(b);
      std::vector<float> got[3] = {to_host_f32(dx).to_f32_vector(), to_host_f32(dg).to_f32_vector(),
                                   to_host_f32(db).to_f32_vector()};
      for (int i = 0; i < 3; ++i) {
        if (run == 0)
          first[i] = got[i];
        else
          EXPECT_EQ(got[i], first[i])
              << (layer ? "layernorm" : "rmsnorm") << " output " << i << " run " << run;
      }
    }
  }
}

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
