// RMSNorm and LayerNorm forward/backward on CUDA (the math is in kernels/norm.h).
//
// Main path: the row lives in registers. A unit is V elements (V = 8, 16-byte loads of bf16,
// when cols % 8 == 0 and every pointer is aligned, else V = 1); a block has row_threads(units)
// threads and a thread holds up to K units of a row (K = 1 for 16-byte units except RMSNorm's
// forward, which takes 2; up to 4 elements), so rows of up to 1024 (2048) units or 4096 elements.
// Forward: one block per row; each thread loads its units of x (and residual, gamma, beta) at
// once, writes s = x + residual (rounded to T) when fused, reduces the statistics in f32
// (LayerNorm two-pass: mean, then centred variance) and writes y in the activation dtype.
// Backward: a grid of as many blocks as are resident at once; each block owns a strip of rows,
// walks it one row at a time with the next row's loads issued before the current row's
// reductions, writes dx (=; dresidual added in f32 before the one rounding) and keeps the
// dgamma/dbeta column sums of its strip in registers. Each block writes one f32 partial row;
// a small kernel adds the partials in a fixed order in f64 and rounds once into dgamma/dbeta
// (+=), so the weight gradients are deterministic (the grid depends only on the device and the
// shape). Thread t of a block of row_threads(units) threads owns units t, t + threads, ... in
// both kernels, as the loop kernels below do, so the per-row sums (and thus y, dx, rstd) are
// bit-identical to theirs.
// Fallback (longer rows; LayerNorm's and f32's backward beyond 512 units of 8, whose registers
// do not fit 1024 threads): the loop kernels, one block per row for y and dx, dgamma/dbeta through
// the deterministic column sum of common.cuh, launched before dx so that dx may alias dy.
//   x, y, dy, dx: [rows, cols] in T;  gamma, beta: [cols] in W;  rstd, mean: [rows] f32.
// The f32 residual stream (kernels/norm.h, residual_dtype f32 with bf16 activations): the forward
// kernels read x as X and residual / write residual_out as R (the sum s = x + residual is rounded
// to R, so not at all for R = f32), y stays T; the backward kernels read dy as T and x, dresidual
// and write dx as R. The single-dtype case is X = R = T.
#include <algorithm>
#include <atomic>

#include "kernels/cuda/common.cuh"
#include "kernels/norm.h"

namespace graft::cuda {
namespace {

template <class X, class R, class T, class W, bool kLayer>
__global__ void norm_fwd_kernel(const X* x, const R* res, R* res_out, const W* gamma, const W* beta,
                                T* y, float* rstd_out, float* mean_out, int64_t cols, float eps,
                                bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const X* xr = x + row * cols;
  T* yr = y + row * cols;
  R* sr = res ? res_out + row * cols : nullptr;
  if (res) {  // s = x + residual, rounded to R; each thread later rereads only what it wrote
    const R* rr = res + row * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      sr[j] = from_f32<R>(to_f32(xr[j]) + to_f32(rr[j]));
  }
  auto in = [&](int64_t j) { return sr ? to_f32(sr[j]) : to_f32(xr[j]); };  // the norm's input
  float mean = 0.0f;
  if (kLayer) {
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += in(j);
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = in(j)-mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(block_sum(ss, scratch) / static_cast<float>(cols) + eps);
  if (threadIdx.x == 0) {
    if (rstd_out) rstd_out[row] = rstd;
    if (kLayer && mean_out) mean_out[row] = mean;
  }
  const float g_off = zero_centered ? 1.0f : 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = (in(j)-mean) * rstd * (to_f32(gamma[j]) + g_off);
    if (kLayer && beta) v += to_f32(beta[j]);
    yr[j] = from_f32<T>(v);
  }
}

template <class T, class R, class W, bool kLayer>
__global__ void norm_bwd_dx_kernel(const T* dy, const R* x, const W* gamma, const float* rstd,
                                   const float* mean, const R* dres, R* dx, int64_t cols,
                                   bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* dyr = dy + row * cols;
  const R* xr = x + row * cols;
  const float rs = rstd[row];
  const float mu = kLayer ? mean[row] : 0.0f;
  const float g_off = zero_centered ? 1.0f : 0.0f;
  float s_dxh = 0.0f, s_dxh_xh = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float xh = (to_f32(xr[j]) - mu) * rs;
    const float dxh = to_f32(dyr[j]) * (to_f32(gamma[j]) + g_off);
    s_dxh += dxh;
    s_dxh_xh += dxh * xh;
  }
  const float inv = 1.0f / static_cast<float>(cols);
  const float m_dxh = kLayer ? block_sum(s_dxh, scratch) * inv : 0.0f;
  const float m_dxh_xh = block_sum(s_dxh_xh, scratch) * inv;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float xh = (to_f32(xr[j]) - mu) * rs;
    const float dxh = to_f32(dyr[j]) * (to_f32(gamma[j]) + g_off);
    float d = rs * (dxh - m_dxh - xh * m_dxh_xh);
    if (dres) d += to_f32(dres[row * cols + j]);
    dx[row * cols + j] = from_f32<R>(d);
  }
}

