// Modules and parameters: the tree every model is built from.
//
// A Module owns named parameters and named children. There is no autograd: each layer has an
// explicit forward that may save what its backward needs in a context object, and a backward
// that accumulates parameter gradients (+=) and writes the input gradient (=).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/parameter.h"
#include "framework/core/tensor.h"

namespace graft {

// Base for saved-for-backward state. Layers subclass it privately.
struct LayerCtx {
  virtual ~LayerCtx() = default;
};

class Module {
 public:
  explicit Module(std::string type) : type_(std::move(type)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The registry name this module was built from ("llama.decoder_layer", "te.transformer_layer").
  const std::string& type() const { return type_; }

  // Replicated unless `spec` says how the tensor is split (its global shape and offsets).
  Parameter& add_parameter(const std::string& name, Tensor value, bool decay = true);
  Parameter& add_parameter(const std::string& name, Tensor value, bool decay, ShardSpec spec);
  template <class M>
  M& add_child(const std::string& name, std::unique_ptr<M> child) {
    M& ref = *child;
    children_.emplace_back(name, std::move(child));
    return ref;
  }

  Parameter* parameter(const std::string& name);  // own parameter or nullptr
  Module* child(const std::string& name);         // own child or nullptr
  const std::vector<std::pair<std::string, Parameter>>& own_parameters() const { return params_; }
  const std::vector<std::pair<std::string, std::unique_ptr<Module>>>& children() const {
    return children_;
  }

  // Every parameter in the subtree with dotted names ("layers.0.self_attention.qkv.weight"),
  // in registration order (deterministic).
  std::vector<std::pair<std::string, Parameter*>> named_parameters(const std::string& prefix = "");
  void allocate_grads();  // zero-filled f32 grads where missing
  void zero_grad();       // eager: fills every gradient with zeros (GradBuckets zeroes lazily)

 private:
  std::string type_;
  std::vector<std::pair<std::string, Parameter>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

}  // namespace graft
