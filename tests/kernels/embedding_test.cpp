// Embedding: gather with scale for i64 and i32 ids; backward accumulates repeated ids in token
// order; an out-of-range id is an InputError naming it.
#include "kernels/embedding.h"

#include "kernel_test_util.h"

namespace graft {
namespace {

TEST(Embedding, ForwardGathersScaledRowsForI64AndI32Ids) {
  const int64_t vocab = 37, hidden = 24;
  const auto w = test::randn(vocab * hidden, 1);
  const std::vector<int64_t> ids = {5, 0, 36, 5, 17, 2, 9};
  const std::vector<int32_t> ids32(ids.begin(), ids.end());
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<float> out(n * hidden, NAN), out32(n * hidden, NAN);
  EmbeddingFwdParams p;
  p.ids = ids.data(), p.weight = w.data(), p.out = out.data(), p.n = n, p.vocab = vocab;
  p.hidden = hidden, p.scale = 4.898979f;  // e.g. Gemma's sqrt(hidden)
  embedding_fwd(p);
  p.ids = ids32.data(), p.ids_dtype = DType::kI32, p.out = out32.data();
  embedding_fwd(p);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < hidden; ++c)
      ASSERT_EQ(out[t * hidden + c], p.scale * w[ids[t] * hidden + c]);
  EXPECT_EQ(out, out32);
}

TEST(Embedding, BackwardAccumulatesRepeatedIdsOntoExistingGradient) {
  const int64_t vocab = 11, hidden = 5;
  const std::vector<int64_t> ids = {3, 7, 3, 3, 0, 10, 7};
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto dy = test::randn(n * hidden, 2);
  auto dw = test::randn(vocab * hidden, 3);
  const auto dw0 = dw;
  EmbeddingBwdParams p;
  p.ids = ids.data(), p.dy = dy.data(), p.dweight = dw.data(), p.n = n, p.vocab = vocab;
  p.hidden = hidden, p.scale = 0.5f;
  embedding_bwd(p);
  for (int64_t v = 0; v < vocab; ++v)
    for (int64_t c = 0; c < hidden; ++c) {
      // The same sum in the same (token) order in f32: the kernel must match it exactly.
      float want = dw0[v * hidden + c];
      for (int64_t t = 0; t < n; ++t)
        if (ids[t] == v) want += p.scale * dy[t * hidden + c];
      ASSERT_EQ(dw[v * hidden + c], want) << "row " << v;
    }
}

// dweight against central differences of L = sum(w * scale * gather(weight)) in double (exact
// up to ~1e-10 since L is linear in weight); the kernel adds f32 products: 1e-6 relative.
TEST(Embedding, BackwardMatchesFiniteDifferences) {
  const int64_t vocab = 9, hidden = 6, n = 4;
  const std::vector<int64_t> ids = {1, 8, 1, 4};
  const auto weight = test::randn(vocab * hidden, 4), w = test::randn(n * hidden, 5);
  std::vector<float> dw(vocab * hidden, 0.0f);
  EmbeddingBwdParams b;
  b.ids = ids.data(), b.dy = w.data(), b.dweight = dw.data(), b.n = n, b.vocab = vocab;
  b.hidden = hidden, b.scale = 1.5f;
  embedding_bwd(b);
  const auto g = test::numeric_grad(
      [&](const std::vector<double>& wt) {
        double l = 0.0;
        for (int64_t t = 0; t < n; ++t)
          for (int64_t c = 0; c < hidden; ++c)
            l += w[t * hidden + c] * 1.5 * wt[ids[t] * hidden + c];
        return l;
      },
      test::to_double(weight));
  EXPECT_LT(test::max_rel_err(dw, g), 1e-6);
}

TEST(Embedding, OutOfRangeIdIsInputErrorNamingIt) {
  const std::vector<float> w(4 * 2, 1.0f);
  std::vector<float> out(2 * 2);
  for (int64_t bad : {int64_t{4}, int64_t{-1}}) {
    const std::vector<int64_t> ids = {1, bad};
    EmbeddingFwdParams p;
    p.ids = ids.data(), p.weight = w.data(), p.out = out.data(), p.n = 2, p.vocab = 4;
    p.hidden = 2;
    try {
      embedding_fwd(p);
      FAIL() << "no error for id " << bad;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(str("token id ", bad)), std::string::npos) << e.what();
    }
  }
  std::vector<float> dw(8, 0.0f);
  const std::vector<int64_t> ids = {1, 99};
  EmbeddingBwdParams b;
  b.ids = ids.data(), b.dy = out.data(), b.dweight = dw.data(), b.n = 2, b.vocab = 4, b.hidden = 2;
  EXPECT_THROW(embedding_bwd(b), InputError);
  EXPECT_EQ(dw, std::vector<float>(8, 0.0f));  // untouched on error
}

}  // namespace
}  // namespace graft
