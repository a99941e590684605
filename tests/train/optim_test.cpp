// Schedules at chosen steps, AdamW parameter groups, clipping inputs, bf16 emulation.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"

namespace graft {
namespace {

LrSchedule make(ScheduleType t, int64_t warmup, int64_t total, int64_t decay = 0) {
  LrSchedule s;
  s.config.type = t;
  s.config.warmup_steps = warmup;
  s.config.min_lr_ratio = 0.1;
  s.config.decay_steps = decay;
  s.peak_lr = 2.0;
  s.total_steps = total;
  return s;
}

// Values worked out by hand from the formulas in schedule.h (peak 2, floor 0.2, warmup 10 of 110).
TEST(Schedule, WarmupIsLinearFromPeakOverW) {
  for (auto t : {ScheduleType::kConstant, ScheduleType::kCosine, ScheduleType::kLinear,
                 ScheduleType::kWSD}) {
    LrSchedule s = make(t, 10, 110, 20);
    EXPECT_DOUBLE_EQ(s.lr_at(0), 0.2);
    EXPECT_DOUBLE_EQ(s.lr_at(4), 1.0);
    EXPECT_DOUBLE_EQ(s.lr_at(9), 2.0);
  }
}

TEST(Schedule, Constant) {
  LrSchedule s = make(ScheduleType::kConstant, 10, 110);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 2.0);
  EXPECT_DOUBLE_EQ(s.lr_at(109), 2.0);
  EXPECT_DOUBLE_EQ(s.lr_at(500), 2.0);
}

TEST(Schedule, Cosine) {
  LrSchedule s = make(ScheduleType::kCosine, 10, 110);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 2.0);                                       // p = 0
  EXPECT_NEAR(s.lr_at(35), 0.2 + 1.8 * 0.5 * (1 + std::sqrt(0.5)), 1e-12);  // p = 1/4
  EXPECT_NEAR(s.lr_at(60), 1.1, 1e-12);                                     // p = 1/2
  EXPECT_NEAR(s.lr_at(110), 0.2, 1e-12);                                    // p = 1
  EXPECT_NEAR(s.lr_at(1000), 0.2, 1e-12);
}

TEST(Schedule, Linear) {
  LrSchedule s = make(ScheduleType::kLinear, 10, 110);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 2.0);
  EXPECT_NEAR(s.lr_at(35), 2.0 - 1.8 * 0.25, 1e-12);
  EXPECT_NEAR(s.lr_at(60), 1.1, 1e-12);
  EXPECT_NEAR(s.lr_at(110), 0.2, 1e-12);
}

TEST(Schedule, WarmupStableDecay) {
  LrSchedule s = make(ScheduleType::kWSD, 10, 110, 20);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 2.0);
  EXPECT_DOUBLE_EQ(s.lr_at(89), 2.0);  // stable until T - D = 90
  EXPECT_DOUBLE_EQ(s.lr_at(90), 2.0);
  EXPECT_NEAR(s.lr_at(95), 2.0 - 1.8 * 0.25, 1e-12);
  EXPECT_NEAR(s.lr_at(100), 1.1, 1e-12);
  EXPECT_NEAR(s.lr_at(110), 0.2, 1e-12);
}

TEST(Schedule, NoWarmupStartsAtPeak) {
  LrSchedule s = make(ScheduleType::kCosine, 0, 100);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 2.0);
}

TEST(AdamW, ClassifiesParameterKinds) {
  Tensor m = Tensor::zeros({4, 4}, DType::kF32), v = Tensor::zeros({4}, DType::kF32);
  EXPECT_EQ(classify_parameter("embed_tokens.weight", m), ParamKind::kEmbedding);
  EXPECT_EQ(classify_parameter("layers.0.input_layernorm.weight", v), ParamKind::kNorm);
  EXPECT_EQ(classify_parameter("layers.0.self_attention.layernorm_qkv.layer_norm_weight", v),
            ParamKind::kNorm);
  EXPECT_EQ(classify_parameter("layers.0.self_attn.q_proj.bias", v), ParamKind::kBias);
  EXPECT_EQ(classify_parameter("layers.0.mlp.fc1.weight", m), ParamKind::kMatrix);
  EXPECT_EQ(classify_parameter("lm_head.weight", m), ParamKind::kMatrix);
  EXPECT_EQ(classify_parameter("layers.0.scale", v), ParamKind::kNorm);
  // TE fused linears carry "layernorm" in their module name but are matrices (they decay).
  EXPECT_EQ(classify_parameter("layers.0.self_attention.layernorm_qkv.weight", m),
            ParamKind::kMatrix);
  EXPECT_EQ(classify_parameter("layers.0.layernorm_mlp.fc1_weight", m), ParamKind::kMatrix);
  EXPECT_EQ(classify_parameter("layers.0.layernorm_mlp.fc2_weight", m), ParamKind::kMatrix);
  EXPECT_EQ(classify_parameter("layers.0.layernorm_mlp.fc1_bias", v), ParamKind::kBias);
  EXPECT_EQ(classify_parameter("layers.0.layernorm_mlp.layer_norm_bias", v), ParamKind::kNorm);
}

