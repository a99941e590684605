#include "layers/te/multihead_attention.h"

#include "framework/registry/registry.h"
#include "kernels/qkv.h"
#include "layers/reference/common.h"
#include "layers/reference/norm.h"
#include "layers/reference/rope_table.h"
#include "layers/te/layernorm_linear.h"
#include "layers/te/linear.h"
#include "layers/te/norm.h"
#include "parallel/tp_layout.h"

namespace graft::te {
namespace {

const char* kName = "te.multihead_attention";

struct MhaCtx : LayerCtx {
  std::unique_ptr<LayerCtx> qkv, qn, kn, proj, core;
  std::shared_ptr<const layers::RopeTable> rope;
  Tensor positions;
  bool rope_in_split = false;  // RoPE applied by the qkv split (and undone by the merge)
  Shape x_shape;
  int64_t seq = 0;
};

// The fused qkv output's head layout (column offsets of each block: kernels/qkv.h).
struct QkvLayout {
  int64_t hq, hkv, d;
  bool grouped;  // per-group interleaved (fuse_qkv_params) rather than q | k | v
};

// RoPE for the split to apply on q and k (kernels/qkv.h): the table and positions [B, S].
struct QkvRotation {
  const layers::RopeTable* table = nullptr;  // null: no rotation
  const Tensor* positions = nullptr;
  int64_t batch = 0, seq = 0;  // positions' shape; the qkv rows are batch · seq tokens
};

// One pass over the fused buffer (kernels/qkv.h), either way.
void run_qkv_split(const Tensor& qkv, const QkvLayout& l, const Tensor& q, const Tensor& k,
                   const Tensor& v, bool merge, const QkvRotation& rot) {
  GRAFT_CHECK(qkv.ndim() == 2 && qkv.strides()[1] == 1 && q.is_contiguous() && k.is_contiguous() &&
                  v.is_contiguous(),
              "qkv split: ", qkv.str(), " ", q.str(), " ", k.str(), " ", v.str());
  QkvSplitParams p;
  p.qkv = const_cast<void*>(qkv.raw());
  p.q = const_cast<void*>(q.raw());
  p.k = const_cast<void*>(k.raw());
  p.v = const_cast<void*>(v.raw());
  p.rows = qkv.size(0);
  p.heads_q = l.hq;
  p.heads_kv = l.hkv;
  p.head_dim = l.d;
  p.ld = qkv.strides()[0];
  p.grouped = l.grouped;
  p.merge = merge;
  p.dtype = qkv.dtype();
  p.device = qkv.device();
  if (rot.table) {
    const Tensor& pos = *rot.positions;
    GRAFT_CHECK(pos.defined() && pos.dtype() == DType::kI64 && pos.ndim() == 2 &&
                    pos.size(0) == rot.batch && pos.size(1) == rot.seq &&
                    rot.batch * rot.seq == p.rows && pos.strides()[1] == 1,
                "qkv split with rope: positions must be i64 [", rot.batch, ", ", rot.seq, "], got ",
                pos.defined() ? pos.str() : "none");
    p.rope.cos = static_cast<const float*>(rot.table->cos.raw());
    p.rope.sin = static_cast<const float*>(rot.table->sin.raw());
    p.rope.positions = static_cast<const int64_t*>(pos.raw());
    p.rope.seq = pos.size(1);
    p.rope.rotary_dim = rot.table->rotary_dim;
    p.rope.max_positions = rot.table->max_positions;
    p.rope.pos_stride_b = pos.strides()[0];
  }
  if (p.rows > 0) qkv_split(p);
}

// q [N, Hq·D], k, v [N, Hkv·D] (new, contiguous) from qkv [N, (Hq + 2Hkv)·D]; q and k rotated
// when rot.table is set.
void split_qkv(const Tensor& qkv, const QkvLayout& l, Tensor& q, Tensor& k, Tensor& v,
               const QkvRotation& rot) {
  const int64_t N = qkv.size(0), d = l.d;
  q = Tensor::empty({N, l.hq * d}, qkv.dtype(), qkv.device());
  k = Tensor::empty({N, l.hkv * d}, qkv.dtype(), qkv.device());
  v = Tensor::empty({N, l.hkv * d}, qkv.dtype(), qkv.device());
  run_qkv_split(qkv, l, q, k, v, false, rot);
}

// The inverse: dqkv [N, (Hq + 2Hkv)·D] (new) from dq, dk, dv (un-rotated when rot.table is set).
Tensor merge_qkv(const Tensor& dq, const Tensor& dk, const Tensor& dv, const QkvLayout& l,
                 const QkvRotation& rot) {
  const int64_t N = dq.size(0), d = l.d;
  Tensor out = Tensor::empty({N, (l.hq + 2 * l.hkv) * d}, dq.dtype(), dq.device());
  auto c = [](const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); };
  run_qkv_split(out, l, c(dq), c(dk), c(dv), true, rot);
  return out;
}

// The qkv rows of a tp rank whose KV head is replicated (heads.kv_replicas = m > 1; none
// otherwise: the even split of whole KV groups). With n = Hq/Hkv query heads per group, the rank
// holds group g = heads.kv_offset's query heads j·n/m .. (j+1)·n/m - 1 (j = heads.kv_replica) and
// the group's key and value head, replica j of m. Fused (grouped layout): the query rows and a
// second part "kv" (key + value, adjacent in the group); split: query / key / value pieces. The
// local qkv output is then the grouped (or q | k | v) layout of one group, as run_qkv_split reads.
std::vector<TpRowBlock> replicated_kv_rows(const TpHeads& heads, int64_t hq, int64_t hkv, int64_t d,
                                           bool fused) {
  if (heads.kv_replicas == 1) return {};
  const int64_t n = hq / hkv, g = heads.kv_offset, m = heads.kv_replicas, j = heads.kv_replica;
  if (fused) {
    const int64_t base = g * (n + 2) * d;
    return {{0, base + heads.q_offset % n * d, heads.q * d, 0, 1, ""},
            {0, base + n * d, 2 * d, j, m, "kv"}};
  }
  return {{0, heads.q_offset * d, heads.q * d, 0, 1, ""},
          {1, g * d, d, j, m, ""},
          {2, g * d, d, j, m, ""}};
}

}  // namespace

