// RMSNorm / LayerNorm fused with the FP8 cast on CUDA (math and the two-pass current scaling:
// kernels/fp8_norm.h).
//
// One block of 512 threads per 32 rows (at most 64 registers, so that two blocks fit on an SM and
// the 256 blocks of 8192 rows run in one wave):
//   1. statistics: one warp per row (16 warps, 2 rows each), f32, LayerNorm two-pass (mean, then
//      the centred sum of squares) as norm.cu; rstd / mean written, or read (stats_given);
//   2. cast: the block walks the rows' columns in tiles of 32 x 128, each thread normalising 8
//      consecutive elements of a row (16-byte loads of bf16 when cols % 8 == 0 and the pointers
//      are aligned), casting them and writing 8 bytes of q; the tile goes through shared memory
//      so that each thread writes 8 consecutive bytes of a qt row (32 rows = 32 contiguous bytes
//      of qt per column). The block's amax of y is folded in once at the end.
//      Aligned shapes (cols % 8 == 0 and aligned pointers; rows % 8 == 0 and qt 8-byte aligned)
//      take the wide variant instead (kWide, cast_rows_wide): steps of 512 columns with four
//      16-byte loads in flight per thread and the transpose done on words in registers.
// x is read twice (statistics, then the cast; the second read of the block's 32 rows mostly hits
// L1/L2); y never exists outside registers. Unaligned shapes take the same kernel with scalar
// loads and byte stores.
//   x: [rows, cols] T; gamma, beta: [cols] W; rstd, mean: [rows] f32; q: [rows, cols] fp8;
//   qt: [cols, rows] fp8.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_cast.cuh"
#include "kernels/cuda/fp8_math.cuh"
#include "kernels/fp8.h"
#include "kernels/fp8_norm.h"

