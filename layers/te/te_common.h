// Shared pieces of the TE-style fused layers (layers/te/*): option parsing with errors that name
// the option, the output bundle of TE's return_bias / return_layernorm_output, and LinearBlocks,
// the weight (+ bias) of a TE Linear optionally split into several named parameters along dim 0
// (TE's parameters_split). With FP8 on (enable_fp8), LinearBlocks runs its GEMMs through
// Fp8Linear (layers/te/fp8_linear.h) and saves the FP8 xᵀ for backward instead of x; a bias is
// then added in the FP8 GEMM's epilogue and its gradient comes out of the grad-output cast.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/registry/build_context.h"
#include "framework/registry/module.h"
#include "kernels/activation.h"
#include "layers/decoder.h"
#include "layers/reference/norm_ops.h"
#include "layers/te/fp8_state.h"
#include "parallel/process_group.h"

namespace graft::te {

// Called on each freshly created weight (TE's init_method). Unset: normal(0, 0.023) from a
// generator seeded with the layer's init_seed (TE's default initialiser).
using InitMethod = std::function<void(Tensor& weight)>;

// TE's parameters_split as an ordered list of (name, rows). Empty: one "weight"/"bias".
using ParametersSplit = std::vector<std::pair<std::string, int64_t>>;

// What a TE module's forward returns: `out`; `bias` when return_bias (not added to out);
// `ln_out` (the normalised input) when return_layernorm_output; and `sum` = x + residual when the
// forward was given a residual to add before its norm (in the norm's kernel).
struct TEOutput {
  Tensor out, bias, ln_out, sum;
};

// "LayerNorm" / "RMSNorm" (TE spelling). Anything else: InputError naming `layer`.normalization.
NormType parse_normalization(const std::string& layer, const std::string& value);
const char* normalization_name(NormType t);
// TE activation names: gelu (tanh approximation, as TE's kernels), geglu, qgelu, relu, reglu,
// squared_relu, swiglu. Anything else: InputError naming `layer`.activation.
Activation parse_te_activation(const std::string& layer, const std::string& value);
// Rejects an option that is set but not supported: InputError "layer: option = value is not
// supported (why)".
void reject_if(bool set, const std::string& layer, const std::string& option,
               const std::string& value, const std::string& why);

class Fp8Linear;

// What a linear's backward needs of its input: x itself, or with FP8 its FP8 transposed copy.
struct LinearSaved {
  Tensor x;        // [rows, in]
  Fp8Operand x_t;  // FP8 [in, rows] (FP8 only)
};

// How a TE linear's weight is split over tensor parallelism (tp ranks of the build context):
//   column: each block's rows split evenly (rank r holds rows [r·n/T, (r+1)·n/T) of a block of n
//           rows; the fused qkv's grouped layout makes that whole KV groups); with gated_halves
//           (LayerNormMLP's fc1 = [gate; up]) each half is split and the local tensor is
//           [gate_r; up_r], declared as a [2, F/T, in] view of [2, F, in] (at every tp, so native
//           checkpoints do not depend on the layout).
//   row:    the input columns split: [out, in/T] at r·in/T.
//   column with explicit `rows` (graft extension, for a layout an even split cannot express:
//           te.multihead_attention's qkv with KV heads replicated over tp): the local tensor is
//           the listed pieces stacked in order, each rows [offset, offset + rows) of one block,
//           held by `replicas` tp ranks (this one is `replica`; the gradient is summed over tp).
//           A block's first piece is its own parameter; a further piece of the same block is
//           another parameter, <weight>_<part> / <bias>_<part>, a part of the block's logical
//           tensor (ShardSpec::part_of). Every block must have a piece.
// Initial values are drawn for the whole block and sliced, so a tp rank holds exactly the slice
// a single process would.
struct TpRowBlock {
  size_t block = 0;                   // the parameters_split entry (0 without a split)
  int64_t offset = 0, rows = 0;       // in the block's (global) rows
  int64_t replica = 0, replicas = 1;  // replicas > 1: the same rows on that many tp ranks
  std::string part;                   // "" for the block's first piece, else the part's suffix
};

struct LinearShard {
  std::string mode;  // "", "column" or "row"
  int64_t tp = 1, rank = 0;
  bool gated_halves = false;
  bool skip_init = false;        // BuildContext::skip_init: zero-filled weights, no init_method
  std::vector<TpRowBlock> rows;  // column only: explicit pieces instead of the even split
};

class LinearBlocks {
 public:
  // Adds the parameters to `owner`: `prefix`weight / `prefix`bias, or, with a split,
  // <name>_weight / <name>_bias per block (trailing underscores of the name stripped). `in` and
  // `out` are the global sizes; in() and out() the local ones.
  void init(Module& owner, const std::string& layer, int64_t in, int64_t out, bool bias,
            const ParametersSplit& split, const std::string& prefix, const InitMethod& init,
            uint64_t init_seed, DType params_dtype, Device device,
            const LinearShard& shard = LinearShard());
  // FP8 GEMMs with `state`'s scaling (no-op when null): slots "<prefix>fp8_input", ... of
  // `owner`. Call after init.
  // With the recipe's fp8_weights (TE's fp8_model_init) the weights become f32 and their own
  // optimizer master (Parameter::f32_master): no bf16 copy is kept, the GEMMs read only the FP8
  // copies cast from them once per optimizer step.
  void enable_fp8(const std::shared_ptr<Fp8State>& state, Module& owner, const std::string& prefix);
  bool fp8() const { return fp8_ != nullptr; }
  int64_t in() const { return in_; }
  int64_t out() const { return out_; }
  bool has_bias() const { return bias_; }

