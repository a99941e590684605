// FP8 under tensor (and sequence) parallelism: `graft train` with delayed scaling under
// `mpirun -np 2` at parallel.tp = 2 against one process training the same global batch (CPU,
// emulated FP8, the micro Llama of tests/train with the TE layers).
//
// Why they agree closely. The amax of every FP8 slot is reduced (max) over the world, which at tp
// covers the ranks a tensor is split over (a column-parallel weight's rows, a row-parallel
// layer's input columns, a column-parallel layer's output gradient columns) or replicated over:
// each rank's max over its piece, maxed over the pieces, is the max over the whole tensor, so
// every scale is the single process's exactly (same history, same update). The FP8 values then
// differ from one process only where a high-precision input to a cast differs: tp sums the same
// f32 products in another grouping (~1e-7 relative), which moves a value across an FP8 rounding
// boundary for about 1e-7 / 2^-4 ≈ 1e-6 of the elements, each by one FP8 step. Over 5 steps at
// lr 1e-3 that keeps the losses within 1e-4 relative (measured: identical f32 losses, the FP8
// products summing exactly in either grouping at these sizes); a scale computed from one shard's
// amax (a missing reduction) or an FP8 cast of a wrong shard changes a loss by 1e-3 or more.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "framework/train/trainer.h"
#include "tests/test_paths.h"
#include "tests/train/mpi_run_util.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

using test::have_mpirun;
using test::metric_losses;
using test::mpirun;
using test::sets;

class Fp8TensorParallel : public ::testing::TestWithParam<bool> {};

TEST_P(Fp8TensorParallel, Tp2DelayedTracksOneProcess) {
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found";
  const bool sp = GetParam();
  test::TempDir d;
  test::write_text(d / "recipe.yaml", test::micro_recipe(d.path()));
  const std::vector<std::string> common = {"train.steps=5",
                                           "schedule.warmup_steps=1",
                                           "optim.lr=1e-3",
                                           "model.layers=te",
                                           "precision.fp8.recipe=delayed",
                                           "precision.fp8.amax_history_len=3",
                                           "optim.grad_clip=1.0",
                                           "train.batch_size=4"};
  std::vector<std::string> ref = common;
  ref.push_back("checkpoint.dir=" + (d / "ref"));
  TrainOptions opt;
  std::ostringstream quiet;
  opt.out = &quiet;
  opt.metrics_out = d / "ref.jsonl";
  Trainer(load_recipe(d / "recipe.yaml", ref), opt).run();

  std::string args = sets(common) + " --set parallel.tp=2 --set checkpoint.dir=" + (d / "tp");
  if (sp) args += " --set parallel.sequence_parallel=true";
  const auto r = mpirun(
      2, "train --recipe " + (d / "recipe.yaml") + args + " --metrics-out " + (d / "tp.jsonl"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("fp8: delayed scaling"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tp 2"), std::string::npos) << r.out;
  const auto want = metric_losses(d / "ref.jsonl"), got = metric_losses(d / "tp.jsonl");
  ASSERT_EQ(got.size(), 5u);
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i])) << "step " << i + 1;
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::abs(want[i]));
  }
  std::cout << "largest loss difference: " << worst << " relative\n";
}

INSTANTIATE_TEST_SUITE_P(Layouts, Fp8TensorParallel, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "tp2_sp" : "tp2"; });

}  // namespace
}  // namespace graft
