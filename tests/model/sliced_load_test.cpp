// Sliced HF loading: a model whose parameters carry tensor-parallel ShardSpecs (made by hand,
// tests/model/shard_util.h), loaded at "rank r of n", holds exactly the slices of the
// single-process load — for every fixture, both layer sets, n = 2 and 4 (the reference layers'
// KV heads replicated where n exceeds them: Gemma's one KV head at n = 2 and 4, Llama's and
// Qwen3's two at n = 4; te's fused qkv only where it splits whole KV groups: with more ranks than
// KV heads te's layers hold their query and key/value rows as two parameters, which specs made by
// hand on a single-process model cannot express; graft_mpi_tests HfLayout.* loads those).
#include <filesystem>

#include "framework/model/hf_loader.h"
#include "framework/model/weight_slices.h"
#include "tests/model/shard_util.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

struct Case {
  std::string fixture;
  bool te;
  int n;
};

class SlicedLoad : public ::testing::TestWithParam<Case> {};

TEST_P(SlicedLoad, EveryRankHoldsItsSlicesOfTheSingleProcessLoad) {
  const Case& k = GetParam();
  const std::string dir = test::fixture_dir(k.fixture);
  ModelConfig c = load_hf_config(dir + "/config.json");
  auto whole = test::with_layers(k.te, c, [&] { return load_hf_model(dir); });
  const test::Heads h = test::heads_of(c);
  auto want = whole->named_parameters();
  uint64_t whole_bytes_read = 0;
  {
    HfLoadStats s;
    auto again = test::with_layers(k.te, c, [&] { return load_hf_model(dir, {}, &s); });
    whole_bytes_read = s.bytes_read;
  }
  uint64_t sum_over_ranks = 0;
  for (int r = 0; r < k.n; ++r) {
    auto m = test::with_layers(k.te, c, [&] { return build_model(c); });
    test::shard_model(*m, r, k.n);
    const HfLoadStats s = load_hf_weights(*m, dir);
    sum_over_ranks += s.bytes_read;
    auto got = m->named_parameters();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& [name, p] = got[i];
      ASSERT_EQ(name, want[i].first);
      const Tensor expect = test::expected_slice(name, want[i].second->value, h, r, k.n);
      EXPECT_TRUE(test::bit_equal(p->value, expect))
          << k.fixture << (k.te ? " te" : " reference") << " rank " << r << " of " << k.n << ": "
          << name << " " << p->spec.str();
    }
  }
  // Together the ranks read each split tensor once and each whole one n times (replicated KV
  // heads: once per rank sharing them), so the sum lies between the single-process bytes and n
  // times them, and strictly below n times (some tensors are split).
  EXPECT_GE(sum_over_ranks, whole_bytes_read);
  EXPECT_LT(sum_over_ranks, whole_bytes_read * static_cast<uint64_t>(k.n));
}

// init_weights at "rank r of n" holds exactly its slices of the single-process initialisation
// (each rank generates one HF tensor at a time and keeps its blocks; no whole model is built).
TEST_P(SlicedLoad, InitWeightsAtEveryRankIsItsSliceOfTheSingleProcessInit) {
  const Case& k = GetParam();
  ModelConfig c = load_hf_config(test::fixture_dir(k.fixture) + "/config.json");
  auto whole = test::with_layers(k.te, c, [&] { return build_model(c); });
  whole->init_weights(11);
  const test::Heads h = test::heads_of(c);
  auto want = whole->named_parameters();
  for (int r = 0; r < k.n; ++r) {
    auto m = test::with_layers(k.te, c, [&] { return build_model(c); });
    test::shard_model(*m, r, k.n);
    m->init_weights(11);
    auto got = m->named_parameters();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& [name, p] = got[i];
      EXPECT_TRUE(
          test::bit_equal(p->value, test::expected_slice(name, want[i].second->value, h, r, k.n)))
          << k.fixture << (k.te ? " te" : " reference") << " rank " << r << " of " << k.n << ": "
          << name;
    }
  }
}

std::vector<Case> cases() {
  std::vector<Case> out;
  // (fixture, its KV heads)
  for (auto [f, kv] : {std::pair{"llama-gqa", 2}, {"gemma-mqa", 1}, {"qwen3-qknorm", 2}})
    for (bool te : {false, true})
      for (int n : {2, 4})
        if (!te || n <= kv) out.push_back({f, te, n});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SlicedLoad, ::testing::ValuesIn(cases()), [](const auto& info) {
  std::string s =
      info.param.fixture + (info.param.te ? "_te" : "_ref") + "_n" + std::to_string(info.param.n);
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

}  // namespace
}  // namespace graft
