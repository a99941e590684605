// train.cuda_graph without a GPU: the warm-up / capture / replay / fallback decisions of
// CudaGraphStep against a fake graph backend (a "graph" that re-runs the captured function), the
// refusal reasons, the recipe key, AdamW's staged step (the same bits as the eager device step),
// and a CPU run that ignores the key with one log line and trains exactly as without it.
#include "framework/train/cuda_graph_step.h"

#include <gtest/gtest.h>

#include <sstream>

#include "framework/optim/adamw.h"
#include "framework/train/bench.h"
#include "framework/train/trainer.h"
#include "tests/train/test_util.h"

namespace graft {
namespace {

// Capture runs fn once (as a real capture issues the work without running it) and the graph's
// replay runs it again; `fail` makes the capture fail after fn ran.
struct FakeBackend : DeviceGraphBackend {
  struct Graph : DeviceGraph {
    std::function<void()> fn;
    int* replays;
    void replay() override {
      ++*replays;
      fn();
    }
    size_t num_nodes() const override { return 7; }
  };
  bool fail = false;
  int captures = 0, replays = 0;
  std::unique_ptr<DeviceGraph> capture(Device, const std::function<void()>& fn,
                                       std::string* why) override {
    ++captures;
    fn();
    if (fail) {
      *why = "fake failure";
      return nullptr;
    }
    auto g = std::make_unique<Graph>();
    g->fn = fn;
    g->replays = &replays;
    return g;
  }
};

struct Harness {
  FakeBackend backend;
  std::vector<std::string> log;
  int body_calls = 0;
  std::unique_ptr<CudaGraphStep> step;
  explicit Harness(std::string refused = "", int64_t warmup = 2) {
    step = std::make_unique<CudaGraphStep>(
        Device::cuda(0), [this](const std::string& s) { log.push_back(s); }, refused, warmup,
        &backend);
  }
  bool run(std::vector<int64_t> key = {4, 16}) {
    return step->run(key, [this] { ++body_calls; });
  }
};

TEST(CudaGraphStep, WarmsUpThenCapturesOnceAndReplays) {
  Harness h;
  EXPECT_FALSE(h.run());
  EXPECT_FALSE(h.run());
  EXPECT_EQ(h.backend.captures, 0) << "two eager warm-up steps first";
  EXPECT_FALSE(h.step->ready({4, 16}));
  EXPECT_TRUE(h.run()) << "the third step is captured and replayed at once";
  EXPECT_EQ(h.backend.captures, 1);
  EXPECT_EQ(h.backend.replays, 1) << "the capture runs nothing: the step runs in its replay";
  EXPECT_TRUE(h.step->ready({4, 16}));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(h.run());
  EXPECT_EQ(h.backend.captures, 1);
  EXPECT_EQ(h.step->replays(), 6);
  EXPECT_EQ(h.step->eager_steps(), 2);
  EXPECT_EQ(h.step->fallback_reason(), "");
  ASSERT_EQ(h.log.size(), 1u);
  EXPECT_EQ(h.log[0],
            "CUDA graph: the step is captured after 2 eager warm-up steps (7 nodes) and replayed "
            "from now on");
}

TEST(CudaGraphStep, AnotherKeyRestartsWarmUpOrRunsEagerlyBesideTheGraph) {
  Harness h;
  h.run({1});
  h.run({2});  // the warm-up counts steps with the same key only
  h.run({2});
  EXPECT_EQ(h.backend.captures, 0);
  EXPECT_TRUE(h.run({2}));
  EXPECT_EQ(h.backend.captures, 1);
  EXPECT_FALSE(h.step->ready({1}));
  EXPECT_FALSE(h.run({1})) << "a step with other host values runs eagerly";
  EXPECT_FALSE(h.run({1}));
  EXPECT_TRUE(h.run({2})) << "and the graph stays for its own key";
  EXPECT_EQ(h.backend.captures, 1);
  EXPECT_EQ(h.step->eager_steps(), 5);
  int said = 0;
  for (const auto& l : h.log) said += l.find("differ from the captured") != std::string::npos;
  EXPECT_EQ(said, 1) << "the mismatch is logged once";
}

TEST(CudaGraphStep, FailedCaptureFallsBackToEagerForGood) {
  Harness h;
  h.backend.fail = true;
  int discards = 0;
  h.step->set_on_discard([&] { ++discards; });
  h.run();
  h.run();
  const int before = h.body_calls;
  EXPECT_FALSE(h.run());
  EXPECT_EQ(h.body_calls, before + 2) << "the capture's call, then the step run eagerly";
  EXPECT_EQ(discards, 1);
  EXPECT_EQ(h.step->fallback_reason(), "capture failed (fake failure)");
  ASSERT_EQ(h.log.size(), 1u);
  EXPECT_EQ(h.log[0], "CUDA graph: capture failed (fake failure); the step runs eagerly");
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(h.run());
  EXPECT_EQ(h.backend.captures, 1) << "no second attempt";
  EXPECT_FALSE(h.step->captured());
}

// The before-capture hook (the trainer invalidates the FP8 weight copies there) runs once, after
// the warm-up steps and before the body the capture records.
TEST(CudaGraphStep, BeforeCaptureRunsOnceBeforeTheCapturedBody) {
  Harness h;
  std::vector<std::string> order;
  h.step->set_before_capture([&] { order.push_back("before"); });
  auto body = [&] { order.push_back("body"); };
  for (int i = 0; i < 5; ++i) h.step->run({4, 16}, body);
  EXPECT_EQ(order,
            (std::vector<std::string>{"body", "body", "before", "body", "body", "body", "body"}))
      << "2 warm-up steps, the hook, the capture's body, then the replays";
}

TEST(CudaGraphStep, RefusedUpFrontRunsEveryStepEagerly) {
  Harness h("not with 2 ranks");
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(h.run());
  EXPECT_EQ(h.backend.captures, 0);
  EXPECT_EQ(h.body_calls, 5);
  ASSERT_EQ(h.log.size(), 1u);
  EXPECT_EQ(h.log[0], "CUDA graph: not with 2 ranks; the step runs eagerly");
}

TEST(CudaGraphStep, RefusalReasons) {
  CudaGraphConditions c;
  c.device = Device::cuda(0);
  EXPECT_EQ(cuda_graph_refusal(c), "");
  CudaGraphConditions cpu = c;
  cpu.device = Device::cpu();
  EXPECT_EQ(cuda_graph_refusal(cpu), "train.cuda_graph is ignored on the CPU");
  CudaGraphConditions w = c;
  w.world = 4;
  EXPECT_NE(cuda_graph_refusal(w).find("not with 4 ranks"), std::string::npos);
  CudaGraphConditions p = c;
  p.fp8_profile = true;
  EXPECT_NE(cuda_graph_refusal(p).find("GRAFT_FP8_PROFILE"), std::string::npos);
  CudaGraphConditions f = c;
  f.fault_hook = true;
  EXPECT_NE(cuda_graph_refusal(f).find("after_backward"), std::string::npos);
}

TEST(CudaGraphRecipe, KeyIsABoolAndNotPartOfTheHash) {
  test::TempDir d;
  EXPECT_FALSE(test::micro(d.path()).train.cuda_graph);
  const Recipe on = test::micro(d.path(), {"train.cuda_graph=true"});
  EXPECT_TRUE(on.train.cuda_graph);
  EXPECT_EQ(on.config_hash(1), test::micro(d.path()).config_hash(1))
      << "a run may resume with the graph switched on or off";
  const std::string err =
      test::input_error([&] { test::micro(d.path(), {"train.cuda_graph=sometimes"}); });
  EXPECT_NE(err.find("train.cuda_graph"), std::string::npos) << err;
  const std::string typo = test::input_error([&] { test::micro(d.path(), {"train.cuda_grph=1"}); });
  EXPECT_NE(typo.find("cuda_graph"), std::string::npos) << typo;
}

// AdamW::stage_step + step_staged (the graph's form) against step_on_device, on the CPU where the
// staged buffer and the norm are host memory: the same bits over steps with a changing lr.
TEST(CudaGraphAdamW, StagedStepEqualsTheDeviceStep) {
  auto make = [] {
    auto p = std::make_unique<Parameter>();
    std::vector<float> v(37);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
    p->value = Tensor::from_vector(v, {37});
    p->grad = Tensor::zeros({37}, DType::kF32);
    return p;
  };
  auto pa = make(), pb = make();
  OptimConfig oc;
  AdamW a({{"layers.0.w", pa.get()}}, oc), b({{"layers.0.w", pb.get()}}, oc);
  float norm_sq = 4.0f, loss = 1.0f;
  for (int64_t t = 0; t < 4; ++t) {
    for (Parameter* p : {pa.get(), pb.get()}) {
      float* g = p->grad.data<float>();
      for (int64_t i = 0; i < 37; ++i) g[i] = 0.01f * static_cast<float>((i + t) % 5) - 0.02f;
    }
    const double lr = 1e-2 / static_cast<double>(t + 1);
    a.step_on_device(lr, 1.0, &norm_sq, &loss);  // clipping active: norm 2 > 1
    b.stage_step(lr);
    b.step_staged(1.0, &norm_sq, &loss);
    ASSERT_EQ(pa->value.to_f32_vector(), pb->value.to_f32_vector()) << "step " << t + 1;
  }
  EXPECT_EQ(a.steps_taken(), 4);
  EXPECT_EQ(b.steps_taken(), 4);
}

// On the CPU the key is ignored with one log line and the run trains exactly as without it.
TEST(CudaGraphTrainCpu, IgnoredWithOneLineAndSameLosses) {
  test::TempDir d;
  std::ostringstream plain_log, graph_log;
  TrainOptions o1, o2;
  o1.out = &plain_log;
  o2.out = &graph_log;
  const TrainResult plain = Trainer(test::micro(d.path(), {"train.steps=3"}), o1).run();
  const TrainResult graph =
      Trainer(test::micro(d.path(), {"train.steps=3", "train.cuda_graph=true"}), o2).run();
  EXPECT_NE(graph_log.str().find(
                "CUDA graph: train.cuda_graph is ignored on the CPU; the step runs eagerly"),
            std::string::npos)
      << graph_log.str();
  EXPECT_EQ(graph.cuda_graph_reason, "train.cuda_graph is ignored on the CPU");
  EXPECT_EQ(graph.cuda_graph_replays, 0);
  ASSERT_EQ(plain.steps.size(), graph.steps.size());
  for (size_t i = 0; i < plain.steps.size(); ++i)
    EXPECT_EQ(plain.steps[i].loss, graph.steps[i].loss) << "step " << i + 1;
}

// graft bench on the CPU: the key is ignored, and the JSON line (and its train_loop) says so.
TEST(CudaGraphTrainCpu, BenchReportsTheGraphUnusedAndWhy) {
  test::TempDir d;
  BenchOptions o;
  o.warmup = 1;
  o.steps = 2;
  o.train_loop = true;
  o.log = nullptr;
  const BenchResult b = run_bench(test::micro(d.path(), {"train.cuda_graph=true"}), o);
  const nlohmann::json j = b.to_json();
  EXPECT_EQ(j["cuda_graph"], false);
  EXPECT_EQ(j["cuda_graph_reason"], "train.cuda_graph is ignored on the CPU");
  EXPECT_EQ(j["train_loop"]["cuda_graph"], false);
  EXPECT_EQ(j["train_loop"]["cuda_graph_reason"], "train.cuda_graph is ignored on the CPU");
  const BenchResult plain = run_bench(test::micro(d.path()), o);
  EXPECT_EQ(plain.to_json()["cuda_graph"], false);
  EXPECT_TRUE(plain.to_json()["cuda_graph_reason"].is_null()) << "not asked for: no reason";
  EXPECT_EQ(plain.last_loss, b.last_loss);
}

}  // namespace
}  // namespace graft
