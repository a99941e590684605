// The activation math shared by the CUDA kernels that evaluate an activation (activation.cu, and
// the fused activation + FP8 cast in fp8.cu): f(x), f'(x) in f32, whether it is gated, and the
// dispatch from the runtime activation to the compile-time one (with_activation). The
// CPU reference (kernels/cpu/activation.cpp) evaluates the same formulas in f64.
#pragma once

#include "framework/core/error.h"
#include "kernels/activation.h"

namespace graft::cuda::act_math {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// f(x) and f'(x) for each base activation, written without cancellation so that f32 keeps its
// relative accuracy in the tails: 1 + erf(z) = erfc(-z); 1 + tanh(u) = 2 σ(2u);
// 1 - tanh(u)^2 = 4 σ(2u) σ(-2u); 1 - σ(x) = σ(-x).
template <Activation A>
__device__ __forceinline__ float act_f(float x) {
  if constexpr (A == Activation::kGelu) return 0.5f * x * erfcf(-x * kInvSqrt2);
  if constexpr (A == Activation::kGeluTanh || A == Activation::kGeglu) {
    return x * sigmoid(2.0f * kSqrt2OverPi * (x + 0.044715f * x * x * x));
  }
  if constexpr (A == Activation::kSilu || A == Activation::kSwiglu) return x * sigmoid(x);
  if constexpr (A == Activation::kRelu || A == Activation::kReglu) return x > 0.0f ? x : 0.0f;
  if constexpr (A == Activation::kSquaredRelu) return x > 0.0f ? x * x : 0.0f;
  if constexpr (A == Activation::kQGelu) return x * sigmoid(1.702f * x);
  return 0.0f;
}

template <Activation A>
__device__ __forceinline__ float act_df(float x) {
  if constexpr (A == Activation::kGelu) {
    return 0.5f * erfcf(-x * kInvSqrt2) + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  }
  if constexpr (A == Activation::kGeluTanh || A == Activation::kGeglu) {
    // d/dx [x σ(2u)] = σ(2u) + 2 x σ(2u) σ(-2u) u'
    const float u2 = 2.0f * kSqrt2OverPi * (x + 0.044715f * x * x * x);
    const float du = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
    const float sp = sigmoid(u2), sm = sigmoid(-u2);
    return sp * (1.0f + 2.0f * x * sm * du);
  }
  if constexpr (A == Activation::kSilu || A == Activation::kSwiglu) {
    return sigmoid(x) * (1.0f + x * sigmoid(-x));
  }
  if constexpr (A == Activation::kRelu || A == Activation::kReglu) return x > 0.0f ? 1.0f : 0.0f;
  if constexpr (A == Activation::kSquaredRelu) return x > 0.0f ? 2.0f * x : 0.0f;
  if constexpr (A == Activation::kQGelu) {
    return sigmoid(1.702f * x) * (1.0f + 1.702f * x * sigmoid(-1.702f * x));
  }
  return 0.0f;
}

constexpr bool gated(Activation a) {
  return a == Activation::kSwiglu || a == Activation::kGeglu || a == Activation::kReglu;
}

// Calls body.template operator()<A>() with the compile-time activation.
template <class F>
void with_activation(Activation a, F&& body) {
  switch (a) {
    case Activation::kGelu:
      return body.template operator()<Activation::kGelu>();
    case Activation::kGeluTanh:
      return body.template operator()<Activation::kGeluTanh>();
    case Activation::kSilu:
      return body.template operator()<Activation::kSilu>();
    case Activation::kRelu:
      return body.template operator()<Activation::kRelu>();
    case Activation::kSquaredRelu:
      return body.template operator()<Activation::kSquaredRelu>();
    case Activation::kQGelu:
      return body.template operator()<Activation::kQGelu>();
    case Activation::kSwiglu:
      return body.template operator()<Activation::kSwiglu>();
    case Activation::kGeglu:
      return body.template operator()<Activation::kGeglu>();
    case Activation::kReglu:
      return body.template operator()<Activation::kReglu>();
  }
  GRAFT_CHECK(false, "activation: unknown activation ", static_cast<int>(a));
}

}  // namespace graft::cuda::act_math
