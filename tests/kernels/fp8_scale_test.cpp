// The CPU FP8 cast against framework/core/dtype.cpp's reference converters at every midpoint
// between neighbouring FP8 values (where round-to-nearest-even decides), and fp8_scale_update,
// TE's delayed-scaling roll and scale rule and current scaling's, with hand-computed numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "framework/core/dtype.h"
#include "kernels/fp8.h"

namespace graft {
namespace {

uint8_t cast_one(float v, DType t) {
  uint8_t q = 0;
  const float one = 1.0f;
  Fp8QuantizeParams p;
  p.x = &v;
  p.q = &q;
  p.fp8 = t;
  p.rows = p.cols = 1;
  p.scale = &one;
  fp8_quantize(p);
  return q;
}

TEST(Fp8Cast, MatchesTheReferenceConverterAtEveryMidpoint) {
  for (DType t : {DType::kF8E4M3, DType::kF8E5M2}) {
    auto ref = [&](float v) {
      return t == DType::kF8E4M3 ? f32_to_fp8_e4m3(v) : f32_to_fp8_e5m2(v);
    };
    auto val = [&](int c) {
      return t == DType::kF8E4M3 ? fp8_e4m3_to_f32(uint8_t(c)) : fp8_e5m2_to_f32(uint8_t(c));
    };
    const int max_code = t == DType::kF8E4M3 ? 0x7e : 0x7b;
    std::vector<float> probes = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), 1e30f};
    for (int c = 0; c < max_code; ++c) {
      const float mid = 0.5f * (val(c) + val(c + 1));
      for (float v : {val(c), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)})
        probes.push_back(v);
    }
    probes.push_back(val(max_code) * 1.01f);
    for (float v : probes)
      for (float s : {1.0f, -1.0f}) {
        ASSERT_EQ(cast_one(s * v, t), ref(s * v)) << dtype_name(t) << " " << s * v;
      }
    EXPECT_EQ(cast_one(std::nanf(""), t), ref(std::nanf(""))) << dtype_name(t);
  }
}

// A sweep over the f32 bit patterns (every `stride`-th, both signs, so every exponent and many
// mantissas): the same bytes as the reference converters. GRAFT_FP8_SWEEP_STRIDE overrides the
// stride (1 = all 2^32 patterns, minutes).
TEST(Fp8Cast, MatchesTheReferenceConverterOverTheF32Range) {
  const char* env = std::getenv("GRAFT_FP8_SWEEP_STRIDE");
  const uint64_t stride = env ? std::strtoull(env, nullptr, 10) : 4099;
  for (DType t : {DType::kF8E4M3, DType::kF8E5M2}) {
    std::vector<float> xs;
    for (uint64_t u = 0; u <= 0xffffffffull; u += stride) {
      const uint32_t b = static_cast<uint32_t>(u);
      float v;
      std::memcpy(&v, &b, 4);
      xs.push_back(v);
      if (xs.size() == (1u << 20) || u + stride > 0xffffffffull) {
        std::vector<uint8_t> q(xs.size());
        const float one = 1.0f;
        Fp8QuantizeParams p;
        p.x = xs.data();
        p.q = q.data();
        p.fp8 = t;
        p.rows = 1;
        p.cols = static_cast<int64_t>(xs.size());
        p.scale = &one;
        fp8_quantize(p);
        for (size_t i = 0; i < xs.size(); ++i) {
          const uint8_t want =
              t == DType::kF8E4M3 ? f32_to_fp8_e4m3(xs[i]) : f32_to_fp8_e5m2(xs[i]);
          ASSERT_EQ(q[i], want) << dtype_name(t) << " " << xs[i];
        }
        xs.clear();
      }
    }
  }
}

// history [len, n] row-major; returns the updated scales.
std::vector<float> update(std::vector<float>& hist, std::vector<float> scale, int64_t len,
                          std::vector<float> smax, bool current, bool most_recent) {
  Fp8ScaleUpdateParams p;
  p.history = hist.data();
  p.scale = scale.data();
  p.scaled_max = smax.data();
  p.n = static_cast<int64_t>(scale.size());
  p.len = len;
  p.current = current;
  p.most_recent = most_recent;
  fp8_scale_update(p);
  return scale;
}

