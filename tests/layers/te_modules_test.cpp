// TE-style modules one by one: te.linear (parameters_split, return_bias, init_method),
// te.layernorm_linear (return_layernorm_output), te.layernorm_mlp (every activation against a
// host formula), te.dot_product_attention (sbhd = bshd, arbitrary mask = causal when it is the
// causal mask, window_size), and finite-difference gradients of each. Tolerances: forward
// comparisons against host double math 1e-5 relative (f32 GEMMs over <= 20 terms); finite
// differences 5e-3 as in reference_grad_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "framework/registry/registry.h"
#include "layer_test_util.h"
#include "layers/reference/common.h"
#include "layers/te/dot_product_attention.h"
#include "layers/te/layernorm_linear.h"
#include "layers/te/layernorm_mlp.h"
#include "layers/te/linear.h"

namespace graft {
namespace {

constexpr double kFd = 5e-3;

void fd_all(Module& m, const std::function<double()>& loss, std::mt19937& rng, Tensor* x = nullptr,
            const Tensor* dx = nullptr) {
  for (auto& [name, p] : m.named_parameters()) {
    ASSERT_TRUE(p->grad.defined()) << name;
    EXPECT_LT(test::fd_rel_err(p->value, p->grad, loss, 16, rng), kFd) << name;
  }
  if (x) {
    EXPECT_LT(test::fd_rel_err(*x, *dx, loss, 16, rng), kFd) << "input";
  }
}

TEST(TeLinear, ParametersSplitReturnBiasAndInit) {
  std::mt19937 rng(11);
  te::LinearConfig c;
  c.in_features = 5;
  c.out_features = 7;
  c.parameters_split = {{"query_", 3}, {"key", 4}};
  c.return_bias = true;
  int init_calls = 0;
  c.init_method = [&](Tensor& w) {
    ++init_calls;
    w.fill_(0.25f);
  };
  auto lin =
      Registry::global().create<te::Linear, te::LinearConfig>("te.linear", c, local_context(c));
  EXPECT_EQ(init_calls, 2);
  ASSERT_NE(lin->parameter("query_weight"), nullptr);
  ASSERT_NE(lin->parameter("key_bias"), nullptr);
  EXPECT_EQ(lin->parameter("key_weight")->value.shape(), (Shape{4, 5}));
  EXPECT_FLOAT_EQ(lin->parameter("key_weight")->value.item({3, 4}), 0.25f);
  test::randomize(*lin, rng);
  Tensor x = test::randn({2, 3, 5}, rng), r = test::randn({2, 3, 7}, rng);
  std::unique_ptr<LayerCtx> ctx;
  te::TEOutput o = lin->forward(x, &ctx);
  ASSERT_TRUE(o.bias.defined());
  // out = x Wᵀ with W = [query; key], bias not added.
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 7; ++j) {
      const char* blk = j < 3 ? "query_weight" : "key_weight";
      const int64_t jj = j < 3 ? j : j - 3;
      double s = 0;
      for (int64_t k = 0; k < 5; ++k)
        s += x.item({i / 3, i % 3, k}) * lin->parameter(blk)->value.item({jj, k});
      EXPECT_NEAR(o.out.item({i / 3, i % 3, j}), s, 1e-5);
      EXPECT_FLOAT_EQ(o.bias.item({j}),
                      lin->parameter(j < 3 ? "query_bias" : "key_bias")->value.item({jj}));
    }
  // Backward treats dy as the gradient of out + bias.
  Tensor dx = lin->backward(r, *ctx);
  auto loss = [&] {
    te::TEOutput f = lin->forward(x, nullptr);
    double s = test::dot(f.out, r);
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 7; ++j) s += f.bias.item({j}) * r.item({i / 3, i % 3, j});
    return s;
  };
  fd_all(*lin, loss, rng, &x, &dx);
}

// tp_rows (explicit column-parallel pieces) describe a tp rank's rows: without tp they are refused.
TEST(TeLinear, TpRowsNeedAColumnParallelLinear) {
  te::LinearConfig c;
  c.in_features = 4;
  c.out_features = 6;
  c.tp_rows = {{0, 0, 6, 0, 1, ""}};
  try {
    Registry::global().create<te::Linear, te::LinearConfig>("te.linear", c, local_context(c));
    ADD_FAILURE() << "tp_rows accepted without tensor parallelism";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tp_rows needs a column-parallel linear"),
              std::string::npos)
        << e.what();
  }
}