// The same two kernels over 8-element vectors (cols % 8 == 0, every row and weight pointer
// aligned for load8): 16-byte loads of bf16, one pass of the row held in registers per step.
template <class X, class R, class T, class W, bool kLayer>
__global__ void norm_fwd_vec_kernel(const X* x, const R* res, R* res_out, const W* gamma,
                                    const W* beta, T* y, float* rstd_out, float* mean_out,
                                    int64_t cols, float eps, bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, units = cols / 8;
  const X* xr = x + row * cols;
  T* yr = y + row * cols;
  R* sr = res ? res_out + row * cols : nullptr;
  float xv[8];
  if (res) {
    const R* rr = res + row * cols;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      float rv[8];
      load8(xr + 8 * u, xv);
      load8(rr + 8 * u, rv);
#pragma unroll
      for (int k = 0; k < 8; ++k) xv[k] += rv[k];
      store8(sr + 8 * u, xv);
    }
  }
  auto in8 = [&](int64_t u, float(&v)[8]) {  // the norm's input, 8 elements at unit u
    if (sr)
      load8(sr + 8 * u, v);
    else
      load8(xr + 8 * u, v);
  };
  float mean = 0.0f;
  if (kLayer) {
    float s = 0.0f;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      in8(u, xv);
#pragma unroll
      for (int k = 0; k < 8; ++k) s += xv[k];
    }
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float ss = 0.0f;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    in8(u, xv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float d = xv[k] - mean;
      ss += d * d;
    }
  }
  const float rstd = rsqrtf(block_sum(ss, scratch) / static_cast<float>(cols) + eps);
  if (threadIdx.x == 0) {
    if (rstd_out) rstd_out[row] = rstd;
    if (kLayer && mean_out) mean_out[row] = mean;
  }
  const float g_off = zero_centered ? 1.0f : 0.0f;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    float gv[8], bv[8], out[8];
    in8(u, xv);
    load8(gamma + 8 * u, gv);
    if (kLayer && beta) load8(beta + 8 * u, bv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      out[k] = (xv[k] - mean) * rstd * (gv[k] + g_off);
      if (kLayer && beta) out[k] += bv[k];
    }
    store8(yr + 8 * u, out);
  }
}

template <class T, class R, class W, bool kLayer>
__global__ void norm_bwd_dx_vec_kernel(const T* dy, const R* x, const W* gamma, const float* rstd,
                                       const float* mean, const R* dres, R* dx, int64_t cols,
                                       bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, units = cols / 8;
  const T* dyr = dy + row * cols;
  const R* xr = x + row * cols;
  const float rs = rstd[row];
  const float mu = kLayer ? mean[row] : 0.0f;
  const float g_off = zero_centered ? 1.0f : 0.0f;
  float xv[8], dv[8], gv[8];
  float s_dxh = 0.0f, s_dxh_xh = 0.0f;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    load8(xr + 8 * u, xv);
    load8(dyr + 8 * u, dv);
    load8(gamma + 8 * u, gv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float xh = (xv[k] - mu) * rs;
      const float dxh = dv[k] * (gv[k] + g_off);
      s_dxh += dxh;
      s_dxh_xh += dxh * xh;
    }
  }
  const float inv = 1.0f / static_cast<float>(cols);
  const float m_dxh = kLayer ? block_sum(s_dxh, scratch) * inv : 0.0f;
  const float m_dxh_xh = block_sum(s_dxh_xh, scratch) * inv;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    float out[8];
    load8(xr + 8 * u, xv);
    load8(dyr + 8 * u, dv);
    load8(gamma + 8 * u, gv);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float xh = (xv[k] - mu) * rs;
      const float dxh = dv[k] * (gv[k] + g_off);
      out[k] = rs * (dxh - m_dxh - xh * m_dxh_xh);
    }
    if (dres) {
      float rv[8];
      load8(dres + row * cols + 8 * u, rv);
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] += rv[k];
    }
    store8(dx + row * cols + 8 * u, out);
  }
}

