#include "layers/te/dot_product_attention.h"

#include "framework/registry/registry.h"
#include "layers/reference/sdpa.h"
#include "layers/reference/self_attention.h"
#include "layers/te/te_common.h"

namespace graft::te {
namespace {

struct DpaCtx : LayerCtx {
  layers::SdpaSaved saved;
};

struct SelfCtx : LayerCtx {
  layers::SelfAttnSaved saved;
};

struct ThdCtx : LayerCtx {
  std::vector<layers::SdpaSaved> seqs;  // one per sequence
  std::vector<int64_t> cu_q, cu_kv;
  Shape q_shape, k_shape;
};

void check_cu(const std::vector<int64_t>& cu, int64_t total, const char* what) {
  bool ok = cu.size() >= 2 && cu.front() == 0 && cu.back() == total;
  for (size_t i = 1; ok && i < cu.size(); ++i) ok = cu[i] >= cu[i - 1];
  GRAFT_INPUT_CHECK(ok, "te.dot_product_attention: ", what, " must rise from 0 to ", total,
                    " (the packed length), got ", cu.size(), " entries");
}

}  // namespace

AttnMask parse_mask_type(const std::string& layer, const std::string& option,
                         const std::string& value) {
  if (value == "no_mask") return AttnMask::kNoMask;
  if (value == "causal") return AttnMask::kCausal;
  if (value == "padding") return AttnMask::kPadding;
  if (value == "padding_causal") return AttnMask::kPaddingCausal;
  if (value == "arbitrary") return AttnMask::kArbitrary;
  throw InputError(str(layer, ": ", option, " = '", value, "' is not supported (expected ",
                       "no_mask, causal, padding, padding_causal or arbitrary)"));
}

int64_t parse_window(const std::string& layer, std::pair<int64_t, int64_t> w, AttnMask mask) {
  const bool causal = mask == AttnMask::kCausal || mask == AttnMask::kPaddingCausal;
  const std::string v = str("(", w.first, ", ", w.second, ")");
  reject_if(w.first < -1 || w.second < -1, layer, "window_size", v, "entries must be >= -1");
  reject_if(w.second != -1 && !(causal && w.second == 0), layer, "window_size", v,
            "a bounded right window is only supported as right = 0 with a causal mask");
  return w.first < 0 ? 0 : w.first + 1;
}

DotProductAttention::DotProductAttention(const DotProductAttentionConfig& c,
                                         const BuildContext& ctx)
    : Module("te.dot_product_attention"), config_(c), ctx_(ctx) {
  const std::string name = "te.dot_product_attention";
  GRAFT_INPUT_CHECK(c.num_attention_heads > 0 && c.kv_channels > 0, name,
                    ": num_attention_heads = ", c.num_attention_heads,
                    ", kv_channels = ", c.kv_channels, ", expected > 0");
  const int64_t groups = c.num_gqa_groups > 0 ? c.num_gqa_groups : c.num_attention_heads;
  GRAFT_INPUT_CHECK(c.num_attention_heads % groups == 0, name, ": num_gqa_groups = ", groups,
                    " must divide num_attention_heads = ", c.num_attention_heads);
  reject_if(c.attention_dropout != 0.0, name, "attention_dropout", str(c.attention_dropout),
            "dropout is not implemented");
  reject_if(c.qkv_format != "bshd" && c.qkv_format != "sbhd" && c.qkv_format != "thd", name,
            "qkv_format", c.qkv_format, "expected bshd or sbhd");
  reject_if(c.attention_type != "self" && c.attention_type != "cross", name, "attention_type",
            c.attention_type, "expected self or cross");
  reject_if(c.tp_size != 1, name, "tp_size", str(c.tp_size),
            "tensor parallelism is configured through parallel/");
  GRAFT_INPUT_CHECK(c.softmax_scale >= 0, name, ": softmax_scale = ", c.softmax_scale,
                    ", expected > 0 (or 0 for 1/sqrt(kv_channels))");
  mask_ = parse_mask_type(name, "attn_mask_type", c.attn_mask_type);
  window_ = parse_window(name, c.window_size, mask_);
  sbhd_ = c.qkv_format == "sbhd";
  thd_ = c.qkv_format == "thd";
  reject_if(thd_ && mask_ == AttnMask::kArbitrary, name, "attn_mask_type", "arbitrary",
            "not with qkv_format = thd");
}

Tensor DotProductAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionMasks& masks, std::unique_ptr<LayerCtx>* save) {
  const std::string name = "te.dot_product_attention";
  const int64_t Hq = config_.num_attention_heads, D = config_.kv_channels;
  const int64_t G = config_.num_gqa_groups > 0 ? config_.num_gqa_groups : Hq;
  if (thd_) return forward_thd(q, k, v, masks, save);
  GRAFT_INPUT_CHECK(q.ndim() == 4 && q.size(2) == Hq && q.size(3) == D && k.ndim() == 4 &&
                        k.size(2) == G && k.size(3) == D && v.shape() == k.shape(),
                    name, ": expected q [.., .., ", Hq, ", ", D, "] and k, v [.., .., ", G, ", ", D,
                    "] in ", config_.qkv_format, ", got q ", q.str(), ", k ", k.str(), ", v ",
                    v.str());
  // bshd views of the inputs and of a fresh output in the caller's format.
  auto bshd = [&](const Tensor& t) { return sbhd_ ? t.transpose(0, 1) : t; };
  Tensor qb = bshd(q), kb = bshd(k), vb = bshd(v);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor outb = bshd(out);
  layers::SdpaOptions opt;
  opt.mask = mask_;
  opt.window = window_;
  opt.scale = config_.softmax_scale;
  const bool padding = mask_ == AttnMask::kPadding || mask_ == AttnMask::kPaddingCausal;
  if (padding && !masks.key_padding.defined())
    opt.mask = mask_ == AttnMask::kPadding ? AttnMask::kNoMask : AttnMask::kCausal;
  opt.key_padding = masks.key_padding;
  opt.arbitrary_mask = masks.arbitrary;
  auto ctx = save ? std::make_unique<DpaCtx>() : nullptr;
  layers::sdpa_forward(qb, kb, vb, opt, outb, ctx ? &ctx->saved : nullptr);
  if (ctx) *save = std::move(ctx);
  return out.view({q.size(0), q.size(1), Hq * D});
}

