// Generation: the KV-cache path and the uncached path choose identical tokens (greedy), on every
// architecture (Mistral's tiny config has a sliding window shorter than the sequence, Qwen3's a
// sliding layer); sampling is reproducible from its seed.
#include "framework/model/sampling.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

TEST(Generate, CachedEqualsUncachedGreedy) {
  for (const std::string& arch : architecture_names()) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(arch + (te ? " te" : " reference"));
      auto m = test::tiny_model(arch, te, 21);
      // Larger weights than the init default so the greedy choice is not one token forever.
      for (auto& [name, p] : m->named_parameters()) {
        if (p->value.ndim() < 2) continue;
        Tensor host = p->value.to(Device::cpu());
        for (float& x : std::span(host.data<float>(), host.numel())) x *= 25.0f;
        p->value.copy_from(host);
      }
      GenerateOptions opt;
      opt.max_new_tokens = 10;
      const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
      const auto cached = m->generate(prompt, opt);
      opt.use_cache = false;
      const auto uncached = m->generate(prompt, opt);
      EXPECT_EQ(cached, uncached);
      ASSERT_EQ(cached.size(), 15u);
      EXPECT_EQ(std::vector<int64_t>(cached.begin(), cached.begin() + 5), prompt);
      std::set<int64_t> distinct(cached.begin() + 5, cached.end());
      EXPECT_GT(distinct.size(), 1u) << "a degenerate model would not test the cache";

      // Stop ids end generation right after the first such token is emitted.
      opt.use_cache = true;
      opt.stop_ids = {cached[7]};
      const auto first = std::find(cached.begin() + 5, cached.end(), cached[7]);
      EXPECT_EQ(m->generate(prompt, opt), std::vector<int64_t>(cached.begin(), first + 1));
    }
  }
}

TEST(Generate, SamplingIsSeeded) {
  auto m = test::tiny_model("llama", false, 4);
  GenerateOptions opt;
  opt.max_new_tokens = 12;
  opt.temperature = 1.5;
  opt.top_p = 0.95;
  opt.seed = 42;
  const auto a = m->generate({7, 8}, opt);
  EXPECT_EQ(a, m->generate({7, 8}, opt));
  opt.seed = 43;
  EXPECT_NE(a, m->generate({7, 8}, opt));  // 12 draws from a near-uniform 61-way distribution
  opt.top_k = 1;                           // only the argmax survives: greedy
  GenerateOptions greedy;
  greedy.max_new_tokens = 12;
  EXPECT_EQ(m->generate({7, 8}, opt), m->generate({7, 8}, greedy));
}

TEST(Generate, SamplerFilters) {
  const std::vector<float> logits = {0.0f, 3.0f, 2.9f, -1.0f, 1.0f};
  GenerateOptions opt;
  EXPECT_EQ(TokenSampler(opt).pick(logits), 1);
  opt.temperature = 1.0;
  opt.top_k = 2;
  opt.seed = 1;
  TokenSampler s(opt);
  std::map<int64_t, int> counts;
  for (int i = 0; i < 400; ++i) ++counts[s.pick(logits)];
  EXPECT_EQ(counts.size(), 2u);  // only tokens 1 and 2
  EXPECT_GT(counts[1], 120);
  EXPECT_GT(counts[2], 120);
  opt.top_k = 0;
  opt.top_p = 0.3;  // token 1 alone has probability ~0.47 >= 0.3
  TokenSampler p(opt);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(p.pick(logits), 1);
  opt.top_p = 1.5;
  test::expect_input_error([&] { TokenSampler bad(opt); }, {"top_p"});
}

}  // namespace
}  // namespace graft
