// Parameters and their sharding specs.
//
// A Parameter is the tensor a layer computes with (`value`), its gradient and a ShardSpec that
// says what the tensor is a piece of: the logical (global) shape and, per dimension, whether it
// is whole or split across a layout group with this rank's offset. Gradient norms, the
// data-parallel reduction, the sharded optimizer, native checkpoints and HF load/export all read
// this one spec; nothing infers a global shape from a local tensor.
//
//   dims[d].group == kNone : dimension d is whole (local size == global size)
//   dims[d].group == kTP   : dimension d is split over the tensor-parallel group; this rank
//                            holds [offset, offset + local size) of it (likewise kCP)
// grad_sum_over lists groups beyond data parallelism whose ranks hold *replicas* of this
// parameter that each see part of the gradient (sequence-parallel norm weights, per-head q/k norm
// weights, KV heads replicated over tp): their gradients are summed over those groups before the
// dp reduction (GradBuckets does it; see sum_replica_grads in parallel/grad_buckets.h). For a
// split parameter the sum runs over the ranks holding the same piece only.
//
// Replicas. A parameter with no dimension over kTP is whole on every tp rank; a split one may
// still be held by several tp ranks (a KV head replicated over the ranks whose query heads use
// it, tp > num_key_value_heads): `replica` is this rank's index among the ranks holding the same
// piece. Exactly one copy of each piece counts: is_primary(tp_rank) says whether this rank's does
// (it writes the piece to native checkpoints and adds it to the gradient norm).
//
// Padding. `logical_shape` (empty = global_shape) gives the real extent of each dimension when the
// global shape is padded: a vocabulary that tp does not divide is padded to the next multiple of
// tp (the embedding and an untied LM head are [padded_vocab, hidden], logical [vocab, hidden]).
// Padding rows are zero, never sampled, never in the loss and must never be exported; HF export
// and loading take rows [0, logical_shape[0]) only. Native checkpoints store the logical shape
// (the padding rows are dropped when writing and zero-filled when reading: tensor_pieces.h), so
// they resume in any layout. Padding is only ever along dimension 0.
//
// Fused tensor-parallel layouts (the global tensor is the single-process parameter; each rank's
// local tensor is one box of it):
//   te layernorm_qkv.weight [(Hq + 2·Hkv)·D, H], grouped per KV head: rank r holds rows
//     [r·L, (r+1)·L), L = (Hq + 2·Hkv)·D / tp (whole groups; tp <= Hkv).
//   te layernorm_mlp.fc1_weight [2F, H] = [gate; up] (gated): rank r's local tensor is
//     [gate_r; up_r] (rows r·F/tp.. of each half), not one box of [2F, H]; so the spec views the
//     tensor as [2, F, H]: view = [2, F/tp, H], global_shape [2, F, H], dim 1 split at r·F/tp
//     (at every tp, tp 1 included, so checkpoints do not depend on the layout). fc1_bias [2F]
//     likewise as [2, F].
// `view` (empty = the local tensor's shape): the shape the local tensor is read as (row-major,
// same element count) for the box; global_shape, dims and logical_shape then have its rank.
//
// Parts. A rank's piece of a logical tensor that is not one box is held as several parameters of
// one module, each one box of the same logical tensor: `part_of` (empty = the parameter's own
// name) names the sibling parameter whose logical tensor this one is another box of. Native
// checkpoints, HF loading and export and the single-process initialisation read a part as a box
// of that tensor (logical_param_name gives its name); gradient reduction, norms and replicas are
// per parameter as usual. te's fused qkv with KV heads replicated over tp (tp > Hkv, m = tp/Hkv
// ranks per KV head, n = Hq/Hkv query heads per group, rank r in group g = r/m, j = r % m):
//   layernorm_qkv.weight     rows [g·(n+2)·D + j·(n/m)·D, +(n/m)·D): the rank's query heads;
//   layernorm_qkv.weight_kv  rows [g·(n+2)·D + n·D, +2·D): key and value head g, replica j,
//                            gradient summed over tp (part_of = "weight");
// the bias likewise (bias, bias_kv).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/tensor.h"

