// qkv_split / merge (kernels/qkv.h) on the CPU against the layout written out per column, both
// layouts, odd head sizes, a row stride wider than the buffer; merge inverts split. With RoPE:
// the split against the rotate-half formula in double, the merge as the split's transpose.
#include "kernels/qkv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "framework/core/error.h"
#include "kernels/rope.h"

namespace graft {
namespace {

struct Case {
  int64_t rows, hq, hkv, d, pad;
  bool grouped;
};

class QkvSplit : public ::testing::TestWithParam<Case> {};

TEST_P(QkvSplit, MatchesTheLayoutAndMergeInvertsIt) {
  const Case c = GetParam();
  const int64_t n = c.hq / c.hkv, w = (c.hq + 2 * c.hkv) * c.d, ld = w + c.pad;
  std::vector<float> qkv(static_cast<size_t>(c.rows * ld));
  for (size_t i = 0; i < qkv.size(); ++i) qkv[i] = static_cast<float>(i) * 0.5f + 1.0f;
  std::vector<float> q(c.rows * c.hq * c.d), k(c.rows * c.hkv * c.d), v(k.size());
  QkvSplitParams p;
  p.qkv = qkv.data(), p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.rows = c.rows, p.heads_q = c.hq, p.heads_kv = c.hkv, p.head_dim = c.d, p.ld = ld;
  p.grouped = c.grouped, p.dtype = DType::kF32;
  qkv_split(p);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t g = 0; g < c.hkv; ++g) {
      const int64_t qc = c.grouped ? g * (n + 2) * c.d : g * n * c.d;
      const int64_t kc = c.grouped ? qc + n * c.d : (c.hq + g) * c.d;
      const int64_t vc = c.grouped ? qc + (n + 1) * c.d : (c.hq + c.hkv + g) * c.d;
      for (int64_t j = 0; j < n * c.d; ++j)
        ASSERT_EQ(q[r * c.hq * c.d + g * n * c.d + j], qkv[r * ld + qc + j]) << r << " " << g;
      for (int64_t j = 0; j < c.d; ++j) {
        ASSERT_EQ(k[r * c.hkv * c.d + g * c.d + j], qkv[r * ld + kc + j]);
        ASSERT_EQ(v[r * c.hkv * c.d + g * c.d + j], qkv[r * ld + vc + j]);
      }
    }
  std::vector<float> back(qkv.size(), -7.0f);
  p.qkv = back.data(), p.merge = true;
  qkv_split(p);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < ld; ++j)
      ASSERT_EQ(back[r * ld + j], j < w ? qkv[r * ld + j] : -7.0f) << r << " " << j;
}

INSTANTIATE_TEST_SUITE_P(Layouts, QkvSplit,
                         ::testing::Values(Case{7, 4, 2, 5, 0, false}, Case{7, 4, 2, 5, 3, true},
                                           Case{3, 6, 1, 8, 0, true}, Case{1, 3, 3, 2, 1, false},
                                           Case{5, 8, 2, 16, 0, true}));

// RoPE inside the split: rows are B = 2 sequences of S = 5 tokens; positions arbitrary (shared
// by the batch when pos_stride_b = 0); rotary_dim < head_dim leaves the tail channels unrotated.
struct RopeCase {
  int64_t hq, hkv, d, rd, pad;
  bool grouped;
  int64_t pos_stride_b;  // -1: [B, S] positions; 0: one row shared
};

class QkvSplitRope : public ::testing::TestWithParam<RopeCase> {};

