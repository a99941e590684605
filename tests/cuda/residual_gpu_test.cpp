// precision.residual: f32 on the GPU (bf16 parameters, the residual stream between the decoder
// layers and its gradient in f32): against transformers' f32 reference on the HF fixtures
// (graft parity --dtype bf16 --residual f32), and against an f32 model with the same
// (bf16-valued) weights for every architecture, both layer sets, and FP8. Accuracy claims are
// aggregates over the cases: each fixture is shallow (2 layers), so a single case's gain is
// small and could be swamped by the GEMMs' own rounding, but the sum over all of them must drop.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "framework/model/architecture.h"
#include "framework/model/causal_lm.h"
#include "framework/model/parity.h"
#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/te/fp8_state.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

using namespace cuda_test;

TEST(GpuFp32Residual, ParityLandsCloserToTransformersF32) {
  GRAFT_REQUIRE_CUDA();
  double logits_bf16 = 0, logits_f32 = 0, grads_bf16 = 0, grads_f32 = 0;
  for (const char* fixture : {"llama-gqa", "gemma-mqa", "qwen3-qknorm"}) {
    for (const char* layers : {"reference", "te"}) {
      SCOPED_TRACE(str(fixture, " ", layers));
      ParityOptions o;
      o.checkpoint = ::graft::test::source_root() + "/tests/fixtures/hf/" + fixture;
      o.device = gpu();
      o.layers = layers;
      o.dtype = DType::kBF16;
      const ParityResult narrow = run_parity(o);
      o.fp32_residual = true;
      const ParityResult wide = run_parity(o);
      std::printf("  %s %s: logits %.3e -> %.3e, grads %.3e -> %.3e, loss %.3e -> %.3e\n", fixture,
                  layers, narrow.logits_rel_err, wide.logits_rel_err, narrow.grad_max_rel_err,
                  wide.grad_max_rel_err, narrow.loss_abs_err, wide.loss_abs_err);
      EXPECT_TRUE(wide.pass()) << wide.to_json().dump();
      logits_bf16 += narrow.logits_rel_err;
      logits_f32 += wide.logits_rel_err;
      grads_bf16 += narrow.grad_max_rel_err;
      grads_f32 += wide.grad_max_rel_err;
    }
  }
  std::printf("  sum over the fixtures: logits %.3e -> %.3e, grads %.3e -> %.3e\n", logits_bf16,
              logits_f32, grads_bf16, grads_f32);
  EXPECT_LT(logits_f32, logits_bf16);
  // The gradients' worst element is dominated by the bf16 GEMMs; the f32 stream must not make it
  // worse beyond noise.
  EXPECT_LT(grads_f32, 1.1 * grads_bf16);
}

// Tiny models of every architecture, made 8 layers deep: bf16 with a bf16 stream and with an f32
// stream against f32 with the same weights (the bf16 model's values).
std::unique_ptr<CausalLM> build(const ModelConfig& c, bool te, DType dt, bool wide,
                                bool fp8 = false) {
  std::unique_ptr<OverrideScope> scope;
  if (te)
    scope = std::make_unique<OverrideScope>(std::vector<std::pair<std::string, std::string>>{
        {c.decoder_layer, "te.transformer_layer"}});
  BuildContext ctx{gpu(), dt, single_process_groups(), nullptr};
  ctx.fp32_residual = wide;
  if (fp8) {
    te::Fp8Config fc;
    fc.recipe = te::Fp8Recipe::kCurrent;
    ctx.fp8 = std::make_shared<te::Fp8State>(fc, gpu());
  }
  return build_model(c, ctx);
}

void copy_weights(CausalLM& dst, CausalLM& src) {
  auto d = dst.named_parameters(), s = src.named_parameters();
  ASSERT_EQ(d.size(), s.size());
  for (size_t i = 0; i < d.size(); ++i) {
    ASSERT_EQ(d[i].first, s[i].first);
    layers::cast_into(d[i].second->value, s[i].second->value);
  }
}

double rel(const Tensor& a, const Tensor& b) {
  const auto x = to_host_f32(a).to_f32_vector(), y = to_host_f32(b).to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / den);
}

