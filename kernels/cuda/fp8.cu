// CUDA FP8 casts (quantise with scale, optional transposed copy, amax), dequantise, amax and the
// scale update. Math and conventions: kernels/fp8.h; the element math is fp8_math.cuh's. The GEMM
// is in fp8_gemm.cpp, the norm fused with the cast in fp8_norm.cu.
#include <cuda_fp8.h>

#include <cfloat>

#include "framework/core/cuda/caching_allocator.h"
#include "kernels/cuda/activation_math.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/fp8_math.cuh"
#include "kernels/fp8.h"

namespace graft::cuda {
namespace {

constexpr int kTile = 32;

using fp8_math::abs_key;
using fp8_math::block_amax;
using fp8_math::from_fp8;
using fp8_math::to_fp8;

// One 32x32 tile per block (32 x 8 threads): q in place, qt through shared memory so both writes
// are coalesced; the block's amax folded into *amax once.
template <class T>
__global__ void quantize_kernel(const T* x, uint8_t* q, uint8_t* qt, int64_t rows, int64_t cols,
                                const float* scale, float* amax, float* scale_inv, bool e4m3) {
  __shared__ uint8_t tile[kTile][kTile + 4];
  const float s = *scale;
  const int64_t r0 = int64_t(blockIdx.y) * kTile, c0 = int64_t(blockIdx.x) * kTile;
  int key = 0;
  for (int dy = threadIdx.y; dy < kTile; dy += blockDim.y) {
    const int64_t r = r0 + dy, c = c0 + threadIdx.x;
    if (r < rows && c < cols) {
      const float v = to_f32(x[r * cols + c]);
      key = max(key, abs_key(v));
      const uint8_t f = to_fp8(v * s, e4m3);
      if (q) q[r * cols + c] = f;
      tile[dy][threadIdx.x] = f;
    }
  }
  if (qt) {
    __syncthreads();
    for (int dx = threadIdx.y; dx < kTile; dx += blockDim.y) {
      const int64_t c = c0 + dx, r = r0 + threadIdx.x;
      if (r < rows && c < cols) qt[c * rows + r] = tile[threadIdx.x][dx];
    }
  }
  if (amax) block_amax(key, amax);
  if (scale_inv && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0 && threadIdx.y == 0)
    *scale_inv = 1.0f / s;
}

// The vectorised cast for aligned shapes (cols and rows multiples of 8, x 16-byte and q / qt
// 8-byte aligned: every activation and weight of a real model): a 64x64 tile per block of 256
// threads, each thread casting 8 consecutive elements of a row with one 16-byte (two for f32)
// load and one 8-byte store; the transposed copy is gathered from shared memory 8 rows at a time
// and written 8 bytes at a time. Same per-element math as quantize_kernel, so the same bytes.
constexpr int kVTile = 64;

template <class T>
__device__ __forceinline__ void load8(const T* p, float* v) {
  if constexpr (sizeof(T) == 2) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = to_f32(e[k]);
  } else {
    const float4 a = reinterpret_cast<const float4*>(p)[0],
                 b = reinterpret_cast<const float4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    quantize_vec_kernel(const T* x, uint8_t* q, uint8_t* qt, int64_t rows, int64_t cols,
                        const float* scale, float* amax, float* scale_inv, bool e4m3) {
  __shared__ __align__(16) uint8_t tile[kVTile][kVTile + 8];
  const float s = *scale;
  const int64_t r0 = int64_t(blockIdx.y) * kVTile, c0 = int64_t(blockIdx.x) * kVTile;
  const int lane8 = (threadIdx.x % 8) * 8;  // this thread's 8-element chunk of a tile row
  int key = 0;
  for (int rr = threadIdx.x / 8; rr < kVTile; rr += 32) {
    const int64_t r = r0 + rr, c = c0 + lane8;
    if (r < rows && c < cols) {  // cols % 8 == 0: the chunk is all inside
      float v[8];
      load8(x + r * cols + c, v);
      union {
        uint2 u;
        uint8_t b[8];
      } out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        key = max(key, abs_key(v[k]));
        out.b[k] = to_fp8(v[k] * s, e4m3);
      }
      if (q) *reinterpret_cast<uint2*>(q + r * cols + c) = out.u;
      *reinterpret_cast<uint2*>(&tile[rr][lane8]) = out.u;
    }
  }
  if (qt) {
    __syncthreads();
    for (int cc = threadIdx.x / 8; cc < kVTile; cc += 32) {  // tile column = a row of qt
      const int64_t c = c0 + cc, r = r0 + lane8;
      if (c < cols && r < rows) {  // rows % 8 == 0: the 8 rows are all inside
        union {
          uint2 u;
          uint8_t b[8];
        } out;
#pragma unroll
        for (int k = 0; k < 8; ++k) out.b[k] = tile[lane8 + k][cc];
        *reinterpret_cast<uint2*>(qt + c * rows + r) = out.u;
      }
    }
  }
  if (amax) block_amax(key, amax);
  if (scale_inv && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *scale_inv = 1.0f / s;
}

bool aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

using act_math::act_f;
using act_math::gated;

// quantize_vec_kernel with the activation in front: row r of h is [gate | up] (gated, 2 cols
// wide) or the activation's input (cols wide); a = act(gate) * up in f32, cast at once.
template <class T, Activation A>
__global__ void __launch_bounds__(256)
    act_quantize_kernel(const T* h, uint8_t* q, uint8_t* qt, int64_t rows, int64_t cols,
                        const float* scale, float* amax, float* scale_inv, bool e4m3) {
  __shared__ __align__(16) uint8_t tile[kVTile][kVTile + 8];
  const float s = *scale;
  const int64_t r0 = int64_t(blockIdx.y) * kVTile, c0 = int64_t(blockIdx.x) * kVTile;
  const int64_t hcols = gated(A) ? 2 * cols : cols;
  const int lane8 = (threadIdx.x % 8) * 8;
  int key = 0;
  for (int rr = threadIdx.x / 8; rr < kVTile; rr += 32) {
    const int64_t r = r0 + rr, c = c0 + lane8;
    if (r < rows && c < cols) {
      float g[8], u[8];
      load8(h + r * hcols + c, g);
      if constexpr (gated(A)) load8(h + r * hcols + cols + c, u);
      union {
        uint2 u;
        uint8_t b[8];
      } out;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        float v = act_f<A>(g[k]);
        if constexpr (gated(A)) v *= u[k];
        key = max(key, abs_key(v));
        out.b[k] = to_fp8(v * s, e4m3);
      }
      if (q) *reinterpret_cast<uint2*>(q + r * cols + c) = out.u;
      *reinterpret_cast<uint2*>(&tile[rr][lane8]) = out.u;
    }
  }
  if (qt) {
    __syncthreads();
    for (int cc = threadIdx.x / 8; cc < kVTile; cc += 32) {
      const int64_t c = c0 + cc, r = r0 + lane8;
      if (c < cols && r < rows) {
        union {
          uint2 u;
          uint8_t b[8];
        } out;
#pragma unroll
        for (int k = 0; k < 8; ++k) out.b[k] = tile[lane8 + k][cc];
        *reinterpret_cast<uint2*>(qt + c * rows + r) = out.u;
      }
    }
  }
  if (amax) block_amax(key, amax);
  if (scale_inv && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) *scale_inv = 1.0f / s;
}

__global__ void dequantize_kernel(const uint8_t* q, const float* scale_inv, void* y, DType yt,
                                  int64_t n, bool e4m3) {
  const float si = *scale_inv;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = from_fp8(q[i], e4m3) * si;
    if (yt == DType::kF32)
      static_cast<float*>(y)[i] = v;
    else if (yt == DType::kBF16)
      static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16_rn(v);
    else
      static_cast<__half*>(y)[i] = __float2half_rn(v);
  }
}

template <class T>
__global__ void amax_kernel(const T* x, int64_t n, float* amax) {
  int key = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    key = max(key, abs_key(to_f32(x[i])));
  block_amax(key, amax);
}

// One thread per tensor (column i of the history); the window loop is short (len <= 65536, one
// read and one write per entry) and n is a few hundred, so this is a single small launch.
__global__ void scale_update_kernel(float* history, float* scale, const float* scaled_max,
                                    int64_t n, int64_t len, bool current, bool most_recent) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float* h = history + i;
  const float last = h[0];
  float amax = 0.0f;
  if (current) {
    amax = last;
    h[0] = 0.0f;
  } else if (last != 0.0f) {
    for (int64_t j = 0; j < len; ++j) {
      const float v = h[j * n];
      amax = (isnan(v) || isnan(amax)) ? NAN : fmaxf(amax, v);
    }
    for (int64_t j = 0; j + 1 < len; ++j) h[j * n] = h[(j + 1) * n];
    h[(len - 1) * n] = last;
    h[0] = 0.0f;
    if (most_recent) amax = last;
  }
  if (isfinite(amax) && amax > 0.0f) {
    float s = scaled_max[i] / amax;
    if (isinf(s)) s = FLT_MAX;
    scale[i] = s;
  } else if (current) {
    scale[i] = 1.0f;
  }
}

