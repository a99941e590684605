// The CUDA cast with the bias gradient (kernels/fp8.h fp8_quantize_dbias) against the CPU
// reference: the FP8 bytes (q, qᵀ), amax and scale_inv bit for bit, and the column sums within
// the bound of their f32 summation order. Shapes: the tile kernel (rows, cols % 8 == 0; partial
// 64 x 128 tiles, more tiles than resident blocks, the 1B / 8B shapes of a qkv bias) and the
// unfused fallback (odd shapes, misaligned x); one to three segments, written over a NaN-poisoned
// stale gradient and accumulated onto earlier values.
//
// Tolerance of the sums. The CPU sums each column in f64 and rounds once to f32. The GPU adds, in
// f32, each thread's (at most) 4 rows of a 64-row tile (3 additions), the two row groups of a warp
// (1) and the 8 warps (7): an element's value passes through at most 11 f32 additions, each
// rounding by at most u = 2^-24 of the partial sum, and |partial sum| <= Σ|x| over the column:
// 11 u Σ_r |x_rj|. The tiles' sums are then added in f64 (negligible) and rounded once to f32
// (u |s|, on each device: 2 u Σ|x|), and an accumulated gradient adds the old value in f32 on
// each device (u |db| each). So |GPU - CPU| <= u (13 Σ_r |x_rj| + 2 |db_j|); the gate takes
// 3 |db_j| to cover |db| on the GPU's side.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/fp8.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct Seg {
  int64_t offset, size;
};
struct DbiasCase {
  int64_t rows, cols;
  std::vector<Seg> segs;
  DType x = DType::kBF16;
  DType fp8 = DType::kF8E5M2;
  int64_t x_off = 0;  // x starts this many elements into its buffer (> 0: misaligned)
};

class CudaFp8QuantizeDbias : public ::testing::TestWithParam<DbiasCase> {};

std::vector<uint8_t> host_bytes(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  const auto* b = static_cast<const uint8_t*>(h.raw());
  return std::vector<uint8_t>(b, b + h.nbytes());
}

