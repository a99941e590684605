// CUDA GEMM (cuBLASLt) against the CPU reference (OpenBLAS), awkward shapes, all transposes,
// f32/bf16 operands, f32/bf16 output, bias, beta, strided batches, padded leading dimensions.
#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct GemmCase {
  int64_t m, n, k;
  bool ta, tb;
  DType dt, c_dt;
  bool bias;
  float beta;
  int64_t batch;
  int64_t pad;  // extra elements per row (leading dimension > tight)
};

std::string case_name(const ::testing::TestParamInfo<GemmCase>& i) {
  const GemmCase& c = i.param;
  return str(c.m, "x", c.n, "x", c.k, c.ta ? "_ta" : "", c.tb ? "_tb" : "", "_", dtype_name(c.dt),
             "_", dtype_name(c.c_dt), c.bias ? "_bias" : "", c.beta != 0 ? "_beta" : "", "_b",
             c.batch, c.pad ? "_pad" : "");
}

class CudaGemm : public ::testing::TestWithParam<GemmCase> {};

TEST_P(CudaGemm, MatchesCpuReference) {
  GRAFT_REQUIRE_CUDA();
  const GemmCase c = GetParam();
  auto rng = rng_for(case_name({c, 0}));
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = (c.ta ? c.m : c.k);
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = (c.tb ? c.k : c.n);
  const int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
  const int64_t sa = a_rows * lda, sb = b_rows * ldb, sc = c.m * ldc;
  Tensor a = random_host({c.batch * sa}, rng, c.dt);
  Tensor b = random_host({c.batch * sb}, rng, c.dt);
  Tensor c0 = random_host({c.batch * sc}, rng, c.c_dt);
  const DType bias_dt = c.c_dt == DType::kBF16 && c.m % 2 ? DType::kBF16 : DType::kF32;
  Tensor bias = random_host({c.n}, rng, bias_dt);

  GemmParams p;
  p.m = c.m, p.n = c.n, p.k = c.k, p.trans_a = c.ta, p.trans_b = c.tb;
  p.lda = lda, p.ldb = ldb, p.ldc = ldc, p.beta = c.beta, p.alpha = 0.75f;
  p.batch = c.batch, p.stride_a = sa, p.stride_b = sb, p.stride_c = sc;
  p.dtype = c.dt, p.c_dtype = c.c_dt, p.bias_dtype = bias_dt;

  // CPU reference on the same (rounded) values and dtypes.
  // clone(): to() of a tensor already in that dtype shares its storage, and the CPU GEMM writes C.
  Tensor a_h = a.to(c.dt), b_h = b.to(c.dt), bias_h = bias.to(bias_dt), c_h = c0.to(c.c_dt).clone();
  GemmParams cp = p;
  cp.a = a_h.raw(), cp.b = b_h.raw(), cp.c = c_h.raw(), cp.bias = c.bias ? bias_h.raw() : nullptr;
  cp.device = Device::cpu();
  gemm(cp);

  Tensor a_d = to_gpu(a, c.dt), b_d = to_gpu(b, c.dt), bias_d = to_gpu(bias, bias_dt);
  Tensor c_d = c.beta != 0.0f ? to_gpu(c0, c.c_dt) : poisoned({c.batch * sc}, c.c_dt);
  GemmParams gp = p;
  gp.a = a_d.raw(), gp.b = b_d.raw(), gp.c = c_d.raw(), gp.bias = c.bias ? bias_d.raw() : nullptr;
  gp.device = gpu();
  gemm(gp);

  // Both sides accumulate k products in f32 in different orders; for entries in [-1, 1] each
  // sum's rounding error is typically sqrt(k) u |a_i||b_j| <= k u, so they may differ by ~2 k u.
  Tol tol = tol_for(c.c_dt);
  tol.atol += 2.0 * static_cast<double>(c.k) * kU32;
  if (c.bias && c.c_dt != DType::kF32) {
    // cuBLASLt's bias epilogue with a bf16 D rounds alpha*AB to bf16 before adding the bias (the
    // CPU rounds once, after): where AB and the bias cancel, that is one bf16 rounding (2^-9
    // relative) of |alpha*AB| <= max|C| + max|bias| instead of the result.
    double mx = 0.0;
    for (float v : c_h.to(DType::kF32).to_f32_vector()) mx = std::max(mx, std::fabs(double(v)));
    tol.atol += std::ldexp(mx + 1.0, -9);
  }
  if (c.pad == 0) {
    expect_close(c_d, c_h, tol, "C");
  } else {  // padding columns of C are never written: compare the m x n part of each batch
    Tensor got_all = to_host_f32(c_d), want_all = to_host_f32(c_h);
    for (int64_t bi = 0; bi < c.batch; ++bi) {
      Tensor got = got_all.slice(0, bi * sc, sc).view({c.m, ldc}).slice(1, 0, c.n).contiguous();
      Tensor want = want_all.slice(0, bi * sc, sc).view({c.m, ldc}).slice(1, 0, c.n).contiguous();
      expect_close(got, want, tol, str("C batch ", bi));
    }
  }
}

