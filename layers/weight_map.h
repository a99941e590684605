// Weight maps are data: how a module's parameters correspond to Hugging Face tensors.
//
// A graft parameter is assembled from blocks of HF tensors. Each piece copies the block
// [hf_start, hf_start + length) along `dim` of the HF tensor into [start, start + length) along the
// same `dim` of the parameter; the other dimension is taken whole. This one rule covers
//   - renames (one piece, whole tensor),
//   - fused q/k/v -> qkv and gate/up -> fc1 (several pieces along dim 0),
//   - norms absorbed into LayerNormLinear / LayerNormMLP (a rename to the fused layer's slot),
//   - tensor-parallel slicing (pieces along dim 0 for column-parallel, dim 1 for row-parallel).
// Loading reads the table HF -> graft, export reads the same table graft -> HF.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace graft {

struct WeightPiece {
  std::string hf_name;   // relative to the owner's HF prefix, e.g. "self_attn.q_proj.weight"
  int dim = 0;           // dimension the block runs along (0 or 1)
  int64_t hf_start = 0;  // start of the block in the HF tensor
  int64_t start = 0;     // start of the block in the graft parameter
  int64_t length = -1;   // block length; -1 = the whole HF dimension
};

struct WeightMapEntry {
  std::string param;                // relative to the owner, e.g. "self_attention.qkv.weight"
  std::vector<WeightPiece> pieces;  // together they must cover the parameter exactly once
};

using WeightMap = std::vector<WeightMapEntry>;

}  // namespace graft
