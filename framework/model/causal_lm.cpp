// CausalLM: embedding -> decoder layers -> final norm -> LM head, built through the registry,
// with explicit forward/backward through each module and the cross-entropy kernel.
#include "framework/model/causal_lm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "framework/model/context_parallel.h"
#include "framework/model/hf_loader.h"
#include "framework/registry/registry.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "layers/reference/common.h"
#include "layers/reference/embedding.h"
#include "layers/reference/linear.h"
#include "layers/reference/norm.h"
#include "layers/te/fp8_state.h"
#include "parallel/tp_collectives.h"
#include "parallel/vocab_parallel.h"

namespace graft {
namespace {

constexpr const char* kEmbeddingName = "reference.embedding";
constexpr const char* kNormName = "reference.rmsnorm";
constexpr const char* kLinearName = "reference.linear";

// Gemma multiplies by tensor(sqrt(hidden), dtype): the scale rounded to the parameter dtype.
double scale_in_dtype(double s, DType t) {
  if (t == DType::kBF16) return bf16_to_f32(f32_to_bf16(static_cast<float>(s)));
  if (t == DType::kF16) return f16_to_f32(f32_to_f16(static_cast<float>(s)));
  return static_cast<float>(s);
}

Tensor arange_positions(int64_t batch, int64_t seq, int64_t offset, Device device) {
  std::vector<int64_t> pos(static_cast<size_t>(batch * seq));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) pos[b * seq + s] = offset + s;
  return Tensor::from_vector(pos, {batch, seq}).to(device);
}

Tensor on_device_i64(const Tensor& t, Device device, const char* what) {
  GRAFT_INPUT_CHECK(t.dtype() == DType::kI64 && t.ndim() == 2, what,
                    ": expected an i64 [batch, seq] tensor, got ", t.str());
  Tensor c = t.is_contiguous() ? t : t.contiguous();
  return c.device() == device ? c : c.to(device);
}

}  // namespace

// Saved state of one training forward pass.
struct CausalLM::Saved {
  Tensor ids;
  std::vector<std::unique_ptr<LayerCtx>> layers;  // empty slots under activation recompute
  std::vector<Tensor> layer_inputs;               // activation recompute: each layer's input
  std::unique_ptr<LayerCtx> norm, head;
  Tensor normed;  // [rows, hidden], the LM head input (tied head; gathered under sp)
  Shape normed_shape;
};

