// The trainer's one-GPU step without host syncs (framework/train/trainer.h): loss accumulated on
// the device over grad_accum micro-batches, clipping and the non-finite skip in the AdamW
// prologue. Checked against the CPU's host path on the same micro model and data, and a NaN
// gradient injected after the backward must skip the step without touching the optimizer.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "framework/train/trainer.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

TrainResult train(const Recipe& r, TrainOptions opt = {}) {
  std::ostringstream sink;
  opt.out = &sink;
  Trainer t(r, opt);
  return t.run();
}

// f32 on both sides, grad_accum 2 and clipping active (optim.grad_clip small): the GPU's device
// step follows the CPU's host step. The two differ only in summation order (cuBLASLt against
// OpenBLAS, kernel reductions), a few f32 ulps per op that 6 steps of lr 1e-2 AdamW carry to
// about 1e-4 relative in the loss.
TEST(TrainDeviceStep, MatchesTheCpuHostStepWithGradAccumAndClipping) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  const std::vector<std::string> sets = {"train.grad_accum=2", "optim.grad_clip=0.05"};
  const TrainResult cpu = train(test::micro(d.path(), sets));
  std::vector<std::string> gpu_sets = sets;
  gpu_sets.push_back("device=cuda");
  const TrainResult gpu = train(test::micro(d.path(), gpu_sets));
  ASSERT_EQ(cpu.steps.size(), gpu.steps.size());
  for (size_t i = 0; i < cpu.steps.size(); ++i) {
    EXPECT_NEAR(gpu.steps[i].loss, cpu.steps[i].loss, 2e-4 * cpu.steps[i].loss) << "step " << i;
    EXPECT_NEAR(gpu.steps[i].grad_norm, cpu.steps[i].grad_norm, 1e-3 * cpu.steps[i].grad_norm)
        << "step " << i;
    EXPECT_GT(gpu.steps[i].grad_norm, 0.05) << "clipping must be active for this test";
  }
}

TEST(TrainDeviceStep, NonFiniteGradientSkipsOnTheDevice) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  TrainOptions opt;
  opt.after_backward = [](int64_t step, CausalLM& model) {
    if (step != 1) return;
    Tensor& g = model.named_parameters().front().second->grad;
    Tensor nan = Tensor::full(g.shape(), std::numeric_limits<float>::quiet_NaN(), g.dtype());
    g.copy_from(nan.to(g.device()));
  };
  std::ostringstream sink;
  opt.out = &sink;
  Trainer t(test::micro(d.path(), {"device=cuda", "train.steps=3"}), opt);
  const TrainResult r = t.run();
  ASSERT_EQ(r.steps.size(), 3u);
  EXPECT_FALSE(r.steps[0].skipped);
  EXPECT_TRUE(r.steps[1].skipped);
  EXPECT_FALSE(std::isfinite(r.steps[1].grad_norm));
  EXPECT_FALSE(r.steps[2].skipped);
  EXPECT_EQ(t.optimizer().steps_taken(), 2) << "the skipped step must not count";
  EXPECT_TRUE(std::isfinite(r.steps[2].loss));
}

}  // namespace
}  // namespace graft