TEST(TeLayerNormLinear, ReturnsLayernormOutputAndItsGradient) {
  std::mt19937 rng(12);
  for (const char* norm : {"RMSNorm", "LayerNorm"}) {
    te::LayerNormLinearConfig c;
    c.in_features = 6;
    c.out_features = 5;
    c.normalization = norm;
    c.zero_centered_gamma = true;
    c.return_layernorm_output = true;
    auto m = Registry::global().create<te::LayerNormLinear, te::LayerNormLinearConfig>(
        "te.layernorm_linear", c, local_context(c));
    test::randomize(*m, rng);
    Tensor x = test::randn({4, 6}, rng), r1 = test::randn({4, 5}, rng),
           r2 = test::randn({4, 6}, rng);
    std::unique_ptr<LayerCtx> ctx;
    te::TEOutput o = m->forward(x, &ctx);
    ASSERT_TRUE(o.ln_out.defined());
    // ln_out is the norm with (1 + w): check one row by hand.
    double mean = 0, ms = 0;
    for (int64_t j = 0; j < 6; ++j) mean += x.item({1, j}) / 6;
    const bool ln = std::string(norm) == "LayerNorm";
    for (int64_t j = 0; j < 6; ++j) {
      const double d = x.item({1, j}) - (ln ? mean : 0);
      ms += d * d / 6;
    }
    for (int64_t j = 0; j < 6; ++j) {
      double want = (x.item({1, j}) - (ln ? mean : 0)) / std::sqrt(ms + c.eps) *
                    (1 + m->parameter("layer_norm_weight")->value.item({j}));
      if (ln) want += m->parameter("layer_norm_bias")->value.item({j});
      EXPECT_NEAR(o.ln_out.item({1, j}), want, 1e-5) << norm;
    }
    Tensor dx = m->backward(r1, *ctx, r2);
    auto loss = [&] {
      te::TEOutput f = m->forward(x, nullptr);
      return test::dot(f.out, r1) + test::dot(f.ln_out, r2);
    };
    fd_all(*m, loss, rng, &x, &dx);
  }
}

double act_ref(const std::string& a, double g, double u) {
  const double k = std::sqrt(2.0 / M_PI);
  auto gelu = [&](double x) { return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x))); };
  auto relu = [](double x) { return x > 0 ? x : 0.0; };
  if (a == "gelu") return gelu(g);
  if (a == "qgelu") return g / (1 + std::exp(-1.702 * g));
  if (a == "relu") return relu(g);
  if (a == "squared_relu") return relu(g) * relu(g);
  if (a == "geglu") return gelu(g) * u;
  if (a == "reglu") return relu(g) * u;
  return g / (1 + std::exp(-g)) * u;  // swiglu
}

TEST(TeLayerNormMLP, EveryActivationMatchesTheFormulaAndFiniteDifferences) {
  std::mt19937 rng(13);
  for (std::string act : {"gelu", "geglu", "qgelu", "relu", "reglu", "squared_relu", "swiglu"}) {
    te::LayerNormMLPConfig c;
    c.hidden_size = 6;
    c.ffn_hidden_size = 5;
    c.normalization = "RMSNorm";
    c.activation = act;
    auto m = Registry::global().create<te::LayerNormMLP, te::LayerNormMLPConfig>(
        "te.layernorm_mlp", c, local_context(c));
    const bool gated = act == "geglu" || act == "reglu" || act == "swiglu";
    EXPECT_EQ(m->parameter("fc1_weight")->value.size(0), gated ? 10 : 5) << act;
    test::randomize(*m, rng, 0.5f);
    Tensor x = test::randn({3, 6}, rng), r = test::randn({3, 6}, rng);
    std::unique_ptr<LayerCtx> ctx;
    Tensor y = m->forward(x, &ctx).out;
    const Tensor& w1 = m->parameter("fc1_weight")->value;
    const Tensor& b1 = m->parameter("fc1_bias")->value;
    const Tensor& w2 = m->parameter("fc2_weight")->value;
    const Tensor& b2 = m->parameter("fc2_bias")->value;
    const Tensor& g = m->parameter("layer_norm_weight")->value;
    for (int64_t i = 0; i < 3; ++i) {
      double ms = 0;
      for (int64_t j = 0; j < 6; ++j) ms += x.item({i, j}) * x.item({i, j}) / 6;
      std::vector<double> ln(6), a(5);
      for (int64_t j = 0; j < 6; ++j) ln[j] = x.item({i, j}) / std::sqrt(ms + c.eps) * g.item({j});
      for (int64_t f = 0; f < 5; ++f) {
        double hg = b1.item({f}), hu = gated ? b1.item({f + 5}) : 0;
        for (int64_t j = 0; j < 6; ++j) {
          hg += ln[j] * w1.item({f, j});
          if (gated) hu += ln[j] * w1.item({f + 5, j});
        }
        a[f] = act_ref(act, hg, hu);
      }
      for (int64_t o = 0; o < 6; ++o) {
        double s = b2.item({o});
        for (int64_t f = 0; f < 5; ++f) s += a[f] * w2.item({o, f});
        EXPECT_NEAR(y.item({i, o}), s, 1e-5 * (1 + std::abs(s))) << act;
      }
    }
    Tensor dx = m->backward(r, *ctx);
    fd_all(
        *m, [&] { return test::dot(m->forward(x, nullptr).out, r); }, rng, &x, &dx);
  }
}

