// Generation on the GPU, KV cache on the device: greedy tokens equal the CPU's on a small random
// model in f32 (every architecture, both layer sets), a left-padded batch equals each prompt
// alone, and bf16 runs end to end. Skips without a GPU.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

#include "framework/model/architecture.h"
#include "framework/registry/registry.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

// The architecture's tiny config on `device` in `dtype`, with the layer set `te` or reference.
std::unique_ptr<CausalLM> tiny(const std::string& arch, bool te, Device device, DType dtype) {
  ModelConfig c = parse_hf_config(find_architecture(arch, "tiny")->tiny_config(), arch);
  c.decoder.device = device;
  c.decoder.params_dtype = dtype;
  std::vector<std::pair<std::string, std::string>> ov;
  if (te) ov.emplace_back(c.decoder_layer, "te.transformer_layer");
  OverrideScope scope(ov);
  return build_model(c);
}

// Seeded weights, scaled up so that greedy choices are well separated (not one token forever).
std::unique_ptr<CausalLM> cpu_model(const std::string& arch, bool te) {
  auto m = tiny(arch, te, Device::cpu(), DType::kF32);
  m->init_weights(21);
  for (auto& [name, p] : m->named_parameters()) {
    if (p->value.ndim() < 2) continue;
    for (float& x : std::span(p->value.data<float>(), p->value.numel())) x *= 25.0f;
  }
  return m;
}

// A copy of `src`'s weights on the GPU in `dtype`.
std::unique_ptr<CausalLM> gpu_copy(CausalLM& src, const std::string& arch, bool te, DType dtype) {
  auto m = tiny(arch, te, gpu(), dtype);
  auto from = src.named_parameters();
  auto to = m->named_parameters();
  EXPECT_EQ(from.size(), to.size());
  for (size_t i = 0; i < from.size() && i < to.size(); ++i) {
    EXPECT_EQ(from[i].first, to[i].first);
    to[i].second->value.copy_from(dtype == DType::kF32 ? from[i].second->value
                                                       : from[i].second->value.to(dtype));
  }
  return m;
}

const std::vector<std::vector<int64_t>> kPrompts = {
    {3, 1, 4, 1, 5}, {9}, {2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3}, {7, 7}};

class GpuGenerate : public ::testing::TestWithParam<bool> {};

TEST_P(GpuGenerate, GreedyMatchesCpuF32) {
  GRAFT_REQUIRE_CUDA();
  const bool te = GetParam();
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto cpu = cpu_model(arch, te);
    auto cuda = gpu_copy(*cpu, arch, te, DType::kF32);
    GenerateOptions opt;
    opt.max_new_tokens = 10;
    for (const auto& p : kPrompts) EXPECT_EQ(cuda->generate(p, opt), cpu->generate(p, opt));
    opt.use_cache = false;
    EXPECT_EQ(cuda->generate(kPrompts[0], opt), cpu->generate(kPrompts[0], opt));
  }
}

TEST_P(GpuGenerate, BatchEqualsEachPromptAloneF32) {
  GRAFT_REQUIRE_CUDA();
  const bool te = GetParam();
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto cpu = cpu_model(arch, te);
    auto cuda = gpu_copy(*cpu, arch, te, DType::kF32);
    GenerateOptions opt;
    opt.max_new_tokens = 9;
    std::vector<std::vector<int64_t>> alone;
    for (const auto& p : kPrompts) alone.push_back(cuda->generate(p, opt));
    EXPECT_EQ(cuda->generate_batch(kPrompts, opt), alone);
    EXPECT_EQ(cpu->generate_batch(kPrompts, opt), alone);
    // Row 0 stops early on a stop id from its own continuation; the others go on.
    opt.stop_ids = {alone[0][kPrompts[0].size() + 2]};
    alone.clear();
    for (const auto& p : kPrompts) alone.push_back(cuda->generate(p, opt));
    EXPECT_EQ(cuda->generate_batch(kPrompts, opt), alone);
  }
}

// bf16 weights and cache: the batch runs on the device, each row as long as asked, in range.
TEST_P(GpuGenerate, Bf16BatchRuns) {
  GRAFT_REQUIRE_CUDA();
  const bool te = GetParam();
  auto cpu = cpu_model("llama", te);
  auto cuda = gpu_copy(*cpu, "llama", te, DType::kBF16);
  GenerateOptions opt;
  opt.max_new_tokens = 8;
  const auto out = cuda->generate_batch(kPrompts, opt);
  ASSERT_EQ(out.size(), kPrompts.size());
  for (size_t b = 0; b < out.size(); ++b) {
    ASSERT_EQ(out[b].size(), kPrompts[b].size() + 8) << b;
    EXPECT_EQ(std::vector<int64_t>(out[b].begin(), out[b].begin() + kPrompts[b].size()),
              kPrompts[b]);
    for (int64_t id : out[b]) EXPECT_TRUE(id >= 0 && id < cpu->config().vocab_size) << id;
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, GpuGenerate, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return std::string(i.param ? "te" : "reference");
                         });

}  // namespace
}  // namespace graft
