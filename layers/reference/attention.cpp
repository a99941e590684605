#include "layers/reference/attention.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/reference/rope_table.h"
#include "layers/reference/self_attention.h"
#include "parallel/tp_layout.h"

namespace graft {
namespace {

struct AttnCtx : LayerCtx {
  std::unique_ptr<LayerCtx> q, k, v, o, qn, kn;
  layers::SelfAttnSaved sdpa;
  std::shared_ptr<const layers::RopeTable> rope;
  Tensor positions;
  Shape x_shape;
  int64_t seq = 0;
};

// A column-parallel (q/k/v) or row-parallel (o) projection; local heads [offset, offset + n) of
// D rows each for the column ones.
Linear* make_linear(Module& owner, const char* name, int64_t in, int64_t out, bool bias,
                    const DecoderConfig& c, const BuildContext& ctx, const char* mode,
                    int64_t local = 0, int64_t offset = 0, int64_t replica = 0,
                    int64_t replicas = 1) {
  LinearConfig lc{in, out, bias, c.params_dtype, c.device};
  lc.parallel_mode = mode;
  lc.sequence_parallel = c.sequence_parallel;
  lc.out_local = local;
  lc.out_offset = offset;
  lc.replica = replica;
  lc.replicas = replicas;
  return &owner.add_child(
      name, Registry::global().create<Linear, LinearConfig>("reference.linear", lc, ctx));
}

// Qwen3's per-head norms: under tp each rank normalises its own heads only.
Norm* make_head_norm(Module& owner, const char* name, const DecoderConfig& c,
                     const BuildContext& ctx) {
  NormConfig nc{c.head_dim, NormType::kRMSNorm, c.norm_eps, c.zero_centered_gamma, c.params_dtype,
                c.device};
  nc.tp_partial_grad = true;
  return &owner.add_child(
      name, Registry::global().create<Norm, NormConfig>("reference.rmsnorm", nc, ctx));
}

}  // namespace

void validate_decoder_config(const DecoderConfig& c, const std::string& layer) {
  GRAFT_INPUT_CHECK(c.hidden_size > 0, layer, ": hidden_size = ", c.hidden_size, ", expected > 0");
  GRAFT_INPUT_CHECK(c.ffn_hidden_size > 0, layer, ": ffn_hidden_size = ", c.ffn_hidden_size,
                    ", expected > 0");
  GRAFT_INPUT_CHECK(c.num_attention_heads > 0, layer,
                    ": num_attention_heads = ", c.num_attention_heads, ", expected > 0");
  GRAFT_INPUT_CHECK(c.num_kv_heads > 0 && c.num_attention_heads % c.num_kv_heads == 0, layer,
                    ": num_kv_heads = ", c.num_kv_heads,
                    " must divide num_attention_heads = ", c.num_attention_heads);
  GRAFT_INPUT_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, layer, ": head_dim = ", c.head_dim,
                    ", expected a positive even number");
  GRAFT_INPUT_CHECK(c.norm_eps > 0, layer, ": norm_eps = ", c.norm_eps, ", expected > 0");
  GRAFT_INPUT_CHECK(c.sliding_window >= 0, layer, ": sliding_window = ", c.sliding_window,
                    ", expected >= 0");
  GRAFT_INPUT_CHECK(c.layer_number >= 0, layer, ": layer_number = ", c.layer_number,
                    ", expected >= 0");
}

Attention::Attention(const DecoderConfig& c, const BuildContext& ctx)
    : Module("reference.attention"), config_(c), ctx_(ctx) {
  validate_decoder_config(c, "reference.attention");
  heads_ = tp_heads(c.num_attention_heads, c.num_kv_heads, ctx.tp(), "llama.decoder_layer");
  const int64_t H = c.hidden_size, D = c.head_dim, q = c.num_attention_heads * D,
                kv = c.num_kv_heads * D;
  const TpHeads& h = heads_;
  q_proj_ = make_linear(*this, "q_proj", H, q, c.attention_bias, c, ctx, "column", h.q * D,
                        h.q_offset * D);
  k_proj_ = make_linear(*this, "k_proj", H, kv, c.attention_bias, c, ctx, "column", h.kv * D,
                        h.kv_offset * D, h.kv_replica, h.kv_replicas);
  v_proj_ = make_linear(*this, "v_proj", H, kv, c.attention_bias, c, ctx, "column", h.kv * D,
                        h.kv_offset * D, h.kv_replica, h.kv_replicas);
  o_proj_ = make_linear(*this, "o_proj", q, H, c.attention_out_bias, c, ctx, "row");
  if (c.qk_norm) {
    q_norm_ = make_head_norm(*this, "q_norm", c, ctx);
    k_norm_ = make_head_norm(*this, "k_norm", c, ctx);
  }
  layers::rope_table(c.rope, c.head_dim, 1, c.device);  // validates the rope config now
}

