// Merging partial attention results by their log-sum-exp (context parallelism: ring attention).
//
// The attention of a query row over keys K = K1 ∪ K2 (disjoint) from its partial results over
// each part (kernels/attention.h defines out and lse of one call):
//   lse = log(exp(lse1) + exp(lse2));   out = exp(lse1 - lse) · out1 + exp(lse2 - lse) · out2
// attn_merge folds one partial result into running f32 accumulators:
//   part     [B, Sp, H, D] (dtype)       part_lse [B, H, Sp] f32
//   acc      [B, Sa, H, D] f32           acc_lse  [B, H, Sa] f32, rows row0 .. row0 + Sp - 1
// Accumulators start at acc = 0, acc_lse = -inf. A partial row with lse = -inf (all its keys
// masked) leaves the row as it was; a row that stays -inf keeps out = 0 (no NaN).
// Accumulate rule: acc and acc_lse are updated in place; the weights are computed in f32 from
// the f32 statistics (the CPU reference in f64).
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct AttnMergeParams {
  const void* part = nullptr;       // [B, Sp, H, D], contiguous
  const float* part_lse = nullptr;  // [B, H, Sp]
  float* acc = nullptr;             // [B, Sa, H, D], contiguous (updated)
  float* acc_lse = nullptr;         // [B, H, Sa] (updated)
  int64_t batch = 0, seq_part = 0, seq_acc = 0, row0 = 0, heads = 0, head_dim = 0;
  DType dtype = DType::kF32;  // of part: f32, bf16 or f16
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void attn_merge(const AttnMergeParams& p);
}  // namespace cpu

inline void attn_merge(const AttnMergeParams& p) { GRAFT_DISPATCH(attn_merge, p); }

}  // namespace graft