TEST(Fp8ScaleUpdate, DelayedRollsTheWindowAndScalesFromItsMax) {
  // Three tensors, window 3 (row 0 = this step's staged amax, rows 1..2 the earlier steps, row 1
  // the oldest). Column 0: staged 2, earlier 4 and 1 -> max 4, scale 448 / 4 = 112; then the
  // oldest (4) drops out, 1 moves up and the staged 2 becomes the newest.
  std::vector<float> h = {2.0f, 8.0f, 0.0f,   // row 0: this step's amaxes
                          4.0f, 1.0f, 3.0f,   // row 1 (oldest)
                          1.0f, 2.0f, 5.0f};  // row 2 (newest before this step)
  const std::vector<float> s =
      update(h, {1.0f, 1.0f, 7.0f}, 3, {448.0f, 448.0f, 57344.0f}, false, false);
  EXPECT_FLOAT_EQ(s[0], 448.0f / 4.0f);
  EXPECT_FLOAT_EQ(s[1], 448.0f / 8.0f);
  EXPECT_FLOAT_EQ(s[2], 7.0f);  // not cast this step (staged 0): nothing rolls, scale kept
  const std::vector<float> want = {0.0f, 0.0f, 0.0f,   // staging cleared (column 2 untouched: 0)
                                   1.0f, 2.0f, 3.0f,   // old row 2 moved up
                                   2.0f, 8.0f, 5.0f};  // the staged amax is now the newest
  EXPECT_EQ(h, want);
}

TEST(Fp8ScaleUpdate, MostRecentUsesOnlyThisStepsAmax) {
  std::vector<float> h = {2.0f, 100.0f};  // len 2, n 1: staged 2, older 100
  const std::vector<float> s = update(h, {1.0f}, 2, {448.0f}, false, true);
  EXPECT_FLOAT_EQ(s[0], 224.0f);
  EXPECT_EQ(h, (std::vector<float>{0.0f, 2.0f}));
}

TEST(Fp8ScaleUpdate, MarginIsInTheScaledMaxAndInfOrNaNKeepsTheScale) {
  // scaled_max = 448 / 2^2 = 112 (margin 2): amax 7 -> 16.
  std::vector<float> h = {7.0f};
  EXPECT_FLOAT_EQ(update(h, {1.0f}, 1, {112.0f}, false, false)[0], 16.0f);
  EXPECT_EQ(h[0], 0.0f);  // len 1: the staged amax is consumed
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    std::vector<float> hb = {bad, 3.0f};
    EXPECT_FLOAT_EQ(update(hb, {5.0f}, 2, {448.0f}, false, false)[0], 5.0f) << bad;
    EXPECT_EQ(hb[0], 0.0f);
  }
  // A tiny amax whose quotient overflows gives FLT_MAX, not inf.
  std::vector<float> ht = {1e-39f};
  EXPECT_EQ(update(ht, {1.0f}, 1, {57344.0f}, false, false)[0], std::numeric_limits<float>::max());
}

TEST(Fp8ScaleUpdate, CurrentScalingIsStatelessWithScaleOneForZeroAmax) {
  std::vector<float> h = {4.0f, 0.0f, std::nanf("")};  // len 1, n 3
  const std::vector<float> s =
      update(h, {9.0f, 9.0f, 9.0f}, 1, {448.0f, 448.0f, 448.0f}, true, false);
  EXPECT_FLOAT_EQ(s[0], 112.0f);
  EXPECT_FLOAT_EQ(s[1], 1.0f);
  EXPECT_FLOAT_EQ(s[2], 1.0f);
  EXPECT_EQ(h, (std::vector<float>{0.0f, 0.0f, 0.0f}));  // reset for the next cast
}

}  // namespace
}  // namespace graft
