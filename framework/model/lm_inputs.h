// One training micro-batch for a causal LM, targets already shifted (what the sampler produces and
// CausalLM::forward_backward consumes).
#pragma once

#include <cstdint>

#include "framework/core/tensor.h"

namespace graft {

struct LmInputs {
  Tensor input_ids;  // i64 [B, S]
  Tensor targets;    // i64 [B, S]: the token position t predicts; -100 = not counted in the loss
  Tensor positions;  // optional i64 [B, S] rotary positions (default 0 .. S-1 per row)
  // Optional i64 [B, S] document ids of a packed row: attention stays within a document.
  Tensor segment_ids;
  Tensor attention_mask;     // optional i64 [B, S] key padding (1 token, 0 pad)
  int64_t num_targets = -1;  // counted targets (>= 0 when the producer knows it)
  // > 0: the loss is the sum over this batch's targets divided by loss_divisor (e.g. the count of
  // a whole step's targets across micro-batches and ranks); 0: divided by this batch's count.
  int64_t loss_divisor = 0;
  // Optional i64 [1] on the model's device holding loss_divisor instead, read when the loss
  // kernels run (kernels/cross_entropy.h num_valid_at): a replayed CUDA graph's per-step count.
  Tensor loss_divisor_at;
};

}  // namespace graft
