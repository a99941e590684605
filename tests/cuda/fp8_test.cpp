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
  int64_t x_off = 0;  // x starts this many elements into its device buffer (misaligned: > 0)
  int64_t q_off = 0;  // q and qt start this many bytes into theirs
};

class CudaFp8Cast : public ::testing::TestWithParam<CastCase> {};

Tensor scalar_gpu(float v) { return Tensor::from_vector(std::vector<float>{v}, {1}).to(gpu()); }

// A device buffer of `pad + n` elements of `dt` holding the host f32 values from element `pad`.
Tensor padded_gpu(const Tensor& host, DType dt, int64_t pad) {
  Tensor h = Tensor::zeros({pad + host.numel()}, DType::kF32);
  std::memcpy(h.data<float>() + pad, host.data<float>(), host.nbytes());
  return h.to(dt).to(gpu());
}

// A device byte buffer of `pad + n` fp8 values, all 0x7f (NaN in both formats: no cast of a
// finite value writes it, so a byte the kernel fails to write shows).
Tensor poisoned_fp8(int64_t n, DType fp8) {
  Tensor h = Tensor::empty({n}, fp8);
  std::memset(h.raw(), 0x7f, static_cast<size_t>(h.nbytes()));
  return h.to(gpu());
}

const uint8_t* bytes(const Tensor& t, int64_t off = 0) {
  return static_cast<const uint8_t*>(t.raw()) + off;
}

// Fails with the first few bytes where `got` and `want` differ, and their count.
void expect_bytes(const uint8_t* got, const uint8_t* want, int64_t n, const std::string& what) {
  int shown = 0;
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i)
    if (got[i] != want[i]) {
      if (shown++ < 5)
        ADD_FAILURE() << what << " byte " << i << ": GPU " << int(got[i]) << ", CPU "
                      << int(want[i]);
      ++differ;
    }
  EXPECT_EQ(differ, 0) << what << ": " << differ << " of " << n << " bytes differ";
}

