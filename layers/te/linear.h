// te.linear: TransformerEngine's Linear, y = x Wᵀ + b.
//
//   weight [out, in] ("weight", or one "<name>_weight" [size_i, in] per parameters_split entry,
//   stacked along dim 0 in order); bias [out] likewise ("bias" / "<name>_bias").
//   return_bias: the bias is not added; it is returned in TEOutput.bias for the caller to add,
//   and backward treats dy as the gradient of out + bias (so the bias gradient is Σ_rows dy).
//   Supported: bias, return_bias, parameters_split, init_method, params_dtype (f32), and graft's
//   tp_rows (explicit column-parallel pieces, LinearShard::rows in te_common.h).
//   Tensor parallelism over the build context's tp group (T ranks): parallel_mode "column" (the
//   weight's rows split, see LinearShard; input through copy_to_tp — its backward all-reduce
//   overlaps the weight-gradient GEMM — or gather_from_sp with sequence_parallel) or "row" (the
//   input columns split; output through reduce_from_tp or reduce_scatter_to_sp, the bias added
//   once by tp rank 0, or returned with return_bias for the caller to add after the reduction).
//   "None"/"" or T = 1: a plain linear. tp_size, when not 1, must equal T; sequence_parallel
//   needs T > 1. Rejected with an InputError naming the option: fuse_wgrad_accumulation.
#pragma once

#include <memory>
#include <string>

#include "framework/registry/build_context.h"
#include "layers/te/te_common.h"

namespace graft::te {

struct LinearConfig {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
  bool return_bias = false;
  ParametersSplit parameters_split;
  InitMethod init_method;
  uint64_t init_seed = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  bool sequence_parallel = false;
  int64_t tp_size = 1;        // 1 = the context's; otherwise it must match it
  std::string parallel_mode;  // "" / "None", "column" or "row"
  // graft extension, column only: explicit pieces of the rows (LinearShard::rows), e.g.
  // te.multihead_attention's qkv with KV heads replicated over tp.
  std::vector<TpRowBlock> tp_rows;
  bool fuse_wgrad_accumulation = false;  // rejected when true
};

class Linear : public Module {
 public:
  // ctx.fp8 (when set) runs the GEMM in FP8 (layers/te/fp8_linear.h).
  Linear(const LinearConfig& config, const BuildContext& ctx);
  const LinearConfig& config() const { return config_; }
  // x [..., in] -> out [..., out].
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  LinearConfig config_;
  LinearBlocks blocks_;
  std::shared_ptr<ProcessGroup> tp_;
  bool column_ = false, row_ = false, sp_ = false;
};

// The TE options every linear-bearing module shares, checked in one place against the context's
// tp group; returns the tp sharding they select.
LinearShard check_linear_options(const std::string& layer, bool sequence_parallel, int64_t tp_size,
                                 const std::string& parallel_mode, bool fuse_wgrad_accumulation,
                                 const BuildContext& ctx);

}  // namespace graft::te