struct Params {
  Parameter w, norm, bias, emb;
  Params() {
    w.value = Tensor::full({2, 3}, 1.0f);
    norm.value = Tensor::full({3}, 1.0f);
    bias.value = Tensor::full({3}, 1.0f);
    emb.value = Tensor::full({5, 3}, 1.0f);
    for (Parameter* p : {&w, &norm, &bias, &emb})
      p->grad = Tensor::zeros(p->value.shape(), DType::kF32);
  }
  std::vector<std::pair<std::string, Parameter*>> list() {
    return {{"w.weight", &w}, {"n.norm.weight", &norm}, {"l.bias", &bias}, {"embed.weight", &emb}};
  }
};

// With zero gradients AdamW's update is only the decoupled decay p *= (1 - lr wd).
TEST(AdamW, WeightDecayOnlyOnConfiguredGroups) {
  OptimConfig c;
  c.weight_decay = 0.5;
  Params p;
  AdamW opt(p.list(), c);
  opt.step(0.1, 1.0);
  EXPECT_FLOAT_EQ(p.w.value.to_f32_vector()[0], 0.95f);
  EXPECT_FLOAT_EQ(p.norm.value.to_f32_vector()[0], 1.0f);
  EXPECT_FLOAT_EQ(p.bias.value.to_f32_vector()[0], 1.0f);
  EXPECT_FLOAT_EQ(p.emb.value.to_f32_vector()[0], 1.0f);

  c.decay_embeddings = c.decay_norms = true;
  Params q;
  AdamW opt2(q.list(), c);
  opt2.step(0.1, 1.0);
  EXPECT_FLOAT_EQ(q.norm.value.to_f32_vector()[0], 0.95f);
  EXPECT_FLOAT_EQ(q.emb.value.to_f32_vector()[0], 0.95f);
  EXPECT_FLOAT_EQ(q.bias.value.to_f32_vector()[0], 1.0f);
}

TEST(AdamW, GradNormAndScaledFirstStep) {
  OptimConfig c;
  c.weight_decay = 0;
  Params p;
  p.w.grad.fill_(2.0f);      // 6 elements of 2 -> sum of squares 24
  p.bias.grad.fill_(-1.0f);  // 3 more -> 27
  AdamW opt(p.list(), c);
  EXPECT_NEAR(opt.grad_norm(), std::sqrt(27.0), 1e-6);  // the norm is returned in f32
  // First AdamW step moves each element with a non-zero gradient by lr·sign(g) (up to eps),
  // whatever the scale: clipping changes the moments, not the first step's direction.
  opt.step(0.01, 0.5);
  EXPECT_NEAR(p.w.value.to_f32_vector()[0], 1.0 - 0.01, 1e-6);
  EXPECT_NEAR(p.bias.value.to_f32_vector()[0], 1.0 + 0.01, 1e-6);
  EXPECT_FLOAT_EQ(p.norm.value.to_f32_vector()[0], 1.0f);
  EXPECT_EQ(opt.steps_taken(), 1);
}

TEST(AdamW, StateRoundTripNamesEveryTensor) {
  OptimConfig c;
  Params p;
  p.w.grad.fill_(0.3f);
  AdamW opt(p.list(), c);
  opt.step(0.01, 1.0);
  auto state = opt.state_tensors();
  ASSERT_EQ(state.size(), 8u);
  EXPECT_EQ(state[0].first, "m.w.weight");
  EXPECT_EQ(state[1].first, "v.w.weight");
  EXPECT_NEAR(state[0].second.to_f32_vector()[0], 0.1 * 0.3, 1e-7);
}

TEST(AdamW, EmulatedBf16KeepsForwardWeightsOnTheBf16Grid) {
  OptimConfig c;
  c.weight_decay = 0;
  Params p;
  p.w.value.fill_(1.001f);  // not a bf16 value
  p.w.grad.fill_(0.123f);
  AdamW opt(p.list(), c, /*emulate_bf16=*/true);
  opt.sync_weights();
  for (float x : p.w.value.to_f32_vector()) EXPECT_EQ(x, bf16_to_f32(f32_to_bf16(x)));
  EXPECT_EQ(p.w.value.to_f32_vector()[0], 1.0f);
  opt.step(1e-4, 1.0);
  // The master weight moved by 1e-4 (below bf16 resolution at 1.0); the forward weight did not.
  auto state = opt.state_tensors();
  bool found = false;
  for (auto& [name, t] : state) {
    if (name == "master.w.weight") {
      found = true;
      EXPECT_NEAR(t.to_f32_vector()[0], 1.001f - 1e-4f, 1e-6);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(p.w.value.to_f32_vector()[0], 1.0f);
}

}  // namespace
}  // namespace graft