MultiheadAttention::MultiheadAttention(const MultiheadAttentionConfig& c, const BuildContext& ctx)
    : Module(kName), config_(c), ctx_(ctx) {
  GRAFT_INPUT_CHECK(c.hidden_size > 0 && c.num_attention_heads > 0, kName,
                    ": hidden_size = ", c.hidden_size,
                    ", num_attention_heads = ", c.num_attention_heads, ", expected > 0");
  d_ = c.kv_channels > 0 ? c.kv_channels : c.hidden_size / c.num_attention_heads;
  GRAFT_INPUT_CHECK(c.kv_channels > 0 || c.hidden_size % c.num_attention_heads == 0, kName,
                    ": kv_channels unset and hidden_size = ", c.hidden_size,
                    " is not a multiple of num_attention_heads = ", c.num_attention_heads);
  kv_ = c.num_gqa_groups > 0 ? c.num_gqa_groups : c.num_attention_heads;
  GRAFT_INPUT_CHECK(c.num_attention_heads % kv_ == 0, kName, ": num_gqa_groups = ", kv_,
                    " must divide num_attention_heads = ", c.num_attention_heads);
  reject_if(c.attention_type != "self", kName, "attention_type", c.attention_type,
            "only self-attention is implemented");
  reject_if(c.qkv_format != "bshd", kName, "qkv_format", c.qkv_format,
            "MultiheadAttention takes [batch, seq, hidden] (bshd) inputs");
  check_linear_options(kName, c.sequence_parallel, c.tp_size, "", false, ctx);
  const TpHeads heads = tp_heads(c.num_attention_heads, kv_, ctx.tp(), kName);
  reject_if(!c.qk_norm_type.empty() && c.qk_norm_type != "RMSNorm" && c.qk_norm_type != "LayerNorm",
            kName, "qk_norm_type", c.qk_norm_type, "expected RMSNorm or LayerNorm");
  reject_if(c.return_layernorm_output && !c.input_layernorm, kName, "return_layernorm_output",
            "true", "needs input_layernorm = true");
  const int64_t hq = c.num_attention_heads, total = (hq + 2 * kv_) * d_;
  const bool tp = ctx.tp().size() > 1;
  const std::string mode = tp ? "column" : "";
  const bool qkv_bias = c.qkv_bias.value_or(c.bias), proj_bias = c.proj_bias.value_or(c.bias);
  ParametersSplit split;
  if (!c.fuse_qkv_params) split = {{"query", hq * d_}, {"key", kv_ * d_}, {"value", kv_ * d_}};
  const std::vector<TpRowBlock> rows = replicated_kv_rows(heads, hq, kv_, d_, c.fuse_qkv_params);
  if (c.input_layernorm) {
    LayerNormLinearConfig lc;
    lc.in_features = c.hidden_size;
    lc.out_features = total;
    lc.eps = c.layernorm_epsilon;
    lc.bias = qkv_bias;
    lc.normalization = c.normalization;
    lc.zero_centered_gamma = c.zero_centered_gamma;
    lc.return_layernorm_output = c.return_layernorm_output;
    lc.parameters_split = split;
    lc.init_method = c.init_method;
    lc.init_seed = c.init_seed;
    lc.params_dtype = c.params_dtype;
    lc.device = c.device;
    lc.parallel_mode = mode;
    lc.tp_rows = rows;
    lc.sequence_parallel = c.sequence_parallel;
    layernorm_qkv_ = &add_child("layernorm_qkv",
                                Registry::global().create<LayerNormLinear, LayerNormLinearConfig>(
                                    "te.layernorm_linear", lc, ctx_));
  } else {
    LinearConfig lc;
    lc.in_features = c.hidden_size;
    lc.out_features = total;
    lc.bias = qkv_bias;
    lc.parameters_split = split;
    lc.init_method = c.init_method;
    lc.init_seed = c.init_seed;
    lc.params_dtype = c.params_dtype;
    lc.device = c.device;
    lc.parallel_mode = mode;
    lc.tp_rows = rows;
    lc.sequence_parallel = c.sequence_parallel;
    qkv_ =
        &add_child("qkv", Registry::global().create<Linear, LinearConfig>("te.linear", lc, ctx_));
  }
  if (!c.qk_norm_type.empty()) {
    NormConfig nc{d_, c.qk_norm_eps, c.zero_centered_gamma, c.params_dtype, c.device};
    nc.tp_partial_grad = true;  // each tp rank normalises its own heads
    const char* reg = c.qk_norm_type == "RMSNorm" ? "te.rmsnorm" : "te.layernorm";
    q_norm_ =
        &add_child("q_norm", Registry::global().create<graft::Norm, NormConfig>(reg, nc, ctx_));
    k_norm_ =
        &add_child("k_norm", Registry::global().create<graft::Norm, NormConfig>(reg, nc, ctx_));
  }
  // From here on the heads are this rank's.
  hq_ = heads.q;
  kv_ = heads.kv;
  DotProductAttentionConfig dc;
  dc.num_attention_heads = hq_;
  dc.kv_channels = d_;
  dc.num_gqa_groups = kv_;
  dc.attention_dropout = c.attention_dropout;
  dc.attn_mask_type = c.attn_mask_type;
  dc.window_size = c.window_size;
  dc.qkv_format = "bshd";
  dc.softmax_scale = c.softmax_scale;
  dc.layer_number = c.layer_number;
  core_ = &add_child("core_attention",
                     Registry::global().create<DotProductAttention, DotProductAttentionConfig>(
                         "te.dot_product_attention", dc, ctx_));
  reject_if(core_->mask() == AttnMask::kArbitrary, kName, "attn_mask_type", "arbitrary",
            "self-attention layers take masks from AttentionInputs (causal/padding/window)");
  LinearConfig pc;
  pc.in_features = hq * d_;
  pc.out_features = c.hidden_size;
  pc.bias = proj_bias;
  pc.return_bias = c.return_bias;
  pc.init_method = c.output_layer_init_method;
  pc.init_seed = c.init_seed + 7;
  pc.params_dtype = c.params_dtype;
  pc.device = c.device;
  pc.parallel_mode = tp ? "row" : "";
  pc.sequence_parallel = c.sequence_parallel;
  proj_ =
      &add_child("proj", Registry::global().create<Linear, LinearConfig>("te.linear", pc, ctx_));
  if (c.rotary) layers::rope_table(c.rope, d_, 1, c.device);  // validates now
}

