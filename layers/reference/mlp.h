// Reference gated MLP (HF LlamaMLP / GemmaMLP / Qwen2MLP ...).
#pragma once

#include <memory>

#include "framework/registry/build_context.h"
#include "layers/decoder.h"
#include "layers/reference/linear.h"

namespace graft {

// The gated MLP of the Llama family: y = down_proj(act(gate_proj(x)) · up_proj(x)), with act
// from DecoderConfig.activation (swiglu: silu, geglu: tanh-gelu, reglu: relu).
// Parameters: gate_proj.weight [F, H], up_proj.weight [F, H], down_proj.weight [H, F] (+ bias
// when DecoderConfig.mlp_bias). Under tp, gate/up are column-parallel and down row-parallel.
class GatedMLP : public Module {
 public:
  GatedMLP(const DecoderConfig& config, const BuildContext& ctx);
  Tensor forward(const Tensor& x, std::unique_ptr<LayerCtx>* save);
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  DecoderConfig config_;
  BuildContext ctx_;
  Linear *gate_proj_, *up_proj_, *down_proj_;
  int64_t local_ffn_ = 0;  // F / tp
};

}  // namespace graft
