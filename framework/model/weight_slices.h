// The blocks of HF tensors a rank's local parameter holds, from the weight table (global
// coordinates) and the parameter's ShardSpec. Loading copies each block straight from the
// memory-mapped shard into the local tensor; export sends the same blocks back to rank 0.
//
// For a parameter split along dimension s (offset o, local size L, global size G), each weight
// map piece (a block of one HF tensor along dimension d, the other dimensions whole):
//   - d != s (o_proj, down_proj, fc2, proj: row-parallel): the piece's block keeps its extent along
//     d and takes columns [o, o + L) of the HF tensor along s;
//   - d == s, one HF tensor (q_proj, gate_proj, embed_tokens, lm_head, k/v with replicated KV
//     heads): the window [o, o + L) of the global parameter; global rows no HF tensor covers
//     (vocabulary padding: G above the HF vocabulary) are zero and never read;
//   - d == s, several HF tensors stacked (te fused qkv, fc1): sharded by construction — the rank
//     takes rows [o·R/G, (o + L)·R/G) of each tensor giving R rows (or the rows its
//     spec.segments name) and stacks them in the order their global positions have, so fc1 at
//     rank r is [gate rows of r; up rows of r] (framework/core/parameter.h).
// A whole (replicated) parameter holds every piece. Splits along two dimensions, a fraction that
// does not divide the rows, or segments that do not fill the local tensor are Errors naming the
// parameter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/parameter.h"
#include "framework/model/weight_table.h"

namespace graft {

struct LocalPiece {
  std::string hf_name;
  size_t piece = 0;    // index into the entry's pieces (the global block it is part of)
  Shape hf_offset;     // where the block starts in the HF tensor
  Shape local_offset;  // where it starts in the local parameter
  Shape box;           // its extent (the same on both sides)
  int64_t numel() const { return shape_numel(box); }
};

// The blocks of `e`'s HF tensors held by a local tensor shaped `local` described by `spec`
// (the parameter's own, or a peer's on export). They never overlap; local elements outside
// every block are padding.
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
