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
#pragma once

#include <cstdint>

#include "framework/core/device.h"
#include "framework/core/dtype.h"
#include "kernels/dispatch.h"

namespace graft {

struct QkvSplitParams {
  void* qkv = nullptr;  // [N, (Hq + 2 Hkv) D], row stride ld (read by split, written by merge)
  void* q = nullptr;    // [N, Hq D]
  void* k = nullptr;    // [N, Hkv D]
  void* v = nullptr;    // [N, Hkv D]
  int64_t rows = 0, heads_q = 0, heads_kv = 0, head_dim = 0, ld = 0;
  bool grouped = false;
  bool merge = false;  // false: split qkv -> q, k, v; true: merge q, k, v -> qkv
  DType dtype = DType::kBF16;
  Device device;
  void* stream = nullptr;
};

namespace cpu {
void qkv_split(const QkvSplitParams& p);
}  // namespace cpu

inline void qkv_split(const QkvSplitParams& p) { GRAFT_DISPATCH(qkv_split, p); }

}  // namespace graft
