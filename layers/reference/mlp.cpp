#include "layers/reference/mlp.h"

#include "framework/registry/registry.h"
#include "kernels/activation.h"
#include "layers/reference/common.h"
#include "parallel/tp_layout.h"

namespace graft {
namespace {

struct MlpCtx : LayerCtx {
  std::unique_ptr<LayerCtx> gate, up, down;
  Tensor gu;  // [rows, 2F]: gate | up, the activation's input
};

Activation gated_activation(const std::string& name) {
  auto a = activation_from_name(name);
  GRAFT_INPUT_CHECK(a && activation_is_gated(*a), "llama.decoder_layer: activation = '", name,
                    "' is not supported (the gated MLP takes swiglu, geglu or reglu)");
  return *a;
}

}  // namespace

GatedMLP::GatedMLP(const DecoderConfig& c, const BuildContext& ctx)
    : Module("reference.mlp"), config_(c), ctx_(ctx) {
  gated_activation(c.activation);
  // gate/up column-parallel, down row-parallel: each rank computes F / tp of the hidden units.
  local_ffn_ = tp_divide(c.ffn_hidden_size, ctx.tp(), "llama.decoder_layer", "intermediate_size");
  auto make = [&](const char* name, int64_t in, int64_t out, const char* mode) {
    LinearConfig lc{in, out, c.mlp_bias, c.params_dtype, c.device};
    lc.parallel_mode = mode;
    lc.sequence_parallel = c.sequence_parallel;
    return &add_child(
        name, Registry::global().create<Linear, LinearConfig>("reference.linear", lc, ctx_));
  };
  gate_proj_ = make("gate_proj", c.hidden_size, c.ffn_hidden_size, "column");
  up_proj_ = make("up_proj", c.hidden_size, c.ffn_hidden_size, "column");
  down_proj_ = make("down_proj", c.ffn_hidden_size, c.hidden_size, "row");
}

Tensor GatedMLP::forward(const Tensor& x, std::unique_ptr<LayerCtx>* save) {
  const int64_t F = local_ffn_;
  auto ctx = save ? std::make_unique<MlpCtx>() : nullptr;
  Tensor g = gate_proj_->forward(x, ctx ? &ctx->gate : nullptr);
  Tensor u = up_proj_->forward(x, ctx ? &ctx->up : nullptr);
  const int64_t rows = g.numel() / F;
  Tensor gu = Tensor::empty({rows, 2 * F}, g.dtype(), x.device());
  Tensor gu_g = gu.slice(1, 0, F), gu_u = gu.slice(1, F, F);
  layers::copy_matrix(gu_g, g.view({rows, F}));
  layers::copy_matrix(gu_u, u.view({rows, F}));
  Tensor h = Tensor::empty({rows, F}, g.dtype(), x.device());
  ActFwdParams p;
  p.x = gu.raw();
  p.y = h.raw();
  p.rows = rows;
  p.cols = F;
  p.act = gated_activation(config_.activation);
  p.dtype = gu.dtype();
  p.device = x.device();
  if (rows > 0) activation_fwd(p);
  Shape hs = g.shape();
  hs.back() = F;
  Tensor y = down_proj_->forward(h.view(hs), ctx ? &ctx->down : nullptr);
  if (ctx) {
    ctx->gu = gu;
    *save = std::move(ctx);
  }
  return y;
}

Tensor GatedMLP::backward(const Tensor& dy, LayerCtx& ctx_base) {
  auto& ctx = dynamic_cast<MlpCtx&>(ctx_base);
  const int64_t F = local_ffn_;
  const int64_t rows = ctx.gu.size(0);
  Tensor dh = down_proj_->backward(dy, *ctx.down);
  Tensor dgu = Tensor::empty({rows, 2 * F}, dh.dtype(), dy.device());
  ActBwdParams p;
  p.dy = dh.raw();
  p.x = ctx.gu.raw();
  p.dx = dgu.raw();
  p.rows = rows;
  p.cols = F;
  p.act = gated_activation(config_.activation);
  p.dtype = dgu.dtype();
  p.device = dy.device();
  if (rows > 0) activation_bwd(p);
  Shape fs = dh.shape();
  fs.back() = F;
  Tensor dg = layers::column_block(dgu, 0, F).view(fs);
  Tensor du = layers::column_block(dgu, F, F).view(fs);
  Tensor dx = gate_proj_->backward(dg, *ctx.gate);
  layers::add_into(dx, up_proj_->backward(du, *ctx.up));
  return dx;
}

}  // namespace graft
