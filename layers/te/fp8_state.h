// FP8 scaling state of a model: one slot per FP8 tensor (the input, weight and grad-output of
// every TE linear GEMM), TE's DelayedScaling / Float8CurrentScaling semantics (docs/fp8.md).
//
//   slot i: scale[i] (f32), amax history column history[:, i] ([len, n], row 0 = the staging
//           slot this step's casts record into, TE's layout), scaled_max[i] = fp8_max / 2^margin
//           of its format (E4M3 for inputs and weights; gradients E5M2 under hybrid).
//   delayed: a cast uses scale[i] as it was before the step and records max|x| into row 0;
//            end_step() reduces row 0 (max) across the amax group in one collective, then rolls
//            the histories and updates the scales (kernels/fp8.h fp8_scale_update).
//   current: a cast first takes max|x| of the tensor it casts, scale = fp8_max / amax (1 when
//            amax is 0 or not finite), then casts; nothing is kept between casts.
// A step here is one optimizer step: the casts of all its micro-batches share the scales, and
// a weight's FP8 copies are made once per step (generation(), advanced by end_step).
//
// Slots are added while the model is built; finalize(root) names them after their modules'
// paths ("layers.0.layernorm_mlp.fc1_fp8_input") and allocates the buffers on the device.
// The histories and scales are saved in native checkpoints as plain named tensors
// (state_tensors / load_state) and restored exactly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "framework/core/tensor.h"
#include "kernels/activation.h"
#include "kernels/fp8.h"
#include "layers/reference/norm_ops.h"
#include "layers/te/fp8_config.h"
#include "layers/te/fp8_profile.h"

namespace graft {
class Module;
class ProcessGroup;
}  // namespace graft

namespace graft::te {

enum class Fp8Role { kInput, kWeight, kGradOutput };

// An FP8 tensor and its dequantisation factor (1 / the scale it was cast with), kept together so
// that a later scale update never changes a tensor already cast (saved for backward).
struct Fp8Operand {
  Tensor data;       // fp8 [rows, cols]
  Tensor scale_inv;  // f32 [1], on data's device
  bool defined() const { return data.defined(); }
  DType dtype() const { return data.dtype(); }
  const float* scale_inv_ptr() const { return static_cast<const float*>(scale_inv.raw()); }
};

class Fp8State {
 public:
  Fp8State(Fp8Config config, Device device);
  const Fp8Config& config() const { return config_; }
  Device device() const { return device_; }
  bool delayed() const { return config_.recipe == Fp8Recipe::kDelayed; }

  // While the model is built: a slot for `owner`'s FP8 tensor `name`; returns its index.
  int64_t add_slot(const Module* owner, const std::string& name, Fp8Role role);
  // After: names every slot "<path of its owner under root>.<name>" and allocates the buffers.
  // Error when a slot's owner is not in root's tree. Casting before finalize allocates the
  // buffers with placeholder names (single layers in tests).
  void finalize(Module& root);
  int64_t num_slots() const { return static_cast<int64_t>(slots_.size()); }
  const std::string& slot_name(int64_t i) const { return slots_.at(i).name; }
  DType slot_dtype(int64_t i) const { return slots_.at(i).dtype; }

  // Casts x [rows, cols] (contiguous f32/bf16/f16) into `q` [rows, cols] and/or `qt` [cols, rows]
  // (either may be null) in the slot's format and scale; with `record` (delayed) max|x| goes
  // into the slot's staging amax. Current scaling computes the scale from x first. With `dbias`
  // (a grad-output cast of a linear with a bias) the same kernel writes the column sums of x into
  // the segments (kernels/fp8.h fp8_quantize_dbias), under either recipe.
  void cast(int64_t slot, const Tensor& x, bool record, Fp8Operand* q, Fp8Operand* qt,
            const std::vector<Fp8DbiasSegment>* dbias = nullptr);
  // The same for a = act(h) ([rows, cols]; h [rows, 2 cols] when gated): delayed scaling fuses
  // the activation into the cast (kernels/fp8.h fp8_act_quantize, a never written in high
  // precision); current scaling runs the activation, then cast().
  void cast_activation(int64_t slot, const Tensor& h, Activation act, int64_t cols, bool record,
                       Fp8Operand* q, Fp8Operand* qt);
  // The grad-output cast of dh = the activation's backward (da [rows, cols] the gradient of
  // act(h), h [rows, 2 cols] when gated; dh shaped like h), always recorded: delayed scaling fuses
  // the backward into the cast (kernels/fp8.h fp8_act_bwd_quantize, dh never written in high
  // precision); current scaling runs activation_bwd, then cast().
  void cast_activation_grad(int64_t slot, const Tensor& da, const Tensor& h, Activation act,
                            Fp8Operand* q, Fp8Operand* qt);
  // The same for y = norm(x) (x [rows, cols] contiguous, gamma / beta [cols]), the norm fused
  // into the cast (kernels/fp8_norm.h): y is never written in high precision; `save` (optional)
  // receives x and the rstd / mean the norm's backward needs. Delayed: one pass over x; current:
  // a pass for the statistics and y's amax, the scale, then the cast pass.
  void cast_norm(int64_t slot, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                 const layers::NormSpec& spec, bool record, layers::NormSaved* save, Fp8Operand* q,
                 Fp8Operand* qt);

  // After each optimizer step (every rank): delayed — one all-reduce (max) of the recorded
  // amaxes over `group` (tp x cp x dp: the world), roll and scale update; both recipes — the
  // generation advances so that weight copies are cast again.
  void end_step(ProcessGroup& group);
  int64_t generation() const { return generation_; }
  // The host half of end_step alone: a replayed CUDA graph ran the step's device work (scale
  // update included) without host code, so the host counts the step here and later eager
  // forwards (evaluation) cast the updated weights again.
  void advance_generation() { ++generation_; }
  // GRAFT_FP8_PROFILE=1: per-step times of the casts, GEMMs and the scale update (fp8_profile.h).
  Fp8Profile& profile() { return profile_; }

  // Host copies, for tests and checkpoints.
  float scale(int64_t slot) const;
  std::vector<float> history(int64_t slot) const;  // [len], row 0 first

  // Checkpoint tensors (delayed only, empty otherwise): "<slot>.amax_history" f32 [len] and
  // "<slot>.scale" f32 [1], CPU.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  // The names state_tensors() would give.
  std::vector<std::string> state_names() const;
  // Restores from tensors named as state_tensors() names them (every one must be present, with
  // its shape: InputError naming `where` and the key otherwise).
  void load_state(const std::map<std::string, Tensor>& tensors, const std::string& where);

 private:
  struct Slot {
    const Module* owner = nullptr;
    std::string name;
    DType dtype = DType::kF8E4M3;
    Fp8Role role = Fp8Role::kInput;
  };
  void ensure_buffers();
  // Current scaling: scale = fp8_max / the amax in the slot's staging entry (which is reset).
  void current_scale_from_staged_amax(int64_t slot);
  // Allocates q / qt ([rows, cols] / [cols, rows] in the slot's format) sharing one scale_inv.
  Tensor make_operands(int64_t slot, int64_t rows, int64_t cols, Fp8Operand* q, Fp8Operand* qt);
  int64_t len() const { return delayed() ? config_.amax_history_len : 1; }
  float* scale_ptr(int64_t i);
  float* amax_ptr(int64_t i);  // row 0 of the history

  Fp8Config config_;
  Device device_;
  std::vector<Slot> slots_;
  Tensor history_, scale_, scaled_max_;  // [len, n], [n], [n] on device_
  int64_t generation_ = 0;
  Fp8Profile profile_;
};

}  // namespace graft::te
