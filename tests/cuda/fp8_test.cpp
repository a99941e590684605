// CUDA FP8 kernels against the CPU emulation: the casts bit for bit (same rounding, saturation,
// NaN, amax, transposed copy), and the FP8 GEMM over awkward shapes (padded internally).
#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct CastCase {
  int64_t rows, cols;
  DType x, fp8;
};

class CudaFp8Cast : public ::testing::TestWithParam<CastCase> {};

Tensor scalar_gpu(float v) { return Tensor::from_vector(std::vector<float>{v}, {1}).to(gpu()); }

TEST_P(CudaFp8Cast, QuantizeTransposeAmaxMatchCpuExactly) {
  GRAFT_REQUIRE_CUDA();
  const CastCase c = GetParam();
  auto rng = rng_for(str(c.rows, "x", c.cols));
  Tensor x = random_host({c.rows, c.cols}, rng, c.x, -3.0f, 3.0f);
  if (x.numel() > 2) {  // saturation, infinity and NaN too
    x.data<float>()[0] = 1e6f;
    x.data<float>()[1] = -INFINITY;
  }
  const float scale = c.fp8 == DType::kF8E4M3 ? 96.0f : 4000.0f;
  // CPU reference.
  Tensor q = Tensor::empty({c.rows, c.cols}, c.fp8), qt = Tensor::empty({c.cols, c.rows}, c.fp8);
  Tensor xc = x.to(c.x);
  float amax = 0.5f, scale_inv = 0.0f;
  Fp8QuantizeParams p;
  p.x = xc.raw();
  p.x_dtype = c.x;
  p.q = q.raw();
  p.qt = qt.raw();
  p.fp8 = c.fp8;
  p.rows = c.rows;
  p.cols = c.cols;
  p.scale = &scale;
  p.amax = &amax;
  p.scale_inv = &scale_inv;
  fp8_quantize(p);
  // GPU.
  Tensor xg = to_gpu(x, c.x);
  Tensor qg = Tensor::empty({c.rows, c.cols}, c.fp8, gpu());
  Tensor qtg = Tensor::empty({c.cols, c.rows}, c.fp8, gpu());
  Tensor sg = scalar_gpu(scale), ag = scalar_gpu(0.5f), sig = scalar_gpu(0.0f);
  Fp8QuantizeParams pg = p;
  pg.x = xg.raw();
  pg.q = qg.raw();
  pg.qt = qtg.raw();
  pg.scale = static_cast<const float*>(sg.raw());
  pg.amax = static_cast<float*>(ag.raw());
  pg.scale_inv = static_cast<float*>(sig.raw());
  pg.device = gpu();
  fp8_quantize(pg);
  const Tensor qh = qg.to(Device::cpu()), qth = qtg.to(Device::cpu());
  const auto* gb = static_cast<const uint8_t*>(qh.raw());
  const auto* cb = static_cast<const uint8_t*>(q.raw());
  const auto xv = xc.to(DType::kF32).to_f32_vector();
  int shown = 0;
  for (int64_t i = 0; i < q.numel() && shown < 5; ++i)
    if (gb[i] != cb[i]) {
      ADD_FAILURE() << "element " << i << ": x = " << xv[i] << ", x * scale = " << xv[i] * scale
                    << ": GPU byte " << int(gb[i]) << ", CPU byte " << int(cb[i]);
      ++shown;
    }
  EXPECT_EQ(std::memcmp(qth.raw(), qt.raw(), qt.nbytes()), 0) << "qt differs";
  EXPECT_EQ(ag.to(Device::cpu()).to_f32_vector()[0], amax);
  EXPECT_EQ(sig.to(Device::cpu()).to_f32_vector()[0], scale_inv);
  // Dequantise and amax_reduce on the GPU.
  Tensor yg = poisoned({c.rows * c.cols}, DType::kF32);
  Fp8DequantizeParams d;
  d.q = qg.raw();
  d.fp8 = c.fp8;
  d.scale_inv = static_cast<const float*>(sig.raw());
  d.y = yg.raw();
  d.n = x.numel();
  d.device = gpu();
  fp8_dequantize(d);
  const auto y = yg.to(Device::cpu()).to_f32_vector();
  const auto qv = q.to(DType::kF32).to_f32_vector();  // fp8 -> f32 on the CPU
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], qv[i] * scale_inv) << i;
  Tensor a2 = scalar_gpu(0.0f);
  AmaxParams am;
  am.x = xg.raw();
  am.dtype = c.x;
  am.n = x.numel();
  am.amax = static_cast<float*>(a2.raw());
  am.device = gpu();
  amax_reduce(am);
  float want = 0.0f;
  for (float v : xc.to(DType::kF32).to_f32_vector()) want = std::max(want, std::fabs(v));
  EXPECT_EQ(a2.to(Device::cpu()).to_f32_vector()[0], want);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaFp8Cast,
                         ::testing::Values(CastCase{71, 229, DType::kF32, DType::kF8E4M3},
                                           CastCase{29, 541, DType::kBF16, DType::kF8E4M3},
                                           CastCase{64, 128, DType::kBF16, DType::kF8E5M2},
                                           CastCase{1, 1, DType::kF32, DType::kF8E5M2},
                                           CastCase{333, 17, DType::kF32, DType::kF8E4M3},
                                           // the vectorised kernel (rows, cols % 8 == 0), with
                                           // partial 64x64 tiles and a tile-sized shape
                                           CastCase{136, 200, DType::kBF16, DType::kF8E4M3},
                                           CastCase{256, 512, DType::kF32, DType::kF8E5M2},
                                           CastCase{8, 24, DType::kF16, DType::kF8E4M3}));