  // x [rows, in] -> [rows, out]; the bias is added when add_bias. `save` (a training forward)
  // receives what backward needs.
  Tensor forward(Module& owner, const Tensor& x, bool add_bias, LinearSaved* save = nullptr) const;
  // forward(act(h)) with h [rows, in] ([rows, 2 in] when gated): with FP8 the activation is fused
  // into the input cast (Fp8State::cast_activation), otherwise a = act(h) is made first.
  Tensor forward_activated(Module& owner, const Tensor& h, Activation act, bool add_bias,
                           LinearSaved* save = nullptr) const;
  // FP8 only (fp8()): forward(norm(x)) with x [rows, in], the norm fused into the input cast
  // (Fp8State::cast_norm: norm(x) exists only in FP8); `norm_save` receives what the norm's
  // backward needs and `save` the FP8 norm(x)ᵀ, in a training forward.
  Tensor forward_normed(Module& owner, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        const layers::NormSpec& spec, bool add_bias, LinearSaved* save,
                        layers::NormSaved* norm_save) const;
  // dx [rows, in] (new); dW += dyᵀ x and, when the layer has a bias, db += Σ_rows dy. With
  // `reduce` (a column-parallel layer's tp group) dx is all-reduced over it, the collective
  // started before the weight-gradient GEMMs and waited after them (they overlap on a GPU; with
  // FP8 it follows the FP8 backward).
  Tensor backward(Module& owner, const Tensor& dy, const LinearSaved& saved,
                  ProcessGroup* reduce = nullptr) const;
  Tensor backward(Module& owner, const Tensor& dy, const Tensor& x,
                  ProcessGroup* reduce = nullptr) const {
    return backward(owner, dy, LinearSaved{x, {}}, reduce);
  }
  // FP8 and no bias only: backward with dy = the activation's backward of da at h (h the input
  // forward_activated took; dy never written in high precision under delayed scaling, see
  // Fp8State::cast_activation_grad). `reduce` as backward.
  Tensor backward_activated(Module& owner, const Tensor& da, const Tensor& h, Activation act,
                            const LinearSaved& saved, ProcessGroup* reduce = nullptr) const;
  // The whole bias [out] (a copy when split), for return_bias.
  Tensor bias(Module& owner) const;

 private:
  struct Block {
    std::string weight, bias;
    int64_t offset = 0, size = 0;
  };
  Tensor fp8_forward(Module& owner, const Tensor& x, bool add_bias, LinearSaved* save) const;
  Tensor fp8_weight(Module& owner) const;  // W [out, in], the blocks stacked
  // The bias fprop's epilogue adds ([out], stacked): undefined without one or !add_bias.
  Tensor fp8_bias(Module& owner, bool add_bias) const;
  Tensor fp8_backward(Module& owner, const Tensor& dy, const LinearSaved& saved) const;

  std::vector<Block> blocks_;
  std::shared_ptr<Fp8Linear> fp8_;  // mutable state (weight copies) behind a const interface
  int64_t in_ = 0, out_ = 0;
  bool bias_ = false;
};

}  // namespace graft::te
