#include "layers/te/transformer_layer.h"

#include "framework/registry/registry.h"
#include "layers/reference/attention.h"
#include "layers/reference/common.h"
#include "layers/reference/norm.h"
#include "layers/te/layernorm_mlp.h"
#include "layers/te/multihead_attention.h"
#include "layers/te/norm.h"

namespace graft::te {
namespace {

const char* kName = "te.transformer_layer";

struct TLCtx : LayerCtx {
  std::unique_ptr<LayerCtx> attn, mlp, out_ln;
};

}  // namespace

TransformerLayerConfig transformer_layer_config(const DecoderConfig& c) {
  validate_decoder_config(c, kName);
  TransformerLayerConfig t;
  t.hidden_size = c.hidden_size;
  t.ffn_hidden_size = c.ffn_hidden_size;
  t.num_attention_heads = c.num_attention_heads;
  t.num_gqa_groups = c.num_kv_heads;
  t.kv_channels = c.head_dim;
  t.layernorm_epsilon = c.norm_eps;
  t.normalization = normalization_name(c.normalization);
  t.activation = c.activation;
  t.bias = false;
  t.qkv_bias = c.attention_bias;
  t.proj_bias = c.attention_out_bias;
  t.mlp_bias = c.mlp_bias;
  t.fuse_qkv_params = true;
  t.rotary = true;
  t.rope = c.rope;
  t.self_attn_mask_type = "padding_causal";
  if (c.sliding_window > 0) t.window_size = {c.sliding_window - 1, 0};
  t.zero_centered_gamma = c.zero_centered_gamma;
  t.layer_number = c.layer_number + 1;
  if (c.qk_norm) {
    t.qk_norm_type = "RMSNorm";
    t.qk_norm_eps = c.norm_eps;
    t.qk_norm_before_rope = true;
  }
  t.softmax_scale = c.softmax_scale;
  t.params_dtype = c.params_dtype;
  t.device = c.device;
  t.sequence_parallel = c.sequence_parallel;
  t.fp32_residual_connection = c.fp32_residual;
  return t;
}

TransformerLayer::TransformerLayer(const TransformerLayerConfig& c, const BuildContext& ctx)
    : DecoderLayer(kName), config_(c), ctx_(ctx) {
  reject_if(c.hidden_dropout != 0.0, kName, "hidden_dropout", str(c.hidden_dropout),
            "dropout is not implemented");
  reject_if(c.attention_dropout != 0.0, kName, "attention_dropout", str(c.attention_dropout),
            "dropout is not implemented");
  reject_if(c.layer_type != "encoder", kName, "layer_type", c.layer_type,
            "cross-attention decoder blocks are not implemented");
  reject_if(c.attn_input_format != "bshd", kName, "attn_input_format", c.attn_input_format,
            "decoder layers take [batch, seq, hidden]");
  reject_if(c.parallel_attention_mlp && c.apply_residual_connection_post_layernorm, kName,
            "parallel_attention_mlp", "true",
            "not together with apply_residual_connection_post_layernorm");
  reject_if(c.self_attn_mask_type == "arbitrary", kName, "self_attn_mask_type", "arbitrary",
            "decoder layers take causal/padding masks from AttentionInputs");
  reject_if(c.fp32_residual_connection && c.apply_residual_connection_post_layernorm, kName,
            "fp32_residual_connection", "true",
            "not together with apply_residual_connection_post_layernorm: the residual would be a "
            "norm's params_dtype output");
  reject_if(c.fp32_residual_connection && c.output_layernorm, kName, "fp32_residual_connection",
            "true", "not together with output_layernorm: the layer's output would be a norm's");
  MultiheadAttentionConfig a;
  a.hidden_size = c.hidden_size;
  a.num_attention_heads = c.num_attention_heads;
  a.kv_channels = c.kv_channels;
  a.num_gqa_groups = c.num_gqa_groups;
  a.attention_dropout = c.attention_dropout;
  a.layernorm_epsilon = c.layernorm_epsilon;
  a.layer_number = c.layer_number;
  a.attn_mask_type = c.self_attn_mask_type;
  a.window_size = c.window_size;
  a.input_layernorm = !c.output_layernorm;
  a.normalization = c.normalization;
  a.zero_centered_gamma = c.zero_centered_gamma;
  a.bias = c.bias;
  a.qkv_bias = c.qkv_bias;
  a.proj_bias = c.proj_bias;
  a.return_layernorm_output = c.apply_residual_connection_post_layernorm && !c.output_layernorm;
  a.fuse_qkv_params = c.fuse_qkv_params;
  a.qk_norm_type = c.qk_norm_type;
  a.qk_norm_eps = c.qk_norm_eps;
  a.qk_norm_before_rope = c.qk_norm_before_rope;
  a.rotary = c.rotary;
  a.rope = c.rope;
  a.softmax_scale = c.softmax_scale;
  a.init_method = c.init_method;
  a.output_layer_init_method = c.output_layer_init_method;
  a.init_seed = c.init_seed;
  a.params_dtype = c.params_dtype;
  a.device = c.device;
  a.sequence_parallel = c.sequence_parallel;
  a.tp_size = c.tp_size;
  self_attention_ = &add_child(
      "self_attention", Registry::global().create<MultiheadAttention, MultiheadAttentionConfig>(
                            "te.multihead_attention", a, ctx_));
  LayerNormMLPConfig m;
  m.hidden_size = c.hidden_size;
  m.ffn_hidden_size = c.ffn_hidden_size;
  m.eps = c.layernorm_epsilon;
  m.bias = c.mlp_bias.value_or(c.bias);
  m.normalization = c.normalization;
  m.activation = c.activation;
  m.zero_centered_gamma = c.zero_centered_gamma;
  m.return_layernorm_output = c.apply_residual_connection_post_layernorm;
  m.init_method = c.init_method;
  m.output_layer_init_method = c.output_layer_init_method;
  m.init_seed = c.init_seed + 11;
  m.params_dtype = c.params_dtype;
  m.device = c.device;
  m.sequence_parallel = c.sequence_parallel;
  m.tp_size = c.tp_size;
  m.set_parallel_mode = true;  // fc1 column-, fc2 row-parallel under tp (as TE's TransformerLayer)
  layernorm_mlp_ = &add_child(
      "layernorm_mlp",
      Registry::global().create<LayerNormMLP, LayerNormMLPConfig>("te.layernorm_mlp", m, ctx_));
  if (c.output_layernorm) {
    NormConfig nc{c.hidden_size, c.layernorm_epsilon, c.zero_centered_gamma, c.params_dtype,
                  c.device};
    nc.sequence_parallel = c.sequence_parallel;
    const char* reg = parse_normalization(kName, c.normalization) == NormType::kRMSNorm
                          ? "te.rmsnorm"
                          : "te.layernorm";
    layernorm_ =
        &add_child("layernorm", Registry::global().create<graft::Norm, NormConfig>(reg, nc, ctx_));
  }
}

Tensor TransformerLayer::forward(const Tensor& x, const AttentionInputs& in,
                                 std::unique_ptr<LayerCtx>* save) {
  const DType stream = config_.residual_dtype();
  GRAFT_CHECK(x.ndim() == 3 && x.size(2) == config_.hidden_size && x.dtype() == stream, kName,
              ": x must be ", dtype_name(stream), " [B, S, ", config_.hidden_size, "], got ",
              x.str());
  auto ctx = save ? std::make_unique<TLCtx>() : nullptr;
  Tensor xc = x.is_contiguous() ? x : x.contiguous();
  // The norms read the stream (f32 under fp32_residual_connection) and write params_dtype; a
  // branch output is widened by residual_add (or inside the MLP's norm kernel) before its add.
  TEOutput a = self_attention_->forward(xc, in, ctx ? &ctx->attn : nullptr);
  Tensor y;
  if (config_.parallel_attention_mlp) {
    TEOutput m = layernorm_mlp_->forward(xc, ctx ? &ctx->mlp : nullptr);
    y = layers::residual_add(layers::residual_add(xc, a.out), m.out);
  } else {
    // h = r1 + a, added inside layernorm_mlp's norm kernel (h comes back as m.sum).
    TEOutput m = layernorm_mlp_->forward(a.out, ctx ? &ctx->mlp : nullptr,
                                         a.ln_out.defined() ? a.ln_out : xc);
    const Tensor& h = m.sum;
    y = layers::residual_add(m.ln_out.defined() ? m.ln_out : h, m.out);
  }
  if (layernorm_)
    y = static_cast<graft::Norm*>(layernorm_)->forward(y, ctx ? &ctx->out_ln : nullptr);
  if (ctx) *save = std::move(ctx);
  return y;
}

Tensor TransformerLayer::backward(const Tensor& dy_in, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<TLCtx&>(ctx_base);
  Tensor dy = dy_in.is_contiguous() ? dy_in : dy_in.contiguous();
  if (layernorm_) dy = static_cast<graft::Norm*>(layernorm_)->backward(dy, *ctx.out_ln);
  const bool post = config_.apply_residual_connection_post_layernorm;
  // fp32_residual_connection: dy and the returned dx are f32 (the stream's gradient); a branch
  // gets its gradient rounded to params_dtype, and the norms' backward kernels add the stream's
  // gradient to theirs in f32.
  const DType act = config_.params_dtype;
  if (config_.parallel_attention_mlp) {
    const Tensor dyb = layers::to_dtype(dy, act);
    Tensor dx = self_attention_->backward(dyb, *ctx.attn);
    layers::add_into(dx, layernorm_mlp_->backward(dyb, *ctx.mlp));
    layers::add_into(dx, dy);
    return dx;
  }
  // y = r2 + mlp(h): the residual's gradient either joins the norm's (post-LN) or h's; both
  // added inside the norm's backward kernel.
  Tensor dh = layernorm_mlp_->backward(layers::to_dtype(dy, act), *ctx.mlp, post ? dy : Tensor(),
                                       post ? Tensor() : dy);
  const bool attn_post = post && !config_.output_layernorm;
  return self_attention_->backward(layers::to_dtype(dh, act), *ctx.attn, attn_post ? dh : Tensor(),
                                   attn_post ? Tensor() : dh);
}

WeightMap TransformerLayer::hf_weight_map() const {
  const TransformerLayerConfig& c = config_;
  reject_if(c.output_layernorm, kName, "output_layernorm", "true",
            "HF decoder layers have no output norm, so there is no HF weight map");
  const bool gated = layernorm_mlp_->gated();
  reject_if(!gated, kName, "activation", c.activation,
            "HF decoder layers have a gated MLP, so there is no HF weight map");
  reject_if(c.parallel_attention_mlp, kName, "parallel_attention_mlp", "true",
            "HF decoder layers have one norm per block in sequence");
  // The single-process layout (the global tensors; a tp rank's ShardSpecs say which box it holds).
  const int64_t hq = c.num_attention_heads,
                hkv = c.num_gqa_groups > 0 ? c.num_gqa_groups : c.num_attention_heads,
                d = self_attention_->head_dim(), n = hq / hkv, F = c.ffn_hidden_size;
  const bool ln = parse_normalization(kName, c.normalization) == NormType::kLayerNorm;
  const bool qkv_bias = c.qkv_bias.value_or(c.bias), proj_bias = c.proj_bias.value_or(c.bias),
             mlp_bias = c.mlp_bias.value_or(c.bias);
  WeightMap map;
  auto rename = [&](const std::string& param, const std::string& hf) {
    map.push_back({param, {WeightPiece{hf}}});
  };
  const std::string qkv = "self_attention.layernorm_qkv.";
  rename(qkv + "layer_norm_weight", "input_layernorm.weight");
  if (ln) rename(qkv + "layer_norm_bias", "input_layernorm.bias");
  for (const char* kind : {"weight", "bias"}) {
    const std::string k = kind;
    if (k == "bias" && !qkv_bias) continue;
    if (c.fuse_qkv_params) {
      WeightMapEntry e{qkv + k, {}};
      for (int64_t g = 0; g < hkv; ++g) {
        const int64_t base = g * (n + 2) * d;
        e.pieces.push_back({"self_attn.q_proj." + k, 0, g * n * d, base, n * d});
        e.pieces.push_back({"self_attn.k_proj." + k, 0, g * d, base + n * d, d});
        e.pieces.push_back({"self_attn.v_proj." + k, 0, g * d, base + (n + 1) * d, d});
      }
      map.push_back(std::move(e));
    } else {
      rename(qkv + "query_" + k, "self_attn.q_proj." + k);
      rename(qkv + "key_" + k, "self_attn.k_proj." + k);
      rename(qkv + "value_" + k, "self_attn.v_proj." + k);
    }
  }
  if (!c.qk_norm_type.empty()) {
    rename("self_attention.q_norm.weight", "self_attn.q_norm.weight");
    rename("self_attention.k_norm.weight", "self_attn.k_norm.weight");
    if (c.qk_norm_type == "LayerNorm") {
      rename("self_attention.q_norm.bias", "self_attn.q_norm.bias");
      rename("self_attention.k_norm.bias", "self_attn.k_norm.bias");
    }
  }
  rename("self_attention.proj.weight", "self_attn.o_proj.weight");
  if (proj_bias) rename("self_attention.proj.bias", "self_attn.o_proj.bias");
  rename("layernorm_mlp.layer_norm_weight", "post_attention_layernorm.weight");
  if (ln) rename("layernorm_mlp.layer_norm_bias", "post_attention_layernorm.bias");
  for (const char* kind : {"weight", "bias"}) {
    const std::string k = kind;
    if (k == "bias" && !mlp_bias) continue;
    map.push_back({"layernorm_mlp.fc1_" + k,
                   {{"mlp.gate_proj." + k, 0, 0, 0, F}, {"mlp.up_proj." + k, 0, 0, F, F}}});
    rename("layernorm_mlp.fc2_" + k, "mlp.down_proj." + k);
  }
  return map;
}

static Register<TransformerLayer, TransformerLayerConfig> reg_typed(
    kName, "transformer_layer", [](const TransformerLayerConfig& c, const BuildContext& ctx) {
      return std::make_unique<TransformerLayer>(c, ctx);
    });
static Register<DecoderLayer, DecoderConfig> reg_decoder(
    kName, "decoder_layer",
    [](const DecoderConfig& c, const BuildContext& ctx) -> std::unique_ptr<DecoderLayer> {
      return std::make_unique<TransformerLayer>(transformer_layer_config(c), ctx);
    });

}  // namespace graft::te
