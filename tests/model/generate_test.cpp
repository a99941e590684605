// Generation: the KV-cache path and the uncached path choose identical tokens (greedy), on every
// architecture (Mistral's tiny config has a sliding window shorter than the sequence, Qwen3's a
// sliding layer); a left-padded batch generates what each prompt generates alone, rows stopping
// independently; sampling is reproducible from its seed.
#include <algorithm>

#include "framework/model/sampling.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

// Larger weights than the init default so the greedy choice is not one token forever.
void sharpen(CausalLM& m) {
  for (auto& [name, p] : m.named_parameters()) {
    if (p->value.ndim() < 2) continue;
    Tensor host = p->value.to(Device::cpu());
    for (float& x : std::span(host.data<float>(), host.numel())) x *= 25.0f;
    p->value.copy_from(host);
  }
}

TEST(Generate, CachedEqualsUncachedGreedy) {
  for (const std::string& arch : architecture_names()) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(arch + (te ? " te" : " reference"));
      auto m = test::tiny_model(arch, te, 21);
      sharpen(*m);
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

// Prompts of different lengths (so rows are left-padded by different amounts), one longer than
// Mistral's sliding window; a stop id taken from one row's own continuation stops that row early
// while the others go on.
TEST(Generate, BatchEqualsEachPromptAlone) {
  const std::vector<std::vector<int64_t>> prompts = {
      {3, 1, 4, 1, 5}, {9}, {2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3}, {7, 7}};
  for (const std::string& arch : architecture_names()) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(arch + (te ? " te" : " reference"));
      auto m = test::tiny_model(arch, te, 21);
      sharpen(*m);
      GenerateOptions opt;
      opt.max_new_tokens = 9;
      std::vector<std::vector<int64_t>> alone;
      for (const auto& p : prompts) alone.push_back(m->generate(p, opt));
      EXPECT_EQ(m->generate_batch(prompts, opt), alone);

      // Row 0 stops at the third token it generates (its first occurrence, at least).
      opt.stop_ids = {alone[0][prompts[0].size() + 2]};
      alone.clear();
      for (const auto& p : prompts) alone.push_back(m->generate(p, opt));
      ASSERT_LE(alone[0].size(), prompts[0].size() + 3);
      size_t longest = 0;
      for (const auto& a : alone) longest = std::max(longest, a.size());
      EXPECT_GT(longest, alone[0].size()) << "the other rows should go on after row 0 stopped";
      const auto batch = m->generate_batch(prompts, opt);
      EXPECT_EQ(batch, alone);
      opt.use_cache = false;
      EXPECT_EQ(m->generate_batch(prompts, opt), alone);
    }
  }
}

TEST(Generate, BatchInputErrors) {
  auto m = test::tiny_model("llama", false, 4);
  GenerateOptions opt;
  test::expect_input_error([&] { m->generate_batch({}, opt); }, {"no prompts"});
  test::expect_input_error([&] { m->generate_batch({{1, 2}, {}}, opt); }, {"prompt 1 is empty"});
  test::expect_input_error(
      [&] {
        m->generate_batch({{1, 2}, {1, 61}}, opt);
      },
      {"prompt 1", "61", "vocabulary"});
  opt.max_new_tokens = 60;  // max_position_embeddings = 64
  test::expect_input_error(
      [&] {
        m->generate_batch({{1}, {1, 2, 3, 4, 5}}, opt);
      },
      {"prompt 1", "max_position_embeddings"});
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
