// The FP8 element math shared by the CUDA FP8 kernels (fp8.cu: casts, amax; fp8_norm.cu: the norm
// fused with the cast): the saturating cast, the decode, and the NaN-aware amax reduction.
// Conventions: kernels/fp8.h.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace graft::cuda::fp8_math {

__device__ __forceinline__ uint8_t to_fp8(float v, bool e4m3) {
  return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, e4m3 ? __NV_E4M3 : __NV_E5M2);
}
__device__ __forceinline__ float from_fp8(uint8_t v, bool e4m3) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(v, e4m3 ? __NV_E4M3 : __NV_E5M2);
  return __half2float(__half(h));
}
// |x| as an int that orders like the value: non-negative floats order like their bit patterns,
// and a NaN becomes 0x7fffffff, above +inf (0x7f800000), so it wins every max (the header's
// promise). The reductions run on these ints: fmaxf would drop NaN.
__device__ __forceinline__ int abs_key(float v) {
  return isnan(v) ? 0x7fffffff : __float_as_int(fabsf(v));
}
__device__ __forceinline__ int warp_max_int(int v) {
  for (int o = 16; o > 0; o /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide max of keys (any block shape, at most 1024 threads), folded into *dst by thread 0.
__device__ __forceinline__ void block_amax(int key, float* dst) {
  __shared__ int warps[32];
  const int tid = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y * blockDim.z;
  key = warp_max_int(key);
  if (tid % 32 == 0) warps[tid / 32] = key;
  __syncthreads();
  if (tid == 0) {
    int m = warps[0];
    for (int w = 1; w < (nthreads + 31) / 32; ++w) m = max(m, warps[w]);
    atomicMax(reinterpret_cast<int*>(dst), m);
  }
}

}  // namespace graft::cuda::fp8_math
