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
// parameter that each see part of the gradient (sequence-parallel norm weights, KV heads
// replicated over tp): their gradients are summed over those groups before the dp reduction.
//
// Fused parameters (HF loading and export, framework/model/weight_slices.h). A layer's weight map
// describes the *global* (unsharded) parameter. When the split dimension stacks several HF
// tensors — te's fused qkv ([q_g; k_g; v_g] per KV group g), fc1 ([gate; up]) — the parameter is
// sharded by construction: a rank's local tensor is the same fused layout built from the rank's
// part of each stacked tensor (fc1 on rank r of n = [gate rows of r; up rows of r]; qkv = the
// groups of r's KV heads), not a window of the global tensor. By default every stacked tensor is
// split by the parameter's fraction (rows [offset·R/G, (offset + local)·R/G) of a tensor giving
// R of the G global rows). `segments` overrides that, one entry per stacked tensor in the order
// the weight map first names them, when the fractions differ:
//
// KV heads replicated over tp (tp > kv_heads, tp % kv_heads == 0): rank r uses KV head
// h = r / (tp / kv_heads). A separate k/v parameter is split dim 0 with offset h·head_dim and
// local size head_dim (ranks sharing a head have equal offsets; grad_sum_over says the gradient
// is summed). A fused qkv lists segments {q: offset r·Hq·D/tp, length Hq·D/tp}, {k: h·D, D},
// {v: h·D, D}; its global_shape is the canonical [(Hq + 2·Hkv)·D, H] and its offset is that of q.
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

// This rank's rows [offset, offset + length) of one HF tensor stacked in a fused parameter.
struct SegmentShard {
  int64_t offset = 0, length = 0;
};

struct ShardSpec {
  Shape global_shape;
  std::vector<DimShard> dims;  // one per dimension
  std::vector<LayoutGroup> grad_sum_over;
  std::vector<SegmentShard> segments;  // fused parameters only (see above); empty = by fraction

  // Whole on every rank (every dimension kNone).
  static ShardSpec replicated(const Shape& shape);
  // Split along `dim` over `group`: this rank holds local[dim] entries from `offset`.
  static ShardSpec split(const Shape& global, int dim, LayoutGroup group, int64_t offset);
  bool is_split() const;
  // Checks the spec against the local tensor shape (ndim, sizes inside the global shape);
  // throws Error naming `what`.
  void check(const Shape& local, const std::string& what) const;
  std::string str() const;  // "[4096, 2048] split dim 0 over tp at 1024" / "[2048] replicated"
};

struct Parameter {
  Tensor value;       // the weights used by forward (f32 on CPU; f32 or bf16 on GPU)
  Tensor grad;        // same shape, f32: a view into a gradient bucket once buckets exist
  bool decay = true;  // AdamW weight decay applies (false for norms, biases, embeddings by policy)
  ShardSpec spec;     // set by Module::add_parameter (replicated unless the layer says otherwise)
};

}  // namespace graft