// ---- register-resident kernels (the main path) -------------------------------------------------
// A unit is V consecutive elements of a row; a thread owns at most K units of each row.
template <class T, int V>
struct alignas(V * sizeof(T)) Unit {
  T v[V];
};
template <class T, int V>
__device__ __forceinline__ Unit<T, V> load_unit(const T* p) {
  return *reinterpret_cast<const Unit<T, V>*>(p);
}
template <class T, int V>
__device__ __forceinline__ void store_unit(T* p, const float (&f)[V]) {
  Unit<T, V> u;
#pragma unroll
  for (int e = 0; e < V; ++e) u.v[e] = from_f32<T>(f[e]);
  *reinterpret_cast<Unit<T, V>*>(p) = u;
}

// One block per row. Every load of the row is issued before the first reduction.
template <class X, class R, class T, class W, bool kLayer, int V, int K>
__global__ void __launch_bounds__(1024)
    norm_fwd_reg_kernel(const X* x, const R* res, R* res_out, const W* gamma, const W* beta, T* y,
                        float* rstd_out, float* mean_out, int64_t cols, float eps,
                        bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, base = row * cols;
  const int units = static_cast<int>(cols / V);
  Unit<X, V> xu[K] = {};
  Unit<R, V> ru[K] = {};
  Unit<W, V> gu[K] = {}, bu[K] = {};
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
    if (u < units) {
      xu[i] = load_unit<X, V>(x + base + int64_t{u} * V);
      if (res) ru[i] = load_unit<R, V>(res + base + int64_t{u} * V);
      gu[i] = load_unit<W, V>(gamma + int64_t{u} * V);
      if (kLayer && beta) bu[i] = load_unit<W, V>(beta + int64_t{u} * V);
    }
  }
  float xv[K][V];
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      xv[i][e] = to_f32(xu[i].v[e]);
      // s = round(x + residual): the value the loop kernels store and read back
      if (res) xv[i][e] = to_f32(from_f32<R>(xv[i][e] + to_f32(ru[i].v[e])));
    }
    if (res && u < units) store_unit<R, V>(res_out + base + int64_t{u} * V, xv[i]);
  }
  float mean = 0.0f;
  if (kLayer) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i)
      if (threadIdx.x + i * blockDim.x < units) {
#pragma unroll
        for (int e = 0; e < V; ++e) s += xv[i][e];
      }
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < K; ++i)
    if (threadIdx.x + i * blockDim.x < units) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float d = xv[i][e] - mean;
        ss += d * d;
      }
    }
  const float rstd = rsqrtf(block_sum(ss, scratch) / static_cast<float>(cols) + eps);
  if (threadIdx.x == 0) {
    if (rstd_out) rstd_out[row] = rstd;
    if (kLayer && mean_out) mean_out[row] = mean;
  }
  const float g_off = zero_centered ? 1.0f : 0.0f;
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
    if (u >= units) continue;
    float out[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
      out[e] = (xv[i][e] - mean) * rstd * (to_f32(gu[i].v[e]) + g_off);
      if (kLayer && beta) out[e] += to_f32(bu[i].v[e]);
    }
    store_unit<T, V>(y + base + int64_t{u} * V, out);
  }
}

// a, b = their sums over the block, each by block_sum's tree (so bit-identical to two calls),
// with one pair of barriers. `scratch` holds 64 floats.
__device__ __forceinline__ void block_sum2(float& a, float& b, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  if (lane == 0) {
    scratch[warp] = a;
    scratch[32 + warp] = b;
  }
  __syncthreads();
  a = lane < nwarps ? scratch[lane] : 0.0f;
  b = lane < nwarps ? scratch[32 + lane] : 0.0f;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();
}

