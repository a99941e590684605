// CUDA-graph capture and replay of the training step (train.cuda_graph, cuda_graph_step.h): the
// replayed step gives bit-identical losses, gradient norms, evaluation losses and final weights
// to the eager device step (every kernel of the step is deterministic and reads the same values:
// AdamW's staged lr and bias corrections are the bits the host computes), with a constant and a
// warm-up + cosine schedule (a frozen lr would differ from step 3 on), with grad_accum and
// evaluation between replays, and with FP8 delayed scaling. The allocator's graph pool: a block
// freed inside a capture is never handed to an allocation made after it; a failed capture leaves
// the stream usable. Every test prints what ran (replays, the fallback reason, the attention).
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <sstream>

#include "framework/core/device_graph.h"
#include "framework/train/bench.h"
#include "framework/train/trainer.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/train/test_util.h"

#ifdef GRAFT_HAVE_CUDA
#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/stream.h"
#endif

namespace graft {
namespace {

struct TrainRun {
  TrainResult result;
  std::vector<std::pair<std::string, std::vector<float>>> params;  // final weights, f32 copies
  std::string log;
};

TrainRun train(const Recipe& r) {
  std::ostringstream sink;
  TrainOptions opt;
  opt.out = &sink;
  Trainer t(r, opt);
  TrainRun run;
  run.result = t.run();
  for (auto& [name, p] : t.model().named_parameters())
    run.params.emplace_back(name, p->value.to(Device::cpu()).to(DType::kF32).to_f32_vector());
  run.log = sink.str();
  return run;
}

// The micro Llama (test_util.h) with TE layers in bf16 on the GPU, head_dim 16.
Recipe micro_gpu(const test::TempDir& d, std::vector<std::string> extra) {
  std::vector<std::string> sets = {"device=cuda",
                                   "precision.params=bf16",
                                   "model.layers=te",
                                   "model.config.hidden_size=64",
                                   "model.config.intermediate_size=128",
                                   "train.steps=8"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return test::micro(d.path(), sets);
}

bool same_run(const TrainRun& a, const TrainRun& b) {
  if (a.result.steps.size() != b.result.steps.size() || a.params != b.params) return false;
  for (size_t i = 0; i < a.result.steps.size(); ++i)
    if (a.result.steps[i].loss != b.result.steps[i].loss ||
        a.result.steps[i].grad_norm != b.result.steps[i].grad_norm ||
        a.result.steps[i].eval_loss != b.result.steps[i].eval_loss)
      return false;
  return true;
}

// Eager against graph: bit-identical per-step loss, norm, lr, eval loss and final weights; the
// graph run replayed every step from the third on. Bit-identity needs deterministic kernels: the
// eager run is made twice, and when the two differ (cuDNN's attention backward may accumulate dQ
// with atomics) the graph run is held to the eager runs' own spread instead, and the test says so.
// `strict`: the eager runs must be deterministic (unfused attention).
void expect_graph_matches_eager(const std::vector<std::string>& sets, const char* what,
                                bool strict = false) {
  test::TempDir d;
  const TrainRun eager = train(micro_gpu(d, sets));
  const TrainRun again = train(micro_gpu(d, sets));
  const bool deterministic = same_run(eager, again);
  std::vector<std::string> g = sets;
  g.push_back("train.cuda_graph=true");
  const TrainRun graph = train(micro_gpu(d, g));
  std::cout << what << ": " << graph.result.cuda_graph_replays << " replays of "
            << graph.result.steps.size() << " steps"
            << (graph.result.cuda_graph_reason.empty()
                    ? std::string()
                    : ", fallback: " + graph.result.cuda_graph_reason)
            << "; attention " << graph.result.steps.back().attention << "; eager runs "
            << (deterministic ? "bit-identical: the graph must match bit for bit"
                              : "differ (non-deterministic kernels): compared within their spread")
            << "\n";
  if (strict) {
    ASSERT_TRUE(deterministic) << what << ": two eager runs differ";
  }
  ASSERT_EQ(graph.result.cuda_graph_reason, "") << what << "; log:\n" << graph.log;
  EXPECT_EQ(graph.result.cuda_graph_replays, 6) << what << ": 2 eager warm-up steps, then 6 "
                                                << "replays (the captured step included)";
  EXPECT_NE(graph.log.find("CUDA graph: the step is captured"), std::string::npos) << graph.log;
  ASSERT_EQ(eager.result.steps.size(), graph.result.steps.size());
  for (size_t i = 0; i < eager.result.steps.size(); ++i) {
    const StepMetrics &a = eager.result.steps[i], &b = graph.result.steps[i];
    const StepMetrics& c = again.result.steps[i];
    EXPECT_EQ(a.lr, b.lr) << what << ": step " << i + 1;
    EXPECT_EQ(a.attention, b.attention) << what << ": step " << i + 1;
    EXPECT_EQ(a.eval_loss.has_value(), b.eval_loss.has_value());
    if (deterministic) {
      EXPECT_EQ(a.loss, b.loss) << what << ": step " << i + 1 << " loss";
      EXPECT_EQ(a.grad_norm, b.grad_norm) << what << ": step " << i + 1 << " grad norm";
      if (a.eval_loss && b.eval_loss) {
        EXPECT_EQ(*a.eval_loss, *b.eval_loss) << what << ": eval after step " << i + 1;
      }
    } else {
      // Within 4x the two eager runs' own difference, plus a bf16 ulp of the loss for the steps
      // where they happened to agree.
      const double spread = 4 * std::abs(a.loss - c.loss) + 8e-3 * std::abs(a.loss);
      EXPECT_NEAR(a.loss, b.loss, spread) << what << ": step " << i + 1 << " loss";
    }
  }
  ASSERT_EQ(eager.params.size(), graph.params.size());
  if (deterministic) {
    for (size_t i = 0; i < eager.params.size(); ++i)
      EXPECT_EQ(eager.params[i].second, graph.params[i].second)
          << what << ": final " << eager.params[i].first << " differs";
  }
  EXPECT_LT(graph.result.steps.back().loss, graph.result.steps.front().loss) << what;
}

// Unfused attention (deterministic kernels everywhere): bit for bit, unconditionally.
TEST(CudaGraphTrain, UnfusedAttentionMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"model.attention=unfused"}, "unfused attention", /*strict=*/true);
}

// precision.residual: f32 (the f32 residual stream between the layers), with activation
// recompute (the saved layer inputs are the f32 stream) and with FP8 (the fused norm + cast reads
// the f32 stream).
TEST(CudaGraphTrain, Fp32ResidualMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager(
      {"precision.residual=f32", "model.attention=unfused", "train.recompute=true"},
      "f32 residual + recompute", /*strict=*/true);
}

TEST(CudaGraphTrain, Fp32ResidualFp8CurrentMatchesEager) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"precision.residual=f32", "precision.fp8.recipe=current"},
                             "f32 residual + fp8 current");
}

