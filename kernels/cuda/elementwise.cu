// Small element-wise ops on CUDA (the math is in kernels/elementwise.h): add, axpy, scale, fill,
// cast, copy_2d, sum_rows. Grid-stride kernels in f32 arithmetic (add, axpy and cast over 8-element
// 16-byte vectors when the pointers are aligned, then the tail); copy_2d is a strided
// cudaMemcpy2DAsync; sum_rows uses the deterministic column sum of common.cuh.
#include "kernels/cuda/common.cuh"
#include "kernels/elementwise.h"

namespace graft::cuda {
namespace {

#define GRAFT_GRID_STRIDE(i, n)                                             \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// Vector forms (pointers aligned for load8): 8 elements a thread, then the n % 8 tail.
template <class T>
__global__ void add_vec_kernel(const T* a, const T* b, T* out, int64_t n) {
  float x[8], y[8];
  GRAFT_GRID_STRIDE(u, n / 8) {
    load8(a + 8 * u, x);
    load8(b + 8 * u, y);
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] += y[k];
    store8(out + 8 * u, x);
  }
  GRAFT_GRID_STRIDE(t, n % 8) {
    const int64_t i = n / 8 * 8 + t;
    out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
  }
}
template <class T>
__global__ void axpy_vec_kernel(const T* x, T* y, float alpha, int64_t n) {
  float a[8], b[8];
  GRAFT_GRID_STRIDE(u, n / 8) {
    load8(x + 8 * u, a);
    load8(y + 8 * u, b);
#pragma unroll
    for (int k = 0; k < 8; ++k) b[k] = b[k] + alpha * a[k];
    store8(y + 8 * u, b);
  }
  GRAFT_GRID_STRIDE(t, n % 8) {
    const int64_t i = n / 8 * 8 + t;
    y[i] = from_f32<T>(to_f32(y[i]) + alpha * to_f32(x[i]));
  }
}
template <class S, class D>
__global__ void cast_vec_kernel(const S* src, D* dst, int64_t n) {
  float x[8];
  GRAFT_GRID_STRIDE(u, n / 8) {
    load8(src + 8 * u, x);
    store8(dst + 8 * u, x);
  }
  GRAFT_GRID_STRIDE(t, n % 8) {
    const int64_t i = n / 8 * 8 + t;
    dst[i] = from_f32<D>(to_f32(src[i]));
  }
}

template <class T>
__global__ void add_kernel(const T* a, const T* b, T* out, int64_t n) {
  GRAFT_GRID_STRIDE(i, n) { out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i])); }
}
template <class T>
__global__ void axpy_kernel(const T* x, T* y, float alpha, int64_t n) {
  GRAFT_GRID_STRIDE(i, n) { y[i] = from_f32<T>(to_f32(y[i]) + alpha * to_f32(x[i])); }
}
template <class T>
__global__ void scale_kernel(T* x, float alpha, int64_t n) {
  GRAFT_GRID_STRIDE(i, n) { x[i] = from_f32<T>(alpha * to_f32(x[i])); }
}
template <class T>
__global__ void fill_kernel(T* x, float value, int64_t n) {
  const T v = from_f32<T>(value);
  GRAFT_GRID_STRIDE(i, n) { x[i] = v; }
}
template <class S, class D>
__global__ void cast_kernel(const S* src, D* dst, int64_t n) {
  GRAFT_GRID_STRIDE(i, n) { dst[i] = from_f32<D>(to_f32(src[i])); }
}

template <class T>
struct SumRowsTerm {
  const T* x;
  int64_t ld;
  __device__ float operator()(int64_t r, int64_t c) const { return to_f32(x[r * ld + c]); }
};

constexpr int kThreads = 256;

