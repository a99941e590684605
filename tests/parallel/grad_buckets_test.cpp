// Gradient buckets in one process: packing, re-homed views, readiness, pieces.
#include "parallel/grad_buckets.h"

#include <gtest/gtest.h>

#include <memory>
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
  // zero_grad clears what backward accumulated.
  ps.list[2].second->grad.fill_(3.f);
  buckets.zero_grad();
  for (float g : ps.list[2].second->grad.to_f32_vector()) EXPECT_EQ(g, 0.f);
  // Unsharded: every parameter is one whole piece.
  ASSERT_EQ(buckets.owned_pieces().size(), 3u);
  for (const auto& piece : buckets.owned_pieces()) EXPECT_TRUE(piece.whole()) << piece.name;
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

}  // namespace
}  // namespace graft
