// te.layernorm_linear: TransformerEngine's LayerNormLinear, a norm fused into the next linear.
//
//   ln = norm(x)                        (normalization LayerNorm | RMSNorm, eps,
//   zero_centered_gamma) y  = ln Wᵀ + b Parameters (TE names): layer_norm_weight [in] (+
//   layer_norm_bias [in] for LayerNorm), weight [out, in] (or <name>_weight per parameters_split),
//   bias [out]. return_bias: bias returned, not added (see te.linear). return_layernorm_output: ln
//   returned in TEOutput.ln_out; its gradient (when the caller used it, e.g. a post-LN residual) is
//   passed to backward as d_ln_out and added before the norm's backward.
// Rejected: sequence_parallel, tp_size != 1, parallel_mode, fuse_wgrad_accumulation,
// return_layernorm_output_gathered.
#pragma once

#include <memory>
#include <string>

#include "layers/te/te_common.h"

namespace graft::te {

struct LayerNormLinearConfig {
  int64_t in_features = 0;
  int64_t out_features = 0;
  double eps = 1e-5;
  bool bias = true;
  std::string normalization = "LayerNorm";
  bool zero_centered_gamma = false;
  bool return_bias = false;
  bool return_layernorm_output = false;
  ParametersSplit parameters_split;
  InitMethod init_method;
  uint64_t init_seed = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  // Accepted only at their defaults.
  bool return_layernorm_output_gathered = false;
  bool sequence_parallel = false;
  int64_t tp_size = 1;
  std::string parallel_mode;
  bool fuse_wgrad_accumulation = false;
};

class LayerNormLinear : public Module {
 public:
  // ctx.fp8 (when set) runs the GEMM in FP8 (layers/te/fp8_linear.h).
  explicit LayerNormLinear(const LayerNormLinearConfig& config, const BuildContext& ctx = {});
  const LayerNormLinearConfig& config() const { return config_; }
  // x [..., in] -> out [..., out] (+ bias / ln_out per the options).
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  // dy [..., out]; d_ln_out [..., in] or undefined. Returns dx.
  Tensor backward(const Tensor& dy, LayerCtx& ctx, const Tensor& d_ln_out = Tensor());

 private:
  LayerNormLinearConfig config_;
  NormType norm_;
  LinearBlocks blocks_;
};

}  // namespace graft::te