Tensor Attention::forward(const Tensor& x, const AttentionInputs& in,
                          std::unique_ptr<LayerCtx>* save) {
  const DecoderConfig& c = config_;
  GRAFT_CHECK(x.ndim() == 3 && x.size(2) == c.hidden_size, "reference.attention: x ", x.str());
  // Under sequence parallelism x is this rank's shard; attention runs on the whole sequence.
  const int64_t B = x.size(0), S = in.seq > 0 ? in.seq : x.size(1), D = c.head_dim;
  const int64_t Hq = heads_.q, Hkv = heads_.kv;
  auto ctx = save ? std::make_unique<AttnCtx>() : nullptr;
  auto slot = [&](std::unique_ptr<LayerCtx> AttnCtx::*m) {
    return ctx ? &(ctx.get()->*m) : nullptr;
  };
  Tensor q = q_proj_->forward(x, slot(&AttnCtx::q));
  Tensor k = k_proj_->forward(x, slot(&AttnCtx::k));
  Tensor v = v_proj_->forward(x, slot(&AttnCtx::v));
  if (q_norm_) {
    q = q_norm_->forward(q.view({B * S * Hq, D}), slot(&AttnCtx::qn));
    k = k_norm_->forward(k.view({B * S * Hkv, D}), slot(&AttnCtx::kn));
  }
  Tensor q4 = q.view({B, S, Hq, D}), k4 = k.view({B, S, Hkv, D}), v4 = v.view({B, S, Hkv, D});
  auto rope = layers::rope_table(c.rope, D, layers::rope_positions_needed(in), x.device());
  layers::rope_apply(q4, in.positions, *rope, false);
  layers::rope_apply(k4, in.positions, *rope, false);
  layers::SelfAttnOptions opt;
  opt.mask = AttnMask::kPaddingCausal;
  opt.window = c.sliding_window;
  opt.scale = c.softmax_scale;
  opt.cache_index = c.layer_number;
  opt.layer = "llama.decoder_layer";
  opt.cp = ctx_.groups->cp.get();  // context parallelism replaces the attention there
  Tensor o = layers::self_attention_forward(q4, k4, v4, in, opt, ctx ? &ctx->sdpa : nullptr);
  Tensor y = o_proj_->forward(o.view({B, S, Hq * D}), slot(&AttnCtx::o));
  if (ctx) {
    ctx->rope = rope;
    ctx->positions = in.positions;
    ctx->x_shape = x.shape();
    ctx->seq = S;
    *save = std::move(ctx);
  }
  return y;
}

Tensor Attention::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<AttnCtx&>(ctx_base);
  const DecoderConfig& c = config_;
  const int64_t B = ctx.x_shape[0], S = ctx.seq, D = c.head_dim;
  const int64_t Hq = heads_.q, Hkv = heads_.kv;
  Tensor d_o = o_proj_->backward(dy, *ctx.o).view({B, S, Hq, D});
  Tensor dq, dk, dv;
  layers::self_attention_backward(d_o, ctx.sdpa, dq, dk, dv);
  layers::rope_apply(dq, ctx.positions, *ctx.rope, true);
  layers::rope_apply(dk, ctx.positions, *ctx.rope, true);
  if (q_norm_) {
    dq = q_norm_->backward(dq.view({B * S * Hq, D}), *ctx.qn);
    dk = k_norm_->backward(dk.view({B * S * Hkv, D}), *ctx.kn);
  }
  Tensor dx = q_proj_->backward(dq.view({B, S, Hq * D}), *ctx.q);
  Tensor dxk = k_proj_->backward(dk.view({B, S, Hkv * D}), *ctx.k);
  Tensor dxv = v_proj_->backward(dv.view({B, S, Hkv * D}), *ctx.v);
  layers::add_into(dx, dxk);
  layers::add_into(dx, dxv);
  return dx;
}

}  // namespace graft
