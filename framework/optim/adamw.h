// AdamW over a model's parameters (kernels/adamw.h does the arithmetic).
//
// Parameter groups: each parameter is classified by name and shape as a matrix, a norm weight, a
// bias or an embedding; OptimConfig says which kinds receive weight decay (by default only
// matrices, including the LM head, do). Master weights and both moments are f32. When the model
// keeps low-precision weights (bf16 on a GPU) the optimizer holds an f32 master copy and writes
// the rounded weights back after each step; on the CPU, `emulate_bf16` keeps the forward weights
// f32 but rounds them to bf16 values after each step (see recipe.h, precision.params). A
// Parameter::f32_master (FP8 GEMM weights under precision.fp8.fp8_weights) is f32 and is its own
// master everywhere: updated in place, never rounded, no copy.
//
// What it updates: pieces of parameters (parallel/grad_buckets.h). Whole parameters in a single
// process or plain data parallelism; under ZeRO-1 the ranges of this rank's shard, so masters and
// moments exist only for those (memory per parameter 2 + 4 + 12 / dp bytes with bf16 weights).
// With a `shard_group`, the gradient norm sums the squares of every rank's pieces over it.
//
// Checkpoint state: state_tensors() names "m.<param>", "v.<param>" and (with a master copy, or a
// Parameter::f32_master whose value is its master: precision.fp8.fp8_weights) "master.<param>"
// (whole pieces only); state_pieces() lists the same per piece with offsets;
// load_state() checks every name and shape and reports all problems at once.
// In a native (sharded) checkpoint the same tensors are optim/m/<param>, optim/v/<param> and
// optim/master/<param> with the parameter's global shape; load_state(ShardedReader) reads this
// rank's pieces of each (the parameter's ShardSpec box, the piece's flat range of it), whatever
// layout wrote them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framework/io/safetensors.h"
#include "framework/optim/optim_config.h"
#include "framework/registry/module.h"
#include "kernels/adamw.h"
#include "parallel/grad_buckets.h"

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
  // Updates exactly `pieces`; `shard_group` (not owned) when the pieces are this rank's shard of
  // a model partitioned over that group (ZeRO-1), null when every rank updates everything.
  AdamW(std::vector<ParamPiece> pieces, const OptimConfig& config, bool emulate_bf16,
        ProcessGroup* shard_group);

  // sqrt(sum of squares of every gradient) (f64 accumulation on the CPU). With a tensor-parallel
  // group the norm is that of the whole model: each rank adds the pieces it holds the primary
  // copy of (ShardSpec::is_primary) and the squares are summed over tp.
  double grad_norm() const;
  // The tensor-parallel group (not owned; null or size 1: none).
  void set_tp_group(ProcessGroup* tp) { tp_group_ = tp; }
  // One update with learning rate `lr`; gradients are multiplied by grad_scale first (clipping).
  void step(double lr, double grad_scale);
  // The same without the host in the loop (no sync): the sum of squared gradients written into
  // out[0] on the parameters' device (single process or unsharded only) ...
  void grad_norm_sq_on_device(Tensor& out) const;
  // ... and an update whose clipping to max_norm and whose skip on a non-finite norm or loss are
  // decided by the kernel from those device scalars (kernels/adamw.h). The step is counted; a
  // caller that reads the scalars afterwards and finds it skipped calls set_steps_taken(n - 1).
  void step_on_device(double lr, double max_norm, const float* norm_sq, const float* loss);
  // The same split for a CUDA graph, whose replays cannot take a new lr or step count as launch
  // arguments: stage_step counts the step and queues this step's lr and bias corrections into a
  // small device buffer (kernels/adamw.h AdamWStepScalars; a host->device copy, so never while a
  // graph is being captured); step_staged launches the update reading them there (what a graph
  // captures). The same bits as step_on_device with the same lr and count.
  void stage_step(double lr);
  void step_staged(double max_norm, const float* norm_sq, const float* loss);
  // Writes the forward weights from the master weights (rounded to bf16 values when emulating,
  // converted when the parameters are low precision); a no-op when they are the same tensor.
  void sync_weights();
  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t s) { steps_ = s; }
  bool decays(const std::string& name) const;

  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // One entry per (piece, kind): kind "m", "v" or "master"; data is a CPU copy [piece.numel].
  struct StatePiece {
    std::string kind;
    ParamPiece piece;
    Tensor data;
  };
  std::vector<StatePiece> state_pieces() const;
  // The f32 tensor holding `kind` of the piece at index i of pieces() (for loading in place).
  Tensor state_slot(size_t i, const std::string& kind);
  const std::vector<ParamPiece>& pieces() const { return pieces_; }
  // Masters are separate tensors (low-precision or emulated weights).
  bool has_master() const;
  size_t state_bytes() const;  // masters (when separate) and moments held by this rank
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
    ParamPiece piece;
    Tensor master;  // f32 [n]; shares the parameter's storage when it is f32 and not emulated
    Tensor m, v;
    bool own_master = false;
    float weight_decay = 0.0f;
  };
  void add_slot(const ParamPiece& piece);
  void grad_norm_sq_into(float* out) const;
  AdamWMultiParams update_params(double lr, double grad_scale);  // counts the step
  AdamWMultiParams params_for(double lr, double grad_scale);     // for step steps_
  OptimConfig config_;
  bool emulate_bf16_ = false;
  ProcessGroup* tp_group_ = nullptr;
  ProcessGroup* shard_group_ = nullptr;
  std::vector<ParamPiece> pieces_;
  int64_t steps_ = 0;
  std::vector<Slot> slots_;
  Tensor staged_;  // f32 [3] on the device: stage_step's AdamWStepScalars
};

}  // namespace graft
