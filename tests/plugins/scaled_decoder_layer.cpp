// Example plugin: "example.scaled_decoder_layer", a Llama decoder layer whose output is scaled by
// 1/2:
//   h = x + self_attn(input_layernorm(x));  y = ½ · (h + mlp(post_attention_layernorm(h)))
//   dx = layerᵀ(½ · dy)
// Its parameters live under "inner." and its HF weight map strips that prefix, so it loads any
// Llama-family checkpoint. Load with `graft ... --plugin graft_example_plugin.so` (or
// graft::load_plugin) and select with an override {"llama.decoder_layer" ->
// "example.scaled_decoder_layer"}; `graft layers --plugin ...` lists it with the plugin's path.
//
// Tensor parallelism, the way a plugin does it: the build context carries the groups, so the
// layer asks ctx.groups->tp for its rank and size, allocates only its slice of each weight and
// declares that slice in the parameter's ShardSpec (global shape + offset); everything else
// (gradient reduction, checkpoints, initialisation from the single-process weights, HF
// load/export) follows from the specs. Its own gated MLP is written out here: gate_proj and
// up_proj column-parallel (rows [r·F/T, (r+1)·F/T) of [F, H]), down_proj row-parallel (columns of
// [H, F]), entered with copy_to_tp (or gather_from_sp under sequence parallelism) and left with
// reduce_from_tp (or reduce_scatter_to_sp) — parallel/tp_collectives.h. The attention and the
// norms are graft's reference ones, built with the same context (they split heads themselves).
#include <memory>

#include "framework/registry/registry.h"
#include "kernels/activation.h"
#include "kernels/elementwise.h"
#include "layers/reference/attention.h"
#include "layers/reference/common.h"
#include "layers/reference/norm.h"
#include "parallel/tp_collectives.h"

namespace example {

using namespace graft;

constexpr float kScale = 0.5f;

void scale_in_place(Tensor& t) {
  ScaleParams p;
  p.x = t.raw();
  p.alpha = kScale;
  p.n = t.numel();
  p.device = t.device();
  scale(p);
}

// A module holding one parameter "weight" (so the MLP's names are the HF ones: gate_proj.weight).
struct Weight : Module {
  Weight(Tensor value, ShardSpec spec) : Module("example.weight") {
    add_parameter("weight", std::move(value), true, std::move(spec));
  }
};

// The gated MLP (swiglu), tensor-parallel over the context's tp group.
class ParallelMlp : public Module {
 public:
  ParallelMlp(const DecoderConfig& c, const BuildContext& ctx)
      : Module("example.parallel_mlp"), tp_(ctx.groups->tp), sp_(c.sequence_parallel) {
    const int64_t T = tp_->size(), r = tp_->rank(), H = c.hidden_size, F = c.ffn_hidden_size;
    GRAFT_INPUT_CHECK(F % T == 0, "example.scaled_decoder_layer: intermediate_size = ", F,
                      " is not divisible by parallel.tp = ", T);
    f_ = F / T;
    auto zeros = [&](int64_t a, int64_t b) {
      return Tensor::zeros({a, b}, c.params_dtype, c.device);
    };
    // This rank's slice and where it sits in the whole tensor: that is the whole contract.
    auto weight = [&](const char* name, Tensor v, ShardSpec spec) {
      return add_child(name, std::make_unique<Weight>(std::move(v), std::move(spec)))
          .parameter("weight");
    };
    gate_ =
        weight("gate_proj", zeros(f_, H), ShardSpec::split({F, H}, 0, LayoutGroup::kTP, r * f_));
    up_ = weight("up_proj", zeros(f_, H), ShardSpec::split({F, H}, 0, LayoutGroup::kTP, r * f_));
    down_ =
        weight("down_proj", zeros(H, f_), ShardSpec::split({H, F}, 1, LayoutGroup::kTP, r * f_));
  }

  Tensor forward(const Tensor& x, Tensor* save_x, Tensor* save_gu) {
    Tensor xin = sp_ ? gather_from_sp(x, *tp_) : copy_to_tp(x, *tp_);
    Tensor x2 = layers::as_rows(xin, xin.size(-1));
    const int64_t rows = x2.size(0);
    Tensor gu = Tensor::empty({rows, 2 * f_}, x2.dtype(), x2.device());
    Tensor g = gu.slice(1, 0, f_), u = gu.slice(1, f_, f_);
    layers::matmul_nt_into(x2, gate_->value, Tensor(), g, 0.0f);
    layers::matmul_nt_into(x2, up_->value, Tensor(), u, 0.0f);
    Tensor h = Tensor::empty({rows, f_}, x2.dtype(), x2.device());
    ActFwdParams p;
    p.x = gu.raw();
    p.y = h.raw();
    p.rows = rows;
    p.cols = f_;
    p.act = Activation::kSwiglu;
    p.dtype = gu.dtype();
    p.device = gu.device();
    if (rows > 0) activation_fwd(p);
    Shape ys = xin.shape();
    ys.back() = down_->value.size(0);
    Tensor y = layers::matmul_nt(h, down_->value).view(ys);
    if (save_x) *save_x = xin;
    if (save_gu) *save_gu = gu;
    return sp_ ? reduce_scatter_to_sp(y, *tp_) : reduce_from_tp(y, *tp_);
  }

