// RoPE: frequency tables against the HF formulas (written out here as HF writes them: vectors
// and a where()), application against the rotate-half formula, backward against finite
// differences, in-place views into a fused buffer.
#include "kernels/rope.h"

#include <cmath>
#include <numbers>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;
using test::randn;

// HF `_compute_llama3_parameters`, transcribed: inv_freq, wavelen, where(...) in that order.
std::vector<double> hf_llama3_inv_freq(double base, int64_t dim, double factor, double low_ff,
                                       double high_ff, double old_len) {
  std::vector<double> inv_freq;
  for (int64_t i = 0; i < dim; i += 2) inv_freq.push_back(1.0 / std::pow(base, double(i) / dim));
  const double low_freq_wavelen = old_len / low_ff, high_freq_wavelen = old_len / high_ff;
  std::vector<double> out;
  for (double f : inv_freq) {
    const double wavelen = 2 * std::numbers::pi / f;
    double llama = wavelen > low_freq_wavelen ? f / factor : f;
    const double smooth = (old_len / wavelen - low_ff) / (high_ff - low_ff);
    const double smoothed = (1 - smooth) * llama / factor + smooth * llama;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    out.push_back(medium ? smoothed : llama);
  }
  return out;
}

TEST(RopeTable, Llama3MatchesHfFormulaInAllThreeBands) {
  // Llama 3.1/3.2 settings.
  RopeFreqParams p;
  p.rotary_dim = 64, p.theta = 500000.0, p.scaling = RopeScaling::kLlama3, p.factor = 32.0;
  p.low_freq_factor = 1.0, p.high_freq_factor = 4.0, p.original_max_position_embeddings = 8192;
  const auto got = rope_inv_freq(p);
  const auto want = hf_llama3_inv_freq(500000.0, 64, 32.0, 1.0, 4.0, 8192.0);
  ASSERT_EQ(got.size(), want.size());
  int low = 0, high = 0, medium = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-15 * want[i]) << i;
    const double unscaled = 1.0 / std::pow(500000.0, 2.0 * i / 64.0);
    if (got[i] == unscaled)
      ++high;
    else if (std::abs(got[i] - unscaled / 32.0) < 1e-18)
      ++low;
    else
      ++medium;
  }
  // The table exercises every band, so each branch of the formula is compared above.
  EXPECT_GT(low, 0);
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
}

TEST(RopeTable, DefaultAndLinearAndCosSin) {
  RopeFreqParams p;
  p.rotary_dim = 24, p.theta = 10000.0;
  const auto d = rope_inv_freq(p);
  ASSERT_EQ(d.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_DOUBLE_EQ(d[i], 1.0 / std::pow(10000.0, 2.0 * i / 24.0));
  p.scaling = RopeScaling::kLinear, p.factor = 4.0;
  const auto l = rope_inv_freq(p);
  for (int i = 0; i < 12; ++i) EXPECT_DOUBLE_EQ(l[i], d[i] / 4.0);
  p.attention_scaling = 0.5;
  const int64_t max_pos = 300;
  std::vector<float> cos(max_pos * 12), sin(max_pos * 12);
  rope_cos_sin_table(p, max_pos, cos.data(), sin.data());
  for (int64_t pos : {0, 1, 17, 299})
    for (int i = 0; i < 12; ++i) {
      EXPECT_NEAR(cos[pos * 12 + i], 0.5 * std::cos(pos * l[i]), 1e-7);
      EXPECT_NEAR(sin[pos * 12 + i], 0.5 * std::sin(pos * l[i]), 1e-7);
    }
  EXPECT_EQ(rope_scaling_from_name("llama3"), RopeScaling::kLlama3);
  EXPECT_FALSE(rope_scaling_from_name("yarn").has_value());
}

struct RopeCase {
  int64_t batch, seq, heads, head_dim, rotary_dim;
};

class RopeSweep : public testing::TestWithParam<RopeCase> {
 protected:
  void SetUp() override {
    const RopeCase c = GetParam();
    freq.rotary_dim = c.rotary_dim, freq.theta = 10000.0;
    cos.resize(max_pos * c.rotary_dim / 2), sin.resize(cos.size());
    rope_cos_sin_table(freq, max_pos, cos.data(), sin.data());
    std::mt19937 gen(3);
    for (int64_t i = 0; i < c.batch * c.seq; ++i) pos.push_back(gen() % max_pos);
  }
  RopeParams params(float* x) const {
    const RopeCase c = GetParam();
    RopeParams p;
    p.x = x, p.cos = cos.data(), p.sin = sin.data(), p.positions = pos.data();
    p.batch = c.batch, p.seq = c.seq, p.heads = c.heads, p.head_dim = c.head_dim;
    p.rotary_dim = c.rotary_dim, p.max_positions = max_pos;
    return p;
  }
  // Rotate-half in double, straight from the HF code: x * cos + rotate_half(x) * sin on the
  // first rotary_dim channels.
  std::vector<double> ref(const std::vector<double>& x) const {
    const RopeCase c = GetParam();
    const auto inv = rope_inv_freq(freq);
    const int64_t half = c.rotary_dim / 2;
    std::vector<double> y = x;
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t s = 0; s < c.seq; ++s)
        for (int64_t h = 0; h < c.heads; ++h) {
          const int64_t o = ((b * c.seq + s) * c.heads + h) * c.head_dim;
          for (int64_t i = 0; i < c.rotary_dim; ++i) {
            const double ang = double(pos[b * c.seq + s]) * inv[i % half];
            const double rot = i < half ? -x[o + i + half] : x[o + i - half];
            y[o + i] = x[o + i] * std::cos(ang) + rot * std::sin(ang);
          }
        }
    return y;
  }
  static constexpr int64_t max_pos = 512;
  RopeFreqParams freq;
  std::vector<float> cos, sin;
  std::vector<int64_t> pos;
};

