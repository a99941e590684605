// `graft bench` (framework/train/bench.h): the FLOP formula against the model's own parameter
// count, and the JSON line on the CPU (everywhere) and on the GPU (with the GEMM peak and MFU).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "framework/train/bench.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/test_paths.h"

namespace graft {
namespace {

Recipe tiny(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {"train.batch_size=2", "data.seq_len=32"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return load_recipe(::graft::test::source_root() + "/recipes/tiny-cpu.yaml", sets);
}

// The formula's dense term counts every matrix once plus the LM head: for the untied tiny model
// that is the parameter count minus the embedding and the norm vectors (2 per layer + final).
// head_dim 32 (q width 128 != hidden 256) checks that q/o and attention use heads·head_dim.
TEST(Bench, FlopsPerTokenCountsEveryMatrixOfTheModel) {
  for (const char* head_dim : {"64", "32"}) {
    SCOPED_TRACE(head_dim);
    const Recipe r = tiny({std::string("model.config.head_dim=") + head_dim});
    auto model = build_model_from_recipe(r.model);
    const ModelConfig& c = model->config();
    ASSERT_FALSE(c.tie_word_embeddings);
    int64_t params = 0;
    for (auto& [name, p] : model->named_parameters()) params += p->value.numel();
    const double h = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_layers);
    const double q = static_cast<double>(c.decoder.num_attention_heads * c.decoder.head_dim);
    const double dense =
        static_cast<double>(params) - static_cast<double>(c.vocab_size) * h - (2 * L + 1) * h;
    const int64_t seq = 100;
    EXPECT_DOUBLE_EQ(model_flops_per_token(c, seq), 6 * dense + 6 * L * seq * q);
  }
}

TEST(Bench, CpuRunPrintsConsistentFigures) {
  BenchOptions o;
  o.warmup = 1;
  o.steps = 3;
  o.log = nullptr;
  const BenchResult r = run_bench(tiny(), o);
  const nlohmann::json j = r.to_json();
  for (const char* k : {"ms_per_step", "tokens_per_s", "model_tflops", "mfu", "peak_mem_gib",
                        "layers", "attention", "dtype", "gemm_peak_tflops"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_TRUE(j["mfu"].is_null());
  EXPECT_TRUE(j["gemm_peak_tflops"].is_null());
  EXPECT_GE(r.ms_per_step, r.ms_min);
  EXPECT_LE(r.ms_per_step, r.ms_max);
  EXPECT_NEAR(r.tokens_per_s * r.ms_per_step / 1e3, 2.0 * 32, 1e-6);
  EXPECT_NEAR(r.model_tflops, r.flops_per_token * r.tokens_per_s / 1e12, 1e-12);
  EXPECT_LT(r.last_loss, r.first_loss) << "AdamW steps on one batch must lower its loss";
  EXPECT_EQ(r.attention, "cpu");  // what the kernels reported, not a guess
}

TEST(Bench, BadStepCountIsAnInputError) {
  BenchOptions o;
  o.steps = 0;
  EXPECT_THROW(run_bench(tiny(), o), InputError);
}

TEST(Bench, GpuRunMeasuresPeakAndMfu) {
  GRAFT_REQUIRE_CUDA();
  BenchOptions o;
  o.warmup = 1;
  o.steps = 3;
  o.gemm_size = 2048;
  o.gemm_reps = 3;
  o.log = nullptr;
  const BenchResult r = run_bench(tiny({"device=cuda", "precision.params=bf16"}), o);
  ASSERT_TRUE(r.gemm_peak_tflops.has_value());
  EXPECT_GT(*r.gemm_peak_tflops, 1.0);
  ASSERT_TRUE(r.mfu.has_value());
  EXPECT_NEAR(*r.mfu, r.model_tflops / *r.gemm_peak_tflops, 1e-12);
  EXPECT_GT(r.peak_mem_gib, 0.0);
  EXPECT_EQ(r.dtype, "bf16");
  EXPECT_LT(r.last_loss, r.first_loss);
  // bf16, head_dim 64, causal: cuDNN runs it, and the kernels say so (forward and backward).
  EXPECT_EQ(r.attention, "cudnn");
}

// --profile: per-family times of the dispatched CUDA kernels; GEMMs and attention are there, the
// families add up to no more than the profiled step (nested calls are counted once), and the
// families' call counts are per step.
TEST(Bench, GpuProfileBreaksTheStepIntoKernelFamilies) {
  GRAFT_REQUIRE_CUDA();
  BenchOptions o;
  o.warmup = 1;
  o.steps = 2;
  o.gemm_size = 256;
  o.gemm_reps = 1;
  o.profile = true;
  o.log = nullptr;
  const BenchResult r = run_bench(tiny({"device=cuda", "precision.params=bf16"}), o);
  ASSERT_TRUE(r.profile.has_value());
  double sum = 0;
  bool gemm = false, attn = false;
  for (const auto& f : r.profile->families) {
    EXPECT_GT(f.calls_per_step, 0) << f.family;
    EXPECT_GE(f.ms_per_step, 0) << f.family;
    sum += f.ms_per_step;
    gemm = gemm || f.family == "gemm";
    attn = attn || f.family == "attn_fwd";
  }
  EXPECT_TRUE(gemm && attn) << r.profile_json().dump();
  EXPECT_LE(sum, r.profile->step_ms * 1.001 + 1e-3) << r.profile_json().dump();
  EXPECT_NEAR(r.profile->unattributed_ms, r.profile->step_ms - sum, 1e-9);
  EXPECT_TRUE(r.to_json()["profile"].is_object());
}

// GRAFT_PROFILE_SHAPES=1 splits the GEMM family by shape: no plain "gemm" family is left, and the
// shape families together take the calls the one family had.
TEST(Bench, GpuProfileSplitsGemmsByShapeWhenAsked) {
  GRAFT_REQUIRE_CUDA();
  BenchOptions o;
  o.warmup = 1;
  o.steps = 2;
  o.gemm_size = 256;
  o.gemm_reps = 1;
  o.profile = true;
  o.log = nullptr;
  const Recipe r = tiny({"device=cuda", "precision.params=bf16"});
  const BenchResult whole = run_bench(r, o);
  setenv("GRAFT_PROFILE_SHAPES", "1", 1);
  const BenchResult split = run_bench(r, o);
  unsetenv("GRAFT_PROFILE_SHAPES");
  double gemm_calls = 0, shape_calls = 0;
  int shapes = 0;
  for (const auto& f : whole.profile->families)
    if (f.family == "gemm") gemm_calls = f.calls_per_step;
  for (const auto& f : split.profile->families) {
    EXPECT_NE(f.family, "gemm");
    if (f.family.rfind("gemm ", 0) == 0) shape_calls += f.calls_per_step, ++shapes;
  }
  EXPECT_GT(gemm_calls, 0);
  EXPECT_EQ(shape_calls, gemm_calls) << split.profile_json().dump();
  EXPECT_GE(shapes, 3) << split.profile_json().dump();
}

// model.attention reaches the kernels through the model (no environment variable), and the JSON
// records what ran: unfused when asked; cudnn strict on a problem cuDNN rejects (f32) fails.
TEST(Bench, GpuAttentionKeyIsHonouredAndReported) {
  GRAFT_REQUIRE_CUDA();
  BenchOptions o;
  o.warmup = 0;
  o.steps = 1;
  o.gemm_size = 256;
  o.gemm_reps = 1;
  o.log = nullptr;
  const BenchResult u =
      run_bench(tiny({"device=cuda", "precision.params=bf16", "model.attention=unfused"}), o);
  EXPECT_EQ(u.attention, "unfused");
  EXPECT_EQ(u.to_json()["attention"], "unfused");
  const BenchResult f = run_bench(tiny({"device=cuda", "precision.params=f32"}), o);
  EXPECT_EQ(f.attention, "unfused");  // auto: cuDNN takes no f32, the fallback ran
  try {
    run_bench(tiny({"device=cuda", "precision.params=f32", "model.attention=cudnn"}), o);
    ADD_FAILURE() << "model.attention = cudnn ran f32 attention";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("attention = cudnn but cuDNN cannot run"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace graft