constexpr DType F = DType::kF32, B = DType::kBF16;

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaGemm,
    ::testing::Values(GemmCase{71, 229, 29, false, false, F, F, false, 0.0f, 1, 0},
                      GemmCase{29, 541, 71, false, true, F, F, true, 0.0f, 1, 0},
                      GemmCase{71, 229, 541, true, false, F, F, false, 0.5f, 1, 0},
                      GemmCase{1, 229, 71, true, true, F, F, true, 0.0f, 1, 0},
                      GemmCase{29, 71, 229, false, true, F, F, false, 0.0f, 3, 0},
                      GemmCase{71, 29, 229, false, false, F, F, true, 0.0f, 2, 3},
                      GemmCase{71, 229, 29, false, true, B, B, false, 0.0f, 1, 0},
                      GemmCase{29, 541, 71, false, true, B, B, true, 0.0f, 1, 0},
                      GemmCase{128, 256, 64, false, true, B, B, true, 0.0f, 1, 0},
                      GemmCase{64, 256, 128, false, false, B, F, true, 0.0f, 1, 0},
                      GemmCase{71, 229, 541, true, false, B, F, false, 1.0f, 1, 0},
                      GemmCase{1, 541, 229, false, true, B, B, false, 0.0f, 1, 0},
                      GemmCase{29, 64, 71, false, true, B, B, false, 0.0f, 4, 0},
                      GemmCase{64, 64, 64, true, true, B, F, true, 0.25f, 2, 0}),
    case_name);

// The weight-gradient GEMM of a stale gradient (lazy zeroing): beta = 0 over a C of NaN gives,
// bit for bit, what beta = 1 over zeros gives (cuBLASLt never reads C at beta = 0, and its plan
// does not depend on beta). dW [out, in] = dyᵀ [out, rows] · x [rows, in], bf16 into f32.
TEST(CudaGemmBeta, ZeroOverNaNEqualsOneOverZeros) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for("gemm_beta_zero");
  for (auto [rows, out, in] :
       {std::tuple<int64_t, int64_t, int64_t>{541, 229, 71}, {4096, 256, 512}, {64, 3, 5}}) {
    Tensor dy = to_gpu(random_host({rows, out}, rng, DType::kBF16), DType::kBF16);
    Tensor x = to_gpu(random_host({rows, in}, rng, DType::kBF16), DType::kBF16);
    Tensor written = Tensor::full({out, in}, std::nanf(""), DType::kF32).to(gpu());
    Tensor added = Tensor::zeros({out, in}, DType::kF32, gpu());
    for (float beta : {0.0f, 1.0f}) {
      GemmParams p;
      p.a = dy.raw(), p.b = x.raw(), p.c = (beta == 0.0f ? written : added).raw();
      p.m = out, p.n = in, p.k = rows, p.trans_a = true, p.beta = beta;
      p.dtype = DType::kBF16, p.c_dtype = DType::kF32, p.device = gpu();
      gemm(p);
    }
    EXPECT_EQ(to_host_f32(written).to_f32_vector(), to_host_f32(added).to_f32_vector())
        << rows << " x " << out << " x " << in;
  }
}

}  // namespace
}  // namespace graft
