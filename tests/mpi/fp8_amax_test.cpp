// Delayed scaling's amax reduction over the world: rank r casts values of magnitude r + 1, so
// after Fp8State::end_step every rank holds the scale of the largest, 448 / world (inputs, E4M3)
// and 57344 / (0.5 world) (gradients, E5M2), and the same history on every rank.
#include <gtest/gtest.h>

#include <memory>

#include "layers/te/fp8_state.h"
#include "layers/te/linear.h"
#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

TEST(MpiFp8, AmaxesAreReducedWithMaxAcrossTheWorld) {
  ProcessGroup& world = *mpi_test::cpu_groups().world;
  const float n = static_cast<float>(world.size()), me = static_cast<float>(world.rank() + 1);
  te::Fp8Config c;
  c.recipe = te::Fp8Recipe::kDelayed;
  c.amax_history_len = 2;
  auto s = std::make_shared<te::Fp8State>(c, Device::cpu());
  BuildContext ctx;
  ctx.fp8 = s;
  te::LinearConfig lc;
  lc.in_features = lc.out_features = 1;
  lc.bias = false;
  te::Linear lin(lc, ctx);
  lin.parameter("weight")->value.fill_(1.0f);
  std::unique_ptr<LayerCtx> saved;
  lin.forward(Tensor::from_vector(std::vector<float>{-me}, {1, 1}), &saved);
  lin.backward(Tensor::from_vector(std::vector<float>{0.5f * me}, {1, 1}), *saved);
  s->end_step(world);
  EXPECT_FLOAT_EQ(s->scale(0), 448.0f / n);
  EXPECT_FLOAT_EQ(s->scale(1), 448.0f);
  EXPECT_FLOAT_EQ(s->scale(2), 57344.0f / (0.5f * n));
  EXPECT_EQ(s->history(0), (std::vector<float>{0.0f, n}));
}

}  // namespace
}  // namespace graft