TEOutput MultiheadAttention::forward(const Tensor& x, const AttentionInputs& in,
                                     std::unique_ptr<LayerCtx>* save) {
  const MultiheadAttentionConfig& c = config_;
  GRAFT_CHECK(x.ndim() == 3 && x.size(2) == c.hidden_size, kName, ": x ", x.str());
  // Under sequence parallelism x is this rank's shard; attention runs on the whole sequence.
  const int64_t B = x.size(0), S = in.seq > 0 ? in.seq : x.size(1), N = B * S, hq = hq_;
  auto ctx = save ? std::make_unique<MhaCtx>() : nullptr;
  TEOutput res = layernorm_qkv_ ? layernorm_qkv_->forward(x, ctx ? &ctx->qkv : nullptr)
                                : qkv_->forward(x, ctx ? &ctx->qkv : nullptr);
  auto* qn = dynamic_cast<graft::Norm*>(q_norm_);
  auto* kn = dynamic_cast<graft::Norm*>(k_norm_);
  std::shared_ptr<const layers::RopeTable> rope;
  if (c.rotary)
    rope = layers::rope_table(c.rope, d_, layers::rope_positions_needed(in), x.device());
  // RoPE inside the split unless a q/k norm must come between them (qk_norm_before_rope).
  const bool rope_in_split = rope && !(qn && c.qk_norm_before_rope);
  Tensor q, k, v;
  split_qkv(res.out.view({N, (hq + 2 * kv_) * d_}), {hq, kv_, d_, c.fuse_qkv_params}, q, k, v,
            rope_in_split ? QkvRotation{rope.get(), &in.positions, B, S} : QkvRotation{});
  auto norm_qk = [&] {
    if (!qn) return;
    q = qn->forward(q.view({N * hq, d_}), ctx ? &ctx->qn : nullptr).view({N, hq * d_});
    k = kn->forward(k.view({N * kv_, d_}), ctx ? &ctx->kn : nullptr).view({N, kv_ * d_});
  };
  if (c.qk_norm_before_rope) norm_qk();
  Tensor q4 = q.view({B, S, hq, d_}), k4 = k.view({B, S, kv_, d_});
  if (rope && !rope_in_split) {
    layers::rope_apply(q4, in.positions, *rope, false);
    layers::rope_apply(k4, in.positions, *rope, false);
  }
  if (!c.qk_norm_before_rope) {
    norm_qk();
    q4 = q.view({B, S, hq, d_});
    k4 = k.view({B, S, kv_, d_});
  }
  Tensor o =
      core_->forward_self(q4, k4, v.view({B, S, kv_, d_}), in, ctx ? &ctx->core : nullptr, kName);
  TEOutput out = proj_->forward(o.view({B, S, hq * d_}), ctx ? &ctx->proj : nullptr);
  if (c.return_layernorm_output) out.ln_out = res.ln_out;
  if (ctx) {
    ctx->rope = rope;
    ctx->rope_in_split = rope_in_split;
    ctx->positions = in.positions;
    ctx->x_shape = x.shape();
    ctx->seq = S;
    *save = std::move(ctx);
  }
  return out;
}

