// te.layernorm_mlp: TransformerEngine's LayerNormMLP.
//
//   ln = norm(x);  h = ln fc1ᵀ + fc1_bias;  a = act(h);  y = a fc2ᵀ + fc2_bias
//   Gated activations (geglu, reglu, swiglu) split h = [gate | up] and give act(gate) · up;
//   gelu is the tanh approximation (as TE's kernels), qgelu = x σ(1.702 x).
//   Parameters (TE names): layer_norm_weight [H] (+ layer_norm_bias), fc1_weight [F', H] with
//   F' = 2F when gated, fc1_bias [F'], fc2_weight [H, F], fc2_bias [H].
//   Fused layout of fc1 for gated activations: rows [0, F) are the gate projection, rows
//   [F, 2F) the up projection ([gate; up], HF gate_proj then up_proj). Its ShardSpec views it as
//   [2, F, H] (fc1_bias as [2, F]) at every tp.
//   Tensor parallelism (set_parallel_mode with a tp group of T > 1 in the build context): fc1 is
//   column-parallel — rank r owns [gate_r; up_r], rows r·F/T.. of each half, so the gated
//   activation is local — and fc2 row-parallel (fc2_bias added once, after the reduction). With
//   sequence_parallel the norm runs on this rank's sequence shard (its gradients summed over tp),
//   the normalised rows are gathered before fc1 and fc2's output reduce-scattered back.
//   return_bias: fc2_bias returned, not added. return_layernorm_output: ln returned (its
//   gradient goes to backward as d_ln_out).
//   Fused residual add: forward(a, save, r) normalises h = r + a in one kernel and returns h as
//   TEOutput.sum; backward(..., d_residual) adds the residual branch's gradient in the norm's
//   backward kernel (te.transformer_layer's mid-block add and both backward adds).
// FP8 (ctx.fp8): the norm is fused into fc1's input cast (Fp8State::cast_norm) unless ln is
// needed in high precision (return_layernorm_output, sequence parallelism); the activation into
// fc2's (Fp8State::cast_activation). With a
// residual the add then runs alone and the fused norm + cast reads its sum.
// Rejected: fuse_wgrad_accumulation; sequence_parallel without tp; tp_size other than the group's.
#pragma once

#include <memory>
#include <string>

#include "framework/registry/build_context.h"
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
  bool sequence_parallel = false;
  int64_t tp_size = 1;             // 1 = the context's; otherwise it must match it
  bool set_parallel_mode = false;  // fc1 column-, fc2 row-parallel over the context's tp group
  bool fuse_wgrad_accumulation = false;  // rejected
};

class LayerNormMLP : public Module {
 public:
  // ctx.fp8 (when set) runs fc1 and fc2 in FP8 (layers/te/fp8_linear.h).
  LayerNormMLP(const LayerNormMLPConfig& config, const BuildContext& ctx);
  const LayerNormMLPConfig& config() const { return config_; }
  // With `residual` defined (x's shape) the module's input is x + residual, added inside the
  // norm's kernel and returned as TEOutput.sum (the next residual).
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save,
                   const Tensor& residual = Tensor());
  // Returns the gradient of the input; a defined `d_residual` (the input's shape: the gradient
  // reaching the input through a residual branch) is added to it inside the norm's kernel.
  Tensor backward(const Tensor& dy, LayerCtx& ctx, const Tensor& d_ln_out = Tensor(),
                  const Tensor& d_residual = Tensor());
  bool gated() const { return gated_; }

 private:
  LayerNormMLPConfig config_;
  NormType norm_;
  Activation act_;
  bool gated_;
  LinearBlocks fc1_, fc2_;
  std::shared_ptr<ProcessGroup> tp_;
  bool parallel_ = false, sp_ = false;
};

}  // namespace graft::te
