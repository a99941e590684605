// te.transformer_layer options beyond the HF mapping (finite-difference gradients for each
// variant), fuse_qkv_params = false against the fused layout, rejected options, and the KV
// cache: a prefill plus token-by-token decode equals one full forward for both decoder layers.
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/te/dot_product_attention.h"
#include "layers/te/layernorm_linear.h"
#include "layers/te/layernorm_mlp.h"
#include "layers/te/linear.h"
#include "layers/te/multihead_attention.h"
#include "layers/te/transformer_layer.h"

namespace graft {
namespace {

te::TransformerLayerConfig base() {
  te::TransformerLayerConfig c;
  c.hidden_size = 8;
  c.ffn_hidden_size = 10;
  c.num_attention_heads = 4;
  c.num_gqa_groups = 2;
  c.kv_channels = 4;
  c.rotary = true;
  c.normalization = "RMSNorm";
  c.activation = "swiglu";
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

std::unique_ptr<te::TransformerLayer> make(const te::TransformerLayerConfig& c) {
  return Registry::global().create<te::TransformerLayer, te::TransformerLayerConfig>(
      "te.transformer_layer", c, local_context(c));
}

struct Variant {
  const char* name;
  std::function<void(te::TransformerLayerConfig&)> apply;
};

class TeTransformerVariant : public ::testing::TestWithParam<Variant> {};

TEST_P(TeTransformerVariant, GradientsMatchFiniteDifferences) {
  te::TransformerLayerConfig c = base();
  GetParam().apply(c);
  auto layer = make(c);
  std::mt19937 rng(21);
  test::randomize(*layer, rng, 0.4f);
  AttentionInputs in = inputs(2, 4);
  Tensor x = test::randn({2, 4, 8}, rng), r = test::randn({2, 4, 8}, rng);
  std::unique_ptr<LayerCtx> ctx;
  layer->forward(x, in, &ctx);
  Tensor dx = layer->backward(r, *ctx);
  auto loss = [&] { return test::dot(layer->forward(x, in, nullptr), r); };
  for (auto& [name, p] : layer->named_parameters()) {
    ASSERT_TRUE(p->grad.defined()) << name;
    EXPECT_LT(test::fd_rel_err(p->value, p->grad, loss, 12, rng), 5e-3) << name;
  }
  EXPECT_LT(test::fd_rel_err(x, dx, loss, 16, rng), 5e-3) << "input";
}

INSTANTIATE_TEST_SUITE_P(
    Options, TeTransformerVariant,
    ::testing::Values(Variant{"defaults_layernorm_gelu_bias",
                              [](auto& c) {
                                c.normalization = "LayerNorm";
                                c.activation = "gelu";
                                c.rotary = false;
                              }},
                      Variant{"post_ln_residual",
                              [](auto& c) { c.apply_residual_connection_post_layernorm = true; }},
                      Variant{"output_layernorm", [](auto& c) { c.output_layernorm = true; }},
                      Variant{"output_layernorm_post_ln",
                              [](auto& c) {
                                c.output_layernorm = true;
                                c.apply_residual_connection_post_layernorm = true;
                              }},
                      Variant{"parallel_attention_mlp",
                              [](auto& c) { c.parallel_attention_mlp = true; }},
                      Variant{"qk_norm_after_rope_window",
                              [](auto& c) {
                                c.qk_norm_type = "RMSNorm";
                                c.window_size = {2, 0};
                              }},
                      Variant{"split_qkv_mqa_squared_relu",
                              [](auto& c) {
                                c.fuse_qkv_params = false;
                                c.num_gqa_groups = 1;
                                c.activation = "squared_relu";
                              }},
                      Variant{"no_mask_layernorm_qk",
                              [](auto& c) {
                                c.self_attn_mask_type = "no_mask";
                                c.qk_norm_type = "LayerNorm";
                                c.qk_norm_before_rope =
                                    true;  // after RoPE a k_norm bias adds a per-query
                                           // constant to the scores: zero gradient
                                c.zero_centered_gamma = true;
                              }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(TeTransformerLayer, SplitQkvParamsEqualFusedThroughWeightMaps) {
  te::TransformerLayerConfig c = base();
  c.bias = true;
  auto fused = make(c);
  c.fuse_qkv_params = false;
  auto split = make(c);
  auto names = split->named_parameters();
  bool has_query = false;
  for (auto& [n, p] : names) has_query |= n == "self_attention.layernorm_qkv.query_weight";
  EXPECT_TRUE(has_query);
  std::mt19937 rng(22);
  test::randomize(*fused, rng);
  test::import_hf(*split, split->hf_weight_map(), test::export_hf(*fused, fused->hf_weight_map()));
  AttentionInputs in = inputs(1, 5);
  Tensor x = test::randn({1, 5, 8}, rng);
  EXPECT_LT(test::rel_err(split->forward(x, in, nullptr), fused->forward(x, in, nullptr)), 1e-6);
}

template <class F>
void expect_rejected(F build, const std::string& option) {
  try {
    build();
    ADD_FAILURE() << option << " was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
  }
}

TEST(TeRejectedOptions, EachNamesTheOption) {
  auto tl = [](std::function<void(te::TransformerLayerConfig&)> f) {
    return [f] {
      te::TransformerLayerConfig c = base();
      f(c);
      make(c);
    };
  };
  expect_rejected(tl([](auto& c) { c.hidden_dropout = 0.1; }), "hidden_dropout");
  expect_rejected(tl([](auto& c) { c.attention_dropout = 0.1; }), "attention_dropout");
  expect_rejected(tl([](auto& c) { c.self_attn_mask_type = "arbitrary"; }), "self_attn_mask_type");
  expect_rejected(tl([](auto& c) { c.self_attn_mask_type = "bidirectional"; }), "attn_mask_type");
  expect_rejected(tl([](auto& c) { c.layer_type = "decoder"; }), "layer_type");
  expect_rejected(tl([](auto& c) { c.normalization = "BatchNorm"; }), "normalization");
  expect_rejected(tl([](auto& c) { c.activation = "tanh"; }), "activation");
  expect_rejected(tl([](auto& c) { c.window_size = {2, 3}; }), "window_size");
  expect_rejected(tl([](auto& c) { c.sequence_parallel = true; }), "sequence_parallel");
  expect_rejected(tl([](auto& c) { c.tp_size = 2; }), "tp_size");
  expect_rejected(tl([](auto& c) { c.qk_norm_type = "L2Normalization"; }), "qk_norm_type");
  expect_rejected(tl([](auto& c) { c.params_dtype = DType::kBF16; }), "params_dtype");
  expect_rejected(tl([](auto& c) { c.attn_input_format = "sbhd"; }), "attn_input_format");
  expect_rejected(tl([](auto& c) {
                    c.parallel_attention_mlp = true;
                    c.apply_residual_connection_post_layernorm = true;
                  }),
                  "parallel_attention_mlp");
  expect_rejected(tl([](auto& c) { c.num_gqa_groups = 3; }), "num_gqa_groups");
  expect_rejected(tl([](auto& c) {
                    c.fp32_residual_connection = true;
                    c.apply_residual_connection_post_layernorm = true;
                  }),
                  "fp32_residual_connection");
  expect_rejected(tl([](auto& c) {
                    c.fp32_residual_connection = true;
                    c.output_layernorm = true;
                  }),
                  "fp32_residual_connection");
  EXPECT_NO_THROW(make(base())->hf_weight_map());
  expect_rejected(
      [] {
        te::TransformerLayerConfig c = base();
        c.output_layernorm = true;
        make(c)->hf_weight_map();
      },
      "output_layernorm");
  auto dpa = [](std::function<void(te::DotProductAttentionConfig&)> f) {
    return [f] {
      te::DotProductAttentionConfig c;
      c.num_attention_heads = 2;
      c.kv_channels = 4;
      f(c);
      Registry::global().create<te::DotProductAttention, te::DotProductAttentionConfig>(
          "te.dot_product_attention", c, local_context(c));
    };
  };
  expect_rejected(dpa([](auto& c) { c.qkv_format = "bhsd"; }), "qkv_format");
  expect_rejected(dpa([](auto& c) {
                    c.qkv_format = "thd";
                    c.attn_mask_type = "arbitrary";
                  }),
                  "attn_mask_type");
  expect_rejected(dpa([](auto& c) { c.attention_dropout = 0.5; }), "attention_dropout");
  expect_rejected(dpa([](auto& c) { c.attn_mask_type = "causal_bottom_right"; }), "attn_mask_type");
  expect_rejected(
      [] {
        te::LinearConfig c;
        c.in_features = c.out_features = 4;
        c.parallel_mode = "diagonal";  // column / row are valid (no-ops without a tp group)
        Registry::global().create<te::Linear, te::LinearConfig>("te.linear", c, local_context(c));
      },
      "parallel_mode");
  expect_rejected(
      [] {
        te::LinearConfig c;
        c.in_features = c.out_features = 4;
        c.parameters_split = {{"a", 1}, {"b", 2}};
        Registry::global().create<te::Linear, te::LinearConfig>("te.linear", c, local_context(c));
      },
      "parameters_split");
  expect_rejected(
      [] {
        te::LayerNormLinearConfig c;
        c.in_features = c.out_features = 4;
        c.return_layernorm_output_gathered = true;
        Registry::global().create<te::LayerNormLinear, te::LayerNormLinearConfig>(
            "te.layernorm_linear", c, local_context(c));
      },
      "return_layernorm_output_gathered");
  expect_rejected(
      [] {
        te::MultiheadAttentionConfig c;
        c.hidden_size = 8;
        c.num_attention_heads = 2;
        c.attention_type = "cross";
        Registry::global().create<te::MultiheadAttention, te::MultiheadAttentionConfig>(
            "te.multihead_attention", c, local_context(c));
      },
      "attention_type");
  expect_rejected(
      [] {
        DecoderConfig c;
        c.hidden_size = 8;
        c.ffn_hidden_size = 8;
        c.num_attention_heads = 2;
        c.num_kv_heads = 2;
        c.head_dim = 4;
        c.activation = "gelu";
        Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                               local_context(c));
      },
      "activation");
  expect_rejected(
      [] {
        DecoderConfig c;
        c.hidden_size = 8;
        c.ffn_hidden_size = 8;
        c.num_attention_heads = 3;
        c.num_kv_heads = 2;
        c.head_dim = 4;
        Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                               local_context(c));
      },
      "num_kv_heads");
}

class KVCacheDecode : public ::testing::TestWithParam<const char*> {};

TEST_P(KVCacheDecode, PrefillPlusDecodeEqualsFullForward) {
  DecoderConfig c;
  c.hidden_size = 12;
  c.ffn_hidden_size = 16;
  c.num_attention_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.qk_norm = true;
  c.sliding_window = 3;
  c.layer_number = 1;  // cache entry 1 of 2
  auto layer =
      Registry::global().create<DecoderLayer, DecoderConfig>(GetParam(), c, local_context(c));
  std::mt19937 rng(23);
  test::randomize(*layer, rng);
  const int64_t B = 2, S = 6, P = 3;
  Tensor x = test::randn({B, S, 12}, rng);
  Tensor full = layer->forward(x, inputs(B, S), nullptr);
  KVCache cache;
  cache.max_len = 8;
  for (int l = 0; l < 2; ++l) {
    cache.k.push_back(Tensor::zeros({B, 8, 2, 4}, DType::kF32));
    cache.v.push_back(Tensor::zeros({B, 8, 2, 4}, DType::kF32));
  }
  auto step = [&](int64_t start, int64_t len, const Tensor& xs) {
    AttentionInputs in;
    in.batch = B;
    in.seq = len;
    std::vector<int64_t> pos;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < len; ++s) pos.push_back(start + s);
    in.positions = Tensor::from_vector(pos, {B, len});
    in.cache = &cache;
    in.cache_offset = start;
    return layer->forward(xs, in, nullptr);
  };
  auto part = [&](int64_t start, int64_t len) { return x.slice(1, start, len).contiguous(); };
  Tensor pre = step(0, P, part(0, P));
  EXPECT_LT(test::rel_err(pre, full.slice(1, 0, P).contiguous()), 1e-6);
  for (int64_t t = P; t < S; ++t)
    EXPECT_LT(test::rel_err(step(t, 1, part(t, 1)), full.slice(1, t, 1).contiguous()), 1e-6)
        << "token " << t;
  EXPECT_EQ(cache.k[0].to_f32_vector(), std::vector<float>(B * 8 * 2 * 4, 0.0f));  // untouched
  // A decode past the cache's end is an input error.
  EXPECT_THROW(step(S, 3, test::randn({B, 3, 12}, rng)), InputError);
}

INSTANTIATE_TEST_SUITE_P(
    BothLayers, KVCacheDecode, ::testing::Values("llama.decoder_layer", "te.transformer_layer"),
    [](const auto& info) {
      return std::string(info.param).substr(0, std::string(info.param).find('.'));
    });

}  // namespace
}  // namespace graft