// forward(a, save, r) normalises a + r inside the norm's kernel: the same output as adding first
// (bit for bit on the CPU: the same f32 sum, then the same arithmetic), with the sum returned;
// backward(..., d_residual) adds d_residual to the input gradient before its one rounding, so it
// matches backward + add within 2^-22 relative, and the parameter gradients are unchanged.
TEST(TeLayerNormMLP, ResidualAddedInsideTheNormEqualsAddingFirst) {
  std::mt19937 rng(14);
  for (const char* norm : {"RMSNorm", "LayerNorm"}) {
    te::LayerNormMLPConfig c;
    c.hidden_size = 8;
    c.ffn_hidden_size = 5;
    c.normalization = norm;
    c.activation = "swiglu";
    auto m = Registry::global().create<te::LayerNormMLP, te::LayerNormMLPConfig>(
        "te.layernorm_mlp", c, local_context(c));
    test::randomize(*m, rng, 0.5f);
    Tensor a = test::randn({2, 3, 8}, rng), r = test::randn({2, 3, 8}, rng);
    Tensor dy = test::randn({2, 3, 8}, rng), dres = test::randn({2, 3, 8}, rng);
    std::unique_ptr<LayerCtx> fused_ctx, plain_ctx;
    te::TEOutput fused = m->forward(a, &fused_ctx, r);
    const Tensor h = layers::add(a, r);
    te::TEOutput plain = m->forward(h, &plain_ctx);
    ASSERT_TRUE(fused.sum.defined()) << norm;
    EXPECT_EQ(fused.sum.shape(), a.shape());
    EXPECT_EQ(fused.sum.to_f32_vector(), h.to_f32_vector()) << norm;
    EXPECT_EQ(fused.out.to_f32_vector(), plain.out.to_f32_vector()) << norm;

    m->zero_grad();
    const std::vector<float> dx_fused = m->backward(dy, *fused_ctx, Tensor(), dres).to_f32_vector();
    std::map<std::string, std::vector<float>> g_fused;
    for (auto& [name, p] : m->named_parameters()) g_fused[name] = p->grad.to_f32_vector();
    m->zero_grad();
    Tensor dx_plain = m->backward(dy, *plain_ctx);
    layers::add_into(dx_plain, dres);
    const std::vector<float> want = dx_plain.to_f32_vector(), dr = dres.to_f32_vector();
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(dx_fused[i], want[i], 0x1p-22 * (std::abs(want[i]) + std::abs(dr[i]))) << i;
    for (auto& [name, p] : m->named_parameters())
      EXPECT_EQ(p->grad.to_f32_vector(), g_fused[name]) << norm << " " << name;
  }
}

te::DotProductAttentionConfig dpa_config(const char* fmt, const char* mask) {
  te::DotProductAttentionConfig c;
  c.num_attention_heads = 4;
  c.kv_channels = 3;
  c.num_gqa_groups = 2;
  c.qkv_format = fmt;
  c.attn_mask_type = mask;
  return c;
}

TEST(TeDotProductAttention, SbhdEqualsBshdAndGradientsAgree) {
  std::mt19937 rng(14);
  const int64_t B = 2, S = 5;
  auto bshd = Registry::global().create<te::DotProductAttention, te::DotProductAttentionConfig>(
      "te.dot_product_attention", dpa_config("bshd", "causal"), BuildContext{});
  auto sbhd = Registry::global().create<te::DotProductAttention, te::DotProductAttentionConfig>(
      "te.dot_product_attention", dpa_config("sbhd", "causal"), BuildContext{});
  Tensor q = test::randn({B, S, 4, 3}, rng), k = test::randn({B, S, 2, 3}, rng),
         v = test::randn({B, S, 2, 3}, rng), r = test::randn({B, S, 12}, rng);
  auto t = [](const Tensor& a) { return a.transpose(0, 1).contiguous(); };
  std::unique_ptr<LayerCtx> c1, c2;
  Tensor o1 = bshd->forward(q, k, v, {}, &c1);
  Tensor o2 = sbhd->forward(t(q), t(k), t(v), {}, &c2);
  EXPECT_LT(test::rel_err(t(o2), o1), 1e-6);
  auto g1 = bshd->backward(r, *c1);
  auto g2 = sbhd->backward(t(r), *c2);
  EXPECT_LT(test::rel_err(t(g2.dq), g1.dq), 1e-6);
  EXPECT_LT(test::rel_err(t(g2.dk), g1.dk), 1e-6);
  EXPECT_LT(test::rel_err(t(g2.dv), g1.dv), 1e-6);
  auto loss = [&] { return test::dot(bshd->forward(q, k, v, {}, nullptr), r); };
  EXPECT_LT(test::fd_rel_err(q, g1.dq, loss, 16, rng), kFd);
  EXPECT_LT(test::fd_rel_err(k, g1.dk, loss, 16, rng), kFd);
  EXPECT_LT(test::fd_rel_err(v, g1.dv, loss, 16, rng), kFd);
}

