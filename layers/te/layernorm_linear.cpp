#include "layers/te/layernorm_linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/reference/norm_ops.h"
#include "layers/te/linear.h"
#include "parallel/tp_collectives.h"
#include "parallel/tp_layout.h"

namespace graft::te {
namespace {

struct LNLinearCtx : LayerCtx {
  layers::NormSaved norm;
  LinearSaved ln;  // the normalised input [rows, in] (gathered under sequence parallelism)
  Shape in_shape, ln_shape;
};

}  // namespace

LayerNormLinear::LayerNormLinear(const LayerNormLinearConfig& c, const BuildContext& bctx)
    : Module("te.layernorm_linear"), config_(c), tp_(bctx.groups->tp) {
  const std::string name = "te.layernorm_linear";
  LinearShard shard = check_linear_options(name, c.sequence_parallel, c.tp_size, c.parallel_mode,
                                           c.fuse_wgrad_accumulation, bctx);
  shard.rows = c.tp_rows;
  reject_if(shard.mode == "row", name, "parallel_mode", "row",
            "a layernorm-linear is column-parallel (its input is whole) or not parallel");
  column_ = shard.tp > 1 && shard.mode == "column";
  sp_ = c.sequence_parallel && column_;
  reject_if(c.return_layernorm_output_gathered, name, "return_layernorm_output_gathered", "true",
            "only meaningful with sequence parallelism");
  reject_if(c.return_bias && !c.bias, name, "return_bias", "true", "needs bias = true");
  GRAFT_INPUT_CHECK(c.eps > 0, name, ": eps = ", c.eps, ", expected > 0");
  norm_ = parse_normalization(name, c.normalization);
  layers::check_params_dtype(name, c.params_dtype, c.device);
  Tensor g = Tensor::full({c.in_features > 0 ? c.in_features : 1},
                          c.zero_centered_gamma ? 0.f : 1.f, c.params_dtype);
  // Sequence shards: each rank normalises its own rows, so the norm's gradients are partial.
  auto spec = [&] {
    return sp_ ? tp_partial_grad_spec(g.shape()) : ShardSpec::replicated(g.shape());
  };
  add_parameter("layer_norm_weight", c.device.is_cpu() ? g : g.to(c.device), false, spec());
  if (norm_ == NormType::kLayerNorm)
    add_parameter("layer_norm_bias", Tensor::zeros(g.shape(), c.params_dtype, c.device), false,
                  spec());
  blocks_.init(*this, name, c.in_features, c.out_features, c.bias, c.parameters_split, "",
               c.init_method, c.init_seed, c.params_dtype, c.device, shard);
  blocks_.enable_fp8(bctx.fp8, *this, "");
}

TEOutput LayerNormLinear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  auto ctx = save ? std::make_unique<LNLinearCtx>() : nullptr;
  Tensor x2 = layers::as_rows(x, config_.in_features);
  const bool ln = norm_ == NormType::kLayerNorm;
  const Tensor& gamma = parameter("layer_norm_weight")->value;
  const Tensor beta = ln ? parameter("layer_norm_bias")->value : Tensor();
  const layers::NormSpec spec{norm_, config_.eps, config_.zero_centered_gamma};
  TEOutput out;
  Shape s = x.shape();
  s.back() = blocks_.out();
  // FP8: the norm fused into the input cast, unless the normalised rows are needed in high
  // precision (returned, or gathered over sequence parallelism; copy_to_tp is the identity).
  if (blocks_.fp8() && !sp_ && !config_.return_layernorm_output) {
    out.out = blocks_
                  .forward_normed(*this, x2, gamma, beta, spec, !config_.return_bias,
                                  ctx ? &ctx->ln : nullptr, ctx ? &ctx->norm : nullptr)
                  .view(s);
    if (config_.return_bias) out.bias = blocks_.bias(*this);
    if (ctx) {
      ctx->in_shape = ctx->ln_shape = x.shape();
      *save = std::move(ctx);
    }
    return out;
  }
  Tensor n = layers::norm_rows_forward(x2, gamma, beta, spec, ctx ? &ctx->norm : nullptr);
  Tensor ng = n.view(x.shape());
  if (column_) ng = sp_ ? gather_from_sp(ng, *tp_) : copy_to_tp(ng, *tp_);
  s = ng.shape();
  s.back() = blocks_.out();
  Tensor rows = layers::as_rows(ng, config_.in_features);
  out.out = blocks_.forward(*this, rows, !config_.return_bias, ctx ? &ctx->ln : nullptr).view(s);
  if (config_.return_bias) out.bias = blocks_.bias(*this);
  if (config_.return_layernorm_output) out.ln_out = n.view(x.shape());
  if (ctx) {
    ctx->in_shape = x.shape();
    ctx->ln_shape = ng.shape();
    *save = std::move(ctx);
  }
  return out;
}

Tensor LayerNormLinear::backward(const Tensor& dy, LayerCtx& ctx_base, const Tensor& d_ln_out,
                                 const Tensor& d_residual) {
  auto& ctx = dynamic_cast<LNLinearCtx&>(ctx_base);
  Tensor dln = blocks_.backward(*this, layers::as_rows(dy, blocks_.out()), ctx.ln,
                                column_ && !sp_ ? tp_.get() : nullptr);
  if (sp_)
    dln =
        layers::as_rows(gather_from_sp_backward(dln.view(ctx.ln_shape), *tp_), config_.in_features);
  if (d_ln_out.defined()) layers::add_into(dln, layers::as_rows(d_ln_out, config_.in_features));
  const bool ln = norm_ == NormType::kLayerNorm;
  Parameter* g = parameter("layer_norm_weight");
  Parameter* b = ln ? parameter("layer_norm_bias") : nullptr;
  Tensor dx = layers::norm_rows_backward(
      dln, ctx.norm, g->value, g, b, {norm_, config_.eps, config_.zero_centered_gamma},
      d_residual.defined() ? layers::as_rows(d_residual, config_.in_features) : Tensor());
  return dx.view(ctx.in_shape);
}

static Register<LayerNormLinear, LayerNormLinearConfig> reg(
    "te.layernorm_linear", "layernorm_linear",
    [](const LayerNormLinearConfig& c, const BuildContext& ctx) {
      return std::make_unique<LayerNormLinear>(c, ctx);
    });

}  // namespace graft::te