CausalLM::CausalLM(ModelConfig config, BuildContext ctx)
    : Module("causal_lm"), config_(std::move(config)), ctx_(std::move(ctx)) {
  config_.decoder.device = ctx_.device;  // the context is the one source (build_context.h)
  config_.decoder.params_dtype = ctx_.dtype;
  const ModelConfig& c = config_;
  GRAFT_INPUT_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers > 0,
                    "model config: vocab_size, hidden_size and num_hidden_layers must be positive");
  GRAFT_INPUT_CHECK(
      c.layer_windows.empty() || static_cast<int64_t>(c.layer_windows.size()) == c.num_layers,
      "model config: ", c.layer_windows.size(), " layer windows for ", c.num_layers, " layers");
  GRAFT_INPUT_CHECK(c.final_logit_softcap == 0.0,
                    "model config: final_logit_softcap = ", c.final_logit_softcap,
                    " is not supported");
  tp_ = ctx_.groups->tp;
  // Sequence parallelism: activations between the tensor-parallel regions are sequence shards.
  config_.decoder.sequence_parallel = ctx_.groups->layout.sequence_parallel && tp_->size() > 1;
  sp_ = config_.decoder.sequence_parallel;
  // precision.residual: f32 (only meaningful with 16-bit parameters; f32 is then the stream's
  // dtype anyway).
  config_.decoder.fp32_residual = ctx_.fp32_residual && ctx_.dtype != DType::kF32;
  vocab_ = vocab_shard(c.vocab_size, *tp_, "model");
  const Registry& reg = Registry::global();
  const DType dt = c.decoder.params_dtype;
  const Device dev = c.decoder.device;

  // FP8 (ctx_.fp8) reaches the decoder layers only, and not those precision.fp8.bf16_layers
  // keeps out: the embedding, final norm and LM head stay in high precision, as in TE.
  // Every parameter is set afterwards by init_weights or an HF load: no layer initialises its own.
  BuildContext children = ctx_;
  children.skip_init = true;
  BuildContext high = children;
  high.fp8 = nullptr;
  EmbeddingConfig ec{c.vocab_size, c.hidden_size, dt, dev};
  ec.sequence_parallel = sp_;
  embed_ =
      &add_child("embed_tokens", reg.create<Embedding, EmbeddingConfig>(kEmbeddingName, ec, high));

  auto list = std::make_unique<Module>("module_list");
  for (int64_t i = 0; i < c.num_layers; ++i) {
    DecoderConfig dc = c.decoder;
    dc.hidden_size = c.hidden_size;
    dc.layer_number = i;
    if (!c.layer_windows.empty()) dc.sliding_window = c.layer_windows[static_cast<size_t>(i)];
    const bool bf16 = ctx_.fp8 && std::count(ctx_.fp8->config().bf16_layers.begin(),
                                             ctx_.fp8->config().bf16_layers.end(), i);
    layers_.push_back(&list->add_child(
        std::to_string(i),
        reg.create<DecoderLayer, DecoderConfig>(c.decoder_layer, dc, bf16 ? high : children)));
    GRAFT_INPUT_CHECK(!dc.fp32_residual || layers_.back()->takes_fp32_residual(),
                      "precision.residual = f32: decoder layer '", layers_.back()->type(),
                      "' does not take an f32 residual stream (llama.decoder_layer and "
                      "te.transformer_layer do)");
  }
  add_child("layers", std::move(list));

  NormConfig nc{c.hidden_size,
                c.decoder.normalization,
                c.decoder.norm_eps,
                c.decoder.zero_centered_gamma,
                dt,
                dev};
  nc.tp_partial_grad = sp_;
  norm_ = &add_child("norm", reg.create<Norm, NormConfig>(kNormName, nc, high));
  if (!c.tie_word_embeddings) {
    // Vocab-parallel head: column-parallel over the padded vocabulary (logits never gathered
    // for the loss).
    LinearConfig lc{c.hidden_size, vocab_.padded, false, dt, dev};
    lc.parallel_mode = "column";
    lc.sequence_parallel = sp_;
    lc.logical_out = c.vocab_size;
    lm_head_ = &add_child("lm_head", reg.create<Linear, LinearConfig>(kLinearName, lc, high));
  }
  if (ctx_.fp8) {
    GRAFT_INPUT_CHECK(
        ctx_.fp8->num_slots() > 0 ||
            static_cast<int64_t>(ctx_.fp8->config().bf16_layers.size()) == c.num_layers,
        "precision.fp8.recipe = ", te::fp8_recipe_name(ctx_.fp8->config().recipe),
        ": the model has no TE linear layers to run in FP8 (set model.layers: te)");
    ctx_.fp8->finalize(*this);
  }
}

CausalLM::~CausalLM() = default;

Device CausalLM::device() const { return config_.decoder.device; }

Parameter& CausalLM::embedding_weight() {
  Parameter* w = embed_->parameter("weight");
  GRAFT_CHECK(w != nullptr, embed_->type(), " has no parameter 'weight' to tie the LM head to");
  return *w;
}

std::vector<std::string> CausalLM::decoder_layer_types() const {
  std::vector<std::string> out;
  for (const DecoderLayer* l : layers_) {
    bool seen = false;
    for (const auto& t : out) seen = seen || t == l->type();
    if (!seen) out.push_back(l->type());
  }
  return out;
}

Tensor CausalLM::hidden(const Tensor& ids, const AttentionInputs& in, Saved* save) {
  const double scale = scale_in_dtype(config_.embedding_scale, config_.decoder.params_dtype);
  Tensor h = embed_->forward(ids, config_.decoder.fp32_residual ? 1.0 : scale);
  if (config_.decoder.fp32_residual) {
    // The f32 residual stream starts here: the embedding rows widened, then scaled in f32
    // (Gemma's sqrt(hidden), still rounded to the parameters' dtype as HF's normaliser is).
    h = layers::to_dtype(h, DType::kF32);
    if (scale != 1.0 && h.numel() > 0) {
      ScaleParams p;
      p.x = h.raw();
      p.alpha = static_cast<float>(scale);
      p.n = h.numel();
      p.dtype = h.dtype();
      p.device = h.device();
      graft::scale(p);
    }
  }
  if (save) save->layers.resize(layers_.size());
  if (save && recompute_) save->layer_inputs.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (save && recompute_) {
      save->layer_inputs[i] = h;
      h = layers_[i]->forward(h, in, nullptr);
    } else {
      h = layers_[i]->forward(h, in, save ? &save->layers[i] : nullptr);
    }
  }
  return norm_->forward(h, save ? &save->norm : nullptr);
}