  Tensor backward(const Tensor& dy_in, const Tensor& xin, const Tensor& gu) {
    Tensor dy = sp_ ? reduce_scatter_to_sp_backward(dy_in, *tp_) : dy_in;
    Tensor dy2 = layers::as_rows(dy, dy.size(-1)), x2 = layers::as_rows(xin, xin.size(-1));
    const int64_t rows = x2.size(0);
    // Recompute h for the down projection's weight gradient.
    Tensor h = Tensor::empty({rows, f_}, gu.dtype(), gu.device());
    ActFwdParams fp;
    fp.x = gu.raw();
    fp.y = h.raw();
    fp.rows = rows;
    fp.cols = f_;
    fp.dtype = gu.dtype();
    fp.device = gu.device();
    if (rows > 0) activation_fwd(fp);
    Parameter* down = down_;
    layers::weight_grad(dy2, h, *down);
    Tensor dh = layers::matmul_nn(dy2, down->value);
    Tensor dgu = Tensor::empty({rows, 2 * f_}, gu.dtype(), gu.device());
    ActBwdParams bp;
    bp.dy = dh.raw();
    bp.x = gu.raw();
    bp.dx = dgu.raw();
    bp.rows = rows;
    bp.cols = f_;
    bp.act = Activation::kSwiglu;
    bp.dtype = gu.dtype();
    bp.device = gu.device();
    if (rows > 0) activation_bwd(bp);
    Tensor dg = dgu.slice(1, 0, f_), du = dgu.slice(1, f_, f_);
    Parameter *gate = gate_, *up = up_;
    Tensor dx = layers::matmul_nn(dg, gate->value);
    layers::matmul_nn_into(du, up->value, dx, 1.0f);
    layers::weight_grad(dg, x2, *gate);
    layers::weight_grad(du, x2, *up);
    Tensor dx3 = dx.view(xin.shape());
    return sp_ ? gather_from_sp_backward(dx3, *tp_) : copy_to_tp_backward(dx3, *tp_);
  }

 private:
  std::shared_ptr<ProcessGroup> tp_;
  bool sp_;
  int64_t f_ = 0;  // local intermediate size
  Parameter *gate_ = nullptr, *up_ = nullptr, *down_ = nullptr;
};

struct Ctx : LayerCtx {
  std::unique_ptr<LayerCtx> ln1, attn, ln2;
  Tensor mlp_x, gu;
};

// The layer's own modules, under "inner." (HF names without the "model.layers.N." prefix).
class Inner : public Module {
 public:
  Inner(const DecoderConfig& c, const BuildContext& ctx) : Module("example.inner") {
    GRAFT_INPUT_CHECK(c.activation == "swiglu",
                      "example.scaled_decoder_layer: activation = ", c.activation,
                      " (the example plugin's MLP is swiglu)");
    NormConfig nc{c.hidden_size,         c.normalization, c.norm_eps,
                  c.zero_centered_gamma, c.params_dtype,  c.device};
    nc.tp_partial_grad = c.sequence_parallel;  // norms of sequence shards
    auto norm = [&](const char* name) {
      return &add_child(name,
                        Registry::global().create<Norm, NormConfig>("reference.rmsnorm", nc, ctx));
    };
    ln1 = norm("input_layernorm");
    attn = &add_child("self_attn", std::make_unique<Attention>(c, ctx));
    ln2 = norm("post_attention_layernorm");
    mlp = &add_child("mlp", std::make_unique<ParallelMlp>(c, ctx));
  }
  Norm *ln1, *ln2;
  Attention* attn;
  ParallelMlp* mlp;
};

class ScaledDecoderLayer : public DecoderLayer {
 public:
  ScaledDecoderLayer(const DecoderConfig& c, const BuildContext& ctx)
      : DecoderLayer("example.scaled_decoder_layer") {
    validate_decoder_config(c, "example.scaled_decoder_layer");
    inner_ = &add_child("inner", std::make_unique<Inner>(c, ctx));
  }
  Tensor forward(const Tensor& x_in, const AttentionInputs& in,
                 std::unique_ptr<LayerCtx>* save) override {
    auto ctx = save ? std::make_unique<Ctx>() : nullptr;
    Tensor x = x_in.is_contiguous() ? x_in : x_in.contiguous();
    Inner& m = *inner_;
    Tensor a = m.attn->forward(m.ln1->forward(x, ctx ? &ctx->ln1 : nullptr), in,
                               ctx ? &ctx->attn : nullptr);
    Tensor h = layers::add(x, a);
    Tensor y = m.mlp->forward(m.ln2->forward(h, ctx ? &ctx->ln2 : nullptr),
                              ctx ? &ctx->mlp_x : nullptr, ctx ? &ctx->gu : nullptr);
    layers::add_into(y, h);
    scale_in_place(y);
    if (ctx) *save = std::move(ctx);
    return y;
  }
  Tensor backward(const Tensor& dy, LayerCtx& base) override {
    auto& ctx = dynamic_cast<Ctx&>(base);
    Inner& m = *inner_;
    Tensor d = dy.clone();
    scale_in_place(d);
    Tensor dh = m.ln2->backward(m.mlp->backward(d, ctx.mlp_x, ctx.gu), *ctx.ln2);
    layers::add_into(dh, d);
    Tensor dx = m.ln1->backward(m.attn->backward(dh, *ctx.attn), *ctx.ln1);
    layers::add_into(dx, dh);
    return dx;
  }
  WeightMap hf_weight_map() const override {
    WeightMap map;
    for (const auto& [name, p] : const_cast<ScaledDecoderLayer*>(this)->named_parameters())
      map.push_back({name, {WeightPiece{name.substr(6)}}});  // "inner.<hf name>"
    return map;
  }

 private:
  Inner* inner_;
};

static Register<DecoderLayer, DecoderConfig> reg("example.scaled_decoder_layer", "decoder_layer",
                                                 [](const DecoderConfig& c,
                                                    const BuildContext& ctx) {
                                                   return std::make_unique<ScaledDecoderLayer>(c,
                                                                                               ctx);
                                                 });

}  // namespace example