TEST(GpuFp32Residual, EveryArchitectureLandsCloserToF32) {
  GRAFT_REQUIRE_CUDA();
  double sum_narrow = 0, sum_wide = 0;
  for (const char* arch : {"llama", "gemma", "qwen2", "qwen3", "mistral"}) {
    for (bool te : {false, true}) {
      SCOPED_TRACE(str(arch, te ? " te" : " reference"));
      ModelConfig c = parse_hf_config(find_architecture(arch, "tiny")->tiny_config(),
                                      str(arch, "/config.json"));
      c.num_layers = 8;
      if (!c.layer_windows.empty()) c.layer_windows.resize(8, c.layer_windows.back());
      auto narrow = build(c, te, DType::kBF16, false);
      narrow->init_weights(11);
      auto wide = build(c, te, DType::kBF16, true);
      auto ref = build(c, te, DType::kF32, false);
      EXPECT_TRUE(wide->config().decoder.fp32_residual);
      copy_weights(*wide, *narrow);
      copy_weights(*ref, *narrow);
      std::vector<int64_t> v(2 * 24);
      for (size_t i = 0; i < v.size(); ++i)
        v[i] = static_cast<int64_t>((i * 7 + 3) % static_cast<size_t>(c.vocab_size));
      const Tensor ids = Tensor::from_vector(v, {2, 24});
      const Tensor lr = ref->forward(ids), ln = narrow->forward(ids), lw = wide->forward(ids);
      const double en = rel(ln, lr), ew = rel(lw, lr);
      std::printf("  %s %s: logits rel err bf16 stream %.3e, f32 stream %.3e\n", arch,
                  te ? "te" : "reference", en, ew);
      sum_narrow += en;
      sum_wide += ew;
      // Training through the f32 stream: finite loss near the f32 model's, gradients allocated.
      for (CausalLM* m : {wide.get(), ref.get()}) m->allocate_grads();
      const double loss_w = wide->forward_backward(ids, ids),
                   loss_r = ref->forward_backward(ids, ids);
      EXPECT_NEAR(loss_w, loss_r, 2e-2 * std::abs(loss_r));
    }
  }
  std::printf("  sum: bf16 stream %.3e, f32 stream %.3e\n", sum_narrow, sum_wide);
  EXPECT_LT(sum_wide, sum_narrow);
}

// FP8 (current scaling) with the f32 stream: the fused norm + FP8 cast reads f32 rows; the loss
// stays close to the bf16-stream FP8 run and the step's gradients are finite.
TEST(GpuFp32Residual, Fp8CurrentScalingRuns) {
  GRAFT_REQUIRE_CUDA();
  // FP8 GEMM shapes: multiples of 16 (as tests/cuda/cuda_graph_test.cpp's micro model).
  nlohmann::json j = find_architecture("llama", "tiny")->tiny_config();
  j["hidden_size"] = 64;
  j["intermediate_size"] = 128;
  ModelConfig c = parse_hf_config(j, "llama/config.json");
  auto narrow = build(c, true, DType::kBF16, false, true);
  narrow->init_weights(5);
  auto wide = build(c, true, DType::kBF16, true, true);
  copy_weights(*wide, *narrow);
  std::vector<int64_t> v(2 * 32);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<int64_t>((i * 5 + 1) % static_cast<size_t>(c.vocab_size));
  const Tensor ids = Tensor::from_vector(v, {2, 32});
  narrow->allocate_grads();
  wide->allocate_grads();
  const double ln = narrow->forward_backward(ids, ids), lw = wide->forward_backward(ids, ids);
  std::printf("  fp8 current: loss bf16 stream %.6f, f32 stream %.6f\n", ln, lw);
  ASSERT_TRUE(std::isfinite(lw));
  EXPECT_NEAR(lw, ln, 3e-2 * std::abs(ln));
  for (auto& [name, p] : wide->named_parameters()) {
    if (!p->grad.defined()) continue;
    const auto g = to_host_f32(p->grad).to_f32_vector();
    for (float x : g) ASSERT_TRUE(std::isfinite(x)) << name;
  }
}

}  // namespace
}  // namespace graft
