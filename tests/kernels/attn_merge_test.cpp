// attn_merge (kernels/attn_merge.h) and the attention kernels' q_segment_ids: the attention of
// the query rows [m, S) over all keys equals the LSE merge of two calls — over the keys [0, m)
// (an earlier chunk: q_offset = m, the queries' document ids passed separately because they are
// not among these keys) and over the keys [m, S) (the diagonal chunk, causal) — for every mask
// the ring attention uses. Also: a part whose rows are all masked leaves the accumulator as it
// was, and an accumulator row that stays empty is 0 with lse -inf.
// Tolerance: 1e-6 relative (f32 outputs; the merge reweights each part once with f64 weights).
#include "kernels/attn_merge.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/attention.h"
#include "tests/kernels/kernel_test_util.h"

namespace graft {
namespace {

struct MergeCase {
  const char* name;
  AttnMask mask;
  int64_t window;
  bool segments;
};

class AttnMerge : public ::testing::TestWithParam<MergeCase> {};

// out [B, Sq, H, D], lse [B, H, Sq] of q rows against keys [k0, k0 + n) of the full k/v.
void attend(const MergeCase& c, const std::vector<float>& q, const std::vector<float>& k,
            const std::vector<float>& v, int64_t B, int64_t S, int64_t H, int64_t G, int64_t D,
            int64_t q0, int64_t k0, int64_t n, const std::vector<int64_t>& pad,
            const std::vector<int64_t>& seg, std::vector<float>& out, std::vector<float>& lse) {
  const int64_t sq = S - q0;
  auto rows = [&](const std::vector<float>& x, int64_t heads, int64_t s0, int64_t len) {
    std::vector<float> r(static_cast<size_t>(B * len * heads * D));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < len; ++s)
        for (int64_t e = 0; e < heads * D; ++e)
          r[(b * len + s) * heads * D + e] = x[(b * S + s0 + s) * heads * D + e];
    return r;
  };
  auto cols = [&](const std::vector<int64_t>& x, int64_t s0, int64_t len) {
    std::vector<int64_t> r(static_cast<size_t>(B * len));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < len; ++s) r[b * len + s] = x[b * S + s0 + s];
    return r;
  };
  std::vector<float> qr = rows(q, H, q0, sq), kr = rows(k, G, k0, n), vr = rows(v, G, k0, n);
  std::vector<int64_t> pr = cols(pad, k0, n), sk = cols(seg, k0, n), sqs = cols(seg, q0, sq);
  out.assign(static_cast<size_t>(B * sq * H * D), 0.0f);
  lse.assign(static_cast<size_t>(B * H * sq), 0.0f);
  AttnFwdParams p;
  p.q = qr.data();
  p.k = kr.data();
  p.v = vr.data();
  p.out = out.data();
  p.lse = lse.data();
  AttnShape& a = p.shape;
  a.batch = B, a.seq_q = sq, a.seq_kv = n, a.heads_q = H, a.heads_kv = G, a.head_dim = D;
  a.mask = c.mask;
  a.window = c.window;
  a.q_offset = q0 - k0;
  a.key_padding = pr.data();
  a.key_padding_dtype = DType::kI64;
  if (c.segments) {
    a.segment_ids = sk.data();
    a.q_segment_ids = sqs.data();
  }
  p.device = Device::cpu();
  attn_fwd(p);
}

