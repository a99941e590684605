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