namespace graft {

enum class LayoutGroup : uint8_t { kNone, kTP, kCP, kDP };
const char* layout_group_name(LayoutGroup g);

struct DimShard {
  LayoutGroup group = LayoutGroup::kNone;
  int64_t offset = 0;  // this rank's first index along the dimension
};

struct ShardSpec {
  Shape global_shape;
  std::vector<DimShard> dims;  // one per dimension
  std::vector<LayoutGroup> grad_sum_over;
  int64_t replica = 0;  // index among the tp ranks holding this same (split) piece
  Shape logical_shape;  // empty = global_shape; else the unpadded extents (see above)
  Shape view;           // empty = the local shape; else the local tensor viewed as this box
  std::string part_of;  // empty = own tensor; else the sibling parameter's (see Parts above)

  // Whole on every rank (every dimension kNone).
  static ShardSpec replicated(const Shape& shape);
  // Split along `dim` over `group`: this rank holds local[dim] entries from `offset`.
  static ShardSpec split(const Shape& global, int dim, LayoutGroup group, int64_t offset);
  bool is_split() const;
  // The box this rank holds: `view`, or the local shape.
  Shape box_shape(const Shape& local) const { return view.empty() ? local : view; }
  bool split_over(LayoutGroup g) const;  // some dimension is split over g
  bool sums_over(LayoutGroup g) const;   // g is in grad_sum_over
  // Whether this rank's copy is the one that counts (checkpoints, gradient norm): tp rank 0 for a
  // parameter whole on every tp rank, replica 0 for a split one.
  bool is_primary(int tp_rank) const;
  // Checks the spec against the local tensor shape (ndim, sizes inside the global shape);
  // throws Error naming `what`.
  void check(const Shape& local, const std::string& what) const;
  std::string str() const;  // "[4096, 2048] split dim 0 over tp at 1024" / "[2048] replicated"
};

// The logical tensor a parameter named `name` (a dotted path) is a box of: `name` itself, or
// with spec.part_of its last component replaced by part_of.
std::string logical_param_name(const std::string& name, const ShardSpec& spec);

struct Parameter {
  Tensor value;       // the weights used by forward (f32 on CPU; f32 or bf16 on GPU)
  Tensor grad;        // same shape, f32: a view into a gradient bucket once buckets exist
  bool decay = true;  // AdamW weight decay applies (false for norms, biases, embeddings by policy)
  ShardSpec spec;     // set by Module::add_parameter (replicated unless the layer says otherwise)
  // The value is f32 and is itself the optimizer's master weight, also where weights are otherwise
  // low precision (precision.fp8.fp8_weights: an FP8 GEMM weight keeps no bf16 copy; its FP8
  // copies are cast from this value once per optimizer step). Its master is always checkpointed.
  bool f32_master = false;
  // The gradient holds nothing of this step yet (see "Lazy zeroing" below).
  bool grad_stale = false;
};

// Lazy zeroing. GradBuckets::zero_grad does not clear the gradients: it marks them stale (their
// contents are last step's, or NaN in the poisoning debug mode), and the step's first contribution
// to a gradient overwrites it instead of adding to it. Every write into a gradient goes through
// one of the first two, every read after the backward through the third:
//   grad_beta(p)           for a kernel that can overwrite (GEMM beta, the column sums of norm and
//                          bias gradients): 0 when the gradient is stale or missing (allocated
//                          uninitialised) and the flag is cleared, so the caller must then write
//                          every element; else 1 (accumulate).
//   grad_to_accumulate(p)  for an accumulate-only kernel (the embedding's scatter-add): a stale
//                          gradient is zeroed first (a memset of this one tensor), a missing one
//                          allocated as zeros.
//   settle_grad(p)         zeroes a gradient that is still stale (a parameter that received no
//                          gradient this step must read as zero).
// Later micro-batches of a step (grad_accum > 1) find the flag cleared and accumulate.
float grad_beta(Parameter& p);
Tensor& grad_to_accumulate(Parameter& p);
void settle_grad(Parameter& p);
// Whether the next write into p's gradient would overwrite it (stale or missing).
inline bool grad_overwrites(const Parameter& p) { return p.grad_stale || !p.grad.defined(); }

}  // namespace graft