TEST_P(RopeSweep, ForwardMatchesRotateHalf) {
  const RopeCase c = GetParam();
  auto x = randn(c.batch * c.seq * c.heads * c.head_dim, 4);
  const auto want = ref(test::to_double(x));
  rope_fwd(params(x.data()));
  // cos/sin tables are f32 (2^-24 relative) and the products f32: 1e-6 relative is ~10 ulp.
  EXPECT_LT(max_rel_err(x, want), 1e-6);
}

// The backward is the transpose of the rotation: compare with central differences of
// sum(w * rope(x)) in double (error ~1e-10) at an f32-rounding tolerance.
TEST_P(RopeSweep, BackwardMatchesFiniteDifferences) {
  const RopeCase c = GetParam();
  const auto x = test::to_double(randn(c.batch * c.seq * c.heads * c.head_dim, 5));
  auto w = randn(x.size(), 6);
  const auto wd = test::to_double(w);
  const auto g =
      test::numeric_grad([&](const std::vector<double>& v) { return test::dot(ref(v), wd); }, x);
  rope_bwd(params(w.data()));  // in place: w becomes dx
  EXPECT_LT(max_rel_err(w, g), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeSweep,
                         testing::Values(RopeCase{2, 5, 3, 24, 24}, RopeCase{2, 5, 3, 24, 16},
                                         RopeCase{1, 1, 1, 2, 2}, RopeCase{3, 7, 2, 64, 32}));

TEST(Rope, RotatesQAndKInsideAFusedQkvBufferAndSharedPositions) {
  // Fused [B, S, (Hq + 2 Hkv) * D] buffer: q heads, then k heads, then v heads.
  const int64_t B = 2, S = 4, Hq = 4, Hkv = 2, D = 8, W = (Hq + 2 * Hkv) * D, max_pos = 16;
  RopeFreqParams f;
  f.rotary_dim = D;
  std::vector<float> cos(max_pos * D / 2), sin(cos.size());
  rope_cos_sin_table(f, max_pos, cos.data(), sin.data());
  const std::vector<int64_t> pos = {3, 4, 5, 6};  // one row shared by the batch
  auto fused = randn(B * S * W, 7);
  const auto before = fused;
  // Contiguous copies of q and k, rotated separately.
  std::vector<float> q(B * S * Hq * D), k(B * S * Hkv * D);
  for (int64_t t = 0; t < B * S; ++t) {
    std::copy_n(&fused[t * W], Hq * D, &q[t * Hq * D]);
    std::copy_n(&fused[t * W + Hq * D], Hkv * D, &k[t * Hkv * D]);
  }
  RopeParams p;
  p.cos = cos.data(), p.sin = sin.data(), p.positions = pos.data(), p.pos_stride_b = 0;
  p.batch = B, p.seq = S, p.head_dim = D, p.max_positions = max_pos;
  p.heads = Hq, p.x = q.data();
  rope_fwd(p);
  p.heads = Hkv, p.x = k.data();
  rope_fwd(p);
  p.stride_b = S * W, p.stride_s = W, p.stride_h = D;
  p.heads = Hq, p.x = fused.data();
  rope_fwd(p);
  p.heads = Hkv, p.x = fused.data() + Hq * D;
  rope_fwd(p);
  for (int64_t t = 0; t < B * S; ++t) {
    for (int64_t i = 0; i < Hq * D; ++i) ASSERT_EQ(fused[t * W + i], q[t * Hq * D + i]);
    for (int64_t i = 0; i < Hkv * D; ++i) ASSERT_EQ(fused[t * W + Hq * D + i], k[t * Hkv * D + i]);
    for (int64_t i = (Hq + Hkv) * D; i < W; ++i) ASSERT_EQ(fused[t * W + i], before[t * W + i]);
  }
}

TEST(Rope, PositionOutsideTableIsInputError) {
  std::vector<float> cos(4), sin(4), x(4);
  const std::vector<int64_t> pos = {2};
  RopeParams p;
  p.x = x.data(), p.cos = cos.data(), p.sin = sin.data(), p.positions = pos.data();
  p.batch = p.seq = p.heads = 1, p.head_dim = 4, p.max_positions = 2;
  try {
    rope_fwd(p);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("position 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace graft
