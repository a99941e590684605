// The tensor/sequence-parallel mappings (parallel/tp_collectives.h) over a tp group spanning the
// world, against hand-computed results: forward and backward of copy_to_tp, reduce_from_tp,
// gather_from_sp and reduce_scatter_to_sp for batch 1 (no reordering) and batch 3 (per-row
// interleaving of the shards), and the divisibility error. Values are small multiples of 1/8,
// so every sum is exact in f32 and the comparisons are exact.
#include "parallel/tp_collectives.h"

#include <gtest/gtest.h>

#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

ProcessGroup& tp_world() {
  static std::shared_ptr<const ParallelGroups> g = [] {
    ParallelConfig c;
    c.tp = world_info().size;
    c.timeout_s = 120;
    return make_parallel_groups(c, world_info(), Device::cpu(), "tp-collectives-test");
  }();
  return *g->tp;
}

// Element (b, s, h) as rank r holds it before a collective.
float val(int64_t b, int64_t s, int64_t h, int r) {
  return static_cast<float>(((b * 31 + s * 7 + h * 3 + r * 11) % 41) - 20) / 8.0f;
}

Tensor make(int64_t B, int64_t S, int64_t H,
            const std::function<float(int64_t, int64_t, int64_t)>& f) {
  Tensor t = Tensor::empty({B, S, H}, DType::kF32);
  float* d = t.data<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) d[(b * S + s) * H + h] = f(b, s, h);
  return t;
}

::testing::AssertionResult equal(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << got.str() << " vs " << want.str();
  Tensor g = got.contiguous(), w = want.contiguous();
  for (int64_t i = 0; i < g.numel(); ++i)
    if (g.data<float>()[i] != w.data<float>()[i])
      return ::testing::AssertionFailure()
             << "element " << i << ": " << g.data<float>()[i] << " vs " << w.data<float>()[i];
  return ::testing::AssertionSuccess();
}

class TpCollectives : public ::testing::TestWithParam<int64_t> {
 protected:
  ProcessGroup& g() { return tp_world(); }
  int me() { return g().rank(); }
  int T() { return g().size(); }
  int64_t B() const { return GetParam(); }
  static constexpr int64_t kSl = 3, kH = 5;  // shard length, hidden
};

TEST_P(TpCollectives, CopyToTp) {
  Tensor x =
      make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, me()); });
  Tensor y = copy_to_tp(x, g());
  EXPECT_EQ(y.raw(), x.raw());  // forward identity: no copy
  Tensor dx = copy_to_tp_backward(x.clone(), g());
  EXPECT_TRUE(equal(dx, make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) {
                      float sum = 0;
                      for (int r = 0; r < T(); ++r) sum += val(b, s, h, r);
                      return sum;
                    })));
  Tensor dx2 = x.clone();
  copy_to_tp_backward_async(dx2, g())->wait();
  EXPECT_TRUE(equal(dx2, dx));
}

TEST_P(TpCollectives, ReduceFromTp) {
  Tensor y =
      make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, me()); });
  Tensor want = make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) {
    float sum = 0;
    for (int r = 0; r < T(); ++r) sum += val(b, s, h, r);
    return sum;
  });
  EXPECT_TRUE(equal(reduce_from_tp(y.clone(), g()), want));
  Tensor dy = y.clone();
  EXPECT_TRUE(equal(reduce_from_tp_backward(dy, g()), y));  // backward identity
}

TEST_P(TpCollectives, GatherFromSp) {
  // Rank r holds positions [r·Sl, (r+1)·Sl) of the sequence; the gather rebuilds the whole one.
  Tensor shard = make(
      B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, me() * kSl + s, h, 0); });
  Tensor whole =
      make(B(), kSl * T(), kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, 0); });
  EXPECT_TRUE(equal(gather_from_sp(shard, g()), whole));
  EXPECT_TRUE(equal(sp_shard(whole, g()), shard));
  // Backward: each rank's full-length gradient, summed, this rank's shard kept.
  Tensor dy =
      make(B(), kSl * T(), kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, me()); });
  EXPECT_TRUE(equal(gather_from_sp_backward(dy, g()),
                    make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) {
                      float sum = 0;
                      for (int r = 0; r < T(); ++r) sum += val(b, me() * kSl + s, h, r);
                      return sum;
                    })));
}

TEST_P(TpCollectives, ReduceScatterToSp) {
  Tensor y =
      make(B(), kSl * T(), kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, me()); });
  Tensor want = make(B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) {
    float sum = 0;
    for (int r = 0; r < T(); ++r) sum += val(b, me() * kSl + s, h, r);
    return sum;
  });
  EXPECT_TRUE(equal(reduce_scatter_to_sp(y, g()), want));
  // Backward: the all-gather of the shards' gradients.
  Tensor dshard = make(
      B(), kSl, kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, me() * kSl + s, h, 1); });
  EXPECT_TRUE(equal(
      reduce_scatter_to_sp_backward(dshard, g()),
      make(B(), kSl * T(), kH, [&](int64_t b, int64_t s, int64_t h) { return val(b, s, h, 1); })));
}

TEST_P(TpCollectives, SequenceNotDivisible) {
  if (T() == 1) GTEST_SKIP() << "every length divides 1";
  Tensor y = Tensor::zeros({B(), kSl * T() + 1, kH}, DType::kF32);
  try {
    reduce_scatter_to_sp(y, g());
    ADD_FAILURE() << "no error for a sequence length tp does not divide";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("is not divisible by tp = " + std::to_string(T())),
              std::string::npos)
        << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Batch, TpCollectives, ::testing::Values(1, 3),
                         [](const auto& info) { return "b" + std::to_string(info.param); });

}  // namespace
}  // namespace graft