TEST(CudaGraphTrain, ConstantLrMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"schedule.type=constant", "schedule.warmup_steps=0"}, "constant");
}

// Warm-up 4 then cosine over 8 steps: the lr changes at every replayed step, so a graph that
// froze the captured step's lr or bias corrections would diverge from step 4 on.
TEST(CudaGraphTrain, ScheduledLrMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  const TrainRun eager = train(micro_gpu(d, {"schedule.warmup_steps=4"}));
  for (size_t i = 3; i + 1 < eager.result.steps.size(); ++i)
    ASSERT_NE(eager.result.steps[i].lr, eager.result.steps[i + 1].lr) << "step " << i + 1;
  expect_graph_matches_eager({"schedule.warmup_steps=4"}, "warmup + cosine");
}

// Two micro-batches a step and an evaluation (forward only, eager, its own allocations) after
// every second step, between replays; clipping active.
TEST(CudaGraphTrain, GradAccumAndEvalBetweenReplaysMatchEager) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"train.grad_accum=2", "optim.grad_clip=0.05",
                              "data.validation.fraction=0.1", "eval.every=2", "eval.batches=2"},
                             "grad_accum 2 + eval");
}

// Packed documents: positions and document ids per batch in fixed buffers, and a target count
// that changes whenever a window holds a document end (the loss divisor, from device memory).
TEST(CudaGraphTrain, DocumentMaskMatchesEager) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"data.document_mask=true", "train.batch_size=4"}, "document mask");
}

TEST(CudaGraphTrain, Fp8DelayedMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"precision.fp8.recipe=delayed", "precision.fp8.amax_history_len=4",
                              "data.validation.fraction=0.1", "eval.every=3", "eval.batches=2"},
                             "fp8 delayed + eval");
}

// An evaluation after the second warm-up step casts the FP8 weights of that generation just
// before the capture: the captured step must still cast them itself (or every replay would read
// the evaluation's copies, stale from the next update on and released by the next evaluation).
TEST(CudaGraphTrain, Fp8DelayedWithEvalBeforeTheCaptureMatchesEager) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"precision.fp8.recipe=delayed", "precision.fp8.amax_history_len=4",
                              "data.validation.fraction=0.1", "eval.every=2", "eval.batches=2"},
                             "fp8 delayed + eval before the capture");
}

TEST(CudaGraphTrain, Fp8CurrentMatchesEagerBitForBit) {
  GRAFT_REQUIRE_CUDA();
  expect_graph_matches_eager({"precision.fp8.recipe=current"}, "fp8 current");
}

