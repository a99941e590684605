// RMSNorm / LayerNorm fused with the FP8 cast on CUDA (math and the two-pass current scaling:
// kernels/fp8_norm.h).
//
// One block of 512 threads per 32 rows:
//   1. statistics: one warp per row (16 warps, 2 rows each), f32, LayerNorm two-pass (mean, then
//      the centred sum of squares) as norm.cu; rstd / mean written, or read (stats_given);
//   2. cast: the block walks the rows' columns in tiles of 32 x 128, each thread normalising 8
//      consecutive elements of a row (16-byte loads of bf16 when cols % 8 == 0 and the pointers
//      are aligned), casting them and writing 8 bytes of q; the tile goes through shared memory
//      so that each thread writes 8 consecutive bytes of a qt row (32 rows = 32 contiguous bytes
//      of qt per column). The block's amax of y is folded in once at the end.
// x is read twice (statistics, then the cast; the second read of the block's 32 rows mostly hits
// L1/L2); y never exists outside registers. Unaligned shapes take the same kernel with scalar
// loads and byte stores.
//   x: [rows, cols] T; gamma, beta: [cols] W; rstd, mean: [rows] f32; q: [rows, cols] fp8;
//   qt: [cols, rows] fp8.
#include "kernels/cuda/common.cuh"
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

template <class T, class W, bool kLayer, bool kVec>
__global__ void __launch_bounds__(kThreads) norm_quantize_kernel(NormQuantArgs a) {
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
  const unsigned grid = static_cast<unsigned>((p.rows + kRows - 1) / kRows);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "fp8_norm_quantize x", {
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, "fp8_norm_quantize gamma", {
      auto* kernel = p.layer_norm ? (vec ? norm_quantize_kernel<T, W, true, true>
                                         : norm_quantize_kernel<T, W, true, false>)
                                  : (vec ? norm_quantize_kernel<T, W, false, true>
                                         : norm_quantize_kernel<T, W, false, false>);
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