namespace graft::cuda {
namespace {

using fp8_math::abs_key;
using fp8_math::block_amax;
using fp8_math::to_fp8;

constexpr int kRows = 32;                    // rows per block
constexpr int kCols = 128;                   // columns per cast tile: 16 chunks of 8
constexpr int kThreads = kRows * kCols / 8;  // 512: one 8-element chunk of the tile per thread
constexpr int kWarps = kThreads / 32;

struct NormQuantArgs {
  const void* x;
  const void* gamma;
  const void* beta;
  float* rstd;
  float* mean;
  uint8_t* q;
  uint8_t* qt;
  const float* scale;
  float* amax;
  float* scale_inv;
  int64_t rows, cols;
  float eps;
  bool zero_centered, stats_given, e4m3, vec_t;  // vec_t: rows % 8 == 0, qt 8-byte aligned
};

// Eight elements of a row from column c (kVec: all inside and aligned; otherwise those at
// columns < cols, the rest 0).
template <bool kVec, class T>
__device__ __forceinline__ void load_chunk(const T* row, int64_t c, int64_t cols, float (&v)[8]) {
  if constexpr (kVec) {
    load8(row + c, v);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = c + k < cols ? to_f32(row[c + k]) : 0.0f;
  }
}

// Phase 2 for aligned shapes (kVec and rows % 8 == 0, qt 8-byte aligned): the block's 32 rows in
// steps of 512 columns, each thread loading four 8-element chunks of x (columns c8 + 128 u)
// before normalising any, the next step's before this step's transposed writes, so that four
// 16-byte loads are in flight; the fp8 bytes go to a shared tile of words (row stride 129 words:
// no bank conflicts) from which each thread transposes 8 rows x 4 columns in registers
// (fp8_cast::transpose_8x4) and writes 4 qt rows of 8 bytes.
constexpr int kWideCols = 4 * kCols;

template <bool kE4M3>
__device__ __forceinline__ uint2 cast_chunk(const float (&y)[8], float s, bool cast,
                                            uint32_t& key) {
  if (cast) return fp8_cast::cast8<kE4M3>(y, s, key);
  fp8_cast::amax8(y, key);
  return make_uint2(0, 0);
}

template <class T, class W, bool kLayer>
__device__ __forceinline__ void cast_rows_wide(const NormQuantArgs& a, const float* s_rstd,
                                               const float* s_mean, int64_t r0, uint32_t& key) {
  __shared__ uint32_t tile[kRows][kWideCols / 4 + 1];
  const T* x = static_cast<const T*>(a.x);
  const W* gamma = static_cast<const W*>(a.gamma);
  const W* beta = static_cast<const W*>(a.beta);
  const int64_t cols = a.cols, rows = a.rows;
  const bool cast = a.q || a.qt;
  const float s = cast ? *a.scale : 0.0f;
  const float g_off = a.zero_centered ? 1.0f : 0.0f;
  const int t = threadIdx.x;
  const int rr = t / (kCols / 8), c8 = (t % (kCols / 8)) * 8;  // row rr, columns c8 + 128 u
  const int64_t r = r0 + rr;
  const bool row_in = r < rows;
  const float rs = row_in ? s_rstd[rr] : 0.0f, mu = row_in ? s_mean[rr] : 0.0f;
  const T* xr = x + r * cols;
  const int lane = t % 32, warp = t / 32;
  const int g = warp * 8 + lane % 8;  // transpose: step columns 4g..4g+3 (g < 128)
  const int j = lane / 8;             //            block rows 8j..8j+7
  Pack8<T> xv[4];  // the step's chunks, loaded one step ahead (before the transposed writes)
  auto load_step = [&](int64_t c0) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t c = c0 + kCols * u + c8;
      if (row_in && c < cols) xv[u] = *reinterpret_cast<const Pack8<T>*>(xr + c);
    }
  };
  load_step(0);
  for (int64_t c0 = 0; c0 < cols; c0 += kWideCols) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t c = c0 + kCols * u + c8;
      if (!row_in || c >= cols) continue;
      float gv[8], bv[8], y[8];
      load8(gamma + c, gv);
      if (kLayer && beta) load8(beta + c, bv);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        y[k] = (to_f32(xv[u].v[k]) - mu) * rs * (gv[k] + g_off);
        if (kLayer && beta) y[k] += bv[k];
      }
      const uint2 b =
          a.e4m3 ? cast_chunk<true>(y, s, cast, key) : cast_chunk<false>(y, s, cast, key);
      if (a.q) *reinterpret_cast<uint2*>(a.q + r * cols + c) = b;
      if (a.qt) {
        tile[rr][(kCols * u + c8) / 4] = b.x;
        tile[rr][(kCols * u + c8) / 4 + 1] = b.y;
      }
    }
    if (c0 + kWideCols < cols) load_step(c0 + kWideCols);
    if (a.qt) {
      __syncthreads();
      const int64_t tc = c0 + 4 * g, tr = r0 + 8 * j;
      if (tc < cols && tr < rows) {  // cols % 8, rows % 8 == 0: all 4 columns, 8 rows inside
        uint32_t w[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) w[k] = tile[8 * j + k][g];
        uint2 out[4];
        fp8_cast::transpose_8x4(w, out);
#pragma unroll
        for (int k = 0; k < 4; ++k) *reinterpret_cast<uint2*>(a.qt + (tc + k) * rows + tr) = out[k];
      }
      __syncthreads();
    }
  }
}

