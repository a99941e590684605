// FP8 in the TE layers on the CPU (emulated: quantise with the scale, round to nearest even,
// saturate; dequantise; f32 GEMM): the delayed-scaling state machine seen through te.linear
// (first step at scale 1, the next from the history; history roll, max vs most_recent, a slot
// that is not cast keeps its scale), current scaling, parameters_split sharing one weight scale,
// FP8 against f32 for te.linear / te.layernorm_linear / te.layernorm_mlp, and the checkpoint
// tensors round trip. Hand-computed numbers are explained where they appear.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>

#include "layer_test_util.h"
#include "layers/reference/common.h"
#include "layers/te/fp8_state.h"
#include "layers/te/layernorm_linear.h"
#include "layers/te/layernorm_mlp.h"
#include "layers/te/linear.h"
#include "parallel/process_group.h"

namespace graft {
namespace {

using te::Fp8Config;
using te::Fp8Recipe;
using te::Fp8State;

std::shared_ptr<Fp8State> make_state(Fp8Recipe r, int64_t len = 4,
                                     te::AmaxAlgo algo = te::AmaxAlgo::kMax, int64_t margin = 0) {
  Fp8Config c;
  c.recipe = r;
  c.amax_history_len = len;
  c.amax_compute_algo = algo;
  c.margin = margin;
  return std::make_shared<Fp8State>(c, Device::cpu());
}

BuildContext fp8_ctx(std::shared_ptr<Fp8State> s) {
  BuildContext ctx;
  ctx.fp8 = std::move(s);
  return ctx;
}

// A 1 -> 1 te.linear with weight w and no bias: y = x w.
std::unique_ptr<te::Linear> scalar_linear(const BuildContext& ctx, float w) {
  te::LinearConfig c;
  c.in_features = 1;
  c.out_features = 1;
  c.bias = false;
  auto lin = std::make_unique<te::Linear>(c, ctx);
  lin->parameter("weight")->value.fill_(w);
  return lin;
}

// One training step of a linear: forward (saved), backward with dy, then end_step.
Tensor train_step(te::Linear& lin, Fp8State& s, const Tensor& x, const Tensor& dy) {
  std::unique_ptr<LayerCtx> ctx;
  Tensor y = lin.forward(x, &ctx).out;
  lin.backward(dy, *ctx);
  auto local = make_local_group("world");
  s.end_step(*local);
  return y;
}

Tensor scalar(float v) { return Tensor::from_vector(std::vector<float>{v}, {1, 1}); }

constexpr int64_t kInput = 0, kWeight = 1, kGrad = 2;  // te.linear's slots, in order

TEST(Fp8Delayed, FirstStepAtScaleOneThenFromTheHistory) {
  auto s = make_state(Fp8Recipe::kDelayed);
  auto lin = scalar_linear(fp8_ctx(s), 1.0f);
  EXPECT_EQ(s->num_slots(), 3);
  s->finalize(*lin);
  EXPECT_EQ(s->slot_name(kInput), "fp8_input");
  EXPECT_EQ(s->slot_dtype(kGrad), DType::kF8E5M2);  // hybrid: gradients E5M2
  // Step 1, scale 1: 0.3 in E4M3 lies in [0.25, 0.5) where the spacing is 2^-5, 0.3 / 2^-5 = 9.6
  // -> 10, so y = 0.3125.
  const Tensor x = scalar(0.3f), dy = scalar(0.5f);
  EXPECT_FLOAT_EQ(train_step(*lin, *s, x, dy).item({0, 0}), 0.3125f);
  // The recorded amaxes became the scales: 448 / 0.3, 448 / 1 (weight), 57344 / 0.5 (E5M2).
  EXPECT_FLOAT_EQ(s->scale(kInput), 448.0f / 0.3f);
  EXPECT_FLOAT_EQ(s->scale(kWeight), 448.0f);
  EXPECT_FLOAT_EQ(s->scale(kGrad), 57344.0f / 0.5f);
  // The history rolled: the staging row is clear, the newest entry is the amax.
  const std::vector<float> h = s->history(kInput);
  EXPECT_EQ(h, (std::vector<float>{0.0f, 0.0f, 0.0f, 0.3f}));
  // Step 2 casts 0.3 * (448 / 0.3) = 448 (up to f32 rounding: within one E4M3 step of 32
  // around 448, so it lands on 448 exactly) and y = 448 / scale = 0.3.
  std::unique_ptr<LayerCtx> ctx;
  EXPECT_NEAR(lin->forward(x, &ctx).out.item({0, 0}), 0.3, 1e-7);
}

TEST(Fp8Delayed, MaxOverTheWindowOrMostRecent) {
  for (auto algo : {te::AmaxAlgo::kMax, te::AmaxAlgo::kMostRecent}) {
    auto s = make_state(Fp8Recipe::kDelayed, 3, algo);
    auto lin = scalar_linear(fp8_ctx(s), 1.0f);
    const Tensor dy = scalar(1.0f);
    // Input amaxes 4, 1, 2, 0.5 over four steps; the window holds 3 of them (history_len 3:
    // the staging slot plus two earlier steps).
    std::vector<float> scales;
    for (float a : {4.0f, 1.0f, 2.0f, 0.5f}) {
      train_step(*lin, *s, scalar(a), dy);
      scales.push_back(s->scale(kInput));
    }
    if (algo == te::AmaxAlgo::kMax) {
      // max over {4}, {4, 1}, {4, 1, 2}, {1, 2, 0.5}: 4, 4, 4, 2.
      EXPECT_EQ(scales, (std::vector<float>{112.0f, 112.0f, 112.0f, 224.0f}));
    } else {
      EXPECT_EQ(scales, (std::vector<float>{112.0f, 448.0f, 224.0f, 896.0f}));
    }
  }
}

TEST(Fp8Delayed, MarginAndASlotNotCastKeepsItsScale) {
  auto s = make_state(Fp8Recipe::kDelayed, 2, te::AmaxAlgo::kMax, /*margin=*/3);
  auto a = scalar_linear(fp8_ctx(s), 1.0f), b = scalar_linear(fp8_ctx(s), 2.0f);
  const Tensor x = scalar(7.0f), dy = scalar(1.0f);
  train_step(*a, *s, x, dy);                                // step 1: only a runs
  EXPECT_EQ(s->scale(3 + kInput), 1.0f);                    // b's input slot was not cast: still 1
  EXPECT_FLOAT_EQ(s->scale(kInput), 448.0f / 8.0f / 7.0f);  // (448 / 7) / 2^3
  // Step 2: only b runs; a's slots record 0 and keep their scales, b's update.
  train_step(*b, *s, x, dy);
  EXPECT_FLOAT_EQ(s->scale(kInput), 8.0f);
  EXPECT_FLOAT_EQ(s->scale(3 + kWeight), 448.0f / 8.0f / 2.0f);
  EXPECT_EQ(s->history(kInput), (std::vector<float>{0.0f, 7.0f}));  // did not roll
}

TEST(Fp8Delayed, EvalForwardRecordsNothing) {
  auto s = make_state(Fp8Recipe::kDelayed);
  auto lin = scalar_linear(fp8_ctx(s), 1.0f);
  lin->forward(scalar(5.0f), nullptr);
  EXPECT_EQ(s->history(kInput)[0], 0.0f);
  EXPECT_EQ(s->history(kWeight)[0], 1.0f);  // the weight's one cast per step always records
}

TEST(Fp8Current, ScaleFromTheTensorItself) {
  auto s = make_state(Fp8Recipe::kCurrent);
  auto lin = scalar_linear(fp8_ctx(s), 1.0f);
  // 0.3 is cast at scale 448 / 0.3 from the first step on: y = 0.3 (E4M3 448 exactly).
  EXPECT_NEAR(train_step(*lin, *s, scalar(0.3f), scalar(0.5f)).item({0, 0}), 0.3, 1e-7);
  EXPECT_TRUE(s->state_tensors().empty());  // stateless: nothing to checkpoint
}

// FP8 against f32 for random data. E4M3 keeps 3 mantissa bits (relative rounding error up to
// 2^-4 per element), E5M2 2 bits (2^-3); in a dot product of independent errors they partly
// cancel, so a relative error (norm of the difference over the norm) near 2^-5..2^-4 for the
// forward and 2^-4..2^-3 for gradients is expected: the bounds below are 0.08 and 0.15.
template <class L, class C>
void expect_close_to_f32(const C& c, const Shape& xs, std::mt19937& rng) {
  auto s = make_state(Fp8Recipe::kDelayed);
  L ref(c, local_context(c)), q(c, fp8_ctx(s));
  test::randomize(ref, rng);
  for (auto& [name, p] : ref.named_parameters()) q.parameter(name)->value.copy_from(p->value);
  s->finalize(q);
  Tensor x = test::randn(xs, rng), dy;
  for (int step = 0; step < 3; ++step) {  // step 1 calibrates the scales (it runs at scale 1)
    ref.zero_grad();
    q.zero_grad();
    std::unique_ptr<LayerCtx> cr, cq;
    Tensor yr = ref.forward(x, &cr).out, yq = q.forward(x, &cq).out;
    dy = test::randn(yr.shape(), rng, 1e-3f);  // small, like real gradients
    Tensor dxr = ref.backward(dy, *cr), dxq = q.backward(dy, *cq);
    auto local = make_local_group("world");
    s->end_step(*local);
    if (step == 0) continue;
    EXPECT_LT(test::rel_err(yq, yr), 0.08) << "forward, step " << step + 1;
    EXPECT_LT(test::rel_err(dxq, dxr), 0.15) << "dgrad, step " << step + 1;
    for (auto& [name, p] : ref.named_parameters())
      EXPECT_LT(test::rel_err(q.parameter(name)->grad, p->grad), 0.15)
          << name << ", step " << step + 1;
  }
}

TEST(Fp8Layers, LinearNearF32) {
  std::mt19937 rng(3);
  te::LinearConfig c;
  c.in_features = 40;
  c.out_features = 24;
  expect_close_to_f32<te::Linear>(c, {3, 7, 40}, rng);
}

TEST(Fp8Layers, LayerNormLinearNearF32) {
  std::mt19937 rng(4);
  te::LayerNormLinearConfig c;
  c.in_features = 32;
  c.out_features = 48;
  c.normalization = "RMSNorm";
  expect_close_to_f32<te::LayerNormLinear>(c, {2, 9, 32}, rng);
}

TEST(Fp8Layers, LayerNormMLPNearF32) {
  std::mt19937 rng(5);
  te::LayerNormMLPConfig c;
  c.hidden_size = 32;
  c.ffn_hidden_size = 56;
  c.activation = "swiglu";
  c.normalization = "RMSNorm";
  c.bias = false;
  expect_close_to_f32<te::LayerNormMLP>(c, {2, 11, 32}, rng);
}

// With biases (fc1 and fc2; the qkv-like split LayerNormLinear): the biases in the FP8 GEMMs'
// epilogues and their gradients out of the grad-output casts, against f32 with the bounds above.
TEST(Fp8Layers, LayerNormMLPWithBiasesNearF32) {
  std::mt19937 rng(7);
  te::LayerNormMLPConfig c;
  c.hidden_size = 32;
  c.ffn_hidden_size = 56;
  c.activation = "swiglu";
  c.normalization = "RMSNorm";
  c.bias = true;
  expect_close_to_f32<te::LayerNormMLP>(c, {2, 11, 32}, rng);
}

TEST(Fp8Layers, SplitLayerNormLinearWithBiasesNearF32) {
  std::mt19937 rng(8);
  te::LayerNormLinearConfig c;
  c.in_features = 32;
  c.out_features = 48;
  c.normalization = "RMSNorm";
  c.bias = true;
  c.parameters_split = {{"query", 32}, {"key", 8}, {"value", 8}};
  expect_close_to_f32<te::LayerNormLinear>(c, {2, 9, 32}, rng);
}

TEST(Fp8Layers, ParametersSplitSharesOneWeightScale) {
  // The split weight is cast as one [out, in] tensor with one scale: the outputs equal the
  // unsplit layer's bit for bit.
  std::mt19937 rng(6);
  te::LinearConfig one, split;
  one.in_features = split.in_features = 12;
  one.out_features = split.out_features = 10;
  split.parameters_split = {{"query", 6}, {"key", 4}};
  auto s1 = make_state(Fp8Recipe::kDelayed), s2 = make_state(Fp8Recipe::kDelayed);
  te::Linear a(one, fp8_ctx(s1)), b(split, fp8_ctx(s2));
  test::randomize(a, rng);
  Tensor w = a.parameter("weight")->value, bias = a.parameter("bias")->value;
  b.parameter("query_weight")->value.copy_from(w.slice(0, 0, 6));
  b.parameter("key_weight")->value.copy_from(w.slice(0, 6, 4));
  b.parameter("query_bias")->value.copy_from(bias.slice(0, 0, 6));
  b.parameter("key_bias")->value.copy_from(bias.slice(0, 6, 4));
  Tensor x = test::randn({5, 12}, rng);
  for (int step = 0; step < 2; ++step) {
    Tensor dy = test::randn({5, 10}, rng);
    Tensor ya = train_step(a, *s1, x, dy), yb = train_step(b, *s2, x, dy);
    EXPECT_EQ(ya.to_f32_vector(), yb.to_f32_vector());
    // The weight gradients come from per-block GEMMs (m = 6, 4 instead of 10): equal up to the
    // summation order of the f32 GEMM.
    EXPECT_LT(test::rel_err(b.parameter("key_weight")->grad,
                            a.parameter("weight")->grad.slice(0, 6, 4).contiguous()),
              1e-6);
  }
}

TEST(Fp8State, ProfileTimesEveryRegionOfAStep) {
  setenv("GRAFT_FP8_PROFILE", "1", 1);
  auto s = make_state(Fp8Recipe::kDelayed);
  unsetenv("GRAFT_FP8_PROFILE");
  ASSERT_TRUE(s->profile().enabled());
  auto lin = scalar_linear(fp8_ctx(s), 1.0f);
  for (int step = 0; step < 2; ++step) train_step(*lin, *s, scalar(2.0f), scalar(1.0f));
  const auto ms = s->profile().per_step_ms();
  double sum = 0;
  for (const char* k : {"cast_input", "cast_weight", "cast_grad_output", "gemm_fprop", "gemm_dgrad",
                        "gemm_wgrad", "scale_update"}) {
    ASSERT_TRUE(ms.count(k)) << k;
    EXPECT_GE(ms.at(k), 0.0) << k;
    sum += ms.at(k);
  }
  EXPECT_NEAR(ms.at("total"), sum, 1e-9);
  EXPECT_FALSE(make_state(Fp8Recipe::kDelayed)->profile().enabled());  // off by default
}

TEST(Fp8State, CheckpointTensorsRoundTripExactly) {
  auto s = make_state(Fp8Recipe::kDelayed, 5);
  auto lin = scalar_linear(fp8_ctx(s), 0.75f);
  s->finalize(*lin);
  for (float a : {3.0f, 0.25f, 9.5f}) train_step(*lin, *s, scalar(a), scalar(a));
  std::map<std::string, Tensor> saved;
  for (auto& [name, t] : s->state_tensors()) saved[name] = t;
  ASSERT_EQ(saved.size(), 6u);
  EXPECT_EQ(saved.at("fp8_input.amax_history").shape(), (Shape{5}));
  auto fresh = make_state(Fp8Recipe::kDelayed, 5);
  auto lin2 = scalar_linear(fp8_ctx(fresh), 0.75f);
  fresh->finalize(*lin2);
  fresh->load_state(saved, "test");
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(fresh->history(i), s->history(i));
    EXPECT_EQ(fresh->scale(i), s->scale(i));
  }
  saved.erase("fp8_grad_output.scale");
  EXPECT_THROW(fresh->load_state(saved, "test"), InputError);
}

}  // namespace
}  // namespace graft
