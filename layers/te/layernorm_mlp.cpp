#include "layers/te/layernorm_mlp.h"

#include "framework/registry/registry.h"
#include "layers/reference/common.h"
#include "layers/reference/norm_ops.h"
#include "layers/te/linear.h"
#include "parallel/tp_collectives.h"
#include "parallel/tp_layout.h"

namespace graft::te {
namespace {

struct LNMLPCtx : LayerCtx {
  layers::NormSaved norm;
  LinearSaved ln, a;  // fc1's input [rows, H], fc2's input [rows, F] (rows gathered under sp)
  Tensor h;           // fc1's output [rows, F']
  Shape in_shape, ln_shape;
};

}  // namespace

LayerNormMLP::LayerNormMLP(const LayerNormMLPConfig& c, const BuildContext& bctx)
    : Module("te.layernorm_mlp"), config_(c), tp_(bctx.groups->tp) {
  const std::string name = "te.layernorm_mlp";
  LinearShard shard = check_linear_options(name, c.sequence_parallel, c.tp_size, "",
                                           c.fuse_wgrad_accumulation, bctx);
  parallel_ = c.set_parallel_mode && shard.tp > 1;
  reject_if(c.sequence_parallel && !parallel_, name, "sequence_parallel", "true",
            "needs set_parallel_mode (fc1 column-, fc2 row-parallel)");
  sp_ = c.sequence_parallel && parallel_;
  reject_if(c.return_bias && !c.bias, name, "return_bias", "true", "needs bias = true");
  GRAFT_INPUT_CHECK(c.eps > 0, name, ": eps = ", c.eps, ", expected > 0");
  GRAFT_INPUT_CHECK(c.hidden_size > 0 && c.ffn_hidden_size > 0, name,
                    ": hidden_size = ", c.hidden_size, ", ffn_hidden_size = ", c.ffn_hidden_size,
                    ", expected > 0");
  norm_ = parse_normalization(name, c.normalization);
  act_ = parse_te_activation(name, c.activation);
  gated_ = activation_is_gated(act_);
  layers::check_params_dtype(name, c.params_dtype, c.device);
  Tensor g = Tensor::full({c.hidden_size}, c.zero_centered_gamma ? 0.f : 1.f, c.params_dtype);
  auto spec = [&] {
    return sp_ ? tp_partial_grad_spec(g.shape()) : ShardSpec::replicated(g.shape());
  };
  add_parameter("layer_norm_weight", c.device.is_cpu() ? g : g.to(c.device), false, spec());
  if (norm_ == NormType::kLayerNorm)
    add_parameter("layer_norm_bias", Tensor::zeros({c.hidden_size}, c.params_dtype, c.device),
                  false, spec());
  const int64_t f1 = gated_ ? 2 * c.ffn_hidden_size : c.ffn_hidden_size;
  LinearShard s1 = shard, s2 = shard;
  s1.mode = parallel_ ? "column" : "";
  s1.gated_halves = gated_;
  s2.mode = parallel_ ? "row" : "";
  fc1_.init(*this, name, c.hidden_size, f1, c.bias, {}, "fc1_", c.init_method, c.init_seed,
            c.params_dtype, c.device, s1);
  fc2_.init(*this, name, c.ffn_hidden_size, c.hidden_size, c.bias, {}, "fc2_",
            c.output_layer_init_method, c.init_seed + 1, c.params_dtype, c.device, s2);
  fc1_.enable_fp8(bctx.fp8, *this, "fc1_");
  fc2_.enable_fp8(bctx.fp8, *this, "fc2_");
}

TEOutput LayerNormMLP::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save,
                               const Tensor& residual) {
  const int64_t H = config_.hidden_size;
  auto ctx = save ? std::make_unique<LNMLPCtx>() : nullptr;
  Tensor x2 = layers::as_rows(x, H);
  const bool ln = norm_ == NormType::kLayerNorm;
  GRAFT_CHECK(!residual.defined() || residual.shape() == x.shape(), "te.layernorm_mlp: residual ",
              residual.str(), " for x ", x.str());
  const Tensor& gamma = parameter("layer_norm_weight")->value;
  const Tensor beta = ln ? parameter("layer_norm_bias")->value : Tensor();
  const layers::NormSpec spec{norm_, config_.eps, config_.zero_centered_gamma};
  // FP8: the norm fused into fc1's input cast, unless the normalised rows are needed in high
  // precision (returned, or gathered over sequence parallelism; copy_to_tp is the identity).
  // With a residual, the add runs alone there and the fused norm + cast reads the sum (less
  // traffic than add + norm writing bf16 rows and a separate cast reading them back).
  const bool fused = fc1_.fp8() && !sp_ && !config_.return_layernorm_output;
  Tensor n, ng = x, h, sum;
  if (fused) {
    // (residual_add: in the residual's dtype, f32 for an f32 residual stream)
    if (residual.defined()) sum = layers::residual_add(layers::as_rows(residual, H), x2);
    h = fc1_.forward_normed(*this, residual.defined() ? sum : x2, gamma, beta, spec, true,
                            ctx ? &ctx->ln : nullptr, ctx ? &ctx->norm : nullptr);
  } else {
    n = layers::norm_rows_forward(x2, gamma, beta, spec, ctx ? &ctx->norm : nullptr,
                                  residual.defined() ? layers::as_rows(residual, H) : Tensor(),
                                  &sum);
    ng = n.view(x.shape());
    if (parallel_) ng = sp_ ? gather_from_sp(ng, *tp_) : copy_to_tp(ng, *tp_);
    h = fc1_.forward(*this, layers::as_rows(ng, H), true, ctx ? &ctx->ln : nullptr);
  }
  TEOutput out;  // fc2(act(h)): with FP8 the activation is fused into fc2's input cast
  const bool add_bias = !config_.return_bias && (!parallel_ || tp_->rank() == 0);
  out.out =
      fc2_.forward_activated(*this, h, act_, add_bias, ctx ? &ctx->a : nullptr).view(ng.shape());
  if (parallel_)
    out.out = sp_ ? reduce_scatter_to_sp(out.out, *tp_) : reduce_from_tp(out.out, *tp_);
  if (config_.return_bias) out.bias = fc2_.bias(*this);
  if (config_.return_layernorm_output) out.ln_out = n.view(x.shape());
  if (residual.defined()) out.sum = sum.view(x.shape());
  if (ctx) {
    ctx->ln_shape = ng.shape();
    ctx->h = h;
    ctx->in_shape = x.shape();
    *save = std::move(ctx);
  }
  return out;
}

