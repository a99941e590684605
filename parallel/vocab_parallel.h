// Vocab-parallel loss and logits: each tp rank holds the logits of its vocabulary shard
// (parallel/tp_layout.h: VocabShard), [N, rows] with rows - valid padding columns at the end of
// the last shards. The full-vocabulary logits never exist on one rank during training.
//
//   vocab_parallel_xent_fwd: loss = mean over the counted rows of lse_r - logit_r[t_r], with
//     lse_r = M_r + log Σ_ranks Σ_c exp(x - M_r), M_r = the max over ranks of each rank's row max
//     (all-reduce max), the sum-exp all-reduced (sum) and the target logit taken from the rank
//     that holds t_r (all-reduce sum of a vector that is zero elsewhere). Three all-reduces of [N]
//     floats over tp; kernels/vocab_parallel_xent.h has the per-rank steps.
//   vocab_parallel_xent_bwd: dlogits (in place) = grad_scale / d · (softmax - one-hot) on this
//     rank's real columns, 0 on padding; no communication (the lse is already global).
//   gather_vocab: [N, rows] per rank -> [N, vocab] on every rank, padding dropped (generation
//     samples from the last position's logits; CausalLM::forward returns whole logits).
// Collective over `tp` (every rank calls with the same N). f32 or bf16 logits (CUDA) / f32 (CPU).
#pragma once

#include <cstdint>

#include "framework/core/tensor.h"
#include "parallel/process_group.h"
#include "parallel/tp_layout.h"

namespace graft {

// logits [N, shard.rows] (contiguous), targets i64 [N] on the logits' device; num_valid < 0 =
// count the non-ignored (-100) targets. Writes lse [N] f32 (for the backward) and returns the loss.
double vocab_parallel_xent_fwd(const Tensor& logits, const Tensor& targets, const VocabShard& shard,
                               int64_t num_valid, ProcessGroup& tp, Tensor& lse);
void vocab_parallel_xent_bwd(Tensor& logits, const Tensor& targets, const Tensor& lse,
                             const VocabShard& shard, int64_t num_valid, double grad_scale);
Tensor gather_vocab(const Tensor& local, const VocabShard& shard, ProcessGroup& tp);

}  // namespace graft