DotProductAttention::Grads DotProductAttention::backward(const Tensor& dout, LayerCtx& ctx_base) {
  if (thd_) return backward_thd(dout, ctx_base);
  auto& ctx = dynamic_cast<DpaCtx&>(ctx_base);
  auto bshd = [&](const Tensor& t) { return sbhd_ ? t.transpose(0, 1) : t; };
  const layers::SdpaSaved& s = ctx.saved;
  // Back to the caller's layout: shapes of the original (possibly sbhd) inputs.
  auto fmt = [&](const Tensor& b) {
    return sbhd_ ? Shape{b.size(1), b.size(0), b.size(2), b.size(3)} : b.shape();
  };
  Grads g;
  g.dq = Tensor::empty(fmt(s.q), s.q.dtype(), dout.device());
  g.dk = Tensor::empty(fmt(s.k), s.k.dtype(), dout.device());
  g.dv = Tensor::empty(fmt(s.v), s.v.dtype(), dout.device());
  Tensor dqb = bshd(g.dq), dkb = bshd(g.dk), dvb = bshd(g.dv);
  Tensor d = dout.is_contiguous() ? dout : dout.contiguous();
  Tensor dob = bshd(d.view(g.dq.shape()));
  layers::sdpa_backward(dob, s, dqb, dkb, dvb);
  return g;
}

Tensor DotProductAttention::forward_self(const Tensor& q, const Tensor& k, const Tensor& v,
                                         const AttentionInputs& in, std::unique_ptr<LayerCtx>* save,
                                         const char* layer) {
  GRAFT_CHECK(!thd_ && !sbhd_ && mask_ != AttnMask::kArbitrary, layer,
              ": self-attention runs in bshd with a causal/padding mask type, got qkv_format = ",
              config_.qkv_format, ", attn_mask_type = ", config_.attn_mask_type);
  layers::SelfAttnOptions opt;
  opt.mask = mask_;
  opt.window = window_;
  opt.scale = config_.softmax_scale;
  opt.cache_index = config_.layer_number - 1;
  opt.layer = layer;
  opt.cp = ctx_.groups->cp.get();
  auto ctx = save ? std::make_unique<SelfCtx>() : nullptr;
  Tensor out = layers::self_attention_forward(q, k, v, in, opt, ctx ? &ctx->saved : nullptr);
  if (ctx) *save = std::move(ctx);
  return out;
}

DotProductAttention::Grads DotProductAttention::backward_self(const Tensor& dout, LayerCtx& ctx) {
  Grads g;
  layers::self_attention_backward(dout, dynamic_cast<SelfCtx&>(ctx).saved, g.dq, g.dk, g.dv);
  return g;
}

