// Gradient buckets in one process: packing, re-homed views, readiness, pieces.
#include "parallel/grad_buckets.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace graft {
namespace {

struct Params {
  std::vector<std::unique_ptr<Parameter>> owned;
  std::vector<std::pair<std::string, Parameter*>> list;
  void add(const std::string& name, Shape shape, float first) {
    auto p = std::make_unique<Parameter>();
    p->value = Tensor::empty(shape, DType::kF32);
    float* v = p->value.data<float>();
    for (int64_t i = 0; i < p->value.numel(); ++i) v[i] = first + static_cast<float>(i);
    p->spec = ShardSpec::replicated(shape);
    list.emplace_back(name, p.get());
    owned.push_back(std::move(p));
  }
};

TEST(GradBuckets, PacksInOrderAndRehomesValuesAndGradients) {
  Params ps;
  ps.add("c", {7, 5}, 100.f);  // 35
  ps.add("b", {70}, 200.f);
  ps.add("a", {3}, 300.f);
  // 150 floats per bucket: c takes 64 aligned elements, c + b = 134 fit, a would start at 192.
  GradBuckets buckets(ps.list, make_local_group("dp"), {150 * 4.0 / (1024 * 1024), false});
  ASSERT_EQ(buckets.num_buckets(), 2u);
  EXPECT_EQ(buckets.bucket_names(0), (std::vector<std::string>{"c", "b"}));
  EXPECT_EQ(buckets.bucket_names(1), (std::vector<std::string>{"a"}));
  for (auto& [name, p] : ps.list) {
    EXPECT_EQ(p->grad.shape(), p->value.shape()) << name;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p->value.raw()) % 64, 0u) << name << " not aligned";
    for (float g : p->grad.to_f32_vector()) EXPECT_EQ(g, 0.f);
  }
  EXPECT_EQ(ps.list[0].second->value.to_f32_vector()[34], 134.f);  // values copied in
  EXPECT_EQ(ps.list[2].second->value.to_f32_vector()[2], 302.f);
  // c and b share one gradient buffer: b starts 64-aligned after c's 35 elements.
  const float* gc = static_cast<const float*>(ps.list[0].second->grad.raw());
  const float* gb = static_cast<const float*>(ps.list[1].second->grad.raw());
  EXPECT_EQ(gb - gc, 64);
  // Unsharded: every parameter is one whole piece.
  ASSERT_EQ(buckets.owned_pieces().size(), 3u);
  for (const auto& piece : buckets.owned_pieces()) EXPECT_TRUE(piece.whole()) << piece.name;
}

// Each zeroing mode over one step in which "w" gets a gradient (its first write overwrites, the
// second accumulates) and "b" none: after finish, w holds its two contributions and b zero.
TEST(GradBuckets, ZeroGradModes) {
  for (GradZeroing mode : {GradZeroing::kLazy, GradZeroing::kEager, GradZeroing::kPoison}) {
    SCOPED_TRACE(static_cast<int>(mode));
    Params ps;
    ps.add("w", {2, 3}, 0.f);
    ps.add("b", {3}, 0.f);
    GradBucketOptions o;
    o.zeroing = mode;
    GradBuckets buckets(ps.list, make_local_group("dp"), o);
    EXPECT_EQ(buckets.zeroing(), mode);
    Parameter& w = *ps.list[0].second;
    Parameter& b = *ps.list[1].second;
    w.grad.fill_(3.f);  // last step's gradients
    b.grad.fill_(3.f);
    buckets.zero_grad();
    const bool eager = mode == GradZeroing::kEager;
    EXPECT_EQ(w.grad_stale, !eager);
    EXPECT_EQ(b.grad_stale, !eager);
    const float left = b.grad.to_f32_vector()[0];
    if (mode == GradZeroing::kLazy) EXPECT_EQ(left, 3.f) << "lazy zeroing writes nothing";
    if (mode == GradZeroing::kPoison) EXPECT_TRUE(std::isnan(left));
    if (eager) EXPECT_EQ(left, 0.f);
    EXPECT_EQ(grad_beta(w), eager ? 1.f : 0.f);  // the first contribution
    if (!eager) w.grad.fill_(0.f);               // what a beta = 0 GEMM would write: 0 * old + 0
    for (int i = 0; i < 6; ++i) w.grad.data<float>()[i] += 1.f;
    EXPECT_EQ(grad_beta(w), 1.f);  // the second accumulates
    grad_to_accumulate(w).data<float>()[0] += 1.f;
    buckets.finish();
    EXPECT_FALSE(b.grad_stale);
    EXPECT_EQ(b.grad.to_f32_vector(), std::vector<float>(3, 0.f)) << "no gradient reads as zero";
    EXPECT_EQ(w.grad.to_f32_vector(), (std::vector<float>{2, 1, 1, 1, 1, 1}));
  }
}