int64_t count_differing(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

TEST_P(CudaFp8QuantizeDbias, MatchesTheCpuReference) {
  GRAFT_REQUIRE_CUDA();
  const DbiasCase c = GetParam();
  auto rng = rng_for(str(c.rows, "x", c.cols, "+", c.x_off));
  // Gradient-like values of mixed sign and magnitude (some columns with a non-zero mean, so the
  // sums do not cancel to nothing).
  Tensor x0 = random_host({c.rows, c.cols}, rng, DType::kF32, -1e-2f, 1e-2f);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; j += 3) x0.data<float>()[r * c.cols + j] += 4e-3f;
  const Tensor x = x0.to(c.x).to(DType::kF32);  // the values the kernels read, exactly
  const float* xv = x.data<float>();
  Tensor xc = x.to(c.x);
  const float scale = c.fp8 == DType::kF8E4M3 ? 3e4f : 2e6f;
  const int64_t n = c.rows * c.cols;
  std::vector<double> abs_sum(static_cast<size_t>(c.cols), 0.0);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < c.cols; ++j) abs_sum[j] += std::fabs(xv[r * c.cols + j]);
  Tensor xh = Tensor::zeros({c.x_off + n}, DType::kF32);
  std::memcpy(xh.data<float>() + c.x_off, x.data<float>(), x.nbytes());
  Tensor xg = xh.to(c.x).to(gpu());
  const void* xp = static_cast<const char*>(xg.raw()) + c.x_off * dtype_size(c.x);
  for (bool accumulate : {false, true}) {
    const std::string what = str(c.rows, "x", c.cols, accumulate ? " accumulate" : " write");
    // CPU.
    Tensor q = Tensor::zeros({c.rows, c.cols}, c.fp8), qt = Tensor::zeros({c.cols, c.rows}, c.fp8);
    float amax = 0.0f, scale_inv = 0.0f;
    Fp8QuantizeDbiasParams p;
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
    std::vector<Tensor> want, got;
    for (const Seg& s : c.segs) {
      Tensor start = accumulate ? random_host({s.size}, rng, DType::kF32, -0.5f, 0.5f)
                                : Tensor::full({s.size}, NAN, DType::kF32);
      want.push_back(start.clone());
      got.push_back(start.to(gpu()));
      p.dbias.push_back({want.back().data<float>(), s.offset, s.size, accumulate});
    }
    fp8_quantize_dbias(p);
    // GPU.
    Tensor qg = Tensor::zeros({c.rows, c.cols}, c.fp8).to(gpu());
    Tensor qtg = Tensor::zeros({c.cols, c.rows}, c.fp8).to(gpu());
    Tensor sg = Tensor::from_vector(std::vector<float>{scale}, {1}).to(gpu());
    Tensor ag = Tensor::zeros({1}, DType::kF32).to(gpu()), sig = ag.clone();
    Fp8QuantizeDbiasParams pg = p;
    pg.x = xp;
    pg.q = qg.raw();
    pg.qt = qtg.raw();
    pg.scale = static_cast<const float*>(sg.raw());
    pg.amax = static_cast<float*>(ag.raw());
    pg.scale_inv = static_cast<float*>(sig.raw());
    pg.device = gpu();
    for (size_t i = 0; i < c.segs.size(); ++i) pg.dbias[i].out = static_cast<float*>(got[i].raw());
    fp8_quantize_dbias(pg);
    EXPECT_EQ(count_differing(host_bytes(qg), host_bytes(q)), 0) << what << ": q bytes";
    EXPECT_EQ(count_differing(host_bytes(qtg), host_bytes(qt)), 0) << what << ": qt bytes";
    EXPECT_EQ(to_host_f32(ag).to_f32_vector()[0], amax) << what;
    EXPECT_EQ(to_host_f32(sig).to_f32_vector()[0], scale_inv) << what;
    for (size_t i = 0; i < c.segs.size(); ++i) {
      const auto g = to_host_f32(got[i]).to_f32_vector(), w = want[i].to_f32_vector();
      double worst = 0.0;
      for (size_t j = 0; j < g.size(); ++j) {
        const double lim =
            kU32 * (13.0 * abs_sum[c.segs[i].offset + j] + 3.0 * std::fabs(w[j])) + 1e-30;
        const double d = std::fabs(static_cast<double>(g[j]) - w[j]);
        ASSERT_TRUE(std::isfinite(g[j])) << what << " segment " << i << " column " << j;
        ASSERT_LE(d, lim) << what << " segment " << i << " column " << j << ": GPU " << g[j]
                          << ", CPU " << w[j];
        worst = std::max(worst, d / lim);
      }
      std::printf("%s segment %zu: worst |GPU - CPU| = %.3g of the bound\n", what.c_str(), i,
                  worst);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CudaFp8QuantizeDbias,
    ::testing::Values(
        // the tile kernel: one tile, partial tiles, three segments (q | k | v)
        DbiasCase{64, 128, {{0, 128}}},
        DbiasCase{136, 200, {{0, 120}, {120, 40}, {160, 40}}, DType::kBF16, DType::kF8E4M3},
        DbiasCase{8, 24, {{0, 24}}, DType::kF32},
        DbiasCase{72, 1032, {{8, 1000}}},  // columns 0..7 and 1008.. left out
        // more tiles than resident blocks; Qwen2-7B's qkv (3584 + 2 x 512) and a 1B-like MLP
        DbiasCase{4096, 4608, {{0, 3584}, {3584, 512}, {4096, 512}}},
        DbiasCase{2048, 8192, {{0, 8192}}, DType::kBF16, DType::kF8E5M2},
        // the fallback (cast, then sum_rows): odd shapes, a misaligned x
        DbiasCase{7, 13, {{0, 13}}}, DbiasCase{65, 129, {{0, 64}, {64, 65}}, DType::kF32},
        DbiasCase{64, 128, {{0, 128}}, DType::kBF16, DType::kF8E5M2, 1}),
    [](const auto& info) {
      return str(info.param.rows, "x", info.param.cols, "_", info.param.segs.size(), "seg_",
                 dtype_name(info.param.x), "_", dtype_name(info.param.fp8), "_off",
                 info.param.x_off);
    });

// No rows: a written gradient becomes zero, an accumulated one is kept.
TEST(CudaFp8QuantizeDbiasEmpty, NoRowsWriteZerosAndAccumulateKeeps) {
  GRAFT_REQUIRE_CUDA();
  Tensor sg = Tensor::from_vector(std::vector<float>{1.0f}, {1}).to(gpu());
  Tensor write = poisoned({5}, DType::kF32);
  Tensor keep = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5}, {5}).to(gpu());
  Fp8QuantizeDbiasParams d;
  d.rows = 0;
  d.cols = 5;
  d.fp8 = DType::kF8E5M2;
  d.x_dtype = DType::kBF16;
  d.scale = static_cast<const float*>(sg.raw());
  d.device = gpu();
  d.dbias = {{static_cast<float*>(write.raw()), 0, 5, false},
             {static_cast<float*>(keep.raw()), 0, 5, true}};
  fp8_quantize_dbias(d);
  EXPECT_EQ(to_host_f32(write).to_f32_vector(), std::vector<float>(5, 0.0f));
  EXPECT_EQ(to_host_f32(keep).to_f32_vector(), (std::vector<float>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace graft