struct GemmCase {
  int64_t m, n, k;
  DType b;
  DType c;
  bool fast;
};

class CudaFp8Gemm : public ::testing::TestWithParam<GemmCase> {};

// The FP8 products are exact, but Hopper's FP8 tensor cores keep partial sums at reduced
// precision (about 14 bits, as DeepSeek-V3 reports for H800); cuBLASLt without fast accumulation
// promotes them to f32 every few k-blocks, with fast accumulation much later. Measured on the
// H200 without fast accumulation: 4.4e-4 relative on single elements, 6.7e-5 in norm (m 32,
// n 48, k 64). So: 2e-3 relative plus an absolute term for partial sums of |terms| <= `term`
// growing like sqrt(k); 1e-2 with fast accumulation (TE's FP8 GEMM tolerance). A bf16 C adds its
// rounding (2^-8 relative on each side) and, where alpha·AB and beta·C cancel, one bf16 ulp of
// their magnitude (|C| < 1 here): cuBLASLt rounds before the epilogue's addition (measured: up to
// 1.8e-3 absolute at m 29, n 541, k 7).
Tol fp8_gemm_tol(int64_t k, double term, DType c_dtype, bool fast) {
  const double rk = std::sqrt(static_cast<double>(k));
  Tol t{1e-3 * term * rk, 2e-3};
  if (fast) t = {1e-2 * term * rk, 1e-2};
  if (c_dtype == DType::kBF16) {
    t.rtol += 8e-3;
    t.atol += 4e-3;
  }
  return t;
}

// The GEMM of the CPU params `p` on the GPU: the same operands (host fp8 `qa`, `qb`) and scales
// copied over, into the device tensor `c` (its initial contents are C for beta), which it returns.
Tensor gemm_on_gpu(const Fp8GemmParams& p, const Tensor& qa, const Tensor& qb, Tensor c) {
  Tensor ag = qa.to(gpu()), bg = qb.to(gpu());
  Tensor sag = scalar_gpu(*p.a_scale_inv), sbg = scalar_gpu(*p.b_scale_inv);
  Fp8GemmParams pg = p;
  pg.a = ag.raw();
  pg.b = bg.raw();
  pg.c = c.raw();
  pg.a_scale_inv = static_cast<const float*>(sag.raw());
  pg.b_scale_inv = static_cast<const float*>(sbg.raw());
  pg.device = gpu();
  fp8_gemm(pg);
  return c;
}