Tensor DotProductAttention::forward_thd(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                        const AttentionMasks& m, std::unique_ptr<LayerCtx>* save) {
  const int64_t Hq = config_.num_attention_heads, D = config_.kv_channels;
  const int64_t G = config_.num_gqa_groups > 0 ? config_.num_gqa_groups : Hq;
  GRAFT_INPUT_CHECK(q_in.ndim() == 3 && q_in.size(1) == Hq && q_in.size(2) == D &&
                        k_in.ndim() == 3 && k_in.size(1) == G && k_in.size(2) == D &&
                        v_in.shape() == k_in.shape(),
                    "te.dot_product_attention: thd expects q [T, ", Hq, ", ", D, "], k, v [T, ", G,
                    ", ", D, "], got q ", q_in.str(), ", k ", k_in.str());
  Tensor q = q_in.is_contiguous() ? q_in : q_in.contiguous();
  Tensor k = k_in.is_contiguous() ? k_in : k_in.contiguous();
  Tensor v = v_in.is_contiguous() ? v_in : v_in.contiguous();
  check_cu(m.cu_seqlens_q, q.size(0), "cu_seqlens_q");
  check_cu(m.cu_seqlens_kv, k.size(0), "cu_seqlens_kv");
  GRAFT_INPUT_CHECK(m.cu_seqlens_q.size() == m.cu_seqlens_kv.size(),
                    "te.dot_product_attention: cu_seqlens_q and cu_seqlens_kv differ in length");
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  layers::SdpaOptions opt;
  opt.mask = mask_ == AttnMask::kPaddingCausal ? AttnMask::kCausal
             : mask_ == AttnMask::kPadding     ? AttnMask::kNoMask
                                               : mask_;
  opt.window = window_;
  opt.scale = config_.softmax_scale;
  auto ctx = save ? std::make_unique<ThdCtx>() : nullptr;
  const auto& cq = m.cu_seqlens_q;
  const auto& ck = m.cu_seqlens_kv;
  for (size_t i = 0; i + 1 < cq.size(); ++i) {
    const int64_t sq = cq[i + 1] - cq[i], skv = ck[i + 1] - ck[i];
    if (sq == 0) continue;
    auto seq = [](const Tensor& t, int64_t start, int64_t len) {
      return t.slice(0, start, len).view({1, len, t.size(1), t.size(2)});
    };
    Tensor oi = seq(out, cq[i], sq);
    layers::SdpaSaved saved;
    layers::sdpa_forward(seq(q, cq[i], sq), seq(k, ck[i], skv), seq(v, ck[i], skv), opt, oi,
                         ctx ? &saved : nullptr);
    if (ctx) ctx->seqs.push_back(std::move(saved));
  }
  if (ctx) {
    ctx->cu_q = cq;
    ctx->cu_kv = ck;
    ctx->q_shape = q.shape();
    ctx->k_shape = k.shape();
    *save = std::move(ctx);
  }
  return out.view({q.size(0), Hq * D});
}

DotProductAttention::Grads DotProductAttention::backward_thd(const Tensor& dout,
                                                             LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<ThdCtx&>(ctx_base);
  Grads g;
  g.dq = Tensor::zeros(ctx.q_shape, dout.dtype(), dout.device());
  g.dk = Tensor::zeros(ctx.k_shape, dout.dtype(), dout.device());
  g.dv = Tensor::zeros(ctx.k_shape, dout.dtype(), dout.device());
  Tensor d = (dout.is_contiguous() ? dout : dout.contiguous()).view(ctx.q_shape);
  size_t s = 0;
  for (size_t i = 0; i + 1 < ctx.cu_q.size(); ++i) {
    const int64_t sq = ctx.cu_q[i + 1] - ctx.cu_q[i], skv = ctx.cu_kv[i + 1] - ctx.cu_kv[i];
    if (sq == 0) continue;
    auto seq = [](const Tensor& t, int64_t start, int64_t len) {
      return t.slice(0, start, len).view({1, len, t.size(1), t.size(2)});
    };
    Tensor dq = seq(g.dq, ctx.cu_q[i], sq), dk = seq(g.dk, ctx.cu_kv[i], skv),
           dv = seq(g.dv, ctx.cu_kv[i], skv);
    layers::sdpa_backward(seq(d, ctx.cu_q[i], sq), ctx.seqs[s++], dq, dk, dv);
  }
  return g;
}

static Register<DotProductAttention, DotProductAttentionConfig> reg(
    "te.dot_product_attention", "attention",
    [](const DotProductAttentionConfig& c, const BuildContext& ctx) {
      return std::make_unique<DotProductAttention>(c, ctx);
    });

}  // namespace graft::te
