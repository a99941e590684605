#include "layers/te/layernorm_linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/reference/norm_ops.h"
#include "layers/te/linear.h"

namespace graft::te {
namespace {

struct LNLinearCtx : LayerCtx {
  layers::NormSaved norm;
  LinearSaved ln;  // the normalised input [rows, in]
  Shape in_shape;
};

}  // namespace

LayerNormLinear::LayerNormLinear(const LayerNormLinearConfig& c, const BuildContext& ctx)
    : Module("te.layernorm_linear"), config_(c) {
  const std::string name = "te.layernorm_linear";
  check_linear_options(name, c.sequence_parallel, c.tp_size, c.parallel_mode,
                       c.fuse_wgrad_accumulation);
  reject_if(c.return_layernorm_output_gathered, name, "return_layernorm_output_gathered", "true",
            "only meaningful with sequence parallelism");
  reject_if(c.return_bias && !c.bias, name, "return_bias", "true", "needs bias = true");
  GRAFT_INPUT_CHECK(c.eps > 0, name, ": eps = ", c.eps, ", expected > 0");
  norm_ = parse_normalization(name, c.normalization);
  layers::check_params_dtype(name, c.params_dtype, c.device);
  Tensor g = Tensor::full({c.in_features > 0 ? c.in_features : 1},
                          c.zero_centered_gamma ? 0.f : 1.f, c.params_dtype);
  add_parameter("layer_norm_weight", c.device.is_cpu() ? g : g.to(c.device), false);
  if (norm_ == NormType::kLayerNorm)
    add_parameter("layer_norm_bias", Tensor::zeros(g.shape(), c.params_dtype, c.device), false);
  blocks_.init(*this, name, c.in_features, c.out_features, c.bias, c.parameters_split, "",
               c.init_method, c.init_seed, c.params_dtype, c.device);
  blocks_.enable_fp8(ctx.fp8, *this, "");
}

TEOutput LayerNormLinear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  auto ctx = save ? std::make_unique<LNLinearCtx>() : nullptr;
  Tensor x2 = layers::as_rows(x, config_.in_features);
  const bool ln = norm_ == NormType::kLayerNorm;
  Tensor n = layers::norm_rows_forward(x2, parameter("layer_norm_weight")->value,
                                       ln ? parameter("layer_norm_bias")->value : Tensor(),
                                       {norm_, config_.eps, config_.zero_centered_gamma},
                                       ctx ? &ctx->norm : nullptr);
  TEOutput out;
  Shape s = x.shape();
  s.back() = config_.out_features;
  out.out = blocks_.forward(*this, n, !config_.return_bias, ctx ? &ctx->ln : nullptr).view(s);
  if (config_.return_bias) out.bias = blocks_.bias(*this);
  if (config_.return_layernorm_output) out.ln_out = n.view(x.shape());
  if (ctx) {
    ctx->in_shape = x.shape();
    *save = std::move(ctx);
  }
  return out;
}

Tensor LayerNormLinear::backward(const Tensor& dy, LayerCtx& ctx_base, const Tensor& d_ln_out) {
  auto& ctx = dynamic_cast<LNLinearCtx&>(ctx_base);
  Tensor dln = blocks_.backward(*this, layers::as_rows(dy, config_.out_features), ctx.ln);
  if (d_ln_out.defined()) layers::add_into(dln, layers::as_rows(d_ln_out, config_.in_features));
  const bool ln = norm_ == NormType::kLayerNorm;
  Parameter* g = parameter("layer_norm_weight");
  Tensor* db = ln ? &layers::grad_of(*parameter("layer_norm_bias")) : nullptr;
  Tensor dx = layers::norm_rows_backward(dln, ctx.norm, g->value, &layers::grad_of(*g), db,
                                         {norm_, config_.eps, config_.zero_centered_gamma});
  return dx.view(ctx.in_shape);
}

static Register<LayerNormLinear, LayerNormLinearConfig> reg(
    "te.layernorm_linear", "layernorm_linear",
    [](const LayerNormLinearConfig& c, const BuildContext& ctx) {
      return std::make_unique<LayerNormLinear>(c, ctx);
    });

}  // namespace graft::te
