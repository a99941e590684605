// Vocab-parallel softmax cross-entropy: the logits of one rank are the columns
// [vocab_start, vocab_start + cols) of the padded vocabulary, so no rank holds a whole row. The
// loss is assembled from per-row partial statistics that the caller reduces over the
// tensor-parallel group between the steps (parallel/vocab_parallel.h does):
//
//   1. vocab_xent_max:     row_max[r] = max_{c < vocab} logits[r, c]          (then all-reduce max)
//                          target_logit[r] = logits[r, t_r - vocab_start] when this rank holds
//                          t_r, else 0                                        (then all-reduce sum)
//   2. vocab_xent_sumexp:  sum_exp[r] = sum_{c < vocab} exp(logits[r, c] - row_max[r])
//                                                                             (then all-reduce sum)
//   3. vocab_xent_finish:  lse[r] = row_max[r] + log(sum_exp[r]);
//                          *loss = sum_{r valid} (lse[r] - target_logit[r]) / d
//   4. vocab_xent_bwd:     dlogits[r, c] = grad_scale / d · (exp(logits[r, c] - lse[r])
//                                                            - [vocab_start + c == t_r])
//                          for c < vocab; 0 for the padding columns [vocab, cols) and for ignored
//                          rows (t_r == ignore_index)
// with d = num_valid (>= 0) or the number of rows whose target is not ignore_index; d == 0 gives
// a zero loss and zero gradients. Columns [vocab, cols) are vocabulary padding (a vocabulary the
// tp size does not divide): never in a maximum, a sum or a gradient. A target outside
// [0, vocab_total) that is not ignore_index is an InputError naming the row (CUDA: reported at
// the next synchronisation). Accumulate rule: every output is written (=); dlogits may alias
// logits. The CPU path takes f32 logits and sums exponentials in f64, as cross_entropy does.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct VocabXentParams {
  const void* logits = nullptr;      // [n, cols], row stride ld (0 = cols)
  const int64_t* targets = nullptr;  // [n] global token ids
  void* dlogits = nullptr;           // [n, cols], row stride ld (bwd); may alias logits
  float* row_max = nullptr;          // [n]
  float* target_logit = nullptr;     // [n]
  float* sum_exp = nullptr;          // [n]
  float* lse = nullptr;              // [n]
  float* loss = nullptr;             // [1] (finish)
  int64_t n = 0, cols = 0, ld = 0;
  int64_t vocab = 0;        // real (unpadded) columns of this shard, 1 <= vocab <= cols
  int64_t vocab_start = 0;  // global id of column 0
  int64_t vocab_total = 0;  // the real vocabulary size
  int64_t ignore_index = -100;
  int64_t num_valid = -1;  // divisor; < 0 = count the non-ignored targets
  float grad_scale = 1.0f;
  DType dtype = DType::kF32;  // logits, dlogits
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void vocab_xent_max(const VocabXentParams& p);
void vocab_xent_sumexp(const VocabXentParams& p);
void vocab_xent_finish(const VocabXentParams& p);
void vocab_xent_bwd(const VocabXentParams& p);
}  // namespace cpu

inline void vocab_xent_max(const VocabXentParams& p) { GRAFT_DISPATCH(vocab_xent_max, p); }
inline void vocab_xent_sumexp(const VocabXentParams& p) { GRAFT_DISPATCH(vocab_xent_sumexp, p); }
inline void vocab_xent_finish(const VocabXentParams& p) { GRAFT_DISPATCH(vocab_xent_finish, p); }
inline void vocab_xent_bwd(const VocabXentParams& p) { GRAFT_DISPATCH(vocab_xent_bwd, p); }

}  // namespace graft
