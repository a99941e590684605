// te.layernorm_linear: TransformerEngine's LayerNormLinear, a norm fused into the next linear.
//
//   ln = norm(x)                        (normalization LayerNorm | RMSNorm, eps,
//   zero_centered_gamma) y  = ln Wᵀ + b Parameters (TE names): layer_norm_weight [in] (+
//   layer_norm_bias [in] for LayerNorm), weight [out, in] (or <name>_weight per parameters_split),
//   bias [out]. return_bias: bias returned, not added (see te.linear). return_layernorm_output: ln
//   returned in TEOutput.ln_out; its gradient (when the caller used it, e.g. a post-LN residual) is
//   passed to backward as d_ln_out and added before the norm's backward.
// Tensor parallelism (the build context's tp group): parallel_mode "column" splits the weight's
// rows (te.linear's LinearShard); the norm runs on the whole input, or with sequence_parallel on
// this rank's sequence shard, whose normalised output is then gathered (gather_from_sp) before the
// GEMM and whose norm-weight gradients are summed over tp. ln_out is the shard.
// FP8 (ctx.fp8): the norm is fused into the GEMM's input cast (Fp8State::cast_norm: ln exists
// only in FP8, with its transpose for wgrad) unless ln is needed in high precision
// (return_layernorm_output, sequence parallelism).
// Rejected: parallel_mode row, fuse_wgrad_accumulation, return_layernorm_output_gathered.
#pragma once

#include <memory>
#include <string>

#include "framework/registry/build_context.h"
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
  bool return_layernorm_output_gathered = false;  // rejected
  bool sequence_parallel = false;
  int64_t tp_size = 1;
  std::string parallel_mode;
  // graft extension, column only: explicit pieces of the rows (LinearShard::rows), e.g.
  // te.multihead_attention's qkv with KV heads replicated over tp.
  std::vector<TpRowBlock> tp_rows;
  bool fuse_wgrad_accumulation = false;
};

class LayerNormLinear : public Module {
 public:
  // ctx.fp8 (when set) runs the GEMM in FP8 (layers/te/fp8_linear.h).
  LayerNormLinear(const LayerNormLinearConfig& config, const BuildContext& ctx);
  const LayerNormLinearConfig& config() const { return config_; }
  // x [..., in] -> out [..., out] (+ bias / ln_out per the options).
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  // dy [..., out]; d_ln_out [..., in] or undefined. Returns dx.
  // A defined `d_residual` (x's shape) is added to the returned input gradient inside the norm's
  // backward kernel (the gradient reaching x through a residual branch).
  Tensor backward(const Tensor& dy, LayerCtx& ctx, const Tensor& d_ln_out = Tensor(),
                  const Tensor& d_residual = Tensor());

 private:
  LayerNormLinearConfig config_;
  NormType norm_;
  LinearBlocks blocks_;
  std::shared_ptr<ProcessGroup> tp_;
  bool column_ = false, sp_ = false;
};

}  // namespace graft::te