// Rows [r0, r1) of a block's strip. `c` holds row r's units, `n` receives row r + 1's.
template <class T, class R, int V, int K>
struct BwdRow {
  Unit<R, V> x[K], dres[K];
  Unit<T, V> dy[K];
  float rstd, mean;
};
template <class T, class R, int V, int K, bool kLayer>
__device__ __forceinline__ void load_bwd_row(BwdRow<T, R, V, K>& b, const T* dy, const R* x,
                                             const R* dres, const float* rstd, const float* mean,
                                             int64_t r, int64_t cols, int units) {
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
    if (u < units) {
      const int64_t off = r * cols + int64_t{u} * V;
      b.x[i] = load_unit<R, V>(x + off);
      b.dy[i] = load_unit<T, V>(dy + off);
      if (dres) b.dres[i] = load_unit<R, V>(dres + off);
    }
  }
  b.rstd = rstd[r];
  b.mean = kLayer ? mean[r] : 0.0f;
}

// Where it fits in 64 registers without spilling (RMSNorm of 16-bit vectors, every element
// path) the kernel is held to them, so that blocks of 1024 threads launch and 256-thread blocks
// fit four to an SM; the others (also an f32 residual stream's x, dx) launch with up to 512
// threads a block.
template <class T, class R, class W, bool kLayer, int V, int K>
__global__ void __launch_bounds__(V == 1 || (!kLayer && sizeof(T) == 2 && sizeof(R) == 2) ? 1024
                                                                                          : 512)
    norm_bwd_reg_kernel(const T* dy, const R* x, const W* gamma, const float* rstd,
                        const float* mean, const R* dres, R* dx, float* dg_part, float* db_part,
                        int64_t rows, int64_t cols, int64_t rows_per_block, bool zero_centered) {
  __shared__ float scratch[64];
  const int units = static_cast<int>(cols / V);
  const int64_t r0 = blockIdx.x * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  const float g_off = zero_centered ? 1.0f : 0.0f;
  const float inv = 1.0f / static_cast<float>(cols);
  float g[K][V], dg[K][V], db[K][V];
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
    Unit<W, V> gu = {};
    if (u < units) gu = load_unit<W, V>(gamma + int64_t{u} * V);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      g[i][e] = to_f32(gu.v[e]) + g_off;
      dg[i][e] = 0.0f;
      db[i][e] = 0.0f;
    }
  }
  BwdRow<T, R, V, K> c = {}, n = {};
  if (r0 < r1) load_bwd_row<T, R, V, K, kLayer>(c, dy, x, dres, rstd, mean, r0, cols, units);
  for (int64_t r = r0; r < r1; ++r) {
    if (r + 1 < r1)
      load_bwd_row<T, R, V, K, kLayer>(n, dy, x, dres, rstd, mean, r + 1, cols, units);
    const float rs = c.rstd, mu = c.mean;
    float s_dxh = 0.0f, s_dxh_xh = 0.0f;
#pragma unroll
    for (int i = 0; i < K; ++i)
      if (threadIdx.x + i * blockDim.x < units) {
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float xh = (to_f32(c.x[i].v[e]) - mu) * rs;
          const float dxh = to_f32(c.dy[i].v[e]) * g[i][e];
          s_dxh += dxh;
          s_dxh_xh += dxh * xh;
        }
      }
    float m_dxh = 0.0f, m_dxh_xh;
    if (kLayer) {
      block_sum2(s_dxh, s_dxh_xh, scratch);
      m_dxh = s_dxh * inv;
      m_dxh_xh = s_dxh_xh * inv;
    } else {
      m_dxh_xh = block_sum(s_dxh_xh, scratch) * inv;
    }
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int u = threadIdx.x + i * blockDim.x;
      if (u >= units) continue;
      float out[V];
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float xh = (to_f32(c.x[i].v[e]) - mu) * rs;
        const float d = to_f32(c.dy[i].v[e]);
        const float dxh = d * g[i][e];
        out[e] = rs * (dxh - m_dxh - xh * m_dxh_xh);
        if (dres) out[e] += to_f32(c.dres[i].v[e]);
        dg[i][e] += d * xh;
        if (kLayer) db[i][e] += d;
      }
      store_unit<R, V>(dx + r * cols + int64_t{u} * V, out);
    }
    c = n;
  }