// graft bench's one-micro-batch step: the timed steps are replays and end on the eager loss.
TEST(CudaGraphBench, ReplaysTheTimedStepsWithTheEagerLoss) {
  GRAFT_REQUIRE_CUDA();
  test::TempDir d;
  BenchOptions o;
  o.warmup = 3;
  o.steps = 4;
  o.gemm_size = 1024;
  o.gemm_reps = 2;
  o.log = nullptr;
  // Unfused attention: deterministic, so the losses must be equal; then the default backend.
  const BenchResult eager = run_bench(micro_gpu(d, {"model.attention=unfused"}), o);
  const BenchResult graph =
      run_bench(micro_gpu(d, {"model.attention=unfused", "train.cuda_graph=true"}), o);
  const BenchResult fused = run_bench(micro_gpu(d, {"train.cuda_graph=true"}), o);
  std::cout << "bench (default attention " << fused.attention << "): graph " << fused.ms_per_step
            << " ms per step, cuda_graph " << fused.to_json()["cuda_graph"] << "\n";
  EXPECT_TRUE(fused.cuda_graph) << fused.cuda_graph_reason;
  EXPECT_NE(fused.attention, "") << "the captured step's attention report stands for the replays";
  EXPECT_LT(fused.last_loss, fused.first_loss);
  std::cout << "bench: eager " << eager.ms_per_step << " ms, graph " << graph.ms_per_step
            << " ms per step; " << graph.to_json()["cuda_graph"] << " "
            << graph.to_json()["cuda_graph_reason"] << "\n";
  EXPECT_TRUE(graph.cuda_graph) << graph.cuda_graph_reason;
  EXPECT_EQ(graph.to_json()["cuda_graph"], true);
  EXPECT_FALSE(eager.cuda_graph);
  EXPECT_EQ(eager.last_loss, graph.last_loss);
  EXPECT_EQ(eager.first_loss, graph.first_loss);
}

#ifdef GRAFT_HAVE_CUDA
// A block allocated and freed inside the capture belongs to the graph: reused within the capture,
// never handed to an allocation made after it while the graph lives; the same for a block made
// before the capture and freed during it. Destroying the graph returns them.
TEST(CudaGraphAllocator, BlocksFreedInTheCaptureStayTheGraphs) {
  GRAFT_REQUIRE_CUDA();
  auto& alloc = cuda::CachingAllocator::instance();
  alloc.empty_cache(0);
  cudaStream_t s = cuda::current_stream(0);
  const size_t bytes = 3 << 20;  // a 2 MiB-granule block, rare among other tests' leftovers
  void* before = alloc.allocate(bytes, 0, s);
  void* inside = nullptr;
  void* reused = nullptr;
  std::string why;
  std::unique_ptr<DeviceGraph> g = device_graph_backend()->capture(
      cuda_test::gpu(),
      [&] {
        inside = alloc.allocate(bytes, 0, s);
        device_backend().memset_zero(inside, bytes, cuda_test::gpu());
        alloc.release(inside);
        reused = alloc.allocate(bytes, 0, s);  // the capture's own freed block, stream-ordered
        device_backend().memset_zero(reused, bytes, cuda_test::gpu());
        alloc.release(reused);
        device_backend().memset_zero(before, bytes, cuda_test::gpu());
        alloc.release(before);  // made before the capture, used by it: the graph's now
      },
      &why);
  ASSERT_TRUE(g) << why;
  EXPECT_EQ(reused, inside) << "a block freed within the capture is reused within it";
  g->replay();
  void* after1 = alloc.allocate(bytes, 0, s);
  void* after2 = alloc.allocate(bytes, 0, s);
  for (void* p : {after1, after2}) {
    EXPECT_NE(p, inside) << "a block of the graph's pool was handed out after the capture";
    EXPECT_NE(p, before) << "a block freed during the capture was handed out after it";
  }
  g->replay();
  device_backend().synchronize(cuda_test::gpu());
  g.reset();  // waits for the replays, returns the pool
  void* again = alloc.allocate(bytes, 0, s);
  EXPECT_TRUE(again == inside || again == before)
      << "the destroyed graph's blocks return to the general pool";
  for (void* p : {after1, after2, again}) alloc.release(p);
}

// A capture that synchronises fails cleanly: null graph, a reason, the stream usable after.
TEST(CudaGraphAllocator, FailedCaptureEndsCleanly) {
  GRAFT_REQUIRE_CUDA();
  std::string why;
  Tensor x = Tensor::full({1024}, 1.0f, DType::kF32).to(cuda_test::gpu());
  std::unique_ptr<DeviceGraph> g = device_graph_backend()->capture(
      cuda_test::gpu(),
      [&] {
        x.zero_();
        device_backend().synchronize(cuda_test::gpu());  // illegal while capturing
      },
      &why);
  std::cout << "failed capture: " << why << "\n";
  EXPECT_FALSE(g);
  EXPECT_FALSE(why.empty());
  // Nothing of the capture ran, and eager work runs as before.
  EXPECT_EQ(x.to(Device::cpu()).to_f32_vector(), std::vector<float>(1024, 1.0f));
  x.zero_();
  EXPECT_EQ(x.to(Device::cpu()).to_f32_vector(), std::vector<float>(1024, 0.0f));
}
#endif

}  // namespace
}  // namespace graft