void check_fp8(DType t, const char* what) {
  GRAFT_CHECK(t == DType::kF8E4M3 || t == DType::kF8E5M2, what, ": ", dtype_name(t),
              " is not an fp8 format");
}

void launch_quantize(const Fp8QuantizeParams& p) {
  check_fp8(p.fp8, "fp8_quantize");
  GRAFT_CHECK(p.scale != nullptr, "fp8_quantize: no scale");
  if (p.rows == 0 || p.cols == 0) {
    GRAFT_CHECK(p.scale_inv == nullptr, "fp8_quantize: scale_inv of an empty tensor");
    return;
  }
  DeviceGuard g(p.device.index);
  cudaStream_t stream = stream_of(p);
  if (p.rows % 8 == 0 && p.cols % 8 == 0 && aligned(p.x, 16) && aligned(p.q, 8) &&
      aligned(p.qt, 8) && (p.rows + kVTile - 1) / kVTile <= 65535) {
    const dim3 grid(static_cast<unsigned>((p.cols + kVTile - 1) / kVTile),
                    static_cast<unsigned>((p.rows + kVTile - 1) / kVTile));
    GRAFT_FLOAT_SWITCH(p.x_dtype, T, "fp8_quantize x", {
      quantize_vec_kernel<T><<<grid, 256, 0, stream>>>(
          static_cast<const T*>(p.x), static_cast<uint8_t*>(p.q), static_cast<uint8_t*>(p.qt),
          p.rows, p.cols, p.scale, p.amax, p.scale_inv, p.fp8 == DType::kF8E4M3);
    });
    GRAFT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  const dim3 block(kTile, 8);
  const dim3 grid(static_cast<unsigned>((p.cols + kTile - 1) / kTile),
                  static_cast<unsigned>((p.rows + kTile - 1) / kTile));
  GRAFT_CHECK(grid.y <= 65535, "fp8_quantize: ", p.rows, " rows exceed the launch grid");
  GRAFT_FLOAT_SWITCH(p.x_dtype, T, "fp8_quantize x", {
    quantize_kernel<T><<<grid, block, 0, stream>>>(
        static_cast<const T*>(p.x), static_cast<uint8_t*>(p.q), static_cast<uint8_t*>(p.qt), p.rows,
        p.cols, p.scale, p.amax, p.scale_inv, p.fp8 == DType::kF8E4M3);
  });
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

template <Activation A>
void launch_act_quantize_as(const Fp8ActQuantizeParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p.cols + kVTile - 1) / kVTile),
                  static_cast<unsigned>((p.rows + kVTile - 1) / kVTile));
  GRAFT_FLOAT_SWITCH(p.h_dtype, T, "fp8_act_quantize h", {
    act_quantize_kernel<T, A><<<grid, 256, 0, stream>>>(
        static_cast<const T*>(p.h), static_cast<uint8_t*>(p.q), static_cast<uint8_t*>(p.qt), p.rows,
        p.cols, p.scale, p.amax, p.scale_inv, p.fp8 == DType::kF8E4M3);
  });
}

