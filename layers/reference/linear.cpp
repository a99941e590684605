#include "layers/reference/linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"

namespace graft {
namespace {

struct LinearCtx : LayerCtx {
  Tensor x;  // [rows, in]
  Shape in_shape;
};

}  // namespace

Linear::Linear(const LinearConfig& config, const std::string& type)
    : Module(type), config_(config) {
  GRAFT_INPUT_CHECK(config.in_features > 0 && config.out_features > 0, type,
                    ": in_features = ", config.in_features,
                    ", out_features = ", config.out_features, ", expected > 0");
  layers::check_params_dtype(type, config.params_dtype, config.device);
  add_parameter("weight", Tensor::zeros({config.out_features, config.in_features},
                                        config.params_dtype, config.device));
  if (config.bias)
    add_parameter("bias", Tensor::zeros({config.out_features}, config.params_dtype, config.device),
                  /*decay=*/false);
}

Tensor Linear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  Tensor x2 = layers::as_rows(x, config_.in_features);
  Tensor y = layers::matmul_nt(x2, parameter("weight")->value,
                               config_.bias ? parameter("bias")->value : Tensor());
  if (save) {
    auto ctx = std::make_unique<LinearCtx>();
    ctx->x = x2;
    ctx->in_shape = x.shape();
    *save = std::move(ctx);
  }
  Shape out = x.shape();
  out.back() = config_.out_features;
  return y.view(out);
}

Tensor Linear::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<LinearCtx&>(ctx_base);
  Tensor dy2 = layers::as_rows(dy, config_.out_features);
  Parameter* w = parameter("weight");
  layers::matmul_tn_acc(dy2, ctx.x, layers::grad_of(*w));
  if (config_.bias) layers::sum_rows_acc(dy2, layers::grad_of(*parameter("bias")));
  return layers::matmul_nn(dy2, w->value).view(ctx.in_shape);
}

static Register<Linear, LinearConfig> reg_linear("reference.linear", "linear",
                                                 [](const LinearConfig& c) {
                                                   return std::make_unique<Linear>(c);
                                                 });

}  // namespace graft
