// The build context: what every layer factory is given besides its own config.
//
// Registry::create(name, config, ctx) hands it to the factory; a layer that builds children
// passes it on. It carries the device and dtype of the parameters and the process groups of the
// layout (tp, cp, dp, ...; groups of size 1 in a single process), and the FP8 scaling state when
// precision.fp8 is on (null otherwise, and for the layers bf16_layers keeps out of FP8). A layer
// learns these from its context only, never from a global.
//
// The layer configs keep `device` and `params_dtype` members (the math code reads them); the
// registry fills them from the context before calling the factory, so the context is the one
// source and a config can never disagree with it.
#pragma once

#include <memory>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "parallel/parallel_state.h"

namespace graft {
namespace te {
class Fp8State;
}

struct BuildContext {
  Device device = Device::cpu();
  DType dtype = DType::kF32;
  std::shared_ptr<const ParallelGroups> groups = single_process_groups();
  std::shared_ptr<te::Fp8State> fp8;  // layers/te/fp8_state.h
  // The owner initialises or loads every parameter after construction (CausalLM: init_weights or
  // an HF load), so layers allocate them zero-filled on the device and skip their own
  // construction-time initialisation (te's init_method; Megatron's perform_initialization=False).
  bool skip_init = false;
  // precision.residual: f32 (DecoderConfig::fp32_residual): the residual stream between the
  // decoder layers in f32 while the parameters have `dtype`. CausalLM passes it to its layers.
  bool fp32_residual = false;

  const ProcessGroup& tp() const { return *groups->tp; }
  const ProcessGroup& cp() const { return *groups->cp; }
  const ProcessGroup& dp() const { return *groups->dp; }
};

// A single-process context on the config's device and dtype (tests and one-process tools); the
// CPU in f32 for configs that carry neither.
template <class Config>
BuildContext local_context(const Config& c) {
  if constexpr (requires { c.device, c.params_dtype; })
    return BuildContext{c.device, c.params_dtype, single_process_groups(), nullptr};
  else
    return BuildContext{};
}

}  // namespace graft
