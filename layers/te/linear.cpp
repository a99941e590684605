#include "layers/te/linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"

namespace graft::te {
namespace {

struct LinearCtx : LayerCtx {
  LinearSaved x;
  Shape in_shape;
};

}  // namespace

void check_linear_options(const std::string& layer, bool sequence_parallel, int64_t tp_size,
                          const std::string& parallel_mode, bool fuse_wgrad_accumulation) {
  const char* why = "tensor/sequence parallelism is configured through parallel/, not per layer";
  reject_if(sequence_parallel, layer, "sequence_parallel", "true", why);
  reject_if(tp_size != 1, layer, "tp_size", std::to_string(tp_size), why);
  reject_if(!parallel_mode.empty() && parallel_mode != "None", layer, "parallel_mode",
            parallel_mode, why);
  reject_if(fuse_wgrad_accumulation, layer, "fuse_wgrad_accumulation", "true",
            "gradients are always accumulated into Parameter::grad");
}

Linear::Linear(const LinearConfig& c, const BuildContext& ctx) : Module("te.linear"), config_(c) {
  check_linear_options("te.linear", c.sequence_parallel, c.tp_size, c.parallel_mode,
                       c.fuse_wgrad_accumulation);
  reject_if(c.return_bias && !c.bias, "te.linear", "return_bias", "true", "needs bias = true");
  blocks_.init(*this, "te.linear", c.in_features, c.out_features, c.bias, c.parameters_split, "",
               c.init_method, c.init_seed, c.params_dtype, c.device);
  blocks_.enable_fp8(ctx.fp8, *this, "");
}

TEOutput Linear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  Tensor x2 = layers::as_rows(x, config_.in_features);
  TEOutput out;
  Shape s = x.shape();
  s.back() = config_.out_features;
  auto ctx = save ? std::make_unique<LinearCtx>() : nullptr;
  out.out = blocks_.forward(*this, x2, !config_.return_bias, ctx ? &ctx->x : nullptr).view(s);
  if (config_.return_bias) out.bias = blocks_.bias(*this);
  if (save) {
    ctx->in_shape = x.shape();
    *save = std::move(ctx);
  }
  return out;
}

Tensor Linear::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<LinearCtx&>(ctx_base);
  return blocks_.backward(*this, layers::as_rows(dy, config_.out_features), ctx.x)
      .view(ctx.in_shape);
}

static Register<Linear, LinearConfig> reg("te.linear", "linear",
                                          [](const LinearConfig& c, const BuildContext& ctx) {
                                            return std::make_unique<Linear>(c, ctx);
                                          });

}  // namespace graft::te
