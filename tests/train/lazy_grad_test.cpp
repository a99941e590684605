// Lazy gradient zeroing (framework/core/parameter.h) trains exactly like the eager fill: for every
// registered architecture, both layer sets, FP8 (emulated, delayed scaling), tied and untied
// embeddings and grad_accum 1 and 2, a few steps with the gradients poisoned (zero_grad fills them
// with NaN and every write site must overwrite or zero them) and with them left lazy (last step's
// values) give the same losses, gradient norms and parameters, bit for bit, as the eager memset.
// A site that accumulated into a stale gradient would turn the poisoned run into NaN (skipped
// steps) and the lazy run's values off; the CPU path is exact (beta = 0 writes what 0 + x gives).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "framework/model/architecture.h"
#include "framework/train/trainer.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

struct Case {
  std::string arch, layers;
  bool fp8 = false, tied = false;
  int grad_accum = 1;
  std::string name() const {
    return arch + " " + layers + (fp8 ? " fp8" : "") + (tied ? " tied" : " untied") +
           " grad_accum " + std::to_string(grad_accum);
  }
};

Recipe recipe_for(const std::string& dir, const Case& c) {
  nlohmann::json cfg = find_architecture(c.arch, "test")->tiny_config();
  cfg["vocab_size"] = 258;  // the micro data's bytes
  cfg["tie_word_embeddings"] = c.tied;
  return test::micro_with_config(
      dir, cfg, c.layers,
      {"train.steps=3", "train.grad_accum=" + std::to_string(c.grad_accum),
       "schedule.warmup_steps=1"},
      c.fp8 ? "precision:\n  fp8:\n    recipe: delayed\n" : "");
}

struct TrainRun {
  std::vector<StepMetrics> steps;
  std::vector<std::pair<std::string, Tensor>> params;
};

TrainRun train_with(const std::string& dir, const Case& c, GradZeroing mode) {
  TrainOptions opt;
  std::ostringstream out;
  opt.out = &out;
  opt.grad_zeroing = mode;
  Trainer t(recipe_for(dir, c), opt);
  EXPECT_EQ(t.buckets().zeroing(), mode);
  TrainRun r;
  r.steps = t.run().steps;
  for (auto& [name, p] : t.model().named_parameters())
    r.params.emplace_back(name, p->value.clone());
  return r;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(LazyGradZeroing, TrainsBitIdenticalToTheEagerFill) {
  std::vector<Case> cases;
  for (const std::string& arch : architecture_names())
    for (const std::string layers : {"reference", "te"})
      for (bool fp8 : {false, true})
        for (bool tied : {true, false})
          for (int accum : {1, 2})
            if (!fp8 || layers == "te") cases.push_back({arch, layers, fp8, tied, accum});
  ASSERT_GE(cases.size(), 5u * 12u);
  test::TempDir d;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name());
    const TrainRun eager = train_with(d.path(), c, GradZeroing::kEager);
    ASSERT_EQ(eager.steps.size(), 3u);
    for (const StepMetrics& s : eager.steps) {
      ASSERT_FALSE(s.skipped);
      ASSERT_TRUE(std::isfinite(s.loss) && s.grad_norm > 0);
    }
    for (GradZeroing mode : {GradZeroing::kPoison, GradZeroing::kLazy}) {
      SCOPED_TRACE(mode == GradZeroing::kPoison ? "poisoned" : "lazy");
      const TrainRun lazy = train_with(d.path(), c, mode);
      ASSERT_EQ(lazy.steps.size(), eager.steps.size());
      for (size_t i = 0; i < eager.steps.size(); ++i) {
        EXPECT_FALSE(lazy.steps[i].skipped) << "step " << i + 1;
        EXPECT_EQ(lazy.steps[i].loss, eager.steps[i].loss) << "step " << i + 1;
        EXPECT_EQ(lazy.steps[i].grad_norm, eager.steps[i].grad_norm) << "step " << i + 1;
      }
      ASSERT_EQ(lazy.params.size(), eager.params.size());
      for (size_t i = 0; i < eager.params.size(); ++i)
        EXPECT_TRUE(same_bits(lazy.params[i].second, eager.params[i].second))
            << eager.params[i].first;
    }
  }
}

}  // namespace
}  // namespace graft