TEST_P(QkvSplitRope, SplitRotatesQAndKAndMergeIsItsTranspose) {
  const RopeCase c = GetParam();
  const int64_t B = 2, S = 5, rows = B * S, maxpos = 16, half = c.rd / 2;
  const int64_t w = (c.hq + 2 * c.hkv) * c.d, ld = w + c.pad;
  std::mt19937 rng(static_cast<uint32_t>(c.hq * 131 + c.d * 7 + c.rd + c.grouped));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto rnd = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
  };
  std::vector<float> cos_t(maxpos * half), sin_t(maxpos * half);
  RopeFreqParams fp;
  fp.rotary_dim = c.rd;
  rope_cos_sin_table(fp, maxpos, cos_t.data(), sin_t.data());
  std::vector<int64_t> pos(B * S);
  for (int64_t i = 0; i < B * S; ++i) pos[i] = (i * 7 + 3) % maxpos;
  const std::vector<float> qkv = rnd(rows * ld);

  QkvSplitParams p;
  p.rows = rows, p.heads_q = c.hq, p.heads_kv = c.hkv, p.head_dim = c.d, p.ld = ld;
  p.grouped = c.grouped, p.dtype = DType::kF32;
  std::vector<float> q0(rows * c.hq * c.d), k0(rows * c.hkv * c.d), v0(k0.size());
  p.qkv = const_cast<float*>(qkv.data()), p.q = q0.data(), p.k = k0.data(), p.v = v0.data();
  qkv_split(p);  // plain split: the input of the formula
  std::vector<float> q(q0.size(), NAN), k(k0.size(), NAN), v(v0.size(), NAN);
  p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.rope.cos = cos_t.data(), p.rope.sin = sin_t.data(), p.rope.positions = pos.data();
  p.rope.seq = S, p.rope.rotary_dim = c.rd, p.rope.max_positions = maxpos;
  p.rope.pos_stride_b = c.pos_stride_b;
  qkv_split(p);
  EXPECT_EQ(v, v0);
  auto check = [&](const std::vector<float>& got, const std::vector<float>& x, int64_t heads) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t ps = pos[(r / S) * (c.pos_stride_b < 0 ? S : c.pos_stride_b) + r % S];
      for (int64_t h = 0; h < heads; ++h) {
        const float* xh = x.data() + (r * heads + h) * c.d;
        const float* gh = got.data() + (r * heads + h) * c.d;
        for (int64_t j = 0; j < c.d; ++j) {
          double want = xh[j];
          if (j < c.rd) {
            const int64_t i = j % half;
            const double cs = cos_t[ps * half + i], sn = sin_t[ps * half + i];
            want = j < half ? xh[j] * cs - double(xh[j + half]) * sn
                            : xh[j] * cs + double(xh[j - half]) * sn;
          }
          // two f32 products and a sum of terms <= 1: within 4 ulp of 1
          ASSERT_NEAR(gh[j], want, 5e-7) << "row " << r << " head " << h << " col " << j;
        }
      }
    }
  };
  check(q, q0, c.hq);
  check(k, k0, c.hkv);

  // <split(x), y> = <x, merge(y)> for the columns of qkv (the padding is not written).
  const std::vector<float> dq = rnd(q.size()), dk = rnd(k.size()), dv = rnd(v.size());
  std::vector<float> dqkv(qkv.size(), -7.0f);
  p.qkv = dqkv.data(), p.q = const_cast<float*>(dq.data()), p.k = const_cast<float*>(dk.data());
  p.v = const_cast<float*>(dv.data()), p.merge = true;
  qkv_split(p);
  double lhs = 0, rhs = 0, scale = 0;
  for (size_t i = 0; i < q.size(); ++i)
    lhs += double(q[i]) * dq[i], scale += std::abs(q[i] * dq[i]);
  for (size_t i = 0; i < k.size(); ++i)
    lhs += double(k[i]) * dk[i], scale += std::abs(k[i] * dk[i]);
  for (size_t i = 0; i < v.size(); ++i) lhs += double(v[i]) * dv[i];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < ld; ++j) {
      if (j >= w) {
        ASSERT_EQ(dqkv[r * ld + j], -7.0f);
        continue;
      }
      rhs += double(qkv[r * ld + j]) * dqkv[r * ld + j];
    }
  // f32 rounding of each term (2^-23 relative) against the sum of their magnitudes.
  EXPECT_NEAR(lhs, rhs, 1e-6 * (scale + 1.0));
}

INSTANTIATE_TEST_SUITE_P(Layouts, QkvSplitRope,
                         ::testing::Values(RopeCase{4, 2, 8, 8, 0, true, -1},
                                           RopeCase{4, 2, 8, 6, 3, false, -1},
                                           RopeCase{6, 1, 16, 16, 0, true, 0},
                                           RopeCase{3, 3, 4, 2, 1, false, 0}));

TEST(QkvSplitRope, PositionOutsideTheTableIsAnInputError) {
  std::vector<float> qkv(3 * 4, 1.0f), q(4), k(4), v(4), cs(2 * 2, 1.0f);
  std::vector<int64_t> pos = {0, 2};  // 2 is outside a table of 2 positions
  QkvSplitParams p;
  p.qkv = qkv.data(), p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.rows = 2, p.heads_q = 1, p.heads_kv = 1, p.head_dim = 2, p.grouped = true;
  p.dtype = DType::kF32;
  p.rope.cos = cs.data(), p.rope.sin = cs.data(), p.rope.positions = pos.data();
  p.rope.seq = 2, p.rope.max_positions = 2;
  EXPECT_THROW(qkv_split(p), InputError);
  p.rope.seq = 3;  // does not divide the rows
  EXPECT_THROW(qkv_split(p), Error);
}

}  // namespace
}  // namespace graft