#pragma unroll
  for (int i = 0; i < K; ++i) {
    const int u = threadIdx.x + i * blockDim.x;
    if (u >= units) continue;
    const int64_t off = blockIdx.x * cols + int64_t{u} * V;
    if (dg_part) store_unit<float, V>(dg_part + off, dg[i]);
    if (kLayer && db_part) store_unit<float, V>(db_part + off, db[i]);
  }
}

// out[c] += sum_b part[b, c] over the blocks' partial rows, in f64 in a fixed order, rounded
// once. Block (32, 32): 32 columns; thread row y adds partial rows y + 32 i in four interleaved
// accumulators (four loads in flight), then thread row 0 adds the 32 x 4 sums in order.
// blockIdx.y selects dgamma (0) or dbeta (1, its partial rows after dgamma's).
constexpr int kFinishRows = 32;
__global__ void norm_partials_finish_kernel(const float* part, float* dgamma, float* dbeta,
                                            int64_t blocks, int64_t cols, bool accumulate) {
  float* out = blockIdx.y ? dbeta : dgamma;
  if (!out) return;  // the whole block
  __shared__ double sums[kFinishRows][33];
  const int64_t c = blockIdx.x * int64_t{32} + threadIdx.x;
  const float* p = part + blockIdx.y * blocks * cols;
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  if (c < cols) {
    int64_t b = threadIdx.y;
    for (; b + 3 * kFinishRows < blocks; b += 4 * kFinishRows) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[j] += p[(b + j * kFinishRows) * cols + c];
    }
    for (int j = 0; b < blocks; b += kFinishRows, ++j) acc[j] += p[b * cols + c];
  }
  sums[threadIdx.y][threadIdx.x] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double t = accumulate ? out[c] : 0.0;  // !accumulate: a stale gradient is never read
    for (int k = 0; k < kFinishRows; ++k) t += sums[k][threadIdx.x];
    out[c] = static_cast<float>(t);
  }
}

// Column-sum terms for the weight gradients.
template <class T, class R>
struct DGammaTerm {
  const T* dy;
  const R* x;
  const float* rstd;
  const float* mean;  // null for RMSNorm
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const {
    const float mu = mean ? mean[r] : 0.0f;
    return to_f32(dy[r * cols + c]) * (to_f32(x[r * cols + c]) - mu) * rstd[r];
  }
};
template <class T>
struct DBetaTerm {
  const T* dy;
  int64_t cols;
  __device__ float operator()(int64_t r, int64_t c) const { return to_f32(dy[r * cols + c]); }
};

// The fallback backward: column sums first (dx may alias dy), then one block per row for dx.
template <class T, class R, class W, bool kLayer>
void norm_bwd_loops(const NormBwdParams& p, bool vec, int threads, cudaStream_t s) {
  const T* dy = static_cast<const T*>(p.dy);
  const R* x = static_cast<const R*>(p.x);
  const int dev = p.device.index;
  if (p.dgamma) {
    column_sum_accumulate(DGammaTerm<T, R>{dy, x, p.rstd, kLayer ? p.mean : nullptr, p.cols},
                          p.dgamma, p.rows, p.cols, dev, s, p.accumulate);
  }
  if (kLayer && p.dbeta) {
    column_sum_accumulate(DBetaTerm<T>{dy, p.cols}, p.dbeta, p.rows, p.cols, dev, s, p.accumulate);
  }
  auto* kernel =
      vec ? norm_bwd_dx_vec_kernel<T, R, W, kLayer> : norm_bwd_dx_kernel<T, R, W, kLayer>;
  kernel<<<static_cast<unsigned>(p.rows), threads, 0, s>>>(
      dy, x, static_cast<const W*>(p.gamma), p.rstd, p.mean, static_cast<const R*>(p.dresidual),
      static_cast<R*>(p.dx), p.cols, p.zero_centered_gamma);
  GRAFT_CUDA_CHECK_LAUNCH();
}

