// te.linear: TransformerEngine's Linear, y = x Wᵀ + b.
//
//   weight [out, in] ("weight", or one "<name>_weight" [size_i, in] per parameters_split entry,
//   stacked along dim 0 in order); bias [out] likewise ("bias" / "<name>_bias").
//   return_bias: the bias is not added; it is returned in TEOutput.bias for the caller to add,
//   and backward treats dy as the gradient of out + bias (so the bias gradient is Σ_rows dy).
//   Supported: bias, return_bias, parameters_split, init_method, params_dtype (f32). Rejected
//   with an InputError naming the option: sequence_parallel, tp_size != 1, parallel_mode,
//   fuse_wgrad_accumulation (tensor parallelism lives in parallel/).
#pragma once

#include <memory>
#include <string>

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
  // Accepted only at their defaults.
  bool sequence_parallel = false;
  int64_t tp_size = 1;
  std::string parallel_mode;  // "" (None); "column" / "row" rejected
  bool fuse_wgrad_accumulation = false;
};

class Linear : public Module {
 public:
  // ctx.fp8 (when set) runs the GEMM in FP8 (layers/te/fp8_linear.h).
  explicit Linear(const LinearConfig& config, const BuildContext& ctx = {});
  const LinearConfig& config() const { return config_; }
  // x [..., in] -> out [..., out].
  TEOutput forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  LinearConfig config_;
  LinearBlocks blocks_;
};

// The TE options every linear-bearing module shares, checked in one place.
void check_linear_options(const std::string& layer, bool sequence_parallel, int64_t tp_size,
                          const std::string& parallel_mode, bool fuse_wgrad_accumulation);

}  // namespace graft::te