TEST(GradBuckets, ZeroingFromTheEnvironment) {
  Params ps;
  ps.add("w", {4}, 0.f);
  const char* old = std::getenv("GRAFT_GRAD_ZEROING");
  const std::string saved = old ? old : "";
  setenv("GRAFT_GRAD_ZEROING", "poison", 1);
  EXPECT_EQ(GradBuckets(ps.list, make_local_group("dp"), {}).zeroing(), GradZeroing::kPoison);
  setenv("GRAFT_GRAD_ZEROING", "eagre", 1);
  EXPECT_THROW(GradBuckets(ps.list, make_local_group("dp"), {}), InputError);
  GradBucketOptions o;
  o.zeroing = GradZeroing::kEager;  // an explicit option wins over the environment
  EXPECT_EQ(GradBuckets(ps.list, make_local_group("dp"), o).zeroing(), GradZeroing::kEager);
  if (old)
    setenv("GRAFT_GRAD_ZEROING", saved.c_str(), 1);
  else
    unsetenv("GRAFT_GRAD_ZEROING");
}

TEST(GradBuckets, ReadinessLaunchesOncePerStepAndCatchesDoubleReports) {
  Params ps;
  ps.add("w", {4, 4}, 0.f);
  ps.add("b", {4}, 0.f);
  GradBuckets buckets(ps.list, make_local_group("dp"), {25.0, true});
  buckets.set_sync(false);  // an earlier micro-batch: nothing counts
  buckets.mark_ready(ps.list[0].second);
  buckets.mark_ready(ps.list[0].second);
  buckets.set_sync(true);
  buckets.mark_ready(ps.list[0].second);
  buckets.mark_ready(ps.list[1].second);  // the bucket is complete: reduced
  EXPECT_THROW(buckets.mark_ready(ps.list[1].second), Error);
  buckets.finish();
  buckets.mark_ready(ps.list[0].second);  // the next step counts afresh
  buckets.finish();
  Parameter stranger;
  EXPECT_THROW(buckets.mark_ready(&stranger), Error);
  EXPECT_FALSE(buckets.sharded()) << "ZeRO over a group of one shards nothing";
}

// A step that threw after reporting a parameter (a CUDA-graph capture that failed mid-backward,
// then run again eagerly): zero_grad starts the counts afresh, so the retried step's reports
// launch the bucket once instead of finding it "already reduced".
TEST(GradBuckets, ZeroGradForgetsAnAbortedStepsReports) {
  Params ps;
  ps.add("w", {4, 4}, 0.f);
  ps.add("b", {4}, 0.f);
  GradBuckets buckets(ps.list, make_local_group("dp"), {25.0, false});
  buckets.zero_grad();
  buckets.set_sync(true);
  buckets.mark_ready(ps.list[0].second);
  buckets.mark_ready(ps.list[1].second);  // launched; then the step throws before finish()
  buckets.zero_grad();                    // the retry
  buckets.mark_ready(ps.list[0].second);
  EXPECT_NO_THROW(buckets.mark_ready(ps.list[1].second));
  EXPECT_THROW(buckets.mark_ready(ps.list[1].second), Error) << "a double report still counts";
  buckets.finish();
}

}  // namespace
}  // namespace graft