// ---- launchers ---------------------------------------------------------------------------------
// Blocks of `threads` threads of `kernel` resident per SM, 0 when it cannot launch with that many
// (too many registers for the block), cached per block size in the caller's `cache` (one per
// kernel; the GPUs of one process are taken to be of one kind).
template <class Kernel>
int resident_per_sm(Kernel kernel, int threads, std::atomic<int> (&cache)[11]) {
  int lg = 0;
  while ((1 << lg) < threads) ++lg;
  const int hit = cache[lg].load(std::memory_order_relaxed);
  if (hit) return hit - 1;
  cudaFuncAttributes a{};
  GRAFT_CUDA_CHECK(cudaFuncGetAttributes(&a, kernel));
  int n = 0;
  if (a.maxThreadsPerBlock >= threads)
    GRAFT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, 0));
  cache[lg].store(n + 1, std::memory_order_relaxed);
  return n;
}

template <class X, class R, class T, class W, bool kLayer, int V, int K>
bool fwd_reg(const NormFwdParams& p, int threads, cudaStream_t s) {
  auto* kernel = norm_fwd_reg_kernel<X, R, T, W, kLayer, V, K>;
  static std::atomic<int> cache[11];
  if (resident_per_sm(kernel, threads, cache) == 0) return false;
  kernel<<<static_cast<unsigned>(p.rows), threads, 0, s>>>(
      static_cast<const X*>(p.x), static_cast<const R*>(p.residual),
      static_cast<R*>(p.residual_out), static_cast<const W*>(p.gamma),
      static_cast<const W*>(p.beta), static_cast<T*>(p.y), p.rstd, p.mean, p.cols, p.eps,
      p.zero_centered_gamma);
  GRAFT_CUDA_CHECK_LAUNCH();
  return true;
}
template <class X, class R, class T, class W, bool kLayer, int V>
bool fwd_reg_any(const NormFwdParams& p, int threads, cudaStream_t s) {
  switch (ceil_div(p.cols / V, threads)) {
    case 1:
      return fwd_reg<X, R, T, W, kLayer, V, 1>(p, threads, s);
    case 2:  // (LayerNorm's 2048 units of 8 would spill in 1024 threads' registers)
      if constexpr (V == 1 || !kLayer) return fwd_reg<X, R, T, W, kLayer, V, 2>(p, threads, s);
      break;
    case 3:
    case 4:  // (only elements: 4096 units of 8 would not fit 1024 threads' registers)
      if constexpr (V == 1) return fwd_reg<X, R, T, W, kLayer, V, 4>(p, threads, s);
      break;
  }
  return false;
}
// The register-resident kernel, or the loop kernels where it does not fit.
template <class X, class R, class T, class W, bool kLayer>
void fwd_launch(const NormFwdParams& p, bool vec, int threads, cudaStream_t s) {
  const bool done = vec ? fwd_reg_any<X, R, T, W, kLayer, 8>(p, threads, s)
                        : fwd_reg_any<X, R, T, W, kLayer, 1>(p, threads, s);
  if (done) return;
  auto* kernel =
      vec ? norm_fwd_vec_kernel<X, R, T, W, kLayer> : norm_fwd_kernel<X, R, T, W, kLayer>;
  kernel<<<static_cast<unsigned>(p.rows), threads, 0, s>>>(
      static_cast<const X*>(p.x), static_cast<const R*>(p.residual),
      static_cast<R*>(p.residual_out), static_cast<const W*>(p.gamma),
      static_cast<const W*>(p.beta), static_cast<T*>(p.y), p.rstd, p.mean, p.cols, p.eps,
      p.zero_centered_gamma);
  GRAFT_CUDA_CHECK_LAUNCH();
}

