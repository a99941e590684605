// Split/merge of a fused qkv buffer on CUDA (the layout is in kernels/qkv.h), one launch each
// way. A thread moves one unit of V elements (16 bytes when every head block, row stride and
// pointer allow it, else one element): for qkv column unit j of row r it finds the part (q, k or
// v) and the column there from the head layout, then copies src -> dst.
// With RoPE (qkv_split_rope / qkv_merge_rope) a thread moves V = 8 elements (16 bytes of bf16)
// or one, all inside one half of one head's rotary channels or past them, and rotates q and k
// units on the way (the partner half is read from the source at +-half): the split writes
// rotated q, k from the GEMM output, the merge un-rotates dq, dk into dqkv. The per-element
// arithmetic is rope.cu's (self * cos -+ partner * sin).
#include <algorithm>
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
  int64_t rows, ld, seq, max_positions, pos_stride_b;  // ld in elements
  int hq, hkv, n, d, half, rd;                         // elements
  int hp, ih, dv, items;  // per head: rotated pairs, units of a q/k head, of a v head; per row
  bool grouped, merge;
};

template <class T, int V>
struct alignas(V * sizeof(T)) RopeUnit {
  T v[V];
};
template <class T, int V>
__device__ __forceinline__ RopeUnit<T, V> load_ru(const T* p) {
  return *reinterpret_cast<const RopeUnit<T, V>*>(p);
}
template <class T, int V>
__device__ __forceinline__ void store_ru(T* p, const RopeUnit<T, V>& u) {
  *reinterpret_cast<RopeUnit<T, V>*>(p) = u;
}