// Aligned shapes (every real model's): the fused kernel. Others: the activation kernel into a
// temporary in h's dtype, then the cast (two passes, the same math up to that rounding).
void launch_act_quantize(const Fp8ActQuantizeParams& p) {
  check_fp8(p.fp8, "fp8_act_quantize");
  GRAFT_CHECK(p.scale != nullptr, "fp8_act_quantize: no scale");
  if (p.rows == 0 || p.cols == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t stream = stream_of(p);
  if (p.rows % 8 == 0 && p.cols % 8 == 0 && aligned(p.h, 16) && aligned(p.q, 8) &&
      aligned(p.qt, 8) && (p.rows + kVTile - 1) / kVTile <= 65535) {
    act_math::with_activation(p.act, [&]<Activation A>() { launch_act_quantize_as<A>(p, stream); });
    GRAFT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  auto& alloc = CachingAllocator::instance();
  void* a = alloc.allocate(p.rows * p.cols * dtype_size(p.h_dtype), p.device.index, stream);
  ActFwdParams f;
  f.x = p.h;
  f.y = a;
  f.rows = p.rows;
  f.cols = p.cols;
  f.act = p.act;
  f.dtype = p.h_dtype;
  f.device = p.device;
  f.stream = stream;
  activation_fwd(f);
  Fp8QuantizeParams q = quantize_params_of(p, a, p.h_dtype);
  q.stream = stream;
  launch_quantize(q);
  alloc.release(a);
}

void launch_dequantize(const Fp8DequantizeParams& p) {
  check_fp8(p.fp8, "fp8_dequantize");
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  const int threads = 256;
  dequantize_kernel<<<grid_for(p.n, threads), threads, 0, stream_of(p)>>>(
      static_cast<const uint8_t*>(p.q), p.scale_inv, p.y, p.y_dtype, p.n, p.fp8 == DType::kF8E4M3);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

void launch_amax(const AmaxParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  const int threads = 256;
  GRAFT_FLOAT_SWITCH(p.dtype, T, "amax_reduce x", {
    amax_kernel<T><<<grid_for(p.n, threads), threads, 0, stream_of(p)>>>(static_cast<const T*>(p.x),
                                                                         p.n, p.amax);
  });
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

void launch_scale_update(const Fp8ScaleUpdateParams& p) {
  GRAFT_CHECK(p.len >= 1 && (!p.current || p.len == 1), "fp8_scale_update: len = ", p.len);
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  const int threads = 128;
  scale_update_kernel<<<static_cast<unsigned>((p.n + threads - 1) / threads), threads, 0,
                        stream_of(p)>>>(p.history, p.scale, p.scaled_max, p.n, p.len, p.current,
                                        p.most_recent);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(fp8_quantize, Fp8QuantizeParams, cuda::launch_quantize);
GRAFT_REGISTER_CUDA_KERNEL(fp8_dequantize, Fp8DequantizeParams, cuda::launch_dequantize);
GRAFT_REGISTER_CUDA_KERNEL(amax_reduce, AmaxParams, cuda::launch_amax);
GRAFT_REGISTER_CUDA_KERNEL(fp8_scale_update, Fp8ScaleUpdateParams, cuda::launch_scale_update);
GRAFT_REGISTER_CUDA_KERNEL(fp8_act_quantize, Fp8ActQuantizeParams, cuda::launch_act_quantize);
}  // namespace graft