template <class T, class R, class W, bool kLayer, int V, int K>
bool bwd_reg(const NormBwdParams& p, int threads, cudaStream_t s) {
  auto* kernel = norm_bwd_reg_kernel<T, R, W, kLayer, V, K>;
  static std::atomic<int> cache[11];
  const int per_sm = resident_per_sm(kernel, threads, cache);
  if (per_sm == 0) return false;
  const int dev = p.device.index;
  int sms = 0;
  GRAFT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  // As many blocks as are resident at once, each with an equal strip of rows.
  int64_t blocks = std::min<int64_t>(p.rows, int64_t{std::max(sms, 1)} * per_sm);
  const int64_t rows_per_block = ceil_div(p.rows, blocks);
  blocks = ceil_div(p.rows, rows_per_block);
  const int64_t n_out = kLayer ? 2 : 1;
  const bool parts = p.dgamma || (kLayer && p.dbeta);
  Scratch part(parts ? static_cast<size_t>(n_out * blocks * p.cols) * sizeof(float) : 0, dev, s);
  float* dg_part = p.dgamma ? part.as<float>() : nullptr;
  float* db_part = kLayer && p.dbeta ? part.as<float>() + blocks * p.cols : nullptr;
  GRAFT_CHECK(aligned_for_8(part.as<float>(), sizeof(float)), "norm_bwd: misaligned scratch");
  kernel<<<static_cast<unsigned>(blocks), threads, 0, s>>>(
      static_cast<const T*>(p.dy), static_cast<const R*>(p.x), static_cast<const W*>(p.gamma),
      p.rstd, p.mean, static_cast<const R*>(p.dresidual), static_cast<R*>(p.dx), dg_part, db_part,
      p.rows, p.cols, rows_per_block, p.zero_centered_gamma);
  GRAFT_CUDA_CHECK_LAUNCH();
  if (parts) {
    const dim3 grid(static_cast<unsigned>(ceil_div(p.cols, 32)), static_cast<unsigned>(n_out));
    norm_partials_finish_kernel<<<grid, dim3(32, kFinishRows), 0, s>>>(
        part.as<float>(), p.dgamma, kLayer ? p.dbeta : nullptr, blocks, p.cols, p.accumulate);
    GRAFT_CUDA_CHECK_LAUNCH();
  }
  return true;
}
template <class T, class R, class W, bool kLayer, int V>
bool bwd_reg_any(const NormBwdParams& p, int threads, cudaStream_t s) {
  switch (ceil_div(p.cols / V, threads)) {
    case 1:
      return bwd_reg<T, R, W, kLayer, V, 1>(p, threads, s);
    case 2:  // 2048 units of 8 need more registers than 1024 threads have
      if constexpr (V == 1) return bwd_reg<T, R, W, kLayer, V, 2>(p, threads, s);
      break;
  }
  return false;
}
template <class T, class R, class W, bool kLayer>
void bwd_launch(const NormBwdParams& p, bool vec, int threads, cudaStream_t s) {
  const bool done = vec ? bwd_reg_any<T, R, W, kLayer, 8>(p, threads, s)
                        : bwd_reg_any<T, R, W, kLayer, 1>(p, threads, s);
  if (!done) norm_bwd_loops<T, R, W, kLayer>(p, vec, threads, s);
}

// The f32 residual stream's combinations (kernels/norm.h): activations bf16, weights bf16 or f32.
void check_wide_residual(DType dtype, DType residual, DType weight, const char* name) {
  GRAFT_CHECK(residual == DType::kF32 && dtype == DType::kBF16 &&
                  (weight == DType::kBF16 || weight == DType::kF32),
              name, ": residual_dtype ", dtype_name(residual), " with dtype ", dtype_name(dtype),
              " and weight_dtype ", dtype_name(weight),
              " is not supported on CUDA (an f32 residual takes bf16 activations, bf16 or f32 "
              "weights)");
}
#define GRAFT_WIDE_WEIGHT_SWITCH(dtype, W, ...) \
  if ((dtype) == DType::kBF16) {                \
    using W = __nv_bfloat16;                    \
    __VA_ARGS__;                                \
  } else {                                      \
    using W = float;                            \
    __VA_ARGS__;                                \
  }

template <bool kLayer>
void norm_fwd(const NormFwdParams& p) {
  const char* name = kLayer ? "layernorm_fwd" : "rmsnorm_fwd";
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": rows = ", p.rows, ", cols = ", p.cols);
  GRAFT_CHECK(!p.residual || (p.residual_out && p.residual_out != p.y), name,
              ": a residual needs residual_out, distinct from y");
  if (p.rows == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const DType rt = p.residual_type();
  const size_t es = dtype_size(p.dtype), ws = dtype_size(p.weight_dtype),
               xs = dtype_size(p.x_type()), rs = dtype_size(rt);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.x, xs) && aligned_for_8(p.y, es) &&
                   aligned_for_8(p.residual, rs) && aligned_for_8(p.residual_out, rs) &&
                   aligned_for_8(p.gamma, ws) && aligned_for_8(p.beta, ws);
  const int threads = row_threads(vec ? p.cols / 8 : p.cols);
  if (rt != p.dtype) {  // the f32 residual stream: x is bf16 (with a residual) or f32
    check_wide_residual(p.dtype, rt, p.weight_dtype, name);
    GRAFT_WIDE_WEIGHT_SWITCH(p.weight_dtype, W, {
      if (p.residual)
        fwd_launch<__nv_bfloat16, float, __nv_bfloat16, W, kLayer>(p, vec, threads, s);
      else
        fwd_launch<float, float, __nv_bfloat16, W, kLayer>(p, vec, threads, s);
    });
    return;
  }
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, name,
                       { fwd_launch<T, T, T, W, kLayer>(p, vec, threads, s); });
  });
}

