// The blocks of HF tensors a rank's local parameter holds, from the weight table (global
// coordinates) and the parameter's ShardSpec (framework/core/parameter.h). Loading copies each
// block straight from the memory-mapped shard into the local tensor; export sends the same blocks
// back to rank 0.
//
// The rule is the ShardSpec's: the local tensor (read as spec.view when there is one) is the box
// [offset, offset + size) of the global tensor in every dimension; the weight map's pieces tile
// the global tensor (its logical rows: vocabulary padding past them is in no piece). A block is
// a piece intersected with the box:
//   - column-parallel q/k/v, gate/up, the vocabulary: rows of the HF tensor;
//   - row-parallel o_proj, down_proj, proj, fc2: columns [offset, offset + size);
//   - KV heads replicated over tp: the head's rows (the offset is the head's; replicas > 0 hold
//     the same block);
//   - te's fused qkv (grouped per KV head): the rows of whole groups, un-fused into q, k and v;
//     with KV heads replicated, each of its two parts (weight: the rank's query rows, weight_kv:
//     its group's key and value rows, ShardSpec::part_of) is one box of the same tensor;
//   - te's fc1 viewed as [2, F, H] split along dim 1: [gate rows of r; up rows of r];
//   - vocabulary padding rows (global rows past the logical shape): in no block, zeroed on load,
//     never exported.
// A view may add one leading dimension (the local tensor's dim 0 read as [S, rows]); pieces of
// a viewed parameter must run along dim 0. Anything else is an Error naming the parameter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/parameter.h"
#include "framework/model/weight_table.h"

namespace graft {

struct LocalPiece {
  std::string hf_name;
  size_t piece = 0;    // index into the entry's pieces
  Shape hf_offset;     // where the block starts in the HF tensor
  Shape local_offset;  // where it starts in the local parameter
  Shape box;           // its extent (the same on both sides)
  int64_t numel() const { return shape_numel(box); }
};

// The blocks of `e`'s HF tensors held by a local tensor shaped `local` described by `spec`
// (the parameter's own, or a peer's on export). They never overlap; local elements outside
// every block are padding. A spec that does not describe `local` counts as whole.
std::vector<LocalPiece> local_pieces(const HfParamEntry& e, const ShardSpec& spec,
                                     const Shape& local);

// The parameter's own blocks (its spec and local shape).
std::vector<LocalPiece> local_pieces(const HfParamEntry& e);

// A view of `t` (any tensor with the box's rank) at `offset` with extent `box`.
Tensor box_view(const Tensor& t, const Shape& offset, const Shape& box);

// to = from for CPU tensors of one shape (any dtypes, strides): row by row when both have unit
// inner strides, so a block of a mapped shard reads only its own bytes, fast.
void copy_box(Tensor& to, const Tensor& from);

}  // namespace graft
