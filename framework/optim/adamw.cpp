#include "framework/optim/adamw.h"

#include <cmath>
#include <set>

#include "framework/train/tensor_pieces.h"
#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "layers/reference/common.h"

namespace graft {
namespace {

template <class Slot>
void check_settled(const Slot& s) {
  GRAFT_CHECK(!s.param->grad_stale, "adamw: the gradient of ", s.name,
              " is stale (lazy zeroing): GradBuckets::finish settles it before it is read");
}

}  // namespace

// By shape first, then by the last name component: every matrix (>= 2-D) decays unless it is an
// embedding, whatever the module is called (TE's "layernorm_qkv.weight" and
// "layernorm_mlp.fc1_weight" are matrices of fused linears, not norms); 1-D tensors are biases
// when their last component says so and norm gains otherwise.
ParamKind classify_parameter(const std::string& name, const Tensor& value) {
  if (name.find("embed") != std::string::npos) return ParamKind::kEmbedding;
  if (value.ndim() >= 2) return ParamKind::kMatrix;
  const std::string leaf = name.substr(name.rfind('.') + 1);
  const bool bias = leaf.size() >= 4 && leaf.compare(leaf.size() - 4, 4, "bias") == 0;
  if (bias && leaf.find("norm") == std::string::npos) return ParamKind::kBias;
  return ParamKind::kNorm;
}

const char* param_kind_name(ParamKind k) {
  switch (k) {
    case ParamKind::kMatrix:
      return "matrix";
    case ParamKind::kNorm:
      return "norm";
    case ParamKind::kBias:
      return "bias";
    case ParamKind::kEmbedding:
      return "embedding";
  }
  return "?";
}

AdamW::AdamW(std::vector<std::pair<std::string, Parameter*>> params, const OptimConfig& config,
             bool emulate_bf16)
    : config_(config), emulate_bf16_(emulate_bf16) {
  for (auto& [name, p] : params) {
    GRAFT_CHECK(p->value.is_contiguous(), "parameter ", name, " is not contiguous");
    if (!p->grad.defined())
      p->grad = Tensor::zeros(p->value.shape(), DType::kF32, p->value.device());
    add_slot(ParamPiece{name, p, 0, p->value.numel()});
  }
}

AdamW::AdamW(std::vector<ParamPiece> pieces, const OptimConfig& config, bool emulate_bf16,
             ProcessGroup* shard_group)
    : config_(config), emulate_bf16_(emulate_bf16), shard_group_(shard_group) {
  for (const auto& piece : pieces) {
    GRAFT_CHECK(piece.param->value.is_contiguous() && piece.param->grad.defined(), "parameter ",
                piece.name, " must be contiguous and have a gradient");
    add_slot(piece);
  }
}

void AdamW::add_slot(const ParamPiece& piece) {
  Parameter* p = piece.param;
  Slot s;
  s.name = piece.name;
  s.param = p;
  s.piece = piece;
  const Device dev = p->value.device();
  Tensor value = piece.value();
  if (p->value.dtype() == DType::kF32 && (!emulate_bf16_ || p->f32_master)) {
    s.master = value;
  } else {
    s.master = Tensor::empty({piece.numel}, DType::kF32, dev);
    layers::cast_into(s.master, value);
    s.own_master = true;
  }
  s.m = Tensor::zeros({piece.numel}, DType::kF32, dev);
  s.v = Tensor::zeros({piece.numel}, DType::kF32, dev);
  const ParamKind k = classify_parameter(piece.name, p->value);
  const bool decay = (k == ParamKind::kMatrix) || (k == ParamKind::kNorm && config_.decay_norms) ||
                     (k == ParamKind::kBias && config_.decay_biases) ||
                     (k == ParamKind::kEmbedding && config_.decay_embeddings);
  p->decay = decay;
  s.weight_decay = decay ? static_cast<float>(config_.weight_decay) : 0.0f;
  slots_.push_back(std::move(s));
  pieces_.push_back(piece);
}

bool AdamW::decays(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return s.param->decay;
  return false;
}

bool AdamW::has_master() const {
  for (const auto& s : slots_)
    if (s.own_master) return true;
  return false;
}

size_t AdamW::state_bytes() const {
  size_t n = 0;
  for (const auto& s : slots_)
    n += s.m.nbytes() + s.v.nbytes() + (s.own_master ? s.master.nbytes() : 0);
  return n;
}

void AdamW::grad_norm_sq_into(float* out) const {
  GradNormParams g;
  g.device = slots_.front().param->grad.device();
  // Under tp each piece counts once: replicas (a KV head on several ranks) only on the primary.
  const bool tp = tp_group_ && tp_group_->size() > 1;
  for (const auto& s : slots_) {
    check_settled(s);
    if (tp && !s.param->spec.is_primary(tp_group_->rank())) continue;
    g.grads.push_back(static_cast<const float*>(s.piece.grad().raw()));
    g.sizes.push_back(s.piece.numel);
  }
  g.squared = true;
  g.out = out;
  if (!g.grads.empty()) ::graft::grad_norm(g);  // else `out` keeps the caller's zero
}

double AdamW::grad_norm() const {
  double sq = 0.0;
  const bool tp = tp_group_ && tp_group_->size() > 1;
  if (!slots_.empty()) {
    Tensor out = Tensor::zeros({1}, DType::kF32, slots_.front().param->grad.device());
    grad_norm_sq_into(static_cast<float*>(out.raw()));
    sq = out.to(Device::cpu()).to_f32_vector()[0];
  }
  if (shard_group_ && shard_group_->size() > 1)
    sq = shard_group_->all_reduce_scalar(sq, ReduceOp::kSum);
  if (tp) sq = tp_group_->all_reduce_scalar(sq, ReduceOp::kSum);
  return std::sqrt(sq);
}

void AdamW::grad_norm_sq_on_device(Tensor& out) const {
  GRAFT_CHECK(
      (!shard_group_ || shard_group_->size() == 1) && (!tp_group_ || tp_group_->size() == 1),
      "AdamW::grad_norm_sq_on_device: the norm of a sharded model needs the host path");
  GRAFT_CHECK(out.defined() && out.dtype() == DType::kF32 && out.numel() >= 1,
              "AdamW::grad_norm_sq_on_device: out must be an f32 tensor");
  if (slots_.empty()) {
    out.zero_();
    return;
  }
  grad_norm_sq_into(static_cast<float*>(out.raw()));
}

AdamWMultiParams AdamW::update_params(double lr, double grad_scale) {
  ++steps_;
  return params_for(lr, grad_scale);
}

AdamWMultiParams AdamW::params_for(double lr, double grad_scale) {
  AdamWMultiParams p;
  p.device = slots_.front().param->value.device();
  p.hyper.lr = static_cast<float>(lr);
  p.hyper.beta1 = static_cast<float>(config_.beta1);
  p.hyper.beta2 = static_cast<float>(config_.beta2);
  p.hyper.eps = static_cast<float>(config_.eps);
  p.hyper.step = steps_;
  p.hyper.grad_scale = static_cast<float>(grad_scale);
  const bool copy_back = !emulate_bf16_;
  for (auto& s : slots_) {
    check_settled(s);
    AdamWTensor t;
    t.param = static_cast<float*>(s.master.raw());
    t.grad = static_cast<const float*>(s.piece.grad().raw());
    t.m = static_cast<float*>(s.m.raw());
    t.v = static_cast<float*>(s.v.raw());
    t.n = s.piece.numel;
    t.weight_decay = s.weight_decay;
    if (s.own_master && copy_back) {
      t.param_copy = s.piece.value().raw();
      p.copy_dtype = s.param->value.dtype();
    }
    p.tensors.push_back(t);
  }
  return p;
}

void AdamW::step(double lr, double grad_scale) {
  if (slots_.empty()) {
    ++steps_;
    return;
  }
  adamw_multi_step(update_params(lr, grad_scale));
  if (emulate_bf16_) sync_weights();
}

void AdamW::step_on_device(double lr, double max_norm, const float* norm_sq, const float* loss) {
  GRAFT_CHECK(norm_sq, "AdamW::step_on_device: null norm_sq");
  GRAFT_CHECK(!emulate_bf16_, "AdamW::step_on_device: not with emulated bf16 (the CPU path)");
  if (slots_.empty()) {
    ++steps_;
    return;
  }
  AdamWMultiParams p = update_params(lr, 1.0);
  p.hyper.norm_sq = norm_sq;
  p.hyper.max_norm = max_norm;
  p.hyper.loss = loss;
  adamw_multi_step(p);
}

void AdamW::stage_step(double lr) {
  GRAFT_CHECK(!emulate_bf16_, "AdamW::stage_step: not with emulated bf16 (the CPU path)");
  ++steps_;
  if (slots_.empty()) return;
  const AdamWStepScalars sc =
      adamw_step_scalars(static_cast<float>(lr), static_cast<float>(config_.beta1),
                         static_cast<float>(config_.beta2), steps_);
  const Device dev = slots_.front().param->value.device();
  if (!staged_.defined()) staged_ = Tensor::empty({3}, DType::kF32, dev);
  staged_.copy_from(Tensor::from_vector(std::vector<float>{sc.lr, sc.step_size, sc.bc2_sqrt}, {3}));
}

void AdamW::step_staged(double max_norm, const float* norm_sq, const float* loss) {
  GRAFT_CHECK(norm_sq, "AdamW::step_staged: null norm_sq");
  if (slots_.empty()) return;
  GRAFT_CHECK(staged_.defined() && steps_ >= 1,
              "AdamW::step_staged: no step staged (call stage_step first)");
  // lr here only fills the launch arguments; the kernel reads the staged values.
  AdamWMultiParams p = params_for(config_.lr, 1.0);
  p.hyper.step_scalars = static_cast<const float*>(staged_.raw());
  p.hyper.norm_sq = norm_sq;
  p.hyper.max_norm = max_norm;
  p.hyper.loss = loss;
  adamw_multi_step(p);
}

void AdamW::sync_weights() {
  for (auto& s : slots_) {
    if (!s.own_master) continue;
    Tensor value = s.piece.value();
    if (emulate_bf16_) {
      const float* src = s.master.data<float>();
      float* dst = value.data<float>();
      for (int64_t i = 0; i < s.piece.numel; ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
    } else {
      layers::cast_into(value, s.master);
    }
  }
}

std::vector<AdamW::StatePiece> AdamW::state_pieces() const {
  std::vector<StatePiece> out;
  for (const auto& s : slots_) {
    out.push_back({"m", s.piece, s.m.to(Device::cpu())});
    out.push_back({"v", s.piece, s.v.to(Device::cpu())});
    if (s.own_master || s.param->f32_master)
      out.push_back({"master", s.piece, s.master.to(Device::cpu())});
  }
  return out;
}

Tensor AdamW::state_slot(size_t i, const std::string& kind) {
  Slot& s = slots_.at(i);
  if (kind == "m") return s.m;
  if (kind == "v") return s.v;
  GRAFT_CHECK(kind == "master", "unknown optimizer state kind ", kind);
  return s.master;
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& s : slots_) {
    GRAFT_CHECK(s.piece.whole(), "state_tensors: ", s.name,
                " is sharded (ZeRO); use state_pieces()");
    const Shape& shape = s.param->value.shape();
    out.emplace_back("m." + s.name, s.m.view(shape).to(Device::cpu()));
    out.emplace_back("v." + s.name, s.v.view(shape).to(Device::cpu()));
    if (s.own_master || s.param->f32_master)
      out.emplace_back("master." + s.name, s.master.view(shape).to(Device::cpu()));
  }
  return out;
}

void AdamW::load_state(const SafetensorsFile& file) {
  std::string problems;
  int count = 0;
  auto check = [&](const std::string& key, const Tensor& dst) -> const TensorInfo* {
    const TensorInfo* info = file.find(key);
    if (!info) {
      problems += str(count++ ? "; " : "", "missing ", key);
      return nullptr;
    }
    if (info->shape != dst.shape() || info->dtype != DType::kF32) {
      problems += str(count++ ? "; " : "", key, " is ", dtype_name(info->dtype),
                      shape_str(info->shape), ", expected f32", shape_str(dst.shape()));
      return nullptr;
    }
    return info;
  };
  size_t expected = 0;
  for (auto& s : slots_) {
    GRAFT_CHECK(s.piece.whole(), "load_state: ", s.name, " is sharded (ZeRO)");
    const Shape& shape = s.param->value.shape();
    const bool master = s.own_master || s.param->f32_master;  // as state_tensors() writes
    expected += master ? 3 : 2;
    check("m." + s.name, s.m.view(shape));
    check("v." + s.name, s.v.view(shape));
    if (master) check("master." + s.name, s.master.view(shape));
  }
  if (file.tensors().size() != expected && problems.empty())
    problems = str(file.tensors().size(), " tensors, expected ", expected);
  GRAFT_INPUT_CHECK(problems.empty(), file.path(),
                    ": optimizer state does not match this model: ", problems);
  for (auto& s : slots_) {
    const Shape& shape = s.param->value.shape();
    s.m.view(shape).copy_from(file.tensor("m." + s.name));
    s.v.view(shape).copy_from(file.tensor("v." + s.name));
    if (s.own_master || s.param->f32_master)
      s.master.view(shape).copy_from(file.tensor("master." + s.name));
  }
}

void AdamW::load_state(const ShardedReader& r) {
  std::string problems;
  int count = 0;
  std::set<std::string> expected;
  auto check = [&](const std::string& key, const Slot& s, bool required) {
    expected.insert(key);
    const Shape want = spec_stored_shape(s.param->spec, s.param->value.shape());
    if (!r.has(key)) {
      if (required) problems += str(count++ ? "; " : "", "missing ", key);
    } else if (r.global_shape(key) != want) {
      problems += str(count++ ? "; " : "", key, " has shape ", shape_str(r.global_shape(key)),
                      ", expected ", shape_str(want));
    }
  };
  // Checkpoints name a part of a parameter (ShardSpec::part_of) by its logical tensor.
  auto key = [](const char* kind, const Slot& s) {
    return str("optim/", kind, "/", logical_param_name(s.name, s.param->spec));
  };
  for (const auto& s : slots_) {
    check(key("m", s), s, true);
    check(key("v", s), s, true);
    check(key("master", s), s, s.own_master);
  }
  // Sharded (ZeRO), this rank holds pieces of only some parameters: the others' state is not
  // unexpected (load_model_weights has matched the model/ names against the whole model).
  if (!shard_group_)
    for (const auto& n : r.names())
      if (n.rfind("optim/", 0) == 0 && !expected.count(n))
        problems += str(count++ ? "; " : "", "unexpected ", n);
  GRAFT_INPUT_CHECK(problems.empty(), r.manifest_path(),
                    ": optimizer state does not match this model: ", problems);
  for (auto& s : slots_) {  // this rank's flat range of its box of each tensor
    const ShardSpec& spec = s.param->spec;
    const Shape& local = s.param->value.shape();
    r.read_spec_range(key("m", s), spec, local, s.piece.offset, s.m);
    r.read_spec_range(key("v", s), spec, local, s.piece.offset, s.v);
    if (r.has(key("master", s)))
      r.read_spec_range(key("master", s), spec, local, s.piece.offset, s.master);
  }
}

}  // namespace graft
