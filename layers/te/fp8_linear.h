// The FP8 GEMMs of one TE linear (y = x Wᵀ), as TransformerEngine runs them on Hopper:
//
//   fprop  y  = x · Wᵀ        x E4M3 [rows, in], W E4M3 [out, in]      fast accumulation
//   dgrad  dx = dy · W        dy (E5M2 hybrid) [rows, out], Wᵀ [in, out] split accumulation
//   wgrad  dW (+)= dyᵀ · x    dyᵀ [out, rows], xᵀ [in, rows]            split accumulation
//
// Every GEMM is the TN form of kernels/fp8.h (C = A · Bᵀ), so each operand is cast once into the
// layout it is read in: x into x (fprop) and xᵀ (kept for wgrad) by one fused cast+transpose,
// dy into dy and dyᵀ likewise, and W into W and Wᵀ once per optimizer step (the generation of
// the Fp8State), reused by every micro-batch and by dgrad. Each cast's scale_inv travels with
// its FP8 data. Scaling (delayed / current) is the Fp8State's; the outputs and gradients are in
// the activations' dtype, weight gradients f32 (written when stale, else +=: grad_beta). The CPU
// runs the same code through the emulating kernels (quantise, dequantise, f32 GEMM).
//
// A bias, as TE fuses it: the forward adds it in fprop's epilogue (y = x · Wᵀ + b, in f32 before
// y is rounded), and backward takes db (+)= Σ_rows dy from dy's cast (kernels/fp8.h
// fp8_quantize_dbias: the cast + transpose kernel sums the high-precision dy it reads anyway),
// so neither needs another pass over y or dy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layers/te/fp8_state.h"

namespace graft::te {

class Fp8Linear {
 public:
  // Adds the input, weight and grad-output slots "<prefix>fp8_input", ... of `owner`.
  Fp8Linear(std::shared_ptr<Fp8State> state, const Module* owner, const std::string& prefix);

  // y [rows, out] in x's dtype (+ bias [out], when defined: contiguous, f32 or bf16, added in
  // the GEMM's epilogue). `weight()` gives W [out, in] when the FP8 copies are stale. With `xt`
  // (a training forward) the FP8 xᵀ is kept there and the input amax is recorded.
  Tensor forward(const Tensor& x, const std::function<Tensor()>& weight, Fp8Operand* xt,
                 const Tensor& bias = Tensor());
  // The same with x = act(h) cast by Fp8State::cast_activation (the activation fused into the
  // cast under delayed scaling).
  Tensor forward_activated(const Tensor& h, Activation act, int64_t cols,
                           const std::function<Tensor()>& weight, Fp8Operand* xt,
                           const Tensor& bias = Tensor());

  // The same with x = norm(xn) cast by Fp8State::cast_norm (the norm fused into the cast; `norm`
  // receives what the norm's backward needs, in a training forward). y in gamma's dtype (the
  // activations'; xn may be an f32 residual stream, precision.residual: f32).
  Tensor forward_normed(const Tensor& xn, const Tensor& gamma, const Tensor& beta,
                        const layers::NormSpec& spec, const std::function<Tensor()>& weight,
                        Fp8Operand* xt, layers::NormSaved* norm, const Tensor& bias = Tensor());

  struct GradBlock {
    int64_t offset = 0, size = 0;  // rows of W this gradient covers
    Parameter* weight = nullptr;   // [size, in]: its f32 gradient receives the block
    Parameter* bias = nullptr;  // optional [size]: its f32 gradient receives Σ_rows dy[:, block]
  };
  // dx [rows, in] in dy's dtype; each block's dW (+)= dy[:, block]ᵀ x and, with a bias,
  // db (+)= Σ_rows dy[:, block] from dy's cast (written when stale, else +=: grad_beta).
  Tensor backward(const Tensor& dy, const Fp8Operand& xt, const std::vector<GradBlock>& grads);
  // The same with dy = the activation's backward of da at h, cast by
  // Fp8State::cast_activation_grad (fused into the cast under delayed scaling); dx in da's dtype.
  // No bias (the blocks' `bias` must be null).
  Tensor backward_activated(const Tensor& da, const Tensor& h, Activation act, const Fp8Operand& xt,
                            const std::vector<GradBlock>& grads);

 private:
  void refresh_weight(const std::function<Tensor()>& weight);
  Tensor fprop(const Fp8Operand& xq, const Tensor& like, const Tensor& bias);  // y = x Wᵀ (+ b)
  // dgrad and wgrad from the cast dy [rows, out] and dyᵀ; dx in `dtype` on `device`.
  Tensor bprop(const Fp8Operand& dyq, const Fp8Operand& dyt, const Fp8Operand& xt,
               const std::vector<GradBlock>& grads, DType dtype, Device device);

  std::shared_ptr<Fp8State> state_;
  int64_t input_ = 0, weight_ = 0, grad_ = 0;
  Fp8Operand w_, wt_;  // W [out, in] and Wᵀ [in, out] of generation gen_
  int64_t gen_ = -1;
};

}  // namespace graft::te