Tensor CausalLM::head(const Tensor& normed, Saved* save) {
  const int64_t H = config_.hidden_size;
  if (lm_head_)
    return layers::as_rows(lm_head_->forward(normed, save ? &save->head : nullptr), vocab_.rows);
  // Tied head: the (vocab-parallel) embedding weight as a column-parallel linear.
  Tensor x = sp_ ? gather_from_sp(normed, *tp_) : copy_to_tp(normed, *tp_);
  Tensor rows = layers::as_rows(x, H);
  if (save) {
    save->normed = rows;
    save->normed_shape = normed.shape();
  }
  return layers::matmul_nt(rows, embedding_weight().value);
}

Tensor CausalLM::whole_logits(const Tensor& local) { return gather_vocab(local, vocab_, *tp_); }

AttentionInputs CausalLM::attention_inputs(const LmInputs& li, const Tensor& ids,
                                           const char* what) {
  const int64_t B = ids.size(0), S = ids.size(1);
  AttentionInputs in;
  in.batch = B;
  in.seq = S;
  in.attention = config_.attention;
  in.attention_report = &attn_report_;
  auto same_shape = [&](const Tensor& t, const char* name) {
    GRAFT_INPUT_CHECK(t.shape() == ids.shape(), what, ": ", name, " ", t.str(),
                      " does not match input_ids ", ids.str());
    return on_device_i64(t, device(), what);
  };
  in.positions = li.positions.defined() ? same_shape(li.positions, "positions")
                                        : arange_positions(B, S, 0, device());
  if (li.segment_ids.defined()) in.segment_ids = same_shape(li.segment_ids, "segment_ids");
  if (li.attention_mask.defined())
    in.key_padding_mask = same_shape(li.attention_mask, "attention_mask");
  return in;
}

Tensor CausalLM::forward(const Tensor& input_ids, const Tensor& attention_mask) {
  LmInputs li;
  li.input_ids = input_ids;
  li.attention_mask = attention_mask;
  return forward(li);
}

Tensor CausalLM::forward(const LmInputs& li_in) {
  // Context parallelism: this rank's chunks through the ring, the logits gathered back.
  ProcessGroup& cp = *ctx_.groups->cp;
  const LmInputs li = cp.size() > 1 ? cp_split(li_in, cp.rank(), cp.size()) : li_in;
  Tensor ids = on_device_i64(li.input_ids, device(), "forward: input_ids");
  const int64_t B = ids.size(0), S = ids.size(1);
  AttentionInputs in = attention_inputs(li, ids, "forward");
  if (sp_) check_sp_divisible(S, *tp_, "forward");
  in.context_parallel = cp.size() > 1;
  Tensor logits = whole_logits(head(hidden(ids, in, nullptr), nullptr));
  if (logits.dtype() != DType::kF32) {  // bf16 activations: the logits are returned in f32
    Tensor f = Tensor::empty(logits.shape(), DType::kF32, device());
    layers::cast_into(f, logits);
    logits = f;
  }
  logits = logits.view({B, S, config_.vocab_size});
  return cp.size() > 1 ? cp_gather_rows(logits, cp) : logits;
}

double CausalLM::forward_backward(const Tensor& input_ids, const Tensor& labels,
                                  const Tensor& attention_mask, bool backward, double grad_scale) {
  GRAFT_INPUT_CHECK(labels.shape() == input_ids.shape() && labels.dtype() == DType::kI64,
                    "forward_backward: labels ", labels.str(),
                    " must be i64 shaped like input_ids ", input_ids.str());
  GRAFT_INPUT_CHECK(input_ids.ndim() == 2, "forward_backward: input_ids ", input_ids.str(),
                    " must be [batch, seq]");
  // Shift: position t predicts labels[t + 1]; the last position predicts nothing. On the model's
  // device (shift_labels), so device labels never travel to the host.
  const int64_t B = input_ids.size(0), S = input_ids.size(1);
  Tensor lab = on_device_i64(labels, device(), "forward_backward: labels");
  Tensor targets = Tensor::empty({B, S}, DType::kI64, device());
  ShiftLabelsParams sp;
  sp.labels = static_cast<const int64_t*>(lab.raw());
  sp.targets = static_cast<int64_t*>(targets.raw());
  sp.batch = B;
  sp.seq = S;
  sp.device = device();
  shift_labels(sp);
  LmInputs li;
  li.input_ids = input_ids;
  li.targets = targets;
  li.attention_mask = attention_mask;
  return forward_backward(li, backward, grad_scale);
}

