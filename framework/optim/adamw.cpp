#include "framework/optim/adamw.h"

#include <cmath>
#include <set>

#include "framework/train/tensor_pieces.h"
#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "layers/reference/common.h"

namespace graft {
namespace {}  // namespace

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
    Slot s;
    s.name = name;
    s.param = p;
    const Device dev = p->value.device();
    GRAFT_CHECK(p->value.is_contiguous(), "parameter ", name, " is not contiguous");
    if (!p->grad.defined()) p->grad = Tensor::zeros(p->value.shape(), DType::kF32, dev);
    if (p->value.dtype() == DType::kF32 && !emulate_bf16) {
      s.master = p->value;
    } else {
      s.master = Tensor::empty(p->value.shape(), DType::kF32, dev);
      layers::cast_into(s.master, p->value);
      s.own_master = true;
    }
    s.m = Tensor::zeros(p->value.shape(), DType::kF32, dev);
    s.v = Tensor::zeros(p->value.shape(), DType::kF32, dev);
    const ParamKind k = classify_parameter(name, p->value);
    const bool decay = (k == ParamKind::kMatrix) || (k == ParamKind::kNorm && config.decay_norms) ||
                       (k == ParamKind::kBias && config.decay_biases) ||
                       (k == ParamKind::kEmbedding && config.decay_embeddings);
    p->decay = decay;
    s.weight_decay = decay ? static_cast<float>(config.weight_decay) : 0.0f;
    slots_.push_back(std::move(s));
  }
}

bool AdamW::decays(const std::string& name) const {
  for (const auto& s : slots_)
    if (s.name == name) return s.param->decay;
  return false;
}

double AdamW::grad_norm() const {
  if (slots_.empty()) return 0.0;
  GradNormParams g;
  g.device = slots_.front().param->grad.device();
  for (const auto& s : slots_) {
    g.grads.push_back(static_cast<const float*>(s.param->grad.raw()));
    g.sizes.push_back(s.param->grad.numel());
  }
  Tensor out = Tensor::zeros({1}, DType::kF32, g.device);
  g.out = static_cast<float*>(out.raw());
  ::graft::grad_norm(g);
  return out.to(Device::cpu()).to_f32_vector()[0];
}

void AdamW::step(double lr, double grad_scale) {
  ++steps_;
  if (slots_.empty()) return;
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
    AdamWTensor t;
    t.param = static_cast<float*>(s.master.raw());
    t.grad = static_cast<const float*>(s.param->grad.raw());
    t.m = static_cast<float*>(s.m.raw());
    t.v = static_cast<float*>(s.v.raw());
    t.n = s.master.numel();
    t.weight_decay = s.weight_decay;
    if (s.own_master && copy_back) {
      t.param_copy = s.param->value.raw();
      p.copy_dtype = s.param->value.dtype();
    }
    p.tensors.push_back(t);
  }
  adamw_multi_step(p);
  if (emulate_bf16_) sync_weights();
}

void AdamW::sync_weights() {
  for (auto& s : slots_) {
    if (!s.own_master) continue;
    if (emulate_bf16_) {
      const float* src = s.master.data<float>();
      float* dst = s.param->value.data<float>();
      for (int64_t i = 0; i < s.master.numel(); ++i) dst[i] = bf16_to_f32(f32_to_bf16(src[i]));
    } else {
      layers::cast_into(s.param->value, s.master);
    }
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state_tensors() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& s : slots_) {
    out.emplace_back("m." + s.name, s.m.to(Device::cpu()));
    out.emplace_back("v." + s.name, s.v.to(Device::cpu()));
    if (s.own_master) out.emplace_back("master." + s.name, s.master.to(Device::cpu()));
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
    expected += s.own_master ? 3 : 2;
    check("m." + s.name, s.m);
    check("v." + s.name, s.v);
    if (s.own_master) check("master." + s.name, s.master);
  }
  if (file.tensors().size() != expected && problems.empty())
    problems = str(file.tensors().size(), " tensors, expected ", expected);
  GRAFT_INPUT_CHECK(problems.empty(), file.path(),
                    ": optimizer state does not match this model: ", problems);
  for (auto& s : slots_) {
    s.m.copy_from(file.tensor("m." + s.name));
    s.v.copy_from(file.tensor("v." + s.name));
    if (s.own_master) s.master.copy_from(file.tensor("master." + s.name));
  }
}

void AdamW::load_state(const ShardedReader& r) {
  std::string problems;
  int count = 0;
  std::set<std::string> expected;
  auto check = [&](const std::string& key, const Slot& s, bool required) {
    expected.insert(key);
    const Shape want = spec_piece(key, s.param->spec, s.param->value).global_shape;
    if (!r.has(key)) {
      if (required) problems += str(count++ ? "; " : "", "missing ", key);
    } else if (r.global_shape(key) != want) {
      problems += str(count++ ? "; " : "", key, " has shape ", shape_str(r.global_shape(key)),
                      ", expected ", shape_str(want));
    }
  };
  for (const auto& s : slots_) {
    check("optim/m/" + s.name, s, true);
    check("optim/v/" + s.name, s, true);
    check("optim/master/" + s.name, s, s.own_master);
  }
  for (const auto& n : r.names())
    if (n.rfind("optim/", 0) == 0 && !expected.count(n))
      problems += str(count++ ? "; " : "", "unexpected ", n);
  GRAFT_INPUT_CHECK(problems.empty(), r.manifest_path(),
                    ": optimizer state does not match this model: ", problems);
  for (auto& s : slots_) {
    r.read_box("optim/m/" + s.name, s.param->spec, s.m);
    r.read_box("optim/v/" + s.name, s.param->spec, s.v);
    if (r.has("optim/master/" + s.name))
      r.read_box("optim/master/" + s.name, s.param->spec, s.master);
  }
}

}  // namespace graft
