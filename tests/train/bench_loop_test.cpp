// `graft bench --train-loop` (framework/train/bench.h): the recipe's own loop is timed next to the
// one-micro-batch bench step, and both land in the JSON line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "framework/train/bench.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

TEST(BenchTrainLoop, RunsTheRecipesLoopWithGradAccumAndReportsBoth) {
  test::TempDir d;
  const Recipe r = test::micro(d.path(), {"train.grad_accum=3", "logging.every=1"},
                               "checkpoint:\n  dir: " + (d / "ck") + "\n");
  BenchOptions o;
  o.warmup = 1;
  o.steps = 2;
  o.train_loop = true;
  o.log = nullptr;
  const BenchResult b = run_bench(r, o);
  ASSERT_TRUE(b.train_loop.has_value());
  const TrainLoopResult& t = *b.train_loop;
  EXPECT_EQ(t.grad_accum, 3);
  EXPECT_EQ(t.steps, 2);
  EXPECT_GT(t.ms_per_step, 0.0);
  // tokens/s of the loop counts grad_accum micro-batches of batch_size x seq_len per step.
  EXPECT_NEAR(t.tokens_per_s * t.ms_per_step / 1e3, 3.0 * 2 * 16, 1e-6);
  EXPECT_EQ(t.attention, "cpu");
  EXPECT_TRUE(std::isfinite(t.last_loss));
  const nlohmann::json j = b.to_json();
  ASSERT_TRUE(j["train_loop"].is_object()) << j.dump();
  EXPECT_EQ(j["train_loop"]["grad_accum"], 3);
  EXPECT_TRUE(j["ms_per_step"].is_number());  // the bench step's own figure is still there
  // Nothing written: no checkpoint folder appears.
  EXPECT_FALSE(std::filesystem::exists(d / "ck"));
  o.train_loop = false;
  EXPECT_TRUE(run_bench(r, o).to_json()["train_loop"].is_null());
}

// train.recompute reaches bench's model (the trainer's setting, so its memory/time trade can be
// benchmarked): the step recomputes each layer's forward and so gives the same losses, and the
// JSON says recompute was on.
TEST(BenchRecompute, RunsWithActivationRecomputeAndGivesTheSameLosses) {
  test::TempDir d;
  BenchOptions o;
  o.warmup = 1;
  o.steps = 2;
  o.log = nullptr;
  const BenchResult off = run_bench(test::micro(d.path(), {}), o);
  const BenchResult on = run_bench(test::micro(d.path(), {"train.recompute=true"}), o);
  EXPECT_FALSE(off.recompute);
  EXPECT_TRUE(on.recompute);
  EXPECT_EQ(on.to_json()["recompute"], true);
  EXPECT_EQ(on.first_loss, off.first_loss);
  EXPECT_EQ(on.last_loss, off.last_loss);
  EXPECT_NE(on.last_loss, on.first_loss);  // the steps trained
}

// The JSON line carries the --profile breakdown when there is one (it was computed and printed
// but left out of the line: the H200 run's Bench.GpuProfile test caught it), and null otherwise.
TEST(BenchJson, CarriesTheProfileWhenThereIsOne) {
  BenchResult r;
  EXPECT_TRUE(r.to_json()["profile"].is_null());
  r.profile = BenchProfile{12.5, 0.25, {{"gemm", 10.0, 7}, {"rmsnorm_fwd", 2.25, 3}}};
  const nlohmann::json j = r.to_json();
  ASSERT_TRUE(j["profile"].is_object()) << j.dump();
  EXPECT_EQ(j["profile"]["step_ms"], 12.5);
  EXPECT_EQ(j["profile"]["unattributed_ms"], 0.25);
  ASSERT_EQ(j["profile"]["families"].size(), 2u);
  EXPECT_EQ(j["profile"]["families"][1]["family"], "rmsnorm_fwd");
  EXPECT_EQ(j["profile"]["families"][1]["calls_per_step"], 3);
}

}  // namespace
}  // namespace graft