Tensor LayerNormMLP::backward(const Tensor& dy, LayerCtx& ctx_base, const Tensor& d_ln_out,
                              const Tensor& d_residual) {
  auto& ctx = dynamic_cast<LNMLPCtx&>(ctx_base);
  const int64_t H = config_.hidden_size, F = fc2_.in();
  Tensor dyg = sp_ ? reduce_scatter_to_sp_backward(dy, *tp_) : dy;
  Tensor da = fc2_.backward(*this, layers::as_rows(dyg, H), ctx.a);
  ProcessGroup* reduce = parallel_ && !sp_ ? tp_.get() : nullptr;
  Tensor dln;
  if (fc1_.fp8() && !fc1_.has_bias()) {  // the activation's backward fused into fc1's dy cast
    dln = fc1_.backward_activated(*this, da, ctx.h, act_, ctx.ln, reduce);
  } else {
    const int64_t rows = da.size(0);
    Tensor dh = Tensor::empty(ctx.h.shape(), da.dtype(), dy.device());
    ActBwdParams p;
    p.dy = da.raw();
    p.x = ctx.h.raw();
    p.dx = dh.raw();
    p.rows = rows;
    p.cols = F;
    p.act = act_;
    p.dtype = da.dtype();
    p.device = dy.device();
    if (rows > 0) activation_bwd(p);
    dln = fc1_.backward(*this, dh, ctx.ln, reduce);
  }
  if (sp_) dln = layers::as_rows(gather_from_sp_backward(dln.view(ctx.ln_shape), *tp_), H);
  if (d_ln_out.defined()) layers::add_into(dln, layers::as_rows(d_ln_out, H));
  const bool ln = norm_ == NormType::kLayerNorm;
  Parameter* g = parameter("layer_norm_weight");
  Parameter* b = ln ? parameter("layer_norm_bias") : nullptr;
  Tensor dx = layers::norm_rows_backward(
      dln, ctx.norm, g->value, g, b, {norm_, config_.eps, config_.zero_centered_gamma},
      d_residual.defined() ? layers::as_rows(d_residual, H) : Tensor());
  return dx.view(ctx.in_shape);
}

static Register<LayerNormMLP, LayerNormMLPConfig> reg(
    "te.layernorm_mlp", "layernorm_mlp", [](const LayerNormMLPConfig& c, const BuildContext& ctx) {
      return std::make_unique<LayerNormMLP>(c, ctx);
    });

}  // namespace graft::te
