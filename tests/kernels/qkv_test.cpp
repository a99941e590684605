// qkv_split / merge (kernels/qkv.h) on the CPU against the layout written out per column, both
// layouts, odd head sizes, a row stride wider than the buffer; merge inverts split.
#include "kernels/qkv.h"

#include <gtest/gtest.h>

#include <vector>

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

}  // namespace
}  // namespace graft
