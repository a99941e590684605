// How tensor parallelism splits a layer: attention heads, even splits of a dimension, the padded
// vocabulary. Pure arithmetic on the tp group's size and rank; the layers turn the answers into
// local shapes and ShardSpecs (framework/core/parameter.h).
#pragma once

#include <cstdint>
#include <string>

#include "framework/core/parameter.h"
#include "parallel/process_group.h"

namespace graft {

// The attention heads of tp rank r of T.
//   Query heads: Hq / T from r·Hq/T (T must divide Hq).
//   KV heads, T <= Hkv: Hkv / T from r·Hkv/T (T must divide Hkv).
//   KV heads, T > Hkv and Hkv divides T: one KV head, r / (T/Hkv), replicated on the T/Hkv ranks
//     whose query heads read it (kv_replicas = T/Hkv, kv_replica = r % (T/Hkv)).
// Anything else is one InputError naming the layer, the heads, the KV heads and tp.
struct TpHeads {
  int64_t q = 0, kv = 0;                // local counts
  int64_t q_offset = 0, kv_offset = 0;  // global index of the first local head
  int64_t kv_replicas = 1, kv_replica = 0;
};
TpHeads tp_heads(int64_t heads, int64_t kv_heads, const ProcessGroup& tp, const std::string& layer);

// n / T; InputError "layer: what = n is not divisible by tp = T" otherwise.
int64_t tp_divide(int64_t n, const ProcessGroup& tp, const std::string& layer, const char* what);

// The vocabulary of tp rank r of T: padded to a multiple of T, rank r holds rows
// [start, start + rows) of the padded vocabulary, the first `valid` of them real tokens.
struct VocabShard {
  int64_t vocab = 0, padded = 0;  // real and padded sizes
  int64_t start = 0, rows = 0, valid = 0;
};
// InputError when the vocabulary is too small to give every rank a real token.
VocabShard vocab_shard(int64_t vocab, const ProcessGroup& tp, const std::string& layer);

// Specs of a local [rows, cols] piece of a [global_rows, cols] (column-parallel: dim 0) or a
// [rows, global_cols] (row-parallel: dim 1) tensor over tp; replicas per ShardSpec::replica.
ShardSpec tp_split_spec(const Shape& global, int dim, int64_t offset, int64_t replica = 0);
// A tensor whole on every tp rank whose gradient each rank sees only part of (sequence-parallel
// norms, q/k norms): replicated, gradient summed over tp.
ShardSpec tp_partial_grad_spec(const Shape& shape);

}  // namespace graft
