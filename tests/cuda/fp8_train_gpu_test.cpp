// FP8 through `graft bench` (CPU emulated everywhere, CUDA where there is a GPU) and training on
// the GPU: the micro Llama in bf16 + FP8 (delayed, current) tracks the bf16 run, and resuming
// in FP8 from a checkpoint continues bit-identically (the amax histories restored; every FP8
// kernel is deterministic: max-reductions and cuBLASLt GEMMs of fixed shapes).
#include <gtest/gtest.h>

#include <sstream>

#include "framework/train/bench.h"
#include "framework/train/trainer.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/test_paths.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

Recipe tiny(const std::vector<std::string>& extra) {
  std::vector<std::string> sets = {"train.batch_size=2", "data.seq_len=32", "model.layers=te"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return load_recipe(::graft::test::source_root() + "/recipes/tiny-cpu.yaml", sets);
}

BenchResult bench(const std::vector<std::string>& sets) {
  BenchOptions o;
  o.warmup = 1;
  o.steps = 3;
  o.gemm_size = 2048;
  o.gemm_reps = 2;
  o.log = nullptr;
  return run_bench(tiny(sets), o);
}

TEST(Fp8Bench, CpuRunReportsTheRecipeAndLearns) {
  const BenchResult r = bench({"precision.fp8.recipe=delayed"});
  EXPECT_EQ(r.fp8, "delayed");
  EXPECT_EQ(r.to_json()["fp8"], "delayed");
  EXPECT_LT(r.last_loss, r.first_loss);
}

TEST(Fp8Bench, GpuRunsBothRecipes) {
  GRAFT_REQUIRE_CUDA();
  for (const char* recipe : {"delayed", "current"}) {
    const BenchResult r = bench(
        {"device=cuda", "precision.params=bf16", std::string("precision.fp8.recipe=") + recipe});
    EXPECT_EQ(r.fp8, recipe);
    EXPECT_LT(r.last_loss, r.first_loss) << recipe;
    EXPECT_GT(r.peak_mem_gib, 0.0);
  }
}

TrainResult train(const Recipe& r) {
  std::ostringstream sink;
  TrainOptions opt;
  opt.out = &sink;
  Trainer t(r, opt);
  return t.run();
}

std::vector<double> losses(const TrainResult& r) {
  std::vector<double> l;
  for (const auto& s : r.steps) l.push_back(s.loss);
  return l;
}

TEST(Fp8GpuTrain, TracksBf16AndResumesBitIdentically) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  const std::vector<std::string> common = {"device=cuda", "precision.params=bf16",
                                           "model.layers=te", "train.steps=8"};
  auto recipe = [&](std::vector<std::string> extra) {
    std::vector<std::string> s = common;
    s.insert(s.end(), extra.begin(), extra.end());
    return test::micro(d.path(), s);
  };
  const TrainResult bf16 = train(recipe({}));
  for (const char* r : {"delayed", "current"}) {
    const TrainResult q = train(recipe({std::string("precision.fp8.recipe=") + r}));
    // Same bound as the CPU test (tests/train/fp8_train_test.cpp): FP8 GEMMs carry 3- and 2-bit
    // mantissas, a few percent per GEMM, on top of bf16.
    EXPECT_NEAR(q.steps.back().loss, bf16.steps.back().loss, 0.05 * bf16.steps.back().loss) << r;
    EXPECT_LT(q.steps.back().loss, q.steps.front().loss - 0.5) << r;
  }
  const std::vector<std::string> fp8 = {"precision.fp8.recipe=delayed",
                                        "precision.fp8.amax_history_len=4",
                                        "checkpoint.dir=" + (d / "ck")};
  const TrainResult full =
      train(recipe({"precision.fp8.recipe=delayed", "precision.fp8.amax_history_len=4"}));
  std::vector<std::string> stop = fp8;
  stop.push_back("train.stop_after=4");
  const TrainResult first = train(recipe(stop));
  const TrainResult second = train(recipe(fp8));
  std::vector<double> joined = losses(first);
  for (double l : losses(second)) joined.push_back(l);
  EXPECT_EQ(joined, losses(full));
}

}  // namespace
}  // namespace graft
