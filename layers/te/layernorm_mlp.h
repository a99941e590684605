// te.layernorm_mlp: TransformerEngine's LayerNormMLP.
//
//   ln = norm(x);  h = ln fc1ᵀ + fc1_bias;  a = act(h);  y = a fc2ᵀ + fc2_bias
//   Gated activations (geglu, reglu, swiglu) split h = [gate | up] and give act(gate) · up;
//   gelu is the tanh approximation (as TE's kernels), qgelu = x σ(1.702 x).
//   Parameters (TE names): layer_norm_weight [H] (+ layer_norm_bias), fc1_weight [F', H] with
//   F' = 2F when gated, fc1_bias [F'], fc2_weight [H, F], fc2_bias [H].
//   Fused layout of fc1 for gated activations: rows [0, F) are the gate projection, rows
//   [F, 2F) the up projection ([gate; up], HF gate_proj then up_proj). A tensor-parallel rank r
//   of T would own [gate_r; up_r] (rows r·F/T.. of each half), declared by the weight map.
//   return_bias: fc2_bias returned, not added. return_layernorm_output: ln returned (its
//   gradient goes to backward as d_ln_out).
// Rejected: sequence_parallel, tp_size != 1, fuse_wgrad_accumulation, set_parallel_mode.
#pragma once

#include <memory>
#include <string>

#include "layers/te/te_common.h"

namespace graft::te {

struct LayerNormMLPConfig {
  int64_t hidden_size = 0;
  int64_t ffn_hidden_size = 0;
  double eps = 1e-5;
  bool bias = true;
  std::string normalization = "LayerNorm";
  std::string activation = "gelu";
  bool zero_centered_gamma = false;
  bool return_bias = false;
  bool return_layernorm_output = false;
  InitMethod init_method;               // fc1
  InitMethod output_layer_init_method;  // fc2
  uint64_t init_seed = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  // Accepted only at their defaults.
  bool sequence_parallel = false;
  int64_t tp_size = 1;
  bool set_parallel_mode = false;
  bool fuse_wgrad_accumulation = false;
};

class LayerNormMLP : public Module {
 public:
  // ctx.fp8 (when set) runs fc1 and fc2 in FP8 (layers/te/fp8_linear.h).
  explicit LayerNormMLP(const LayerNormMLPConfig& config, const BuildContext& ctx = {});
  const LayerNormMLPConfig& config() const { return config_; }
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  Tensor backward(const Tensor& dy, LayerCtx& ctx, const Tensor& d_ln_out = Tensor());
  bool gated() const { return gated_; }

 private:
  LayerNormMLPConfig config_;
  NormType norm_;
  Activation act_;
  bool gated_;
  LinearBlocks fc1_, fc2_;
};

}  // namespace graft::te
