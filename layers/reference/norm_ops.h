// Row normalisation with caller-owned parameters: the math of Norm (norm.h), reused by the fused
// TE-style layers whose norm weights live in their own parameter slots (layer_norm_weight).
#pragma once

#include "framework/core/parameter.h"
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
// With `residual` defined (x's shape) the norm is of s = x + residual, added in the same kernel
// (kernels/norm.h); s (new, in the residual's dtype) is returned in *sum and saved for the
// backward.
// y takes gamma's dtype (the activations'). An f32 residual stream with bf16 parameters
// (precision.residual: f32): x is f32 without a residual (the stream itself) and bf16 with one
// (the branch output), the residual and the sum f32; y stays bf16.
Tensor norm_rows_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                         const NormSpec& spec, NormSaved* save, const Tensor& residual = Tensor(),
                         Tensor* sum = nullptr);
// dx (new) from dy [rows, cols]. The gradients of the norm's parameters `dgamma` and `dbeta`
// (null: not wanted; dbeta only for LayerNorm) are written when stale, else accumulated
// (framework/core/parameter.h). A defined `dresidual` (dy's shape, dx's dtype) is added into dx
// in the same kernel. dx takes the dtype of the saved input (f32 for an f32 residual stream,
// whose gradient stays f32; dy is then in the activations' dtype).
Tensor norm_rows_backward(const Tensor& dy, const NormSaved& saved, const Tensor& gamma,
                          Parameter* dgamma, Parameter* dbeta, const NormSpec& spec,
                          const Tensor& dresidual = Tensor());

}  // namespace graft::layers