void launch_add(const AddParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype);
  const bool vec = aligned_for_8(p.a, es) && aligned_for_8(p.b, es) && aligned_for_8(p.out, es);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "add", {
    if (vec)
      add_vec_kernel<T><<<grid_for(p.n / 8 + 1, kThreads), kThreads, 0, s>>>(
          static_cast<const T*>(p.a), static_cast<const T*>(p.b), static_cast<T*>(p.out), p.n);
    else
      add_kernel<T><<<grid_for(p.n, kThreads), kThreads, 0, s>>>(
          static_cast<const T*>(p.a), static_cast<const T*>(p.b), static_cast<T*>(p.out), p.n);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_axpy(const AxpyParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype);
  const bool vec = aligned_for_8(p.x, es) && aligned_for_8(p.y, es);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "axpy", {
    if (vec)
      axpy_vec_kernel<T><<<grid_for(p.n / 8 + 1, kThreads), kThreads, 0, s>>>(
          static_cast<const T*>(p.x), static_cast<T*>(p.y), p.alpha, p.n);
    else
      axpy_kernel<T><<<grid_for(p.n, kThreads), kThreads, 0, s>>>(
          static_cast<const T*>(p.x), static_cast<T*>(p.y), p.alpha, p.n);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_scale(const ScaleParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "scale", {
    scale_kernel<T>
        <<<grid_for(p.n, kThreads), kThreads, 0, s>>>(static_cast<T*>(p.x), p.alpha, p.n);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_fill(const FillParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "fill", {
    fill_kernel<T><<<grid_for(p.n, kThreads), kThreads, 0, s>>>(static_cast<T*>(p.x), p.value, p.n);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_cast(const CastParams& p) {
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  if (p.src_dtype == p.dst_dtype) {
    GRAFT_CUDA_CHECK(
        cudaMemcpyAsync(p.dst, p.src, p.n * dtype_size(p.src_dtype), cudaMemcpyDeviceToDevice, s));
    return;
  }
  GRAFT_FLOAT_SWITCH(p.src_dtype, S, "cast source", {
    GRAFT_FLOAT_SWITCH(p.dst_dtype, D, "cast destination", {
      if (aligned_for_8(p.src, sizeof(S)) && aligned_for_8(p.dst, sizeof(D)))
        cast_vec_kernel<S, D><<<grid_for(p.n / 8 + 1, kThreads), kThreads, 0, s>>>(
            static_cast<const S*>(p.src), static_cast<D*>(p.dst), p.n);
      else
        cast_kernel<S, D><<<grid_for(p.n, kThreads), kThreads, 0, s>>>(static_cast<const S*>(p.src),
                                                                       static_cast<D*>(p.dst), p.n);
    });
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_copy_2d(const Copy2dParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype);
  const size_t ld_src = static_cast<size_t>(p.ld_src ? p.ld_src : p.cols) * es;
  const size_t ld_dst = static_cast<size_t>(p.ld_dst ? p.ld_dst : p.cols) * es;
  GRAFT_CUDA_CHECK(cudaMemcpy2DAsync(p.dst, ld_dst, p.src, ld_src, p.cols * es, p.rows,
                                     cudaMemcpyDeviceToDevice, s));
}

void launch_sum_rows(const SumRowsParams& p) {
  if (p.cols == 0) return;
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  const int64_t ld = p.ld ? p.ld : p.cols;
  GRAFT_FLOAT_SWITCH(p.dtype, T, "sum_rows", {
    column_sum_accumulate(SumRowsTerm<T>{static_cast<const T*>(p.x), ld}, p.out, p.rows, p.cols,
                          dev, s, p.accumulate);
  });
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(add, AddParams, cuda::launch_add);
GRAFT_REGISTER_CUDA_KERNEL(axpy, AxpyParams, cuda::launch_axpy);
GRAFT_REGISTER_CUDA_KERNEL(scale, ScaleParams, cuda::launch_scale);
GRAFT_REGISTER_CUDA_KERNEL(fill, FillParams, cuda::launch_fill);
GRAFT_REGISTER_CUDA_KERNEL(cast, CastParams, cuda::launch_cast);
GRAFT_REGISTER_CUDA_KERNEL(copy_2d, Copy2dParams, cuda::launch_copy_2d);
GRAFT_REGISTER_CUDA_KERNEL(sum_rows, SumRowsParams, cuda::launch_sum_rows);
}  // namespace graft
