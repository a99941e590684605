// Split of a fused qkv projection output into contiguous q, k, v, and its inverse, in one pass
// (instead of 3·Hkv strided copies each way).
//
// qkv [N, (Hq + 2 Hkv) D] holds, for each kv head g (n = Hq / Hkv query heads per group), the q
// block of group g (n·D columns), k head g (D) and v head g (D), at columns
//   grouped (TE fuse_qkv_params, interleaved per group):
//       q_g at g (n + 2) D,  k_g at g (n + 2) D + n D,  v_g at g (n + 2) D + (n + 1) D
//   not grouped (q | k | v):  q_g at g n D,  k_g at (Hq + g) D,  v_g at (Hq + Hkv + g) D
// split: q[N, Hq D] (q blocks in group order), k[N, Hkv D], v[N, Hkv D] (=) from qkv.
// merge: qkv (=) from q, k, v (the backward of split: dqkv from dq, dk, dv).
// Any dtype (a copy); rows of qkv have stride ld (0 = (Hq + 2 Hkv) D), q, k, v are contiguous.
//
// RoPE in the same pass (rope.cos set; the rotation and tables of kernels/rope.h): row r of qkv is
// token (b, s) = (r / seq, r % seq) at position positions[b * pos_stride_b + s].
//   split: q and k are written rotated (the forward rotation of every head), v copied.
//   merge: the q and k blocks of qkv are written with the backward (transposed) rotation of dq
//          and dk, dv copied: the backward of split-with-rope, dqkv in one pass.
// Float dtypes only with RoPE (f32 on the CPU, whose reference is the split followed by
// cpu::rope_fwd, or cpu::rope_bwd followed by the merge). A position outside [0, max_positions)
// is an InputError (on CUDA reported at the next synchronisation, its token left unrotated).
// Profiled as qkv_split (no RoPE, either direction), qkv_split_rope and qkv_merge_rope.
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

// Optional RoPE applied by the split / merge (see above).
struct QkvRope {
  const float* cos = nullptr;          // [max_positions, rotary_dim / 2]; null = no RoPE
  const float* sin = nullptr;          // [max_positions, rotary_dim / 2]
  const int64_t* positions = nullptr;  // [rows / seq, seq], row stride pos_stride_b
  int64_t seq = 0;                     // tokens per sequence (> 0, divides rows)
  int64_t rotary_dim = 0;              // 0 = head_dim; even, <= head_dim
  int64_t max_positions = 0;
  int64_t pos_stride_b = -1;  // -1 = seq; 0 = one [seq] row shared by the batch
};

struct QkvSplitParams {
  void* qkv = nullptr;  // [N, (Hq + 2 Hkv) D], row stride ld (read by split, written by merge)
  void* q = nullptr;    // [N, Hq D]
  void* k = nullptr;    // [N, Hkv D]
  void* v = nullptr;    // [N, Hkv D]
  int64_t rows = 0, heads_q = 0, heads_kv = 0, head_dim = 0, ld = 0;
  bool grouped = false;
  bool merge = false;  // false: split qkv -> q, k, v; true: merge q, k, v -> qkv
  QkvRope rope;
  DType dtype = DType::kBF16;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void qkv_split(const QkvSplitParams& p);
// The same function under the fused families' names (the profile tells them apart).
inline void qkv_split_rope(const QkvSplitParams& p) { qkv_split(p); }
inline void qkv_merge_rope(const QkvSplitParams& p) { qkv_split(p); }
}  // namespace cpu

inline void qkv_split(const QkvSplitParams& p) {
  if (!p.rope.cos)
    GRAFT_DISPATCH(qkv_split, p);
  else if (!p.merge)
    GRAFT_DISPATCH(qkv_split_rope, p);
  else
    GRAFT_DISPATCH(qkv_merge_rope, p);
}

}  // namespace graft