// q and qt both, q only (the flat kernel), qt only; each against the CPU bytes, amax and
// scale_inv exactly.
TEST_P(CudaFp8Cast, QuantizeTransposeAmaxMatchCpuExactly) {
  GRAFT_REQUIRE_CUDA();
  const CastCase c = GetParam();
  auto rng = rng_for(str(c.rows, "x", c.cols, "+", c.x_off, "+", c.q_off));
  const int64_t n = c.rows * c.cols;
  Tensor x = random_host({c.rows, c.cols}, rng, c.x, -3.0f, 3.0f);
  if (n > 2) {  // saturation and infinity (NaN: NanWinsTheAmaxOnEveryPath)
    x.data<float>()[0] = 1e6f;
    x.data<float>()[n / 2] = -INFINITY;
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
  Tensor xg = padded_gpu(x, c.x, c.x_off);
  const void* xp = static_cast<const char*>(xg.raw()) + c.x_off * dtype_size(c.x);
  Tensor sg = scalar_gpu(scale);
  for (int mode = 0; mode < 3; ++mode) {  // q and qt, q only, qt only
    const bool want_q = mode != 2, want_qt = mode != 1;
    const std::string what = str(c.rows, "x", c.cols,
                                 mode == 0   ? " q+qt"
                                 : mode == 1 ? " q"
                                             : " qt");
    Tensor qg = poisoned_fp8(c.q_off + n, c.fp8), qtg = poisoned_fp8(c.q_off + n, c.fp8);
    Tensor ag = scalar_gpu(0.5f), sig = scalar_gpu(0.0f);
    Fp8QuantizeParams pg = p;
    pg.x = xp;
    pg.q = want_q ? static_cast<uint8_t*>(qg.raw()) + c.q_off : nullptr;
    pg.qt = want_qt ? static_cast<uint8_t*>(qtg.raw()) + c.q_off : nullptr;
    pg.scale = static_cast<const float*>(sg.raw());
    pg.amax = static_cast<float*>(ag.raw());
    pg.scale_inv = static_cast<float*>(sig.raw());
    pg.device = gpu();
    fp8_quantize(pg);
    if (want_q) expect_bytes(bytes(qg.to(Device::cpu()), c.q_off), bytes(q), n, what + ": q");
    if (want_qt) expect_bytes(bytes(qtg.to(Device::cpu()), c.q_off), bytes(qt), n, what + ": qt");
    EXPECT_EQ(ag.to(Device::cpu()).to_f32_vector()[0], amax) << what;
    EXPECT_EQ(sig.to(Device::cpu()).to_f32_vector()[0], scale_inv) << what;
    if (mode != 0) continue;
    // Dequantise on the GPU.
    Tensor yg = poisoned({n}, DType::kF32);
    Fp8DequantizeParams d;
    d.q = pg.q;
    d.fp8 = c.fp8;
    d.scale_inv = static_cast<const float*>(sig.raw());
    d.y = yg.raw();
    d.n = n;
    d.device = gpu();
    fp8_dequantize(d);
    const auto y = yg.to(Device::cpu()).to_f32_vector();
    const auto qv = q.to(DType::kF32).to_f32_vector();  // fp8 -> f32 on the CPU
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], qv[i] * scale_inv) << i;
  }
  // amax_reduce (the current-scaling pass) on the GPU.
  Tensor a2 = scalar_gpu(0.0f);
  AmaxParams am;
  am.x = xp;
  am.dtype = c.x;
  am.n = n;
  am.amax = static_cast<float*>(a2.raw());
  am.device = gpu();
  amax_reduce(am);
  float want = 0.0f;
  for (float v : xc.to(DType::kF32).to_f32_vector()) want = std::max(want, std::fabs(v));
  EXPECT_EQ(a2.to(Device::cpu()).to_f32_vector()[0], want);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFp8Cast,
    ::testing::Values(CastCase{71, 229, DType::kF32, DType::kF8E4M3},
                      CastCase{29, 541, DType::kBF16, DType::kF8E4M3},
                      CastCase{64, 128, DType::kBF16, DType::kF8E5M2},
                      CastCase{1, 1, DType::kF32, DType::kF8E5M2},
                      CastCase{1, 1, DType::kBF16, DType::kF8E4M3},
                      CastCase{7, 13, DType::kBF16, DType::kF8E4M3},
                      CastCase{333, 17, DType::kF32, DType::kF8E4M3},
                      CastCase{129, 257, DType::kBF16, DType::kF8E5M2},
                      // the tile kernel (rows, cols % 8 == 0): partial 64x128 tiles, one tile,
                      // one row of chunks, more tiles than resident blocks
                      CastCase{136, 200, DType::kBF16, DType::kF8E4M3},
                      CastCase{256, 512, DType::kF32, DType::kF8E5M2},
                      CastCase{8, 24, DType::kF16, DType::kF8E4M3},
                      CastCase{8, 8, DType::kBF16, DType::kF8E4M3},
                      CastCase{72, 1032, DType::kBF16, DType::kF8E4M3},
                      CastCase{8192, 3072, DType::kBF16, DType::kF8E4M3},
                      CastCase{2048, 8192, DType::kBF16, DType::kF8E5M2},
                      // misaligned x (scalar flat loop and scalar tiles), misaligned q / qt,
                      // and offsets that keep the alignment (vector paths)
                      CastCase{64, 128, DType::kBF16, DType::kF8E4M3, 1, 0},
                      CastCase{64, 128, DType::kF32, DType::kF8E4M3, 4, 0},
                      CastCase{64, 136, DType::kBF16, DType::kF8E5M2, 0, 4},
                      CastCase{72, 136, DType::kBF16, DType::kF8E4M3, 8, 8},
                      CastCase{7, 13, DType::kBF16, DType::kF8E4M3, 3, 1}));

