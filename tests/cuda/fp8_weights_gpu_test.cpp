// precision.fp8.fp8_weights on the GPU: the FP8 GEMM weights of the TE layers are kept in f32 as
// their own optimizer master and in FP8, with no bf16 copy (docs/fp8.md).
//   - A layer built with it holds f32 weights; given the same (bf16-valued) weights it computes
//     exactly what the bf16 layer computes (the FP8 casts read the same values, in f32 instead
//     of bf16: the same bytes), so outputs and gradients are bit-identical.
//   - `graft bench` with it reports a lower peak memory than without (2 bytes less per weight
//     element: 4 instead of 2 + 4) and a loss within 1% (the CPU test's bound,
//     tests/train/fp8_weights_test.cpp: the FP8 copies come from the f32 master instead of its
//     bf16 rounding).
#include <gtest/gtest.h>

#include <memory>

#include "framework/train/bench.h"
#include "layers/reference/common.h"
#include "layers/te/fp8_state.h"
#include "layers/te/layernorm_mlp.h"
#include "parallel/process_group.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

using namespace cuda_test;

std::unique_ptr<te::LayerNormMLP> build(bool fp8_weights, std::shared_ptr<te::Fp8State>* state) {
  te::Fp8Config c;
  c.recipe = te::Fp8Recipe::kDelayed;
  c.amax_history_len = 4;
  c.fp8_weights = fp8_weights;
  *state = std::make_shared<te::Fp8State>(c, gpu());
  BuildContext ctx;
  ctx.fp8 = *state;
  te::LayerNormMLPConfig m;
  m.hidden_size = 128;
  m.ffn_hidden_size = 256;
  m.activation = "swiglu";
  m.normalization = "RMSNorm";
  m.params_dtype = DType::kBF16;
  m.device = gpu();
  return std::make_unique<te::LayerNormMLP>(m, ctx);
}

TEST(CudaFp8Weights, TheLayerComputesWhatTheBf16LayerDoes) {
  GRAFT_REQUIRE_CUDA();
  std::shared_ptr<te::Fp8State> sw, sb;
  auto w = build(true, &sw), b = build(false, &sb);
  EXPECT_EQ(w->parameter("fc1_weight")->value.dtype(), DType::kF32);
  EXPECT_TRUE(w->parameter("fc1_weight")->f32_master);
  EXPECT_EQ(b->parameter("fc1_weight")->value.dtype(), DType::kBF16);
  EXPECT_EQ(w->parameter("layer_norm_weight")->value.dtype(), DType::kBF16);
  auto rng = rng_for();
  for (auto& [name, p] : b->named_parameters()) {
    const Tensor v = random_host(p->value.shape(), rng, DType::kBF16, -0.2f, 0.2f);
    p->value.copy_from(v.to(DType::kBF16).to(gpu()));
    layers::cast_into(w->parameter(name)->value, p->value);  // bf16 values, held in f32 or bf16
  }
  auto local = make_local_group("world");
  for (int step = 0; step < 2; ++step) {
    Tensor x = to_gpu(random_host({64, 128}, rng, DType::kBF16, -2.0f, 2.0f), DType::kBF16);
    Tensor dy = to_gpu(random_host({64, 128}, rng, DType::kBF16, -1e-2f, 1e-2f), DType::kBF16);
    std::unique_ptr<LayerCtx> kw, kb;
    Tensor yw = w->forward(x, &kw).out, yb = b->forward(x, &kb).out;
    EXPECT_EQ(to_host_f32(yw).to_f32_vector(), to_host_f32(yb).to_f32_vector()) << step;
    EXPECT_EQ(to_host_f32(w->backward(dy, *kw)).to_f32_vector(),
              to_host_f32(b->backward(dy, *kb)).to_f32_vector())
        << step;
    for (auto& [name, p] : b->named_parameters())
      EXPECT_EQ(to_host_f32(w->parameter(name)->grad).to_f32_vector(),
                to_host_f32(p->grad).to_f32_vector())
          << name << " step " << step;
    sw->end_step(*local);
    sb->end_step(*local);
  }
}

BenchResult bench(bool fp8_weights) {
  BenchOptions o;
  // One update, then the loss it gives: at the recipe's lr 3e-3 this 1024-wide model memorises
  // its one batch unstably (H200: 5.71, 3.42, 3.84, 6.21 with fp8_weights against 5.70, 3.40,
  // 3.64, 4.87 without: both spike at the 4th step, so a 4-step comparison is a coin toss). At lr
  // 5e-4 the second loss is 2.822 / 2.830 (CPU emulation), and FP8 copies that were never
  // refreshed after the update give 4.749 instead (checked on the CPU by making refresh_weight
  // keep the first cast): the 1% bound below separates the two by a factor of 50.
  o.warmup = 0;
  o.steps = 2;
  o.gemm_size = 2048;
  o.gemm_reps = 2;
  o.log = nullptr;
  return run_bench(
      load_recipe(::graft::test::source_root() + "/recipes/tiny-cpu.yaml",
                  {"train.batch_size=2", "data.seq_len=32", "model.layers=te", "device=cuda",
                   // weights large enough to dominate the peak (per layer qkv 1280 x 1024,
                   // proj 1024^2, fc1 8192 x 1024, fc2 1024 x 4096: 30M in FP8 GEMMs over 2
                   // layers, 2 bytes each saved, 57 MiB); at the tiny recipe's 3M weights the
                   // allocator's transients decide (0.107 against 0.104 GiB measured)
                   "model.config.hidden_size=1024", "model.config.intermediate_size=4096",
                   "model.config.num_attention_heads=16", "model.config.num_hidden_layers=2",
                   "precision.params=bf16", "precision.fp8.recipe=delayed", "optim.lr=5e-4",
                   std::string("precision.fp8.fp8_weights=") + (fp8_weights ? "true" : "false")}),
      o);
}

TEST(CudaFp8Weights, BenchUsesLessMemoryAndTracksTheLoss) {
  GRAFT_REQUIRE_CUDA();
  const BenchResult with = bench(true), without = bench(false);
  std::printf("  peak_mem_gib: fp8_weights %.4f, bf16 copy %.4f; last loss %.5f vs %.5f\n",
              with.peak_mem_gib, without.peak_mem_gib, with.last_loss, without.last_loss);
  EXPECT_LT(with.peak_mem_gib, without.peak_mem_gib);
  // bench steps on one seeded batch of random ids, so an AdamW step lowers its loss.
  EXPECT_LT(with.last_loss, with.first_loss);
  EXPECT_NEAR(with.last_loss, without.last_loss, 0.01 * without.last_loss);
}

}  // namespace
}  // namespace graft
