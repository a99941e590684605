// Activations, plain and gated, forward and backward.
//
// Plain (x and y are [rows, cols]):
//   gelu        y = x/2 (1 + erf(x/√2))
//   gelu_tanh   y = x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))
//   silu        y = x σ(x)
//   relu        y = max(x, 0)
//   squared_relu y = max(x, 0)²
//   qgelu       y = x σ(1.702 x)
// Gated (x is [rows, 2*cols]: gate g = x[:, :cols], up u = x[:, cols:]; y is [rows, cols]):
//   swiglu  y = silu(g) u;   geglu  y = gelu_tanh(g) u (HF Gemma's gelu_pytorch_tanh);
//   reglu   y = relu(g) u
// Backward: dx = dy · f'(x) (plain); dg = dy · u · f'(g), du = dy · f(g) (gated), with
// relu'(0) = 0. Accumulate rule: y and dx are written (=). dx may alias dy for plain activations.
// The CPU path requires f32 and evaluates in f64.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

enum class Activation {
  kGelu,
  kGeluTanh,
  kSilu,
  kRelu,
  kSquaredRelu,
  kQGelu,
  kSwiglu,
  kGeglu,
  kReglu,
};

// "gelu", "gelu_tanh", "silu", "relu", "squared_relu", "qgelu", "swiglu", "geglu", "reglu".
std::optional<Activation> activation_from_name(std::string_view name);
const char* activation_name(Activation a);
bool activation_is_gated(Activation a);

struct ActFwdParams {
  const void* x = nullptr;  // [rows, cols], or [rows, 2*cols] (gate | up) when gated
  void* y = nullptr;        // [rows, cols]
  int64_t rows = 0;
  int64_t cols = 0;  // output width (ffn size for gated)
  Activation act = Activation::kSwiglu;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

struct ActBwdParams {
  const void* dy = nullptr;  // [rows, cols]
  const void* x = nullptr;   // forward input: [rows, cols], or [rows, 2*cols] when gated
  void* dx = nullptr;        // shaped like x (=)
  int64_t rows = 0;
  int64_t cols = 0;
  Activation act = Activation::kSwiglu;
  DType dtype = DType::kF32;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void activation_fwd(const ActFwdParams& p);
void activation_bwd(const ActBwdParams& p);
}  // namespace cpu

inline void activation_fwd(const ActFwdParams& p) { GRAFT_DISPATCH(activation_fwd, p); }
inline void activation_bwd(const ActBwdParams& p) { GRAFT_DISPATCH(activation_bwd, p); }

}  // namespace graft