template <class T, class W, bool kLayer, bool kVec, bool kWide>
__global__ void __launch_bounds__(kThreads, 2) norm_quantize_kernel(NormQuantArgs a) {
  __shared__ float s_rstd[kRows], s_mean[kRows];
  __shared__ __align__(16) uint8_t tile[kRows][kCols + 8];
  const T* x = static_cast<const T*>(a.x);
  const W* gamma = static_cast<const W*>(a.gamma);
  const W* beta = static_cast<const W*>(a.beta);
  const int64_t cols = a.cols, rows = a.rows, r0 = int64_t(blockIdx.x) * kRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  // 1. Row statistics, one warp per row.
  for (int rr = warp; rr < kRows; rr += kWarps) {
    const int64_t r = r0 + rr;
    if (r >= rows) break;
    float mu = 0.0f, rs;
    if (a.stats_given) {
      rs = a.rstd[r];
      if (kLayer) mu = a.mean[r];
    } else {
      const T* xr = x + r * cols;
      const int64_t step = kVec ? 256 : 32;  // elements per warp iteration
      float v[8];
      if (kLayer) {
        float s = 0.0f;
#pragma unroll 4
        for (int64_t c = (kVec ? 8 : 1) * lane; c < cols; c += step) {
          if constexpr (kVec) {
            load8(xr + c, v);
#pragma unroll
            for (int k = 0; k < 8; ++k) s += v[k];
          } else {
            s += to_f32(xr[c]);
          }
        }
        mu = warp_sum(s) / static_cast<float>(cols);
      }
      float ss = 0.0f;
#pragma unroll 4
      for (int64_t c = (kVec ? 8 : 1) * lane; c < cols; c += step) {
        if constexpr (kVec) {
          load8(xr + c, v);
#pragma unroll
          for (int k = 0; k < 8; ++k) ss += (v[k] - mu) * (v[k] - mu);
        } else {
          const float d = to_f32(xr[c]) - mu;
          ss += d * d;
        }
      }
      rs = rsqrtf(warp_sum(ss) / static_cast<float>(cols) + a.eps);
      if (lane == 0) {
        a.rstd[r] = rs;
        if (kLayer) a.mean[r] = mu;
      }
    }
    if (lane == 0) {
      s_rstd[rr] = rs;
      s_mean[rr] = mu;
    }
  }
  __syncthreads();

  // 2. Normalise, cast, write q and (through the tile) qt.
  if constexpr (kWide) {
    uint32_t wkey = 0;
    cast_rows_wide<T, W, kLayer>(a, s_rstd, s_mean, r0, wkey);
    if (a.amax) block_amax(fp8_cast::nan_canonical(wkey), a.amax);
    if ((a.q || a.qt) && a.scale_inv && blockIdx.x == 0 && threadIdx.x == 0)
      *a.scale_inv = 1.0f / *a.scale;
    return;
  }
  const bool cast = a.q || a.qt;
  const float s = cast ? *a.scale : 0.0f;
  const float g_off = a.zero_centered ? 1.0f : 0.0f;
  const int rr = threadIdx.x / (kCols / 8), c8 = (threadIdx.x % (kCols / 8)) * 8;
  const int64_t r = r0 + rr;
  const bool row_in = r < rows;
  const float rs = row_in ? s_rstd[rr] : 0.0f, mu = row_in ? s_mean[rr] : 0.0f;
  const T* xr = x + r * cols;
  int key = 0;
  for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
    const int64_t c = c0 + c8;
    if (row_in && c < cols) {
      float xv[8], gv[8], bv[8];
      load_chunk<kVec>(xr, c, cols, xv);
      load_chunk<kVec>(gamma, c, cols, gv);
      if (kLayer && beta) load_chunk<kVec>(beta, c, cols, bv);
      union {
        uint2 u;
        uint8_t b[8];
      } out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        float y = (xv[k] - mu) * rs * (gv[k] + g_off);
        if (kLayer && beta) y += bv[k];
        if (kVec || c + k < cols) key = max(key, abs_key(y));
        out.b[k] = cast ? to_fp8(y * s, a.e4m3) : 0;
      }
      if (a.q) {
        uint8_t* qr = a.q + r * cols;
        if constexpr (kVec) {
          *reinterpret_cast<uint2*>(qr + c) = out.u;
        } else {
#pragma unroll
          for (int k = 0; k < 8; ++k)
            if (c + k < cols) qr[c + k] = out.b[k];
        }
      }
      if (a.qt) *reinterpret_cast<uint2*>(&tile[rr][c8]) = out.u;
    }
    if (a.qt) {
      __syncthreads();
      // Tile column cc is qt's row c0 + cc; this thread writes its bytes r0 + r8 .. r0 + r8 + 7.
      const int cc = threadIdx.x / 4, r8 = (threadIdx.x % 4) * 8;
      const int64_t qc = c0 + cc, qr = r0 + r8;
      if (qc < cols && qr < rows) {
        uint8_t* dst = a.qt + qc * rows + qr;
        if (a.vec_t) {  // rows % 8 == 0: the 8 rows are all inside
          union {
            uint2 u;
            uint8_t b[8];
          } out;
#pragma unroll
          for (int k = 0; k < 8; ++k) out.b[k] = tile[r8 + k][cc];
          *reinterpret_cast<uint2*>(dst) = out.u;
        } else {
          for (int k = 0; k < 8 && qr + k < rows; ++k) dst[k] = tile[r8 + k][cc];
        }
      }
      __syncthreads();
    }
  }
  if (a.amax) block_amax(key, a.amax);
  if (cast && a.scale_inv && blockIdx.x == 0 && threadIdx.x == 0) *a.scale_inv = 1.0f / s;
}

