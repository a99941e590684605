// AdamW over a model's parameters (kernels/adamw.h does the arithmetic).
//
// Parameter groups: each parameter is classified by name and shape as a matrix, a norm weight, a
// bias or an embedding; OptimConfig says which kinds receive weight decay (by default only
// matrices, including the LM head, do). Master weights and both moments are f32. When the model
// keeps low-precision weights (bf16 on a GPU) the optimizer holds an f32 master copy and writes
// the rounded weights back after each step; on the CPU, `emulate_bf16` keeps the forward weights
// f32 but rounds them to bf16 values after each step (see recipe.h, precision.params).
//
// Checkpoint state: state_tensors() names "m.<param>", "v.<param>" and (with a master copy)
// "master.<param>"; load_state() checks every name and shape and reports all problems at once.
// In a native (sharded) checkpoint the same tensors are optim/m/<param>, optim/v/<param> and
// optim/master/<param> with the parameter's global shape; load_state(ShardedReader) reads this
// rank's box of each (the parameter's ShardSpec), whatever layout wrote them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/io/safetensors.h"
#include "framework/optim/optim_config.h"
#include "framework/registry/module.h"

namespace graft {

class ShardedReader;

enum class ParamKind { kMatrix, kNorm, kBias, kEmbedding };
// "embed" in the name -> embedding; "norm" in the name -> norm; a name ending in "bias" ->
// bias; any other 1-D parameter -> norm (scale vectors); otherwise matrix.
ParamKind classify_parameter(const std::string& name, const Tensor& value);
const char* param_kind_name(ParamKind k);

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, Parameter*>> params, const OptimConfig& config,
        bool emulate_bf16 = false);

  // sqrt(sum of squares of every gradient) (f64 accumulation on the CPU).
  double grad_norm() const;
  // One update with learning rate `lr`; gradients are multiplied by grad_scale first (clipping).
  void step(double lr, double grad_scale);
  // Writes the forward weights from the master weights (rounded to bf16 values when emulating,
  // converted when the parameters are low precision); a no-op when they are the same tensor.
  void sync_weights();
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t s) { steps_ = s; }
  bool decays(const std::string& name) const;

  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // `file` labels errors (it is the optimizer.safetensors being read).
  void load_state(const SafetensorsFile& file);
  // From a native checkpoint; InputError naming its manifest lists every missing, unexpected or
  // mis-shaped optim/ tensor. A master copy in the checkpoint is read into the master weights
  // even when they share the parameter's storage (it is at least as precise as model/<param>).
  void load_state(const ShardedReader& reader);

 private:
  struct Slot {
    std::string name;
    Parameter* param;
    Tensor master;  // f32; shares the parameter's storage when it is f32 and not emulated
    Tensor m, v;
    bool own_master = false;
    float weight_decay = 0.0f;
  };
  OptimConfig config_;
  bool emulate_bf16_ = false;
  int64_t steps_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace graft