template <bool kLayer>
void norm_bwd(const NormBwdParams& p) {
  const char* name = kLayer ? "layernorm_bwd" : "rmsnorm_bwd";
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": rows = ", p.rows, ", cols = ", p.cols);
  GRAFT_CHECK(p.rstd && (!kLayer || p.mean), name, ": the forward statistics are required");
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  if (p.rows == 0) {  // an empty sum: a first write (!accumulate) still leaves zeros
    if (!p.accumulate && p.dgamma)
      GRAFT_CUDA_CHECK(cudaMemsetAsync(p.dgamma, 0, p.cols * sizeof(float), s));
    if (!p.accumulate && kLayer && p.dbeta)
      GRAFT_CUDA_CHECK(cudaMemsetAsync(p.dbeta, 0, p.cols * sizeof(float), s));
    return;
  }
  const DType rt = p.residual_type();
  const size_t es = dtype_size(p.dtype), ws = dtype_size(p.weight_dtype), rs = dtype_size(rt);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.dy, es) && aligned_for_8(p.x, rs) &&
                   aligned_for_8(p.dx, rs) && aligned_for_8(p.dresidual, rs) &&
                   aligned_for_8(p.gamma, ws);
  const int threads = row_threads(vec ? p.cols / 8 : p.cols);
  if (rt != p.dtype) {  // the f32 residual stream: x, dx, dresidual f32, dy bf16
    check_wide_residual(p.dtype, rt, p.weight_dtype, name);
    GRAFT_WIDE_WEIGHT_SWITCH(p.weight_dtype, W,
                             { bwd_launch<__nv_bfloat16, float, W, kLayer>(p, vec, threads, s); });
    return;
  }
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, name,
                       { bwd_launch<T, T, W, kLayer>(p, vec, threads, s); });
  });
}

void launch_rmsnorm_fwd(const NormFwdParams& p) { norm_fwd<false>(p); }
void launch_layernorm_fwd(const NormFwdParams& p) { norm_fwd<true>(p); }
void launch_rmsnorm_bwd(const NormBwdParams& p) { norm_bwd<false>(p); }
void launch_layernorm_bwd(const NormBwdParams& p) { norm_bwd<true>(p); }

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(rmsnorm_fwd, NormFwdParams, cuda::launch_rmsnorm_fwd);
GRAFT_REGISTER_CUDA_KERNEL(layernorm_fwd, NormFwdParams, cuda::launch_layernorm_fwd);
GRAFT_REGISTER_CUDA_KERNEL(rmsnorm_bwd, NormBwdParams, cuda::launch_rmsnorm_bwd);
GRAFT_REGISTER_CUDA_KERNEL(layernorm_bwd, NormBwdParams, cuda::launch_layernorm_bwd);
// The fused residual add (residual / dresidual set): the same kernels, profiled apart.
GRAFT_REGISTER_CUDA_KERNEL(rmsnorm_fwd_add, NormFwdParams, cuda::launch_rmsnorm_fwd);
GRAFT_REGISTER_CUDA_KERNEL(layernorm_fwd_add, NormFwdParams, cuda::launch_layernorm_fwd);
GRAFT_REGISTER_CUDA_KERNEL(rmsnorm_bwd_add, NormBwdParams, cuda::launch_rmsnorm_bwd);
GRAFT_REGISTER_CUDA_KERNEL(layernorm_bwd_add, NormBwdParams, cuda::launch_layernorm_bwd);
}  // namespace graft
