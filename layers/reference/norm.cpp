#include "layers/reference/norm.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/reference/norm_ops.h"
#include "parallel/tp_layout.h"

namespace graft {
namespace {

struct NormCtx : LayerCtx {
  layers::NormSaved saved;
  Shape in_shape;
};

}  // namespace

Norm::Norm(const NormConfig& config, const std::string& type)
    : Norm(config, local_context(config), type) {}

Norm::Norm(const NormConfig& config, const BuildContext& ctx, const std::string& type)
    : Module(type), config_(config) {
  GRAFT_INPUT_CHECK(config.hidden_size > 0, type, ": hidden_size = ", config.hidden_size,
                    ", expected > 0");
  GRAFT_INPUT_CHECK(config.eps > 0, type, ": eps = ", config.eps, ", expected > 0");
  layers::check_params_dtype(type, config.params_dtype, config.device);
  Tensor w = Tensor::full({config.hidden_size}, config.zero_centered_gamma ? 0.0f : 1.0f,
                          config.params_dtype);
  const bool partial = config.tp_partial_grad && ctx.tp().size() > 1;
  const Shape shape{config.hidden_size};
  auto spec = [&] { return partial ? tp_partial_grad_spec(shape) : ShardSpec::replicated(shape); };
  add_parameter("weight", config.device.is_cpu() ? w : w.to(config.device), /*decay=*/false,
                spec());
  if (config.type == NormType::kLayerNorm)
    add_parameter("bias", Tensor::zeros(shape, config.params_dtype, config.device),
                  /*decay=*/false, spec());
}

Tensor Norm::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  const bool ln = config_.type == NormType::kLayerNorm;
  Tensor x2 = layers::as_rows(x, config_.hidden_size);
  auto ctx = save ? std::make_unique<NormCtx>() : nullptr;
  Tensor y = layers::norm_rows_forward(
      x2, parameter("weight")->value, ln ? parameter("bias")->value : Tensor(),
      {config_.type, config_.eps, config_.zero_centered_gamma}, ctx ? &ctx->saved : nullptr);
  if (ctx) {
    ctx->in_shape = x.shape();
    *save = std::move(ctx);
  }
  return y.view(x.shape());
}

Tensor Norm::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<NormCtx&>(ctx_base);
  const bool ln = config_.type == NormType::kLayerNorm;
  Tensor dy2 = layers::as_rows(dy, config_.hidden_size);
  Parameter* w = parameter("weight");
  Parameter* b = ln ? parameter("bias") : nullptr;
  Tensor dx = layers::norm_rows_backward(dy2, ctx.saved, w->value, w, b,
                                         {config_.type, config_.eps, config_.zero_centered_gamma});
  return dx.view(ctx.in_shape);
}

static Register<Norm, NormConfig> reg_rmsnorm("reference.rmsnorm", "norm",
                                              [](const NormConfig& c, const BuildContext& ctx) {
                                                return std::make_unique<Norm>(c, ctx,
                                                                              "reference.rmsnorm");
                                              });
static Register<Norm, NormConfig> reg_layernorm("reference.layernorm", "norm",
                                                [](const NormConfig& c, const BuildContext& ctx) {
                                                  return std::make_unique<Norm>(
                                                      c, ctx, "reference.layernorm");
                                                });

}  // namespace graft
