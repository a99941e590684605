// Vocab-parallel cross-entropy (kernels/vocab_parallel_xent.h): the vocabulary of 23 split over 3
// "ranks" of 8 columns (padded to 24; the padding column holds 100, which must never count), the
// cross-rank all-reduces done here on the host, against cross_entropy on the whole logits: loss
// and lse within 1e-6 relative, every dlogits column within 1e-6 absolute and the padding column
// exactly 0; ignored rows give zero gradients. Also the sharded embedding lookup
// (vocab_start / vocab_total).
#include "kernels/vocab_parallel_xent.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernel_test_util.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"

namespace graft {
namespace {

constexpr int64_t kN = 7, kV = 23, kT = 3, kRows = 8;  // ceil(23 / 3) = 8 columns per shard

struct Shard {
  std::vector<float> logits;  // [kN, kRows]
  int64_t start, valid;
};

std::vector<Shard> split(const std::vector<float>& logits) {
  std::vector<Shard> out;
  for (int64_t r = 0; r < kT; ++r) {
    Shard s{std::vector<float>(kN * kRows, 100.0f), r * kRows,
            std::min<int64_t>(kRows, kV - r * kRows)};
    for (int64_t i = 0; i < kN; ++i)
      for (int64_t c = 0; c < s.valid; ++c) s.logits[i * kRows + c] = logits[i * kV + s.start + c];
    out.push_back(s);
  }
  return out;
}

VocabXentParams params(Shard& s, const std::vector<int64_t>& targets) {
  VocabXentParams p;
  p.logits = s.logits.data();
  p.targets = targets.data();
  p.n = kN;
  p.cols = kRows;
  p.vocab = s.valid;
  p.vocab_start = s.start;
  p.vocab_total = kV;
  return p;
}

TEST(VocabParallelXent, ShardsReproduceTheWholeVocabularyLossAndGradient) {
  const auto logits = test::uniform(kN * kV, 4, -6.0f, 6.0f);
  std::vector<int64_t> targets = {0, 22, 8, -100, 15, 7, 16};
  // Whole-vocabulary reference.
  float loss_ref = 0;
  std::vector<float> lse_ref(kN), d_ref(kN * kV);
  XentFwdParams f;
  f.logits = logits.data(), f.targets = targets.data(), f.loss = &loss_ref;
  f.lse = lse_ref.data(), f.n = kN, f.vocab = kV;
  cross_entropy_fwd(f);
  XentBwdParams b;
  b.logits = logits.data(), b.targets = targets.data(), b.lse = lse_ref.data();
  b.dlogits = d_ref.data(), b.n = kN, b.vocab = kV, b.grad_scale = 0.5f;
  cross_entropy_bwd(b);

  auto shards = split(logits);
  std::vector<std::vector<float>> mx(kT, std::vector<float>(kN)), tg = mx, se = mx;
  for (int64_t r = 0; r < kT; ++r) {
    auto p = params(shards[r], targets);
    p.row_max = mx[r].data(), p.target_logit = tg[r].data();
    vocab_xent_max(p);
  }
  std::vector<float> gmax(kN, -INFINITY), gtgt(kN, 0), gsum(kN, 0);  // the all-reduces
  for (int64_t r = 0; r < kT; ++r)
    for (int64_t i = 0; i < kN; ++i) {
      gmax[i] = std::max(gmax[i], mx[r][i]);
      gtgt[i] += tg[r][i];
    }
  for (int64_t r = 0; r < kT; ++r) {
    auto p = params(shards[r], targets);
    p.row_max = gmax.data(), p.sum_exp = se[r].data();
    vocab_xent_sumexp(p);
    for (int64_t i = 0; i < kN; ++i) gsum[i] += se[r][i];
  }
  float loss = NAN;
  std::vector<float> lse(kN);
  auto p0 = params(shards[0], targets);
  p0.row_max = gmax.data(), p0.target_logit = gtgt.data(), p0.sum_exp = gsum.data();
  p0.lse = lse.data(), p0.loss = &loss;
  vocab_xent_finish(p0);
  EXPECT_NEAR(loss, loss_ref, 1e-6 * std::fabs(loss_ref));
  for (int64_t i = 0; i < kN; ++i) EXPECT_NEAR(lse[i], lse_ref[i], 1e-6 * std::fabs(lse_ref[i]));
  for (int64_t r = 0; r < kT; ++r) {
    std::vector<float> d(kN * kRows, NAN);
    auto p = params(shards[r], targets);
    p.lse = lse.data(), p.dlogits = d.data(), p.grad_scale = 0.5f;
    vocab_xent_bwd(p);
    for (int64_t i = 0; i < kN; ++i)
      for (int64_t c = 0; c < kRows; ++c) {
        const float got = d[i * kRows + c];
        if (c >= shards[r].valid || targets[i] == -100)
          EXPECT_EQ(got, 0.0f) << "row " << i << " shard " << r << " col " << c;
        else
          EXPECT_NEAR(got, d_ref[i * kV + shards[r].start + c], 1e-6) << i << " " << c;
      }
  }
}

TEST(VocabParallelXent, TargetOutsideTheVocabularyIsAnInputError) {
  const auto logits = test::uniform(kN * kV, 5, -1.0f, 1.0f);
  auto shards = split(logits);
  std::vector<int64_t> targets = {0, 1, 2, 23, 4, 5, 6};  // 23: padding id, not a token
  std::vector<float> mx(kN), tg(kN);
  auto p = params(shards[2], targets);
  p.row_max = mx.data(), p.target_logit = tg.data();
  EXPECT_THROW(vocab_xent_max(p), InputError);
}

TEST(Embedding, VocabShardLooksUpOnlyItsRows) {
  const int64_t total = 11, start = 4, rows = 4, hidden = 3;
  const auto w = test::randn(rows * hidden, 6);
  const std::vector<int64_t> ids = {0, 4, 7, 8, 10, 5, 4};
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> out(n * hidden, NAN);
  EmbeddingFwdParams p;
  p.ids = ids.data(), p.weight = w.data(), p.out = out.data(), p.n = n, p.vocab = rows;
  p.hidden = hidden, p.vocab_start = start, p.vocab_total = total, p.scale = 2.0f;
  embedding_fwd(p);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < hidden; ++c) {
      const int64_t r = ids[t] - start;
      const float want = r >= 0 && r < rows ? 2.0f * w[r * hidden + c] : 0.0f;
      EXPECT_EQ(out[t * hidden + c], want) << "token " << t;
    }
  const auto dy = test::randn(n * hidden, 7);
  std::vector<float> dw(rows * hidden, 0.0f);
  EmbeddingBwdParams bp;
  bp.ids = ids.data(), bp.dy = dy.data(), bp.dweight = dw.data(), bp.n = n, bp.vocab = rows;
  bp.hidden = hidden, bp.vocab_start = start, bp.vocab_total = total, bp.scale = 2.0f;
  embedding_bwd(bp);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < hidden; ++c) {
      float want = 0;
      for (int64_t t = 0; t < n; ++t)
        if (ids[t] - start == r) want += 2.0f * dy[t * hidden + c];
      EXPECT_FLOAT_EQ(dw[r * hidden + c], want) << "row " << r;
    }
  const std::vector<int64_t> bad = {11};
  p.ids = bad.data(), p.n = 1;
  EXPECT_THROW(embedding_fwd(p), InputError);
}

}  // namespace
}  // namespace graft
