// te.multihead_attention runs its attention through its `core_attention` child, built through the
// registry: an override of te.dot_product_attention is the module that is called (forward and
// backward), also inside te.transformer_layer, and what it returns is what the layer uses.
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/te/dot_product_attention.h"
#include "layers/te/multihead_attention.h"
#include "layers/te/transformer_layer.h"

namespace graft {
namespace {

int g_forward_calls = 0, g_backward_calls = 0;

// Counts its calls and delegates; `zero` returns zero attention instead.
class CountingAttention : public te::DotProductAttention {
 public:
  CountingAttention(const te::DotProductAttentionConfig& c, const BuildContext& ctx, bool zero)
      : DotProductAttention(c, ctx), zero_(zero) {}
  Tensor forward_self(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionInputs& in,
                      std::unique_ptr<LayerCtx>* save, const char* layer) override {
    ++g_forward_calls;
    Tensor out = DotProductAttention::forward_self(q, k, v, in, save, layer);
    return zero_ ? Tensor::zeros(out.shape(), out.dtype(), out.device()) : out;
  }
  Grads backward_self(const Tensor& dout, LayerCtx& ctx) override {
    ++g_backward_calls;
    return DotProductAttention::backward_self(dout, ctx);
  }

 private:
  bool zero_;
};

static Register<te::DotProductAttention, te::DotProductAttentionConfig> reg_counting(
    "test.counting_attention", "attention",
    [](const te::DotProductAttentionConfig& c, const BuildContext& ctx) {
      return std::make_unique<CountingAttention>(c, ctx, false);
    });
static Register<te::DotProductAttention, te::DotProductAttentionConfig> reg_zero(
    "test.zero_attention", "attention",
    [](const te::DotProductAttentionConfig& c, const BuildContext& ctx) {
      return std::make_unique<CountingAttention>(c, ctx, true);
    });

te::MultiheadAttentionConfig mha_config() {
  te::MultiheadAttentionConfig c;
  c.hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_gqa_groups = 2;
  c.rotary = true;
  c.bias = false;
  return c;
}

AttentionInputs inputs(int64_t B, int64_t S) {
  AttentionInputs in;
  in.batch = B;
  in.seq = S;
  std::vector<int64_t> pos;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) pos.push_back(s);
  in.positions = Tensor::from_vector(pos, {B, S});
  return in;
}

std::unique_ptr<te::MultiheadAttention> build_mha() {
  auto c = mha_config();
  auto m = Registry::global().create<te::MultiheadAttention, te::MultiheadAttentionConfig>(
      "te.multihead_attention", c, local_context(c));
  std::mt19937 rng(3);
  test::randomize(*m, rng);
  return m;
}

TEST(CoreAttention, OverrideOfDotProductAttentionIsCalledForwardAndBackward) {
  std::mt19937 rng(1);
  Tensor x = test::randn({2, 6, 16}, rng);
  Tensor dy = test::randn({2, 6, 16}, rng);
  auto plain = build_mha();
  std::unique_ptr<LayerCtx> ctx;
  Tensor want = plain->forward(x, inputs(2, 6), &ctx).out;
  Tensor want_dx = plain->backward(dy, *ctx);
  EXPECT_EQ(plain->child("core_attention")->type(), "te.dot_product_attention");

  g_forward_calls = g_backward_calls = 0;
  std::unique_ptr<te::MultiheadAttention> over;
  {
    OverrideScope s({{"te.dot_product_attention", "test.counting_attention"}});
    over = build_mha();
  }
  EXPECT_NE(dynamic_cast<CountingAttention*>(over->child("core_attention")), nullptr);
  std::unique_ptr<LayerCtx> octx;
  Tensor got = over->forward(x, inputs(2, 6), &octx).out;
  Tensor got_dx = over->backward(dy, *octx);
  EXPECT_EQ(g_forward_calls, 1);
  EXPECT_EQ(g_backward_calls, 1);
  EXPECT_EQ(got.to_f32_vector(), want.to_f32_vector());  // the same math, delegated
  EXPECT_EQ(got_dx.to_f32_vector(), want_dx.to_f32_vector());
}

TEST(CoreAttention, TheOverridesOutputIsWhatTheLayerUses) {
  std::mt19937 rng(2);
  Tensor x = test::randn({1, 5, 16}, rng);
  std::unique_ptr<te::MultiheadAttention> m;
  {
    OverrideScope s({{"te.dot_product_attention", "test.zero_attention"}});
    m = build_mha();
  }
  // Zero attention into a projection without bias: the layer's output is zero.
  for (float v : m->forward(x, inputs(1, 5), nullptr).out.to_f32_vector()) EXPECT_EQ(v, 0.0f);
}

TEST(CoreAttention, TransformerLayerReachesTheOverride) {
  DecoderConfig c;
  c.hidden_size = 16;
  c.ffn_hidden_size = 24;
  c.num_attention_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  g_forward_calls = g_backward_calls = 0;
  std::unique_ptr<DecoderLayer> layer;
  {
    OverrideScope s({{"te.dot_product_attention", "test.counting_attention"}});
    layer = Registry::global().create<DecoderLayer, DecoderConfig>("te.transformer_layer", c,
                                                                   local_context(c));
  }
  std::mt19937 rng(4);
  test::randomize(*layer, rng);
  std::unique_ptr<LayerCtx> ctx;
  Tensor y = layer->forward(test::randn({1, 4, 16}, rng), inputs(1, 4), &ctx);
  layer->backward(test::randn({1, 4, 16}, rng), *ctx);
  EXPECT_EQ(g_forward_calls, 1);
  EXPECT_EQ(g_backward_calls, 1);
}

}  // namespace
}  // namespace graft
