// Row normalisation with caller-owned parameters: the math of Norm (norm.h), reused by the fused
// TE-style layers whose norm weights live in their own parameter slots (layer_norm_weight).
#pragma once

#include "framework/core/tensor.h"
#include "layers/decoder.h"

namespace graft::layers {

struct NormSpec {
  NormType type = NormType::kRMSNorm;
  double eps = 1e-5;
  bool zero_centered_gamma = false;
};

struct NormSaved {
  Tensor x, rstd, mean;  // x [rows, cols]; rstd, mean [rows] f32
};

// x [rows, cols] contiguous -> y [rows, cols] (new). beta only for LayerNorm (may be undefined).
Tensor norm_rows_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const NormSpec& spec, NormSaved* save);
// dx (new) from dy [rows, cols]; dgamma/dbeta accumulated when defined.
Tensor norm_rows_backward(const Tensor& dy, const NormSaved& saved, const Tensor& gamma,
                          Tensor* dgamma, Tensor* dbeta, const NormSpec& spec);

}  // namespace graft::layers
