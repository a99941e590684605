// The norm fused with the FP8 input cast in te.layernorm_linear and te.layernorm_mlp (CPU,
// emulated). On the CPU the fused kernel's reference is the unfused path itself (the norm in f64
// rounded to f32, then the cast), so the fused layer must give the unfused layer's results bit
// for bit: outputs, input gradients, every parameter gradient and every FP8 scale and amax
// history, over several steps (so the later steps run at scales from the earlier amaxes), for
// RMSNorm and LayerNorm (with zero_centered_gamma), delayed and current scaling. The unfused path
// is what return_layernorm_output = true takes (the normalised rows are then needed in high
// precision); the extra ln_out does not touch the other results.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "layer_test_util.h"
#include "layers/te/fp8_state.h"
#include "layers/te/layernorm_linear.h"
#include "layers/te/layernorm_mlp.h"
#include "parallel/process_group.h"

namespace graft {
namespace {

using te::Fp8Recipe;

std::shared_ptr<te::Fp8State> make_state(Fp8Recipe r) {
  te::Fp8Config c;
  c.recipe = r;
  c.amax_history_len = 3;
  return std::make_shared<te::Fp8State>(c, Device::cpu());
}

template <class L, class C>
void expect_fused_equals_unfused(C c, const Shape& xs, int64_t out, Fp8Recipe recipe) {
  SCOPED_TRACE(recipe == Fp8Recipe::kDelayed ? "delayed" : "current");
  std::mt19937 rng(11);
  auto sf = make_state(recipe), su = make_state(recipe);
  BuildContext cf, cu;
  cf.fp8 = sf;
  cu.fp8 = su;
  c.return_layernorm_output = false;
  L fused(c, cf);
  c.return_layernorm_output = true;
  L unfused(c, cu);
  test::randomize(fused, rng);  // the norm weights too (1 +- 0.2, biases +- 0.3)
  for (auto& [name, p] : fused.named_parameters())
    unfused.parameter(name)->value.copy_from(p->value);
  sf->finalize(fused);
  su->finalize(unfused);
  auto local = make_local_group("world");
  for (int step = 0; step < 4; ++step) {
    SCOPED_TRACE(str("step ", step + 1));
    fused.zero_grad();
    unfused.zero_grad();
    Tensor x = test::randn(xs, rng, 2.0f);
    Shape ys = xs;
    ys.back() = out;
    Tensor dy = test::randn(ys, rng, 1e-3f);
    std::unique_ptr<LayerCtx> kf, ku;
    te::TEOutput of = fused.forward(x, &kf), ou = unfused.forward(x, &ku);
    ASSERT_FALSE(of.ln_out.defined());
    ASSERT_TRUE(ou.ln_out.defined());
    EXPECT_EQ(of.out.to_f32_vector(), ou.out.to_f32_vector());
    EXPECT_EQ(fused.backward(dy, *kf).to_f32_vector(), unfused.backward(dy, *ku).to_f32_vector());
    for (auto& [name, p] : fused.named_parameters())
      EXPECT_EQ(p->grad.to_f32_vector(), unfused.parameter(name)->grad.to_f32_vector()) << name;
    sf->end_step(*local);
    su->end_step(*local);
    ASSERT_EQ(sf->num_slots(), su->num_slots());
    for (int64_t i = 0; i < sf->num_slots(); ++i) {
      EXPECT_EQ(sf->scale(i), su->scale(i)) << sf->slot_name(i);
      EXPECT_EQ(sf->history(i), su->history(i)) << sf->slot_name(i);
    }
  }
  // The input scale moved away from 1 (the fused cast recorded the normalised rows' amax).
  if (recipe == Fp8Recipe::kDelayed) EXPECT_NE(sf->scale(0), 1.0f) << sf->slot_name(0);
}

TEST(Fp8NormFused, LayerNormLinearEqualsTheUnfusedPath) {
  for (Fp8Recipe r : {Fp8Recipe::kDelayed, Fp8Recipe::kCurrent}) {
    te::LayerNormLinearConfig c;
    c.in_features = 36;
    c.out_features = 20;
    c.normalization = "RMSNorm";
    expect_fused_equals_unfused<te::LayerNormLinear>(c, {2, 7, 36}, 20, r);
    c.normalization = "LayerNorm";
    c.zero_centered_gamma = true;
    c.return_bias = true;
    expect_fused_equals_unfused<te::LayerNormLinear>(c, {13, 36}, 20, r);
  }
}

TEST(Fp8NormFused, LayerNormMLPEqualsTheUnfusedPath) {
  for (Fp8Recipe r : {Fp8Recipe::kDelayed, Fp8Recipe::kCurrent}) {
    te::LayerNormMLPConfig c;
    c.hidden_size = 24;
    c.ffn_hidden_size = 40;
    c.activation = "swiglu";
    c.normalization = "RMSNorm";
    c.bias = false;
    expect_fused_equals_unfused<te::LayerNormMLP>(c, {3, 5, 24}, 24, r);
    c.activation = "gelu";
    c.normalization = "LayerNorm";
    c.bias = true;
    expect_fused_equals_unfused<te::LayerNormMLP>(c, {9, 24}, 24, r);
  }
}

// te.transformer_layer hands layernorm_mlp the attention branch and its residual: with FP8 the
// residual add then runs alone and the fused norm + cast reads the sum, without FP8 (or with
// ln_out returned) the norm kernel adds it. Both must give the same sum, output, gradients (dx
// with the residual branch's gradient added in the norm backward) and scales.
TEST(Fp8NormFused, LayerNormMLPWithAResidualEqualsTheUnfusedPath) {
  for (Fp8Recipe r : {Fp8Recipe::kDelayed, Fp8Recipe::kCurrent}) {
    SCOPED_TRACE(r == Fp8Recipe::kDelayed ? "delayed" : "current");
    te::LayerNormMLPConfig c;
    c.hidden_size = 24;
    c.ffn_hidden_size = 40;
    c.activation = "swiglu";
    c.normalization = "RMSNorm";
    c.bias = false;
    std::mt19937 rng(5);
    auto sf = make_state(r), su = make_state(r);
    BuildContext cf, cu;
    cf.fp8 = sf;
    cu.fp8 = su;
    te::LayerNormMLP fused(c, cf);
    c.return_layernorm_output = true;
    te::LayerNormMLP unfused(c, cu);
    test::randomize(fused, rng);
    for (auto& [name, p] : fused.named_parameters())
      unfused.parameter(name)->value.copy_from(p->value);
    sf->finalize(fused);
    su->finalize(unfused);
    auto local = make_local_group("world");
    for (int step = 0; step < 3; ++step) {
      SCOPED_TRACE(str("step ", step + 1));
      fused.zero_grad();
      unfused.zero_grad();
      Tensor a = test::randn({3, 5, 24}, rng, 2.0f), res = test::randn({3, 5, 24}, rng, 2.0f);
      Tensor dy = test::randn({3, 5, 24}, rng, 1e-3f), dres = test::randn({3, 5, 24}, rng, 1e-3f);
      std::unique_ptr<LayerCtx> kf, ku;
      te::TEOutput of = fused.forward(a, &kf, res), ou = unfused.forward(a, &ku, res);
      ASSERT_TRUE(of.sum.defined());
      EXPECT_EQ(of.sum.to_f32_vector(), ou.sum.to_f32_vector());
      EXPECT_EQ(of.out.to_f32_vector(), ou.out.to_f32_vector());
      EXPECT_EQ(fused.backward(dy, *kf, Tensor(), dres).to_f32_vector(),
                unfused.backward(dy, *ku, Tensor(), dres).to_f32_vector());
      for (auto& [name, p] : fused.named_parameters())
        EXPECT_EQ(p->grad.to_f32_vector(), unfused.parameter(name)->grad.to_f32_vector()) << name;
      sf->end_step(*local);
      su->end_step(*local);
      for (int64_t i = 0; i < sf->num_slots(); ++i)
        EXPECT_EQ(sf->scale(i), su->scale(i)) << sf->slot_name(i);
    }
  }
}

// The fused path is the one taken: the profile sees the fused norm cast and no separate input
// cast for fc1 (the one remaining "cast_input" region of LayerNormMLP would be fc2's, which is
// the activation cast instead).
TEST(Fp8NormFused, TheFusedCastReplacesTheInputCast) {
  setenv("GRAFT_FP8_PROFILE", "1", 1);
  auto s = make_state(Fp8Recipe::kDelayed);
  unsetenv("GRAFT_FP8_PROFILE");
  BuildContext ctx;
  ctx.fp8 = s;
  te::LayerNormLinearConfig c;
  c.in_features = 16;
  c.out_features = 8;
  te::LayerNormLinear layer(c, ctx);
  s->finalize(layer);
  std::mt19937 rng(2);
  std::unique_ptr<LayerCtx> k;
  Tensor y = layer.forward(test::randn({4, 16}, rng), &k).out;
  layer.backward(test::randn({4, 8}, rng), *k);
  auto local = make_local_group("world");
  s->end_step(*local);
  const auto ms = s->profile().per_step_ms();
  EXPECT_TRUE(ms.count("cast_norm_fused"));
  EXPECT_FALSE(ms.count("cast_input"));
}

}  // namespace
}  // namespace graft
