// Split/merge of a fused qkv buffer on CUDA (the layout is in kernels/qkv.h), one launch each
// way. A thread moves one unit of V elements (16 bytes when every head block, row stride and
// pointer allow it, else one element): for qkv column unit j of row r it finds the part (q, k or
// v) and the column there from the head layout, then copies src -> dst.
// With RoPE (qkv_split_rope / qkv_merge_rope) a thread moves V = 8 elements (16 bytes of bf16)
// or one, all inside one half of one head's rotary channels or past them, and rotates q and k
// units on the way (the partner half is read from the source at +-half): the split writes
// rotated q, k from the GEMM output, the merge un-rotates dq, dk into dqkv. The per-element
// arithmetic is rope.cu's (self * cos -+ partner * sin).
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

struct QkvRopeGeom {
  int64_t rows, hq, hkv, n, d, w, ld;  // elements
  int64_t seq, half, rd, max_positions, pos_stride_b;
  bool grouped, merge;
};

template <int V, class T>
__device__ __forceinline__ void load_v(const T* p, float (&f)[V]) {
  if constexpr (V == 8)
    load8(p, f);
  else
    f[0] = to_f32(*p);
}
template <int V, class T>
__device__ __forceinline__ void store_v(T* p, const float (&f)[V]) {
  if constexpr (V == 8)
    store8(p, f);
  else
    *p = from_f32<T>(f[0]);
}

template <class T, int V>
__global__ void qkv_rope_kernel(T* qkv, T* q, T* k, T* v, const float* cos_t, const float* sin_t,
                                const int64_t* positions, QkvRopeGeom g, InputErrorRecord* err) {
  const int64_t units = g.w / V, total = g.rows * units;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / units, j = (i % units) * V;
    T* other;
    int64_t hc = 0;  // the column inside its q or k head
    bool rot = true;
    if (g.grouped) {
      const int64_t span = (g.n + 2) * g.d, grp = j / span, c = j % span;
      if (c < g.n * g.d) {
        other = q + r * g.hq * g.d + grp * g.n * g.d + c;
        hc = c % g.d;
      } else if (c < (g.n + 1) * g.d) {
        other = k + r * g.hkv * g.d + grp * g.d + (c - g.n * g.d);
        hc = c - g.n * g.d;
      } else {
        other = v + r * g.hkv * g.d + grp * g.d + (c - (g.n + 1) * g.d);
        rot = false;
      }
    } else {
      const int64_t qw = g.hq * g.d, kw = g.hkv * g.d;
      if (j < qw) {
        other = q + r * qw + j;
        hc = j % g.d;
      } else if (j < qw + kw) {
        other = k + r * kw + (j - qw);
        hc = (j - qw) % g.d;
      } else {
        other = v + r * kw + (j - qw - kw);
        rot = false;
      }
    }
    T* fused = qkv + r * g.ld + j;
    const T* src = g.merge ? other : fused;
    T* dst = g.merge ? fused : other;
    float a[V];
    load_v<V>(src, a);
    if (rot && hc < g.rd) {
      const int64_t b = r / g.seq, s = r % g.seq;
      const int64_t pos = positions[b * g.pos_stride_b + s];
      if (pos < 0 || pos >= g.max_positions) {
        report_input_error(err, kBadPosition, pos, r, g.max_positions);
      } else {
        const bool lo = hc < g.half;
        const int64_t ci = lo ? hc : hc - g.half;
        float pv[V], c[V], sn[V];
        load_v<V>(src + (lo ? g.half : -g.half), pv);
        load_v<V>(cos_t + pos * g.half + ci, c);
        load_v<V>(sin_t + pos * g.half + ci, sn);
        // forward: lo = x c - p s, hi = x c + p s; backward (merge): the signs swap
        const bool plus = lo == g.merge;
#pragma unroll
        for (int e = 0; e < V; ++e)
          a[e] = plus ? a[e] * c[e] + pv[e] * sn[e] : a[e] * c[e] - pv[e] * sn[e];
      }
    }
    store_v<V>(dst, a);
  }
}

void launch_qkv_rope(const QkvSplitParams& p, int64_t d, int64_t w, int64_t ld, cudaStream_t s) {
  const char* name = p.merge ? "qkv_merge_rope" : "qkv_split_rope";
  const QkvRope& rp = p.rope;
  const int64_t rd = rp.rotary_dim ? rp.rotary_dim : d;
  GRAFT_CHECK(rd > 0 && rd % 2 == 0 && rd <= d, name, ": rotary_dim = ", rd,
              " must be even, > 0 and <= head_dim = ", d);
  GRAFT_CHECK(rp.seq > 0 && p.rows % rp.seq == 0, name, ": seq = ", rp.seq,
              " does not divide rows = ", p.rows);
  GRAFT_CHECK(rp.max_positions > 0 && rp.sin && rp.positions, name,
              ": max_positions = ", rp.max_positions, ", or null sin / positions");
  const int64_t half = rd / 2;
  QkvRopeGeom g{p.rows,
                p.heads_q,
                p.heads_kv,
                p.heads_q / p.heads_kv,
                d,
                w,
                ld,
                rp.seq,
                half,
                rd,
                rp.max_positions,
                rp.pos_stride_b < 0 ? rp.seq : rp.pos_stride_b,
                p.grouped,
                p.merge};
  InputErrorRecord* err = input_error_record(p.device.index);
  const size_t es = dtype_size(p.dtype);
  const bool vec = d % 8 == 0 && half % 8 == 0 && ld % 8 == 0 && aligned_for_8(p.qkv, es) &&
                   aligned_for_8(p.q, es) && aligned_for_8(p.k, es) && aligned_for_8(p.v, es) &&
                   aligned_for_8(rp.cos, sizeof(float)) && aligned_for_8(rp.sin, sizeof(float));
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    T* qkv = static_cast<T*>(p.qkv);
    T* q = static_cast<T*>(p.q);
    T* k = static_cast<T*>(p.k);
    T* v = static_cast<T*>(p.v);
    if (vec)
      qkv_rope_kernel<T, 8><<<grid_for(p.rows * w / 8, 256), 256, 0, s>>>(
          qkv, q, k, v, rp.cos, rp.sin, rp.positions, g, err);
    else
      qkv_rope_kernel<T, 1><<<grid_for(p.rows * w, 256), 256, 0, s>>>(qkv, q, k, v, rp.cos, rp.sin,
                                                                      rp.positions, g, err);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
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
  if (p.rope.cos) return launch_qkv_rope(p, d, w, ld, s);
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
GRAFT_REGISTER_CUDA_KERNEL(qkv_split_rope, QkvSplitParams, cuda::launch_qkv_split);
GRAFT_REGISTER_CUDA_KERNEL(qkv_merge_rope, QkvSplitParams, cuda::launch_qkv_split);
}  // namespace graft
