#include "framework/registry/module.h"

namespace graft {

Parameter& Module::add_parameter(const std::string& name, Tensor value, bool decay) {
  ShardSpec spec = ShardSpec::replicated(value.shape());
  return add_parameter(name, std::move(value), decay, std::move(spec));
}

Parameter& Module::add_parameter(const std::string& name, Tensor value, bool decay,
                                 ShardSpec spec) {
  GRAFT_CHECK(parameter(name) == nullptr, type_, ": parameter '", name, "' added twice");
  spec.check(value.shape(), str(type_, ".", name));
  params_.emplace_back(name, Parameter{std::move(value), Tensor(), decay, std::move(spec)});
  return params_.back().second;
}

Parameter* Module::parameter(const std::string& name) {
  for (auto& [n, p] : params_)
    if (n == name) return &p;
  return nullptr;
}

Module* Module::child(const std::string& name) {
  for (auto& [n, c] : children_)
    if (n == name) return c.get();
  return nullptr;
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters(
    const std::string& prefix) {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& [n, p] : params_) out.emplace_back(prefix + n, &p);
  for (auto& [n, c] : children_) {
    auto sub = c->named_parameters(prefix + n + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

void Module::allocate_grads() {
  for (auto& [n, p] : named_parameters())
    if (!p->grad.defined())
      p->grad = Tensor::zeros(p->value.shape(), DType::kF32, p->value.device());
}

void Module::zero_grad() {
  for (auto& [n, p] : named_parameters()) {
    if (p->grad.defined()) p->grad.zero_();
    p->grad_stale = false;
  }
}

}  // namespace graft