Tensor MultiheadAttention::backward(const Tensor& dy, LayerCtx& ctx_base, const Tensor& d_ln_out,
                                    const Tensor& d_residual) {
  auto& ctx = dynamic_cast<MhaCtx&>(ctx_base);
  const MultiheadAttentionConfig& c = config_;
  const int64_t B = ctx.x_shape[0], S = ctx.seq, N = B * S, hq = hq_;
  Tensor d_o = proj_->backward(dy, *ctx.proj).view({B, S, hq, d_});
  DotProductAttention::Grads g = core_->backward_self(d_o, *ctx.core);
  Tensor dq = g.dq, dk = g.dk, dv = g.dv;
  auto* qn = dynamic_cast<graft::Norm*>(q_norm_);
  auto* kn = dynamic_cast<graft::Norm*>(k_norm_);
  auto norm_qk_bwd = [&] {
    if (!qn) return;
    dq = qn->backward(dq.view({N * hq, d_}), *ctx.qn).view({B, S, hq, d_});
    dk = kn->backward(dk.view({N * kv_, d_}), *ctx.kn).view({B, S, kv_, d_});
  };
  if (!c.qk_norm_before_rope) norm_qk_bwd();
  if (ctx.rope && !ctx.rope_in_split) {
    layers::rope_apply(dq, ctx.positions, *ctx.rope, true);
    layers::rope_apply(dk, ctx.positions, *ctx.rope, true);
  }
  if (c.qk_norm_before_rope) norm_qk_bwd();
  Tensor dqkv = merge_qkv(
      dq.view({N, hq * d_}), dk.view({N, kv_ * d_}), dv.view({N, kv_ * d_}),
      {hq, kv_, d_, c.fuse_qkv_params},
      ctx.rope_in_split ? QkvRotation{ctx.rope.get(), &ctx.positions, B, S} : QkvRotation{});
  Tensor dqkv3 = dqkv.view({B, S, dqkv.size(1)});
  if (layernorm_qkv_) return layernorm_qkv_->backward(dqkv3, *ctx.qkv, d_ln_out, d_residual);
  Tensor dx = qkv_->backward(dqkv3, *ctx.qkv);
  if (d_residual.defined()) layers::add_into(dx, d_residual);
  return dx;
}

static Register<MultiheadAttention, MultiheadAttentionConfig> reg(
    kName, "attention", [](const MultiheadAttentionConfig& c, const BuildContext& ctx) {
      return std::make_unique<MultiheadAttention>(c, ctx);
    });

}  // namespace graft::te