double CausalLM::forward_backward(const LmInputs& li, bool backward, double grad_scale,
                                  Tensor* loss_sum) {
  // Context parallelism: this rank's chunks (context_parallel.h); the ranks' losses add up.
  ProcessGroup& cp = *ctx_.groups->cp;
  if (cp.size() == 1) return forward_backward_rows(li, backward, grad_scale, false, loss_sum);
  GRAFT_CHECK(!loss_sum, "forward_backward: loss_sum (the device-side loss) needs cp = 1");
  const double part =
      forward_backward_rows(cp_split(li, cp.rank(), cp.size()), backward, grad_scale, true);
  return cp.all_reduce_scalar(part, ReduceOp::kSum);
}

double CausalLM::forward_backward_rows(const LmInputs& li_in, bool backward, double grad_scale,
                                       bool context_parallel, Tensor* loss_sum) {
  Saved save;
  save.ids = on_device_i64(li_in.input_ids, device(), "forward_backward: input_ids");
  const int64_t B = save.ids.size(0), S = save.ids.size(1), V = config_.vocab_size;
  LmInputs li = li_in;
  if (!li.positions.defined()) {
    Tensor& pos = default_positions_[{B, S}];
    if (!pos.defined()) pos = arange_positions(B, S, 0, device());
    li.positions = pos;
  }
  GRAFT_INPUT_CHECK(li.targets.defined() && li.targets.shape() == save.ids.shape() &&
                        li.targets.dtype() == DType::kI64,
                    "forward_backward: targets ", li.targets.defined() ? li.targets.str() : "none",
                    " must be i64 shaped like input_ids ", save.ids.str());
  AttentionInputs in = attention_inputs(li, save.ids, "forward_backward");
  if (sp_) check_sp_divisible(S, *tp_, "forward_backward");
  in.context_parallel = context_parallel;
  Tensor logits =
      head(hidden(save.ids, in, backward ? &save : nullptr), backward ? &save : nullptr);

  Tensor tgt = on_device_i64(li.targets, device(), "forward_backward: targets");
  if (tp_->size() > 1) {
    GRAFT_CHECK(!loss_sum, "forward_backward: loss_sum (the device-side loss) needs tp = 1");
    GRAFT_CHECK(!li.loss_divisor_at.defined(),
                "forward_backward: loss_divisor_at (the device-side divisor) needs tp = 1");
    return vocab_parallel_loss(logits, tgt, li, save, in, backward, grad_scale);
  }

  if (loss_sum)
    GRAFT_CHECK(loss_sum->defined() && loss_sum->dtype() == DType::kF32 && loss_sum->numel() >= 1 &&
                    loss_sum->device() == device(),
                "forward_backward: loss_sum must be an f32 tensor on ", device().str());
  Tensor loss = loss_sum ? *loss_sum : Tensor::zeros({1}, DType::kF32, device());
  XentFwdParams fp;
  fp.logits = logits.raw();
  fp.targets = static_cast<const int64_t*>(tgt.raw());
  fp.loss = static_cast<float*>(loss.raw());
  fp.n = B * S;
  fp.vocab = V;
  fp.num_valid = li.loss_divisor > 0 ? li.loss_divisor : -1;
  if (li.loss_divisor_at.defined()) {
    GRAFT_CHECK(li.loss_divisor_at.dtype() == DType::kI64 && li.loss_divisor_at.numel() == 1 &&
                    li.loss_divisor_at.device() == device(),
                "forward_backward: loss_divisor_at must be one i64 on ", device().str());
    fp.num_valid_at = static_cast<const int64_t*>(li.loss_divisor_at.raw());
  }
  fp.accumulate = loss_sum != nullptr;
  fp.dtype = logits.dtype();
  fp.device = device();
  if (backward) {  // one pass over the logits: the loss, and dlogits in place
    XentFwdBwdParams p;
    p.fwd = fp;
    p.dlogits = logits.raw();
    p.grad_scale = static_cast<float>(grad_scale);
    p.device = device();
    cross_entropy_fwd_bwd(p);
  } else {
    cross_entropy_fwd(fp);
  }
  // With loss_sum the loss stays on the device (no host read, no sync here).
  const double value =
      loss_sum ? std::numeric_limits<double>::quiet_NaN() : loss.to(Device::cpu()).item({0});
  if (!backward) return value;
  backward_from_logits(logits, save, in);
  return value;
}