TEST_P(AttnMerge, TwoKeyChunksMergeToTheWholeRow) {
  const MergeCase& c = GetParam();
  const int64_t B = 2, S = 12, m = 5, H = 4, G = 2, D = 8;
  const auto q = test::randn(B * S * H * D, 1), k = test::randn(B * S * G * D, 2),
             v = test::randn(B * S * G * D, 3);
  std::vector<int64_t> pad(B * S, 1), seg(B * S);
  for (int64_t s = 0; s < S; ++s) {
    pad[S + s] = s % 4 != 1;
    seg[s] = s / 4;
    seg[S + s] = s < 7 ? 0 : 1;
  }
  std::vector<float> want, want_lse, early, early_lse, diag, diag_lse;
  attend(c, q, k, v, B, S, H, G, D, m, 0, S, pad, seg, want, want_lse);      // all keys
  attend(c, q, k, v, B, S, H, G, D, m, 0, m, pad, seg, early, early_lse);    // keys [0, m)
  attend(c, q, k, v, B, S, H, G, D, m, m, S - m, pad, seg, diag, diag_lse);  // keys [m, S)
  const int64_t sq = S - m;
  std::vector<float> acc(want.size(), 0.0f),
      acc_lse(want_lse.size(), -std::numeric_limits<float>::infinity());
  for (auto* part : {&early, &diag}) {
    AttnMergeParams p;
    p.part = part->data();
    p.part_lse = part == &early ? early_lse.data() : diag_lse.data();
    p.acc = acc.data();
    p.acc_lse = acc_lse.data();
    p.batch = B, p.seq_part = p.seq_acc = sq, p.heads = H, p.head_dim = D;
    p.device = Device::cpu();
    attn_merge(p);
  }
  EXPECT_LE(test::max_rel_err(acc, want), 1e-6) << c.name;
  for (size_t i = 0; i < want_lse.size(); ++i) {
    if (std::isinf(want_lse[i])) {
      EXPECT_TRUE(std::isinf(acc_lse[i]) && acc_lse[i] < 0) << c.name << " lse " << i;
    } else {
      EXPECT_NEAR(acc_lse[i], want_lse[i], 1e-5 * std::max(1.0f, std::abs(want_lse[i])));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Masks, AttnMerge,
    ::testing::Values(MergeCase{"causal", AttnMask::kCausal, 0, false},
                      MergeCase{"causal_window4", AttnMask::kCausal, 4, false},
                      MergeCase{"padding_causal", AttnMask::kPaddingCausal, 0, false},
                      MergeCase{"documents", AttnMask::kCausal, 0, true},
                      MergeCase{"documents_padding_window", AttnMask::kPaddingCausal, 6, true},
                      MergeCase{"no_mask_documents", AttnMask::kNoMask, 0, true}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(AttnMerge, MaskedPartsLeaveTheRowAndEmptyRowsStayZero) {
  const float inf = std::numeric_limits<float>::infinity();
  // One row (B = H = 1, D = 2) with a first part of lse 0, then a fully masked part.
  std::vector<float> acc = {0.0f, 0.0f, 0.0f, 0.0f}, acc_lse = {-inf, -inf};
  std::vector<float> part = {1.0f, 2.0f, 5.0f, 6.0f}, part_lse = {0.5f, -inf};
  AttnMergeParams p;
  p.part = part.data();
  p.part_lse = part_lse.data();
  p.acc = acc.data();
  p.acc_lse = acc_lse.data();
  p.batch = 1, p.seq_part = p.seq_acc = 2, p.heads = 1, p.head_dim = 2;
  p.device = Device::cpu();
  attn_merge(p);
  EXPECT_EQ(acc, (std::vector<float>{1.0f, 2.0f, 0.0f, 0.0f}));
  EXPECT_EQ(acc_lse[0], 0.5f);
  EXPECT_TRUE(std::isinf(acc_lse[1]));
  std::vector<float> masked_lse = {-inf, -inf};
  p.part_lse = masked_lse.data();
  attn_merge(p);
  EXPECT_EQ(acc, (std::vector<float>{1.0f, 2.0f, 0.0f, 0.0f}));
  // Equal statistics average the two parts.
  std::vector<float> other = {3.0f, 4.0f, 0.0f, 0.0f}, other_lse = {0.5f, -inf};
  p.part = other.data();
  p.part_lse = other_lse.data();
  attn_merge(p);
  EXPECT_NEAR(acc[0], 2.0f, 1e-6);
  EXPECT_NEAR(acc[1], 3.0f, 1e-6);
  EXPECT_NEAR(acc_lse[0], 0.5f + std::log(2.0f), 1e-6);
}

}  // namespace
}  // namespace graft
