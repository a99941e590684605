// Reference Linear: y = x · Wᵀ (+ b), HF nn.Linear layout.
//
//   weight: [out_features, in_features]   bias (optional): [out_features]
//   forward:  x [..., in] -> y [..., out]   (leading dims flattened to rows)
//   backward: dx = dy · W (written);  dW += dyᵀ · x;  db += Σ_rows dy
//
// Registered as "reference.linear" (Register<Linear, LinearConfig>).
#pragma once

#include <cstdint>
#include <memory>

#include "framework/registry/module.h"

namespace graft {

struct LinearConfig {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = false;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
};

class Linear : public Module {
 public:
  explicit Linear(const LinearConfig& config, const std::string& type = "reference.linear");
  const LinearConfig& config() const { return config_; }

  // x: [..., in_features] -> [..., out_features]. Saves x (a view, not a copy) when save != null.
  Tensor forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  // dy: [..., out_features] -> dx [..., in_features] (written); dW, db accumulated (+=).
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  LinearConfig config_;
};

}  // namespace graft