// A NaN anywhere makes the amax NaN (the scale update then keeps the old scale) on every path:
// the flat kernel (vectorised, its scalar tail, unaligned), the tile kernel, the scalar tiles,
// and amax_reduce. Its byte is a NaN code; the other bytes match the CPU's.
TEST(CudaFp8Cast, NanWinsTheAmaxOnEveryPath) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  struct Path {
    int64_t rows, cols, x_off;
    bool qt;
  };
  for (Path k : {Path{64, 136, 0, false}, Path{7, 13, 0, false}, Path{64, 136, 1, false},
                 Path{64, 136, 0, true}, Path{7, 13, 0, true}}) {
    const int64_t n = k.rows * k.cols;
    for (int64_t at : {int64_t{0}, n / 3, n - 1}) {
      const std::string what = str(k.rows, "x", k.cols, k.qt ? " qt" : " q", " NaN at ", at);
      Tensor x = random_host({k.rows, k.cols}, rng, DType::kBF16, -3.0f, 3.0f);
      x.data<float>()[at] = NAN;
      const float scale = 96.0f;
      Tensor q = Tensor::empty({k.rows, k.cols}, DType::kF8E4M3);
      Tensor qt = Tensor::empty({k.cols, k.rows}, DType::kF8E4M3);
      Tensor xc = x.to(DType::kBF16);
      float amax = 0.0f;
      Fp8QuantizeParams p;
      p.x = xc.raw();
      p.x_dtype = DType::kBF16;
      p.q = q.raw();
      p.qt = k.qt ? qt.raw() : nullptr;
      p.rows = k.rows;
      p.cols = k.cols;
      p.scale = &scale;
      p.amax = &amax;
      fp8_quantize(p);
      ASSERT_TRUE(std::isnan(amax)) << what;
      Tensor xg = padded_gpu(x, DType::kBF16, k.x_off);
      const void* xp = static_cast<const char*>(xg.raw()) + k.x_off * 2;
      Tensor qg = poisoned_fp8(n, DType::kF8E4M3), qtg = poisoned_fp8(n, DType::kF8E4M3);
      Tensor sg = scalar_gpu(scale), ag = scalar_gpu(0.0f), a2 = scalar_gpu(0.0f);
      Fp8QuantizeParams pg = p;
      pg.x = xp;
      pg.q = qg.raw();
      pg.qt = k.qt ? qtg.raw() : nullptr;
      pg.scale = static_cast<const float*>(sg.raw());
      pg.amax = static_cast<float*>(ag.raw());
      pg.device = gpu();
      fp8_quantize(pg);
      EXPECT_TRUE(std::isnan(ag.to(Device::cpu()).to_f32_vector()[0])) << what;
      Tensor qh = qg.to(Device::cpu());
      EXPECT_EQ(bytes(qh)[at] & 0x7f, 0x7f) << what << ": the NaN's byte";
      std::vector<uint8_t> got(bytes(qh), bytes(qh) + n), want(bytes(q), bytes(q) + n);
      got[at] = want[at] = 0;
      expect_bytes(got.data(), want.data(), n, what + ": q");
      AmaxParams am;
      am.x = xp;
      am.dtype = DType::kBF16;
      am.n = n;
      am.amax = static_cast<float*>(a2.raw());
      am.device = gpu();
      amax_reduce(am);
      EXPECT_TRUE(std::isnan(a2.to(Device::cpu()).to_f32_vector()[0])) << what << ": amax_reduce";
    }
  }
}

