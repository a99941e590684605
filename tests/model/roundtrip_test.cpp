// Export through the weight table: load -> export -> load is bit-exact, the exported tensors are
// the checkpoint's own (HF names and layout, whichever layer set), and the config round-trips.
#include "framework/model/hf_export.h"
#include "framework/model/hf_loader.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

class RoundTrip : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(RoundTrip, FixtureIsBitExact) {
  const auto [fixture, te] = GetParam();
  const std::string dir = test::fixture_dir(fixture);
  const ModelConfig c = load_hf_config(dir + "/config.json");
  auto a = test::with_layers(te, c, [&] { return load_hf_model(dir); });
  test::TempDir out;
  export_hf_checkpoint(*a, out.path, {.max_shard_bytes = 10000, .dtype = DType::kF32});

  // Same tensors, names and bytes as the original checkpoint.
  auto orig = test::read_checkpoint(dir);
  auto mine = test::read_checkpoint(out.path);
  ASSERT_EQ(orig.size(), mine.size());
  std::map<std::string, Tensor> by_name(mine.begin(), mine.end());
  for (const auto& [name, t] : orig) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_TRUE(test::bit_equal(t, by_name[name])) << name;
  }
  EXPECT_GT(ShardedCheckpoint::open(out.path).shards().size(), 5u) << "max shard size honoured";

  // The exported config parses to the same model, and the reloaded weights are bit-identical.
  const ModelConfig c2 = load_hf_config(out.sub("config.json"));
  EXPECT_EQ(c2.arch, c.arch);
  EXPECT_EQ(c2.vocab_size, c.vocab_size);
  EXPECT_EQ(c2.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_EQ(c2.decoder.head_dim, c.decoder.head_dim);
  auto b = test::with_layers(te, c2, [&] { return load_hf_model(out.path); });
  auto pa = a->named_parameters(), pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(test::bit_equal(pa[i].second->value, pb[i].second->value)) << pa[i].first;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, RoundTrip,
                         ::testing::Combine(::testing::Values("llama-gqa", "gemma-mqa",
                                                              "qwen3-qknorm"),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n + (std::get<1>(info.param) ? "_te" : "_reference");
                         });

}  // namespace
}  // namespace graft
