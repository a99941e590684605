// te.transformer_layer against llama.decoder_layer: the same random HF weights go into both
// through their weight maps (reference: identity; TE: fused qkv / fc1), then forward outputs,
// input gradients and every HF tensor's gradient (exported back through the maps) must agree.
// Both run the same f32 kernels in a different order (fused GEMMs, split copies), so they differ
// only by f32 rounding: rel err < 1e-5 as required.
#include <gtest/gtest.h>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/reference/decoder_layer.h"
#include "layers/te/transformer_layer.h"

namespace graft {
namespace {

constexpr double kTol = 1e-5;

struct Case {
  int64_t heads, kv_heads, head_dim;
  bool attn_bias, out_bias, mlp_bias, qk_norm, zero_centered;
  const char* act;
  int64_t window;
  bool padding;
  NormType norm;
};

DecoderConfig make_config(const Case& k) {
  DecoderConfig c;
  c.hidden_size = 16;
  c.ffn_hidden_size = 20;
  c.num_attention_heads = k.heads;
  c.num_kv_heads = k.kv_heads;
  c.head_dim = k.head_dim;
  c.attention_bias = k.attn_bias;
  c.attention_out_bias = k.out_bias;
  c.mlp_bias = k.mlp_bias;
  c.qk_norm = k.qk_norm;
  c.zero_centered_gamma = k.zero_centered;
  c.activation = k.act;
  c.sliding_window = k.window;
  c.normalization = k.norm;
  c.norm_eps = 1e-6;
  c.rope.theta = 500.0;
  return c;
}

// A random tiny config per seed: GQA/MQA/MHA, biases, qk_norm, zero-centred gamma, activations,
// windows, padding, both norms.
Case random_case(uint32_t seed) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  const int64_t heads_opts[] = {2, 4, 6};
  Case k;
  k.heads = heads_opts[pick(3)];
  const int64_t kv_opts[] = {1, 2, k.heads};
  k.kv_heads = kv_opts[pick(3)];
  if (k.heads % k.kv_heads) k.kv_heads = 1;
  k.head_dim = 2 * (2 + pick(3));
  k.attn_bias = pick(2);
  k.out_bias = pick(2);
  k.mlp_bias = pick(2);
  k.qk_norm = pick(2);
  k.zero_centered = pick(2);
  const char* acts[] = {"swiglu", "geglu", "reglu"};
  k.act = acts[pick(3)];
  k.window = pick(2) ? 2 + pick(4) : 0;  // W = 1 makes q/k gradients pure rounding noise
  k.padding = pick(2);
  k.norm = pick(4) == 0 ? NormType::kLayerNorm : NormType::kRMSNorm;
  return k;
}

class TeVsReference : public ::testing::TestWithParam<uint32_t> {};

TEST_P(TeVsReference, ForwardAndAllGradientsAgree) {
  const Case k = random_case(GetParam());
  const DecoderConfig c = make_config(k);
  SCOPED_TRACE(str("heads ", k.heads, " kv ", k.kv_heads, " D ", k.head_dim, " bias ", k.attn_bias,
                   k.out_bias, k.mlp_bias, " qk_norm ", k.qk_norm, " zc ", k.zero_centered, " act ",
                   k.act, " window ", k.window, " padding ", k.padding, " layernorm ",
                   k.norm == NormType::kLayerNorm));
  auto ref = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                    local_context(c));
  std::unique_ptr<DecoderLayer> te;
  {
    OverrideScope scope({{"llama.decoder_layer", "te.transformer_layer"}});
    te = Registry::global().create<DecoderLayer, DecoderConfig>("llama.decoder_layer", c,
                                                                local_context(c));
  }
  ASSERT_EQ(te->type(), "te.transformer_layer");
  std::mt19937 rng(GetParam() + 100);
  test::randomize(*ref, rng, 0.3f);
  const WeightMap ref_map = ref->hf_weight_map(), te_map = te->hf_weight_map();
  auto hf = test::export_hf(*ref, ref_map);
  test::import_hf(*te, te_map, hf);
  // Every TE parameter is covered by its map, and the maps carry the same HF tensors.
  EXPECT_EQ(te_map.size(), te->named_parameters().size());
  auto hf_te = test::export_hf(*te, te_map);
  ASSERT_EQ(hf_te.size(), hf.size());
  for (auto& [name, t] : hf) EXPECT_EQ(test::rel_err(hf_te.at(name), t), 0.0) << name;

  const int64_t B = 2, S = 7;
  AttentionInputs in;
  in.batch = B;
  in.seq = S;
  std::vector<int64_t> pos;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) pos.push_back(s);
  in.positions = Tensor::from_vector(pos, {B, S});
  if (k.padding) {
    std::vector<int64_t> m(B * S, 1);
    m[S + S - 1] = m[S + S - 2] = 0;  // right padding in the second sequence
    in.key_padding_mask = Tensor::from_vector(m, {B, S});
  }
  Tensor x = test::randn({B, S, c.hidden_size}, rng), dy = test::randn({B, S, c.hidden_size}, rng);
  std::unique_ptr<LayerCtx> rc, tc;
  Tensor yr = ref->forward(x, in, &rc), yt = te->forward(x, in, &tc);
  EXPECT_LT(test::rel_err(yt, yr), kTol) << "forward";
  // Forward without saving computes the same thing.
  EXPECT_EQ(test::rel_err(ref->forward(x, in, nullptr), yr), 0.0);
  EXPECT_EQ(test::rel_err(te->forward(x, in, nullptr), yt), 0.0);
  Tensor dxr = ref->backward(dy, *rc), dxt = te->backward(dy, *tc);
  EXPECT_LT(test::rel_err(dxt, dxr), kTol) << "input gradient";
  // Gradients, exported to HF names through each layer's map.
  auto grads_of = [](DecoderLayer& l, const WeightMap& map) {
    std::vector<std::pair<std::string, Tensor>> saved;
    for (auto& [n, p] : l.named_parameters()) {
      saved.emplace_back(n, p->value.clone());
      p->value.copy_from(p->grad);
    }
    auto g = test::export_hf(l, map);
    for (auto& [n, p] : l.named_parameters())
      for (auto& [sn, sv] : saved)
        if (sn == n) p->value.copy_from(sv);
    return g;
  };
  auto gr = grads_of(*ref, ref_map), gt = grads_of(*te, te_map);
  for (auto& [name, g] : gr) EXPECT_LT(test::rel_err(gt.at(name), g), kTol) << "grad " << name;
}

INSTANTIATE_TEST_SUITE_P(RandomTinyConfigs, TeVsReference, ::testing::Range(0u, 24u));

// The named cases the sweep must include whatever the seeds give.
TEST(TeVsReferenceNamed, SweepCoversRequiredFeatures) {
  bool gqa = false, mqa = false, mha = false, bias = false, qk = false, zc = false, geglu = false,
       window = false, padding = false;
  for (uint32_t s = 0; s < 24; ++s) {
    Case k = random_case(s);
    gqa |= k.kv_heads > 1 && k.kv_heads < k.heads;
    mqa |= k.kv_heads == 1 && k.heads > 1;
    mha |= k.kv_heads == k.heads;
    bias |= k.attn_bias && k.mlp_bias;
    qk |= k.qk_norm;
    zc |= k.zero_centered;
    geglu |= std::string(k.act) == "geglu";
    window |= k.window > 0;
    padding |= k.padding;
  }
  EXPECT_TRUE(gqa && mqa && mha && bias && qk && zc && geglu && window && padding);
}

}  // namespace
}  // namespace graft
