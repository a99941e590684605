// Reference layers: backward against central finite differences (f32 layers, sums in double).
// Tolerance: with eps = 1e-2 on O(1) inputs the f32 rounding of the loss (~1e-6 relative over a
// few hundred terms) contributes ~1e-4 and the O(eps²) truncation ~1e-4 (observed max ~1e-3), so
// 5e-3 on the sampled relative error only fails on a wrong gradient, not on noise. (reglu is left
// to the TE comparison: finite differences across its kink are not a gradient test.)
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/reference/decoder_layer.h"
#include "layers/reference/embedding.h"
#include "layers/reference/linear.h"
#include "layers/reference/norm.h"

namespace graft {
namespace {

constexpr double kTol = 5e-3;

template <class Fwd>
void check_module_grads(Module& m, Tensor& x, const Tensor& dx, Fwd loss, std::mt19937& rng) {
  for (auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p->grad.defined()) << name;
    EXPECT_LT(test::fd_rel_err(p->value, p->grad, loss, 24, rng), kTol) << name;
  }
  if (x.defined()) {
    EXPECT_LT(test::fd_rel_err(x, dx, loss, 24, rng), kTol) << "input";
  }
}

TEST(ReferenceGrad, Linear) {
  std::mt19937 rng(1);
  for (bool bias : {false, true}) {
    auto lin = Registry::global().create<Linear, LinearConfig>(
        "reference.linear", LinearConfig{7, 5, bias}, BuildContext{});
    test::randomize(*lin, rng);
    Tensor x = test::randn({3, 2, 7}, rng), r = test::randn({3, 2, 5}, rng);
    std::unique_ptr<LayerCtx> ctx;
    Tensor y = lin->forward(x, &ctx);
    ASSERT_EQ(y.shape(), (Shape{3, 2, 5}));
    Tensor dx = lin->backward(r, *ctx);
    check_module_grads(
        *lin, x, dx, [&] { return test::dot(lin->forward(x, nullptr), r); }, rng);
  }
}

TEST(ReferenceGrad, NormsAllForms) {
  std::mt19937 rng(2);
  for (NormType t : {NormType::kRMSNorm, NormType::kLayerNorm}) {
    for (bool zc : {false, true}) {
      NormConfig c{9, t, 1e-5, zc};
      auto n =
          Registry::global().create<Norm, NormConfig>("reference.rmsnorm", c, local_context(c));
      test::randomize(*n, rng);
      Tensor x = test::randn({4, 9}, rng), r = test::randn({4, 9}, rng);
      std::unique_ptr<LayerCtx> ctx;
      n->forward(x, &ctx);
      Tensor dx = n->backward(r, *ctx);
      check_module_grads(
          *n, x, dx, [&] { return test::dot(n->forward(x, nullptr), r); }, rng);
    }
  }
}

TEST(ReferenceGrad, EmbeddingAccumulatesScaledRows) {
  std::mt19937 rng(3);
  auto e = Registry::global().create<Embedding, EmbeddingConfig>(
      "reference.embedding", EmbeddingConfig{11, 6}, BuildContext{});
  test::randomize(*e, rng);
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 4, 4, 10, 0, 1}, {2, 3});
  Tensor r = test::randn({2, 3, 6}, rng);
  const double scale = 2.5;
  Tensor y = e->forward(ids, scale);
  EXPECT_NEAR(y.item({0, 1, 2}), scale * e->parameter("weight")->value.item({4, 2}), 1e-5);
  e->backward(r, ids, scale);
  Tensor none;
  check_module_grads(
      *e, none, none, [&] { return test::dot(e->forward(ids, scale), r); }, rng);
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{11}, {1, 1});
  EXPECT_THROW(e->forward(bad, 1.0), InputError);
}

struct DecoderCase {
  const char* name;
  int64_t heads, kv_heads, head_dim;
  bool bias, qk_norm, zero_centered;
  const char* act;
  int64_t window;
  bool padding;
};

class ReferenceDecoderGrad : public ::testing::TestWithParam<DecoderCase> {};

TEST_P(ReferenceDecoderGrad, MatchesFiniteDifferences) {
  const DecoderCase& k = GetParam();
  std::mt19937 rng(4);
  DecoderConfig c;
  c.hidden_size = 12;
  c.ffn_hidden_size = 10;
  c.num_attention_heads = k.heads;
  c.num_kv_heads = k.kv_heads;
  c.head_dim = k.head_dim;
  c.attention_bias = k.bias;
  c.attention_out_bias = k.bias;
  c.mlp_bias = k.bias;
  c.qk_norm = k.qk_norm;
  c.zero_centered_gamma = k.zero_centered;
  c.activation = k.act;
  c.sliding_window = k.window;
  auto layer = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                      local_context(c));
  test::randomize(*layer, rng, 0.4f);
  const int64_t B = 2, S = 5;
  AttentionInputs in;
  in.batch = B;
  in.seq = S;
  std::vector<int64_t> pos;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) pos.push_back(s + b);
  in.positions = Tensor::from_vector(pos, {B, S});
  if (k.padding)
    in.key_padding_mask =
        Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {B, S});
  Tensor x = test::randn({B, S, 12}, rng), r = test::randn({B, S, 12}, rng);
  std::unique_ptr<LayerCtx> ctx;
  layer->forward(x, in, &ctx);
  Tensor dx = layer->backward(r, *ctx);
  check_module_grads(
      *layer, x, dx, [&] { return test::dot(layer->forward(x, in, nullptr), r); }, rng);
}

INSTANTIATE_TEST_SUITE_P(
    Configs, ReferenceDecoderGrad,
    ::testing::Values(
        DecoderCase{"gqa", 4, 2, 4, false, false, false, "swiglu", 0, false},
        DecoderCase{"mqa_bias_qknorm", 2, 1, 6, true, true, false, "swiglu", 0, false},
        DecoderCase{"mha_gemma", 3, 3, 4, false, false, true, "geglu", 0, false},
        DecoderCase{"window_padding", 4, 2, 4, false, false, false, "swiglu", 2, true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace graft
