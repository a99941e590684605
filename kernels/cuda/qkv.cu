// Split/merge of a fused qkv buffer on CUDA (the layout is in kernels/qkv.h), one launch each
// way. A thread moves one unit of V elements (16 bytes when every head block, row stride and
// pointer allow it, else one element): for qkv column unit j of row r it finds the part (q, k or
// v) and the column there from the head layout, then copies src -> dst.
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/qkv.h"

namespace graft::cuda {
namespace {

struct QkvGeom {
  int64_t rows, hq, hkv, n, d, w, ld;  // in units (d, w, ld already divided by the unit)
  bool grouped, merge;
};

template <class U>
__global__ void qkv_split_kernel(U* qkv, U* q, U* k, U* v, QkvGeom g) {
  const int64_t total = g.rows * g.w;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / g.w, j = i % g.w;
    U* other;
    if (g.grouped) {
      const int64_t span = (g.n + 2) * g.d, grp = j / span, c = j % span;
      if (c < g.n * g.d)
        other = q + r * g.hq * g.d + grp * g.n * g.d + c;
      else if (c < (g.n + 1) * g.d)
        other = k + r * g.hkv * g.d + grp * g.d + (c - g.n * g.d);
      else
        other = v + r * g.hkv * g.d + grp * g.d + (c - (g.n + 1) * g.d);
    } else {
      const int64_t qw = g.hq * g.d, kw = g.hkv * g.d;
      if (j < qw)
        other = q + r * qw + j;
      else if (j < qw + kw)
        other = k + r * kw + (j - qw);
      else
        other = v + r * kw + (j - qw - kw);
    }
    U* fused = qkv + r * g.ld + j;
    if (g.merge)
      *fused = *other;
    else
      *other = *fused;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class U>
void launch_units(const QkvSplitParams& p, QkvGeom g, int64_t unit_elems, cudaStream_t s) {
  g.d /= unit_elems;
  g.w /= unit_elems;
  g.ld /= unit_elems;
  const int64_t total = g.rows * g.w;
  qkv_split_kernel<U><<<grid_for(total, 256), 256, 0, s>>>(
      static_cast<U*>(p.qkv), static_cast<U*>(p.q), static_cast<U*>(p.k), static_cast<U*>(p.v), g);
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_qkv_split(const QkvSplitParams& p) {
  GRAFT_CHECK(p.heads_kv > 0 && p.heads_q % p.heads_kv == 0 && p.head_dim > 0 && p.rows >= 0,
              "qkv_split: heads_q = ", p.heads_q, ", heads_kv = ", p.heads_kv,
              ", head_dim = ", p.head_dim);
  const int64_t d = p.head_dim, w = (p.heads_q + 2 * p.heads_kv) * d;
  const int64_t ld = p.ld ? p.ld : w;
  GRAFT_CHECK(ld >= w, "qkv_split: ld = ", ld, " < width ", w);
  if (p.rows == 0) return;
  DeviceGuard dg(p.device.index);
  cudaStream_t s = stream_of(p);
  const int64_t es = static_cast<int64_t>(dtype_size(p.dtype));
  QkvGeom g{p.rows, p.heads_q, p.heads_kv, p.heads_q / p.heads_kv, d, w, ld, p.grouped, p.merge};
  // 16-byte units when every column offset (multiples of d), the row stride and the pointers
  // are 16-byte aligned; otherwise one element per thread.
  const int64_t v16 = 16 / es;
  const bool vec = 16 % es == 0 && d % v16 == 0 && ld % v16 == 0 && aligned16(p.qkv) &&
                   aligned16(p.q) && aligned16(p.k) && aligned16(p.v);
  if (vec) return launch_units<uint4>(p, g, v16, s);
  switch (es) {
    case 1:
      return launch_units<uint8_t>(p, g, 1, s);
    case 2:
      return launch_units<uint16_t>(p, g, 1, s);
    case 4:
      return launch_units<uint32_t>(p, g, 1, s);
    case 8:
      return launch_units<uint64_t>(p, g, 1, s);
  }
  GRAFT_CHECK(false, "qkv_split: element size ", es);
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(qkv_split, QkvSplitParams, cuda::launch_qkv_split);
}  // namespace graft
