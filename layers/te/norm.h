// te.rmsnorm and te.layernorm: TransformerEngine's RMSNorm / LayerNorm over the last dimension.
//
//   RMSNorm:   y = x / sqrt(mean(x²) + eps) · g
//   LayerNorm: y = (x − mean) / sqrt(var + eps) · g + b
//   g = weight, or (1 + weight) with zero_centered_gamma (weight then starts at 0).
//   Parameters: "weight" [hidden] (+ "bias" [hidden] for LayerNorm), as in TE.
// The math is the reference Norm's (layers/reference/norm.h); these entries give it TE's option
// names. sequence_parallel (with a tp group > 1) normalises sequence shards: the weight is whole
// on every rank and its gradient summed over tp; without tp it is rejected.
#pragma once

#include "layers/reference/norm.h"

namespace graft::te {

struct NormConfig {
  int64_t hidden_size = 0;
  double eps = 1e-5;
  bool zero_centered_gamma = false;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  bool sequence_parallel = false;  // needs a tp group of more than one rank
  // graft extension: each tp rank sees part of the rows (per-head q/k norms over split heads):
  // gradients summed over tp, as with sequence_parallel.
  bool tp_partial_grad = false;
};

// te.rmsnorm / te.layernorm build a graft::Norm of the corresponding type.
std::unique_ptr<graft::Norm> make_norm(const NormConfig& c, NormType type, const BuildContext& ctx);

}  // namespace graft::te
