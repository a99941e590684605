// Reference normalisation over the last dimension (HF LlamaRMSNorm / GemmaRMSNorm / nn.LayerNorm).
//
//   RMSNorm:   y = x / sqrt(mean(x²) + eps) · g
//   LayerNorm: y = (x − mean(x)) / sqrt(var(x) + eps) · g + b
//   g = weight, or (1 + weight) with zero_centered_gamma (Gemma)
//
//   weight: [hidden]   bias: [hidden] (LayerNorm only)
//   forward:  x [..., hidden] -> y [..., hidden]  (leading dims are rows)
//   backward: dx written; dweight (and dbias) accumulated (+=)
//
// Registered as "reference.rmsnorm" and "reference.layernorm" (Register<Norm, NormConfig>); the
// config's `type` decides the math, the two names only differ in the default they document.
#pragma once

#include <cstdint>
#include <memory>

#include "framework/registry/build_context.h"
#include "framework/registry/module.h"
#include "layers/decoder.h"

namespace graft {

struct NormConfig {
  int64_t hidden_size = 0;
  NormType type = NormType::kRMSNorm;
  double eps = 1e-5;
  bool zero_centered_gamma = false;  // weight initialised to 0 and applied as (1 + weight)
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  // Each tensor-parallel rank normalises only part of the rows (sequence-parallel shards, or its
  // own heads for Qwen3's per-head q/k norms): the weight (and bias) are whole on every rank and
  // their gradients summed over tp (ShardSpec::grad_sum_over). No effect without tp.
  bool tp_partial_grad = false;
};

class Norm : public Module {
 public:
  explicit Norm(const NormConfig& config, const std::string& type = "reference.rmsnorm");
  Norm(const NormConfig& config, const BuildContext& ctx, const std::string& type);
  const NormConfig& config() const { return config_; }

  // x: [..., hidden] -> [..., hidden]. Saves x and the per-row statistics when save != null.
  Tensor forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  // dy: [..., hidden] -> dx (written); parameter grads accumulated (+=).
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  NormConfig config_;
};

}  // namespace graft
