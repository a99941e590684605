#include "layers/reference/decoder_layer.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"

namespace graft {
namespace {

struct DecoderCtx : LayerCtx {
  std::unique_ptr<LayerCtx> ln1, attn, ln2, mlp;
};

Norm* make_norm(Module& owner, const char* name, const DecoderConfig& c, const BuildContext& ctx) {
  NormConfig nc{c.hidden_size,         c.normalization, c.norm_eps,
                c.zero_centered_gamma, c.params_dtype,  c.device};
  nc.tp_partial_grad = c.sequence_parallel;  // norms of sequence shards
  const char* reg =
      c.normalization == NormType::kRMSNorm ? "reference.rmsnorm" : "reference.layernorm";
  return &owner.add_child(name, Registry::global().create<Norm, NormConfig>(reg, nc, ctx));
}

}  // namespace

LlamaDecoderLayer::LlamaDecoderLayer(const DecoderConfig& c, const BuildContext& ctx)
    : DecoderLayer("llama.decoder_layer"), config_(c), ctx_(ctx) {
  validate_decoder_config(c, "llama.decoder_layer");
  input_layernorm_ = make_norm(*this, "input_layernorm", c, ctx);
  self_attn_ = &add_child("self_attn", std::make_unique<Attention>(c, ctx));
  post_attention_layernorm_ = make_norm(*this, "post_attention_layernorm", c, ctx);
  mlp_ = &add_child("mlp", std::make_unique<GatedMLP>(c, ctx));
}

Tensor LlamaDecoderLayer::forward(const Tensor& x, const AttentionInputs& in,
                                  std::unique_ptr<LayerCtx>* save) {
  const DType stream = config_.residual_dtype();
  GRAFT_CHECK(x.ndim() == 3 && x.size(2) == config_.hidden_size && x.dtype() == stream,
              "llama.decoder_layer: x must be ", dtype_name(stream), " [B, S, ",
              config_.hidden_size, "], got ", x.str());
  auto ctx = save ? std::make_unique<DecoderCtx>() : nullptr;
  Tensor xc = x.is_contiguous() ? x : x.contiguous();
  // The norms read the stream (f32 under fp32_residual) and write params_dtype; residual_add
  // widens a branch output to the stream's dtype before adding.
  Tensor a = self_attn_->forward(input_layernorm_->forward(xc, ctx ? &ctx->ln1 : nullptr), in,
                                 ctx ? &ctx->attn : nullptr);
  Tensor h = layers::residual_add(xc, a);
  Tensor m = mlp_->forward(post_attention_layernorm_->forward(h, ctx ? &ctx->ln2 : nullptr),
                           ctx ? &ctx->mlp : nullptr);
  if (ctx) *save = std::move(ctx);
  if (stream != m.dtype()) return layers::residual_add(h, m);
  layers::add_into(m, h);
  return m;
}

Tensor LlamaDecoderLayer::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<DecoderCtx&>(ctx_base);
  Tensor dyc = dy.is_contiguous() ? dy : dy.contiguous();
  // fp32_residual: dy, dh and dx are f32 (the norms' backward returns the stream's dtype); a
  // branch's backward takes the gradient rounded to params_dtype.
  const DType act = config_.params_dtype;
  // y = h + mlp(ln2(h)):  dh = dy + ln2ᵀ(mlpᵀ(dy))
  Tensor dh = post_attention_layernorm_->backward(
      mlp_->backward(layers::to_dtype(dyc, act), *ctx.mlp), *ctx.ln2);
  layers::add_into(dh, dyc);
  // h = x + attn(ln1(x)): dx = dh + ln1ᵀ(attnᵀ(dh))
  Tensor dx = input_layernorm_->backward(self_attn_->backward(layers::to_dtype(dh, act), *ctx.attn),
                                         *ctx.ln1);
  layers::add_into(dx, dh);
  return dx;
}

WeightMap LlamaDecoderLayer::hf_weight_map() const {
  WeightMap map;
  for (const auto& [name, p] : const_cast<LlamaDecoderLayer*>(this)->named_parameters())
    map.push_back({name, {WeightPiece{name}}});
  return map;
}

static Register<DecoderLayer, DecoderConfig> reg_llama(
    "llama.decoder_layer", "decoder_layer", [](const DecoderConfig& c, const BuildContext& ctx) {
      return std::make_unique<LlamaDecoderLayer>(c, ctx);
    });

}  // namespace graft
