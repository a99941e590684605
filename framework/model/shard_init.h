// A tensor-parallel model's parameters from a single-process one: the bridge that makes a tp run
// start from exactly the weights a single process would (init_weights under tp builds the whole
// model on the CPU, initialises it, and copies each rank's box), and that tests use to compare
// every gradient of a tp run with the single-process run.
//
// The rule is the ShardSpec's (framework/core/parameter.h): the whole model's parameter is the
// global tensor (read through its own spec's view, e.g. te's fc1 as [2, F, H]); this rank's local
// tensor is the box at the spec's offsets, with padding (beyond the logical shape) zero.
#pragma once

#include <memory>

#include "framework/model/causal_lm.h"

namespace graft {

// The box of `whole` (a parameter of a single-process model) that `spec` describes for a local
// tensor of shape `local`: a new contiguous CPU f32 tensor of shape `local`, padding zero. Error
// naming `what` when the shapes do not fit.
Tensor whole_box(const Tensor& whole, const ShardSpec& whole_spec, const ShardSpec& spec,
                 const Shape& local, const std::string& what);

// A single-process CPU f32 model of m's config with the same decoder layer implementation.
std::unique_ptr<CausalLM> build_whole_model(const CausalLM& m);

// Every parameter of `dst` := its box of the same-named parameter of `whole`. Error naming the
// parameter when the names or shapes differ.
void copy_shards(CausalLM& dst, CausalLM& whole);

}  // namespace graft
