// Embedding lookup.
//   forward:  out[t, :] = scale * weight[ids[t], :]
//   backward: dweight[ids[t], :] += scale * dy[t, :]   for t = 0 .. n-1, in order of t
// Accumulate rule: out is written (=), dweight accumulates (+=) and is deterministic (the CUDA
// kernel must not use float atomics whose order varies). An id outside [0, vocab) is an
// InputError naming the id and its position. ids are i64 or i32.
// Vocab-parallel shard (vocab_total > 0): the weight holds rows [vocab_start, vocab_start + vocab)
// of a vocabulary of vocab_total; an id of that vocabulary outside the shard gives a zero output
// row and no gradient (another rank owns it), and an id outside [0, vocab_total) is the
// InputError.
// The CPU path requires f32.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct EmbeddingFwdParams {
  const void* ids = nullptr;     // [n]
  const void* weight = nullptr;  // [vocab, hidden]
  void* out = nullptr;           // [n, hidden]
  int64_t n = 0, vocab = 0, hidden = 0;
  int64_t vocab_start = 0, vocab_total = 0;  // vocab-parallel shard (see above); 0 = whole
  float scale = 1.0f;
  DType ids_dtype = DType::kI64;
  DType dtype = DType::kF32;  // weight, out
  Device device;
  void* stream = nullptr;
};

struct EmbeddingBwdParams {
  const void* ids = nullptr;  // [n]
  const void* dy = nullptr;   // [n, hidden]
  float* dweight = nullptr;   // [vocab, hidden] f32 (+=)
  int64_t n = 0, vocab = 0, hidden = 0;
  int64_t vocab_start = 0, vocab_total = 0;  // vocab-parallel shard (see above); 0 = whole
  float scale = 1.0f;
  DType ids_dtype = DType::kI64;
  DType dtype = DType::kF32;  // dy
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void embedding_fwd(const EmbeddingFwdParams& p);
void embedding_bwd(const EmbeddingBwdParams& p);
}  // namespace cpu

inline void embedding_fwd(const EmbeddingFwdParams& p) { GRAFT_DISPATCH(embedding_fwd, p); }
inline void embedding_bwd(const EmbeddingBwdParams& p) { GRAFT_DISPATCH(embedding_bwd, p); }

}  // namespace graft