// One block row per token (blockIdx.x = row; blockIdx.y * blockDim.x + threadIdx.x = item).
// A row's items, in qkv column order: for each q and k head, `hp` pairs (the unit at rotary
// column j < half and its partner at j + half, rotated together from one read of each and one
// read of cos/sin) and (d - rd) / V pass-through units; for each v head, d / V units. The
// head-major q, k, v rows are written (split) or read (merge) at the same head and column.
template <class T, int V>
__global__ void qkv_rope_kernel(T* qkv, T* q, T* k, T* v, const float* cos_t, const float* sin_t,
                                const int64_t* positions, QkvRopeGeom g, InputErrorRecord* err) {
  const int t = blockIdx.y * blockDim.x + threadIdx.x;
  if (t >= g.items) return;
  const int64_t r = blockIdx.x;
  int64_t fcol, ocol;  // head start in the fused row, in the q / k / v row
  T* orow;             // the q, k or v row
  int e;               // item inside its head
  bool rotated;        // a q or k head (else v)
  if (g.grouped) {
    const int ig = (g.n + 1) * g.ih + g.dv, grp = t / ig, c = t - grp * ig;
    const int64_t gbase = int64_t{grp} * (g.n + 2) * g.d;
    rotated = c < (g.n + 1) * g.ih;
    if (rotated) {
      const int hh = c / g.ih;
      e = c - hh * g.ih;
      fcol = gbase + int64_t{hh} * g.d;
      if (hh < g.n) {
        orow = q + r * g.hq * g.d;
        ocol = int64_t{grp * g.n + hh} * g.d;
      } else {
        orow = k + r * g.hkv * g.d;
        ocol = int64_t{grp} * g.d;
      }
    } else {
      e = c - (g.n + 1) * g.ih;
      fcol = gbase + int64_t{g.n + 1} * g.d;
      orow = v + r * g.hkv * g.d;
      ocol = int64_t{grp} * g.d;
    }
  } else {
    const int qi = g.hq * g.ih, ki = g.hkv * g.ih;
    rotated = t < qi + ki;
    if (t < qi) {
      const int h = t / g.ih;
      e = t - h * g.ih;
      fcol = int64_t{h} * g.d;
      orow = q + r * g.hq * g.d;
      ocol = fcol;
    } else if (t < qi + ki) {
      const int h = (t - qi) / g.ih;
      e = t - qi - h * g.ih;
      fcol = int64_t{g.hq + h} * g.d;
      orow = k + r * g.hkv * g.d;
      ocol = int64_t{h} * g.d;
    } else {
      const int h = (t - qi - ki) / g.dv;
      e = t - qi - ki - h * g.dv;
      fcol = int64_t{g.hq + g.hkv + h} * g.d;
      orow = v + r * g.hkv * g.d;
      ocol = int64_t{h} * g.d;
    }
  }
  T* frow = qkv + r * g.ld;
  T* src = g.merge ? orow + ocol : frow + fcol;
  T* dst = g.merge ? frow + fcol : orow + ocol;
  if (!rotated || e >= g.hp) {  // a v unit, or past the rotary channels: a copy
    const int64_t col = rotated ? g.rd + int64_t{e - g.hp} * V : int64_t{e} * V;
    store_ru<T, V>(dst + col, load_ru<T, V>(src + col));
    return;
  }
  const int64_t lo_col = int64_t{e} * V, hi_col = lo_col + g.half;
  RopeUnit<T, V> lo = load_ru<T, V>(src + lo_col), hi = load_ru<T, V>(src + hi_col);
  const int64_t b = r / g.seq, s = r - b * g.seq;
  const int64_t pos = positions[b * g.pos_stride_b + s];
  if (pos < 0 || pos >= g.max_positions) {
    report_input_error(err, kBadPosition, pos, r, g.max_positions);  // left unrotated
  } else {
    const RopeUnit<float, V> c = load_ru<float, V>(cos_t + pos * g.half + lo_col);
    const RopeUnit<float, V> sn = load_ru<float, V>(sin_t + pos * g.half + lo_col);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float a = to_f32(lo.v[j]), p = to_f32(hi.v[j]);
      // forward: lo = a c - p s, hi = p c + a s; backward (merge): the signs swap
      const float lo_out = g.merge ? a * c.v[j] + p * sn.v[j] : a * c.v[j] - p * sn.v[j];
      const float hi_out = g.merge ? p * c.v[j] - a * sn.v[j] : p * c.v[j] + a * sn.v[j];
      lo.v[j] = from_f32<T>(lo_out);
      hi.v[j] = from_f32<T>(hi_out);
    }
  }
  store_ru<T, V>(dst + lo_col, lo);
  store_ru<T, V>(dst + hi_col, hi);
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
  GRAFT_CHECK(w <= (int64_t{1} << 30), name, ": row width ", w, " exceeds 2^30 elements");
  GRAFT_CHECK(p.rows < (int64_t{1} << 31), name, ": rows = ", p.rows, " exceeds 2^31 - 1");
  const int64_t half = rd / 2;
  InputErrorRecord* err = input_error_record(p.device.index);
  const size_t es = dtype_size(p.dtype);
  const bool vec = d % 8 == 0 && half % 8 == 0 && ld % 8 == 0 && aligned_for_8(p.qkv, es) &&
                   aligned_for_8(p.q, es) && aligned_for_8(p.k, es) && aligned_for_8(p.v, es) &&
                   aligned_for_8(rp.cos, sizeof(float)) && aligned_for_8(rp.sin, sizeof(float));
  const int V = vec ? 8 : 1;
  QkvRopeGeom g{};
  g.rows = p.rows, g.ld = ld, g.seq = rp.seq, g.max_positions = rp.max_positions;
  g.pos_stride_b = rp.pos_stride_b < 0 ? rp.seq : rp.pos_stride_b;
  g.hq = static_cast<int>(p.heads_q), g.hkv = static_cast<int>(p.heads_kv);
  g.n = g.hq / g.hkv, g.d = static_cast<int>(d), g.half = static_cast<int>(half);
  g.rd = static_cast<int>(rd);
  g.hp = g.half / V, g.ih = g.hp + (g.d - g.rd) / V, g.dv = g.d / V;
  g.items = (g.hq + g.hkv) * g.ih + g.hkv * g.dv;
  g.grouped = p.grouped, g.merge = p.merge;
  const int threads = static_cast<int>(std::min<int64_t>(256, ceil_div(g.items, 32) * 32));
  GRAFT_CHECK(ceil_div(g.items, threads) <= 65535, name, ": ", g.items, " units per row");
  const dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(ceil_div(g.items, threads)));
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    T* qkv = static_cast<T*>(p.qkv);
    T* q = static_cast<T*>(p.q);
    T* k = static_cast<T*>(p.k);
    T* v = static_cast<T*>(p.v);
    if (vec)
      qkv_rope_kernel<T, 8>
          <<<grid, threads, 0, s>>>(qkv, q, k, v, rp.cos, rp.sin, rp.positions, g, err);
    else
      qkv_rope_kernel<T, 1>
          <<<grid, threads, 0, s>>>(qkv, q, k, v, rp.cos, rp.sin, rp.positions, g, err);
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