bool aligned(const void* p, uintptr_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

void launch_norm_quantize(const Fp8NormQuantizeParams& p) {
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, "fp8_norm_quantize: rows = ", p.rows, ", cols = ", p.cols);
  const bool cast = p.q || p.qt;
  GRAFT_CHECK(!cast || p.scale, "fp8_norm_quantize: q or qt without a scale");
  GRAFT_CHECK(p.rstd && (!p.layer_norm || p.mean), "fp8_norm_quantize: null rstd or mean");
  if (cast) fp8_max(p.fp8);  // checks the format
  if (p.rows == 0) return;
  GRAFT_CHECK((p.rows + kRows - 1) / kRows <= 0x7fffffff, "fp8_norm_quantize: ", p.rows,
              " rows exceed the launch grid");
  DeviceGuard g(p.device.index);
  cudaStream_t stream = stream_of(p);
  const size_t es = dtype_size(p.dtype), ws = dtype_size(p.weight_dtype);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.x, es) && aligned_for_8(p.gamma, ws) &&
                   aligned_for_8(p.beta, ws) && aligned(p.q, 8);
  NormQuantArgs a{p.x,
                  p.gamma,
                  p.layer_norm ? p.beta : nullptr,
                  p.rstd,
                  p.mean,
                  static_cast<uint8_t*>(p.q),
                  static_cast<uint8_t*>(p.qt),
                  p.scale,
                  p.amax,
                  p.scale_inv,
                  p.rows,
                  p.cols,
                  p.eps,
                  p.zero_centered_gamma,
                  p.stats_given,
                  p.fp8 == DType::kF8E4M3,
                  p.rows % 8 == 0 && aligned(p.qt, 8)};
  const bool wide = vec && a.vec_t;
  const unsigned grid = static_cast<unsigned>((p.rows + kRows - 1) / kRows);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "fp8_norm_quantize x", {
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, "fp8_norm_quantize gamma", {
      auto* kernel = p.layer_norm ? (wide  ? norm_quantize_kernel<T, W, true, true, true>
                                     : vec ? norm_quantize_kernel<T, W, true, true, false>
                                           : norm_quantize_kernel<T, W, true, false, false>)
                                  : (wide  ? norm_quantize_kernel<T, W, false, true, true>
                                     : vec ? norm_quantize_kernel<T, W, false, true, false>
                                           : norm_quantize_kernel<T, W, false, false, false>);
      kernel<<<grid, kThreads, 0, stream>>>(a);
    });
  });
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(fp8_norm_quantize, Fp8NormQuantizeParams, cuda::launch_norm_quantize);
}  // namespace graft