TEST(TeDotProductAttention, ArbitraryCausalMaskAndWindowMatchBuiltins) {
  std::mt19937 rng(15);
  const int64_t B = 1, S = 6;
  Tensor q = test::randn({B, S, 4, 3}, rng), k = test::randn({B, S, 2, 3}, rng),
         v = test::randn({B, S, 2, 3}, rng);
  auto make = [](te::DotProductAttentionConfig c) {
    return Registry::global().create<te::DotProductAttention, te::DotProductAttentionConfig>(
        "te.dot_product_attention", c, local_context(c));
  };
  Tensor causal = make(dpa_config("bshd", "causal"))->forward(q, k, v, {}, nullptr);
  // Arbitrary mask with true above the diagonal (TE: true = masked) is the causal mask.
  Tensor m = Tensor::zeros({1, S, S}, DType::kU8);
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = i + 1; j < S; ++j) m.data<uint8_t>()[i * S + j] = 1;
  te::AttentionMasks am;
  am.arbitrary = m;
  Tensor arb = make(dpa_config("bshd", "arbitrary"))->forward(q, k, v, am, nullptr);
  EXPECT_LT(test::rel_err(arb, causal), 1e-6);
  // window_size (1, 0): each query sees itself and one key back; the same as an arbitrary mask.
  auto wc = dpa_config("bshd", "causal");
  wc.window_size = {1, 0};
  Tensor win = make(wc)->forward(q, k, v, {}, nullptr);
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j + 1 < i; ++j) m.data<uint8_t>()[i * S + j] = 1;
  Tensor arbw = make(dpa_config("bshd", "arbitrary"))->forward(q, k, v, am, nullptr);
  EXPECT_LT(test::rel_err(win, arbw), 1e-6);
  EXPECT_GT(test::rel_err(win, causal), 1e-2);  // the window did change something
}

TEST(TeDotProductAttention, ThdPackedEqualsEachSequenceAlone) {
  std::mt19937 rng(16);
  const std::vector<int64_t> cu = {0, 3, 3, 8};  // lengths 3, 0, 5
  const int64_t T = 8;
  auto make = [](const char* fmt) {
    return Registry::global().create<te::DotProductAttention, te::DotProductAttentionConfig>(
        "te.dot_product_attention", dpa_config(fmt, "padding_causal"), BuildContext{});
  };
  auto thd = make("thd");
  auto bshd = make("bshd");
  Tensor q = test::randn({T, 4, 3}, rng), k = test::randn({T, 2, 3}, rng),
         v = test::randn({T, 2, 3}, rng), r = test::randn({T, 12}, rng);
  te::AttentionMasks m;
  m.cu_seqlens_q = m.cu_seqlens_kv = cu;
  std::unique_ptr<LayerCtx> ctx;
  Tensor out = thd->forward(q, k, v, m, &ctx);
  ASSERT_EQ(out.shape(), (Shape{T, 12}));
  auto g = thd->backward(r, *ctx);
  for (size_t i = 0; i + 1 < cu.size(); ++i) {
    const int64_t s = cu[i], n = cu[i + 1] - cu[i];
    if (n == 0) continue;
    auto one = [&](const Tensor& t) {
      return t.slice(0, s, n).contiguous().view({1, n, t.size(1), t.size(2)});
    };
    std::unique_ptr<LayerCtx> c1;
    Tensor o1 = bshd->forward(one(q), one(k), one(v), {}, &c1);
    EXPECT_LT(test::rel_err(out.slice(0, s, n).contiguous(), o1.view({n, 12})), 1e-6);
    auto g1 = bshd->backward(r.slice(0, s, n).contiguous().view({1, n, 12}), *c1);
    EXPECT_LT(test::rel_err(one(g.dq), g1.dq), 1e-6);
    EXPECT_LT(test::rel_err(one(g.dk), g1.dk), 1e-6);
    EXPECT_LT(test::rel_err(one(g.dv), g1.dv), 1e-6);
  }
  m.cu_seqlens_q = {0, 3, 7};  // does not end at T
  EXPECT_THROW(thd->forward(q, k, v, m, nullptr), InputError);
}

}  // namespace
}  // namespace graft