TEST_P(CudaFp8Gemm, MatchesTheCpuEmulation) {
  GRAFT_REQUIRE_CUDA();
  const GemmCase c = GetParam();
  auto rng = rng_for(str(c.m, "x", c.n, "x", c.k));
  // FP8 operands made on the CPU (exact values), scales that are powers of two and not.
  Tensor a = random_host({c.m, c.k}, rng), b = random_host({c.n, c.k}, rng);
  Tensor qa = a.to(DType::kF32).to(DType::kF8E4M3), qb = b.to(DType::kF32).to(c.b);
  const float sa = 0.5f, sb = 0.37f;
  Tensor want = random_host({c.m, c.n}, rng, c.c);  // beta = 1 reads C
  Tensor wantc = want.to(c.c).clone();              // to() of the same dtype shares storage: copy
  Fp8GemmParams p;
  p.a = qa.raw();
  p.b = qb.raw();
  p.c = wantc.raw();
  p.b_dtype = c.b;
  p.c_dtype = c.c;
  p.m = c.m;
  p.n = c.n;
  p.k = c.k;
  p.a_scale_inv = &sa;
  p.b_scale_inv = &sb;
  p.alpha = 1.5f;
  p.beta = 1.0f;
  p.fast_accum = c.fast;
  fp8_gemm(p);
  Tensor cg = gemm_on_gpu(p, qa, qb, to_gpu(want, c.c));
  const Tol tol = fp8_gemm_tol(c.k, 1.5 * sa * sb, c.c, c.fast);
  expect_close(cg, wantc.to(DType::kF32), tol, str("fp8 gemm ", c.m, "x", c.n, "x", c.k));
}

// Each of the scales, alpha and beta on its own (a scale pointer that is ignored shows as a
// factor here).
TEST(CudaFp8GemmScales, EachScaleAlphaAndBetaIsApplied) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t m = 32, n = 48, k = 64;
  Tensor qa = random_host({m, k}, rng).to(DType::kF8E4M3);
  Tensor qb = random_host({n, k}, rng).to(DType::kF8E4M3);
  Tensor c0 = random_host({m, n}, rng);
  struct Combo {
    float sa, sb, alpha, beta;
  };
  for (Combo s : {Combo{1, 1, 1, 0}, Combo{0.5f, 1, 1, 0}, Combo{1, 0.37f, 1, 0},
                  Combo{1, 1, 1.5f, 0}, Combo{1, 1, 1, 1}, Combo{0.5f, 0.37f, 1.5f, 1}}) {
    Tensor want = c0.clone();
    Fp8GemmParams p;
    p.a = qa.raw();
    p.b = qb.raw();
    p.c = want.raw();
    p.c_dtype = DType::kF32;
    p.m = m;
    p.n = n;
    p.k = k;
    p.a_scale_inv = &s.sa;
    p.b_scale_inv = &s.sb;
    p.alpha = s.alpha;
    p.beta = s.beta;
    p.fast_accum = false;
    fp8_gemm(p);
    Tensor cg = gemm_on_gpu(p, qa, qb, c0.to(gpu()));
    expect_close(cg, want, fp8_gemm_tol(k, s.alpha * s.sa * s.sb, DType::kF32, false),
                 str("sa ", s.sa, " sb ", s.sb, " alpha ", s.alpha, " beta ", s.beta));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFp8Gemm,
    ::testing::Values(GemmCase{16, 16, 16, DType::kF8E4M3, DType::kF32, false},
                      GemmCase{128, 256, 512, DType::kF8E4M3, DType::kBF16, false},
                      GemmCase{128, 256, 512, DType::kF8E4M3, DType::kF32, true},
                      GemmCase{71, 229, 53, DType::kF8E4M3, DType::kF32, false},
                      GemmCase{29, 541, 7, DType::kF8E5M2, DType::kBF16, false},
                      GemmCase{1, 7, 33, DType::kF8E5M2, DType::kF32, true}));

}  // namespace
}  // namespace graft
