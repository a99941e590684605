#include "layers/te/linear.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "parallel/tp_collectives.h"

namespace graft::te {
namespace {

struct LinearCtx : LayerCtx {
  LinearSaved x;
  Shape in_shape, x_shape;
};

}  // namespace

LinearShard check_linear_options(const std::string& layer, bool sequence_parallel, int64_t tp_size,
                                 const std::string& parallel_mode, bool fuse_wgrad_accumulation,
                                 const BuildContext& ctx) {
  const int64_t T = ctx.tp().size();
  reject_if(sequence_parallel && T == 1, layer, "sequence_parallel", "true",
            "needs a tensor-parallel group of more than one rank (parallel.tp > 1)");
  reject_if(tp_size != 1 && tp_size != T, layer, "tp_size", std::to_string(tp_size),
            str("the build context's tensor-parallel group has ", T, " ranks"));
  reject_if(!parallel_mode.empty() && parallel_mode != "None" && parallel_mode != "column" &&
                parallel_mode != "row",
            layer, "parallel_mode", parallel_mode, "expected None, column or row");
  reject_if(fuse_wgrad_accumulation, layer, "fuse_wgrad_accumulation", "true",
            "gradients are always accumulated into Parameter::grad");
  LinearShard s;
  s.mode = parallel_mode == "None" ? "" : parallel_mode;
  s.tp = T;
  s.rank = ctx.tp().rank();
  s.skip_init = ctx.skip_init;
  return s;
}

Linear::Linear(const LinearConfig& c, const BuildContext& ctx)
    : Module("te.linear"), config_(c), tp_(ctx.groups->tp) {
  LinearShard shard = check_linear_options("te.linear", c.sequence_parallel, c.tp_size,
                                           c.parallel_mode, c.fuse_wgrad_accumulation, ctx);
  shard.rows = c.tp_rows;
  reject_if(c.return_bias && !c.bias, "te.linear", "return_bias", "true", "needs bias = true");
  blocks_.init(*this, "te.linear", c.in_features, c.out_features, c.bias, c.parameters_split, "",
               c.init_method, c.init_seed, c.params_dtype, c.device, shard);
  column_ = shard.tp > 1 && shard.mode == "column";
  row_ = shard.tp > 1 && shard.mode == "row";
  sp_ = c.sequence_parallel && (column_ || row_);
  blocks_.enable_fp8(ctx.fp8, *this, "");
}

TEOutput Linear::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  Tensor xin = column_ ? (sp_ ? gather_from_sp(x, *tp_) : copy_to_tp(x, *tp_)) : x;
  Tensor x2 = layers::as_rows(xin, blocks_.in());
  TEOutput out;
  Shape s = xin.shape();
  s.back() = blocks_.out();
  const bool add_bias = !config_.return_bias && (!row_ || tp_->rank() == 0);
  auto ctx = save ? std::make_unique<LinearCtx>() : nullptr;
  out.out = blocks_.forward(*this, x2, add_bias, ctx ? &ctx->x : nullptr).view(s);
  if (row_) out.out = sp_ ? reduce_scatter_to_sp(out.out, *tp_) : reduce_from_tp(out.out, *tp_);
  if (config_.return_bias) out.bias = blocks_.bias(*this);
  if (save) {
    ctx->in_shape = x.shape();
    ctx->x_shape = xin.shape();
    *save = std::move(ctx);
  }
  return out;
}

Tensor Linear::backward(const Tensor& dy_in, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<LinearCtx&>(ctx_base);
  Tensor dy = row_ && sp_ ? reduce_scatter_to_sp_backward(dy_in, *tp_) : dy_in;
  Tensor dx = blocks_
                  .backward(*this, layers::as_rows(dy, blocks_.out()), ctx.x,
                            column_ && !sp_ ? tp_.get() : nullptr)
                  .view(ctx.x_shape);
  if (column_ && sp_) return gather_from_sp_backward(dx, *tp_);
  return dx.view(ctx.in_shape);
}

static Register<Linear, LinearConfig> reg("te.linear", "linear",
                                          [](const LinearConfig& c, const BuildContext& ctx) {
                                            return std::make_unique<Linear>(c, ctx);
                                          });

}  // namespace graft::te
