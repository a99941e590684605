#include "layers/reference/linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "parallel/tp_collectives.h"
#include "parallel/tp_layout.h"

namespace graft {
namespace {

struct LinearCtx : LayerCtx {
  Tensor x;                 // [rows, in] (column + sequence parallel: the gathered input)
  Shape in_shape, x_shape;  // of the input as given, and of the (gathered) input used
};

}  // namespace

Linear::Linear(const LinearConfig& config, const std::string& type)
    : Linear(config, local_context(config), type) {}

Linear::Linear(const LinearConfig& config, const BuildContext& ctx, const std::string& type)
    : Module(type), config_(config), tp_(ctx.groups->tp) {
  const LinearConfig& c = config_;
  GRAFT_INPUT_CHECK(c.in_features > 0 && c.out_features > 0, type,
                    ": in_features = ", c.in_features, ", out_features = ", c.out_features,
                    ", expected > 0");
  GRAFT_INPUT_CHECK(
      c.parallel_mode.empty() || c.parallel_mode == "column" || c.parallel_mode == "row", type,
      ": parallel_mode = '", c.parallel_mode, "', expected column or row");
  layers::check_params_dtype(type, c.params_dtype, c.device);
  const bool tp = tp_->size() > 1;
  column_ = tp && c.parallel_mode == "column";
  row_ = tp && c.parallel_mode == "row";
  sp_ = tp && c.sequence_parallel && (column_ || row_);
  in_ = c.in_features;
  out_ = c.out_features;
  ShardSpec wspec = ShardSpec::replicated({out_, in_});
  ShardSpec bspec = ShardSpec::replicated({out_});
  if (column_) {
    int64_t offset = c.out_offset;
    out_ = c.out_local;
    if (out_ == 0) {
      out_ = tp_divide(c.out_features, *tp_, type, "out_features");
      offset = tp_->rank() * out_;
    }
    wspec = tp_split_spec({c.out_features, in_}, 0, offset, c.replica);
    bspec = tp_split_spec({c.out_features}, 0, offset, c.replica);
    if (c.replicas > 1) {
      wspec.grad_sum_over.push_back(LayoutGroup::kTP);
      bspec.grad_sum_over.push_back(LayoutGroup::kTP);
    }
    if (c.logical_out > 0) {
      wspec.logical_shape = {c.logical_out, in_};
      bspec.logical_shape = {c.logical_out};
    }
  } else if (row_) {
    in_ = tp_divide(c.in_features, *tp_, type, "in_features");
    wspec = tp_split_spec({out_, c.in_features}, 1, tp_->rank() * in_);
  }
  add_parameter("weight", Tensor::zeros({out_, in_}, c.params_dtype, c.device), true, wspec);
  if (c.bias)
    add_parameter("bias", Tensor::zeros({out_}, c.params_dtype, c.device), /*decay=*/false, bspec);
}

Tensor Linear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  Tensor xin = column_ ? (sp_ ? gather_from_sp(x, *tp_) : copy_to_tp(x, *tp_)) : x;
  Tensor x2 = layers::as_rows(xin, in_);
  Tensor bias = config_.bias && (!row_ || tp_->rank() == 0) ? parameter("bias")->value : Tensor();
  Tensor y = layers::matmul_nt(x2, parameter("weight")->value, bias);
  if (save) {
    auto ctx = std::make_unique<LinearCtx>();
    ctx->x = x2;
    ctx->in_shape = x.shape();
    ctx->x_shape = xin.shape();
    *save = std::move(ctx);
  }
  Shape out = xin.shape();
  out.back() = out_;
  Tensor y3 = y.view(out);
  if (row_) return sp_ ? reduce_scatter_to_sp(y3, *tp_) : reduce_from_tp(y3, *tp_);
  return y3;
}

Tensor Linear::backward(const Tensor& dy_in, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<LinearCtx&>(ctx_base);
  Tensor dy = row_ && sp_ ? reduce_scatter_to_sp_backward(dy_in, *tp_) : dy_in;
  Tensor dy2 = layers::as_rows(dy, out_);
  Parameter* w = parameter("weight");
  Tensor dx = layers::matmul_nn(dy2, w->value);
  // Column-parallel without sequence parallelism: the input gradient's all-reduce runs while the
  // weight gradient is computed.
  std::unique_ptr<Work> reduce;
  if (column_ && !sp_) reduce = copy_to_tp_backward_async(dx, *tp_);
  layers::weight_grad(dy2, ctx.x, *w);
  if (config_.bias) layers::bias_grad(dy2, *parameter("bias"));
  if (reduce) reduce->wait();
  Tensor dx3 = dx.view(ctx.x_shape);
  if (column_ && sp_) return gather_from_sp_backward(dx3, *tp_);
  return dx3.view(ctx.in_shape);
}

static Register<Linear, LinearConfig> reg_linear("reference.linear", "linear",
                                                 [](const LinearConfig& c,
                                                    const BuildContext& ctx) {
                                                   return std::make_unique<Linear>(c, ctx);
                                                 });

}  // namespace graft