struct GemmCase {
  int64_t m, n, k;
  DType b;
  DType c;
  bool fast;
  // The bias epilogue: in bias_dtype (bf16: the epilogue; f32 with a bf16 C may take the
  // separate add), starting bias_off elements into its buffer (misaligned).
  bool bias = false;
  DType bias_dtype = DType::kBF16;
  int64_t bias_off = 0;
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
// With a bias (|bias| < 0.5) and a bf16 C: the epilogue (or the separate add) may round
// v = alpha·AB + beta·C to bf16 before adding the bias, one more rounding of at most 2^-9 |v| <=
// 2^-9 (|C| + 0.5): the relative part is inside the bf16 rtol above, the rest 2^-9 · 0.5 = 1e-3
// absolute; 4e-3 (and at most one more bf16 ulp of a magnitude below 1).
Tol fp8_gemm_bias_tol(int64_t k, double term, DType c_dtype, bool fast, bool bias) {
  Tol t = fp8_gemm_tol(k, term, c_dtype, fast);
  if (bias && c_dtype == DType::kBF16) t.atol += 4e-3;
  return t;
}

// The GEMM of the CPU params `p` on the GPU: the same operands (host fp8 `qa`, `qb`) and scales
// copied over, into the device tensor `c` (its initial contents are C for beta), which it returns.
// `bias` (optional): the device bias pointer the GPU call takes instead of p.bias.
Tensor gemm_on_gpu(const Fp8GemmParams& p, const Tensor& qa, const Tensor& qb, Tensor c,
                   const void* bias = nullptr, DType bias_dtype = DType::kBF16) {
  Tensor ag = qa.to(gpu()), bg = qb.to(gpu());
  Tensor sag = scalar_gpu(*p.a_scale_inv), sbg = scalar_gpu(*p.b_scale_inv);
  Fp8GemmParams pg = p;
  pg.a = ag.raw();
  pg.b = bg.raw();
  pg.c = c.raw();
  pg.a_scale_inv = static_cast<const float*>(sag.raw());
  pg.b_scale_inv = static_cast<const float*>(sbg.raw());
  pg.bias = bias;
  pg.bias_dtype = bias_dtype;
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
  // The bias: values exact in its dtype; the CPU reads them as f32 (the same numbers), the GPU in
  // its own dtype from bias_off elements into a device buffer.
  const bool with_bias = c.bias;
  Tensor bias = random_host({c.n}, rng, c.bias_dtype, -0.5f, 0.5f);
  Tensor bias_g;
  if (with_bias) {
    p.bias = bias.raw();
    p.bias_dtype = DType::kF32;
    Tensor h = Tensor::zeros({c.bias_off + c.n}, DType::kF32);
    std::memcpy(h.data<float>() + c.bias_off, bias.data<float>(), bias.nbytes());
    bias_g = h.to(c.bias_dtype).to(gpu());
  }
  fp8_gemm(p);
  const void* bias_ptr =
      with_bias ? static_cast<const char*>(bias_g.raw()) + c.bias_off * dtype_size(c.bias_dtype)
                : nullptr;
  Tensor cg = gemm_on_gpu(p, qa, qb, to_gpu(want, c.c), bias_ptr, c.bias_dtype);
  const Tol tol = fp8_gemm_bias_tol(c.k, 1.5 * sa * sb, c.c, c.fast, with_bias);
  expect_close(cg, wantc.to(DType::kF32), tol,
               str("fp8 gemm ", c.m, "x", c.n, "x", c.k, with_bias ? " +bias" : ""));
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
                      GemmCase{1, 7, 33, DType::kF8E5M2, DType::kF32, true},
                      // the bias epilogue (fprop: fast accumulation, bf16 C and bias), padded
                      // shapes (the bias copied to the padded n), a misaligned bias pointer, an
                      // f32 bias with f32 and with bf16 C
                      GemmCase{128, 256, 512, DType::kF8E4M3, DType::kBF16, true, true},
                      GemmCase{71, 229, 53, DType::kF8E4M3, DType::kBF16, true, true},
                      GemmCase{64, 96, 64, DType::kF8E4M3, DType::kBF16, true, true, DType::kBF16,
                               1},
                      GemmCase{29, 541, 7, DType::kF8E4M3, DType::kF32, false, true, DType::kF32},
                      GemmCase{48, 80, 32, DType::kF8E4M3, DType::kBF16, true, true, DType::kF32}));

}  // namespace
}  // namespace graft
