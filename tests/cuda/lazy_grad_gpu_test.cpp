// Lazy gradient zeroing on the GPU (framework/core/parameter.h): a few bf16 training steps with
// the gradients poisoned (zero_grad fills them with NaN; every write site must overwrite or zero
// them) give the losses, gradient norms and parameters of the eager memset bit for bit, for every
// architecture, both layer sets, FP8 (delayed), tied and untied embeddings and grad_accum 1 and
// 2. Exact because a beta = 0 GEMM or column sum writes what 0 + x gives (cuBLASLt's algorithm
// does not depend on beta; the column sums start from 0.0 instead of the zeroed value).
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "framework/model/architecture.h"
#include "framework/train/trainer.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

struct TrainRun {
  std::vector<StepMetrics> steps;
  std::vector<std::pair<std::string, Tensor>> params;  // on the host
};

TrainRun train_with(const Recipe& r, GradZeroing mode) {
  TrainOptions opt;
  std::ostringstream sink;
  opt.out = &sink;
  opt.grad_zeroing = mode;
  Trainer t(r, opt);
  TrainRun run;
  run.steps = t.run().steps;
  for (auto& [name, p] : t.model().named_parameters())
    run.params.emplace_back(name, p->value.to(Device::cpu()));
  return run;
}

TEST(LazyGradGpu, PoisonedStepsMatchTheEagerMemsetBitForBit) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  int cases = 0;
  for (const std::string& arch : architecture_names()) {
    for (const std::string layers : {"reference", "te"}) {
      for (bool fp8 : {false, true}) {
        if (fp8 && layers != "te") continue;
        for (int accum : {1, 2}) {
          const bool tied = accum == 1;
          const std::string name = arch + " " + layers + (fp8 ? " fp8" : "") +
                                   (tied ? " tied" : " untied") + " grad_accum " +
                                   std::to_string(accum);
          SCOPED_TRACE(name);
          nlohmann::json cfg = find_architecture(arch, "test")->tiny_config();
          cfg["vocab_size"] = 258;
          cfg["tie_word_embeddings"] = tied;
          // Unfused attention: deterministic whatever cuDNN's backward does (attention has no
          // parameters, so nothing of the zeroing is lost).
          std::vector<std::string> sets = {"device=cuda",
                                           "precision.params=bf16",
                                           "train.steps=3",
                                           "schedule.warmup_steps=1",
                                           "model.attention=unfused",
                                           "train.grad_accum=" + std::to_string(accum)};
          if (fp8) sets.push_back("precision.fp8.recipe=delayed");
          const Recipe r = test::micro_with_config(d.path(), cfg, layers, sets);
          const TrainRun eager = train_with(r, GradZeroing::kEager);
          const TrainRun poisoned = train_with(r, GradZeroing::kPoison);
          ASSERT_EQ(eager.steps.size(), 3u);
          ASSERT_EQ(poisoned.steps.size(), 3u);
          for (size_t i = 0; i < 3; ++i) {
            EXPECT_FALSE(eager.steps[i].skipped) << "step " << i + 1;
            EXPECT_FALSE(poisoned.steps[i].skipped) << "step " << i + 1;
            EXPECT_EQ(poisoned.steps[i].loss, eager.steps[i].loss) << "step " << i + 1;
            EXPECT_EQ(poisoned.steps[i].grad_norm, eager.steps[i].grad_norm) << "step " << i + 1;
          }
          ASSERT_EQ(poisoned.params.size(), eager.params.size());
          for (size_t i = 0; i < eager.params.size(); ++i) {
            const Tensor& a = poisoned.params[i].second;
            const Tensor& b = eager.params[i].second;
            EXPECT_TRUE(a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0)
                << eager.params[i].first;
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GE(cases, 5 * 6);
}

}  // namespace
}  // namespace graft
