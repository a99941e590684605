// Shared helpers for the CUDA kernel families: element conversion, dtype dispatch, block
// reductions, launch geometry and stream-ordered scratch buffers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/input_errors.h"
#include "framework/core/cuda/stream.h"
#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace graft::cuda {

// ---- element conversion (all arithmetic in f32) ------------------------------------------------
template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
  return __half2float(v);
}

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}

// ---- 8-element vector access (16 bytes of bf16/f16, 32 of f32) -------------------------------
// p must be aligned to 8 * sizeof(T) (callers check with aligned_for_8 before taking this path).
template <class T>
struct alignas(8 * sizeof(T)) Pack8 {
  T v[8];
};
template <class T>
__device__ __forceinline__ void load8(const T* p, float (&f)[8]) {
  const Pack8<T> pk = *reinterpret_cast<const Pack8<T>*>(p);
#pragma unroll
  for (int k = 0; k < 8; ++k) f[k] = to_f32(pk.v[k]);
}
template <class T>
__device__ __forceinline__ void store8(T* p, const float (&f)[8]) {
  Pack8<T> pk;
#pragma unroll
  for (int k = 0; k < 8; ++k) pk.v[k] = from_f32<T>(f[k]);
  *reinterpret_cast<Pack8<T>*>(p) = pk;
}
// Host: whether `p` (null counts as aligned) can take load8/store8 for elements of `bytes`.
inline bool aligned_for_8(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % (8 * bytes) == 0;
}

// ---- dtype dispatch ----------------------------------------------------------------------------
// GRAFT_FLOAT_SWITCH(dtype, T, what, body): runs `body` with T = float / __nv_bfloat16 / __half.
#define GRAFT_FLOAT_SWITCH(dtype, T, what, ...)                        \
  switch (dtype) {                                                     \
    case ::graft::DType::kF32: {                                       \
      using T = float;                                                 \
      __VA_ARGS__;                                                     \
      break;                                                           \
    }                                                                  \
    case ::graft::DType::kBF16: {                                      \
      using T = __nv_bfloat16;                                         \
      __VA_ARGS__;                                                     \
      break;                                                           \
    }                                                                  \
    case ::graft::DType::kF16: {                                       \
      using T = __half;                                                \
      __VA_ARGS__;                                                     \
      break;                                                           \
    }                                                                  \
    default:                                                           \
      GRAFT_CHECK(false, what, ": dtype ", ::graft::dtype_name(dtype), \
                  " is not supported on CUDA (f32, bf16, f16)");       \
  }

// ---- reductions --------------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the call ends with a barrier so it can be reused.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : -INFINITY;
  v = warp_max(v);
  __syncthreads();
  return v;
}

// Device scratch memory from the caching allocator, released (stream-ordered) at scope end.
class Scratch {
 public:
  Scratch(size_t bytes, int device, cudaStream_t stream)
      : ptr_(bytes ? CachingAllocator::instance().allocate(bytes, device, stream) : nullptr) {}
  ~Scratch() { CachingAllocator::instance().release(ptr_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_;
};

// ---- bad input found on the device (see framework/core/cuda/input_errors.h) ---------------------
__device__ __forceinline__ void report_input_error(InputErrorRecord* r, int32_t code, int64_t value,
                                                   int64_t index, int64_t limit) {
  if (atomicCAS(&r->code, 0, code) == 0) {
    r->value = value;
    r->index = index;
    r->limit = limit;
    __threadfence_system();
  }
}

// ---- deterministic column sums -----------------------------------------------------------------
// out[c] += sum_r f(r, c) over rows (out[c] = ... when !accumulate: the old value is never read),
// in a fixed order independent of scheduling: a grid of (column tiles x row chunks) writes f64
// partials [chunks, cols] to scratch, then one thread per column adds the chunks in order and
// rounds once to f32. `f` is a device functor (r, c) -> float. Summing in f64 leaves only the final
// rounding (the CPU references sum in f64 too).
constexpr int kColTile = 128;
constexpr int64_t kRowsPerChunk = 64;

template <class F>
__global__ void column_partials_kernel(F f, double* partials, int64_t rows, int64_t cols) {
  const int64_t c = blockIdx.x * int64_t(kColTile) + threadIdx.x;
  const int64_t r0 = blockIdx.y * kRowsPerChunk;
  if (c >= cols) return;
  double acc = 0.0;
  const int64_t r1 = r0 + kRowsPerChunk < rows ? r0 + kRowsPerChunk : rows;
  for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(f(r, c));
  partials[blockIdx.y * cols + c] = acc;
}

__global__ void column_finish_kernel(const double* partials, float* out, int64_t chunks,
                                     int64_t cols, bool accumulate);

template <class F>
void column_sum_accumulate(F f, float* out, int64_t rows, int64_t cols, int device,
                           cudaStream_t stream, bool accumulate = true) {
  if (cols <= 0) return;
  if (rows <= 0) {  // an empty sum
    if (!accumulate) GRAFT_CUDA_CHECK(cudaMemsetAsync(out, 0, cols * sizeof(float), stream));
    return;
  }
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  GRAFT_CHECK(chunks <= 65535, "column sum over ", rows, " rows exceeds the grid limit");
  Scratch partials(static_cast<size_t>(chunks * cols) * sizeof(double), device, stream);
  dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
  column_partials_kernel<<<grid, kColTile, 0, stream>>>(f, partials.as<double>(), rows, cols);
  GRAFT_CUDA_CHECK_LAUNCH();
  column_finish_kernel<<<static_cast<unsigned>((cols + 255) / 256), 256, 0, stream>>>(
      partials.as<double>(), out, chunks, cols, accumulate);
  GRAFT_CUDA_CHECK_LAUNCH();
}

// ---- launch helpers ----------------------------------------------------------------------------
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride elementwise loop over n items.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t want = ceil_div(n, threads);
  return static_cast<unsigned>(want < 1 ? 1 : (want > 65535 * 8 ? 65535 * 8 : want));
}

// Threads per block for a row kernel over `cols` columns (a multiple of 32 in [32, 1024]).
inline int row_threads(int64_t cols) {
  int t = 32;
  while (t < 1024 && t < cols) t *= 2;
  return t;
}

template <class P>
cudaStream_t stream_of(const P& p) {
  return stream_or_current(p.stream, p.device);
}

}  // namespace graft::cuda