double CausalLM::vocab_parallel_loss(Tensor& logits, const Tensor& tgt, const LmInputs& li,
                                     Saved& save, const AttentionInputs& in, bool backward,
                                     double grad_scale) {
  const int64_t num_valid = li.loss_divisor > 0 ? li.loss_divisor : -1;
  Tensor lse;
  Tensor t = tgt.view({tgt.numel()});
  const double value = vocab_parallel_xent_fwd(logits, t, vocab_, num_valid, *tp_, lse);
  if (!backward) return value;
  vocab_parallel_xent_bwd(logits, t, lse, vocab_, num_valid, grad_scale);
  backward_from_logits(logits, save, in);
  return value;
}

void CausalLM::backward_from_logits(Tensor& dlogits, Saved& save, const AttentionInputs& in) {
  const int64_t B = save.ids.size(0), S = save.ids.size(1);
  Tensor dnormed;
  auto done = [&](Module& m) {
    if (backward_hook_) backward_hook_(m);
  };
  const int64_t S_local = sp_ ? S / tp_->size() : S;
  if (lm_head_) {
    dnormed = lm_head_->backward(dlogits.view({B, S, vocab_.rows}), *save.head);
    done(*lm_head_);
  } else {
    Parameter& w = embedding_weight();
    Tensor dx = layers::matmul_nn(dlogits, w.value);
    std::unique_ptr<Work> reduce;
    if (!sp_) reduce = copy_to_tp_backward_async(dx, *tp_);  // overlaps the wgrad GEMM
    layers::weight_grad(dlogits, save.normed, w);  // tied: written here, the embedding adds
    if (reduce) reduce->wait();
    dnormed = sp_ ? gather_from_sp_backward(dx.view({B, S, config_.hidden_size}), *tp_) : dx;
  }
  Tensor dh = norm_->backward(dnormed.view({B, S_local, config_.hidden_size}), *save.norm);
  done(*norm_);
  for (size_t i = layers_.size(); i-- > 0;) {
    if (recompute_) {  // re-run this layer's forward, saving, then free it after its backward
      layers_[i]->forward(save.layer_inputs[i], in, &save.layers[i]);
      save.layer_inputs[i] = Tensor();
    }
    dh = layers_[i]->backward(dh, *save.layers[i]);
    save.layers[i].reset();
    done(*layers_[i]);
  }
  const double scale = scale_in_dtype(config_.embedding_scale, config_.decoder.params_dtype);
  embed_->backward(dh, save.ids, scale);
  done(*embed_);
}

void CausalLM::init_weights(uint64_t seed) {
  // One HF-named tensor at a time; under tp every rank keeps its own blocks of it, so each rank
  // holds exactly the single-process initialisation's slices without building the whole model.
  init_hf_weights(*this, seed);
}

std::unique_ptr<GradBuckets> attach_grad_buckets(CausalLM& model,
                                                 std::shared_ptr<ProcessGroup> group,
                                                 GradBucketOptions options) {
  auto params = model.named_parameters();
  std::reverse(params.begin(), params.end());  // backward order: the reverse of registration
  if (!options.tp) options.tp = model.context().groups->tp;
  auto buckets = std::make_unique<GradBuckets>(params, std::move(group), options);
  // Each module's parameters, collected the first time it reports (not on every micro-batch).
  model.set_backward_hook(
      [b = buckets.get(),
       cache = std::unordered_map<const Module*, std::vector<Parameter*>>()](Module& m) mutable {
        auto [it, fresh] = cache.try_emplace(&m);
        if (fresh)
          for (auto& [name, p] : m.named_parameters()) it->second.push_back(p);
        for (Parameter* p : it->second) b->mark_ready(p);
      });
  return buckets;
}

std::unique_ptr<CausalLM> build_model(const ModelConfig& config, const BuildContext& ctx) {
  return std::make_unique<CausalLM>(config, ctx);
}

std::unique_ptr<CausalLM> build_model(const ModelConfig& config) {
  return build_model(config, local_context(config.decoder));
}

}  // namespace graft
