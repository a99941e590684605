// Plain and gated activations on CUDA, forward and backward (the math is in kernels/activation.h).
// One grid-stride elementwise kernel per direction, templated on the activation so the gate and
// the product are one pass (gated: x = [rows, 2*cols] as gate | up, y = [rows, cols]); 16-byte
// vector loads (8 elements a thread) when cols % 8 == 0 and the pointers are aligned.
// Evaluated in f32; the CPU reference evaluates in f64.
#include "kernels/activation.h"
#include "kernels/cuda/activation_math.cuh"
#include "kernels/cuda/common.cuh"

namespace graft::cuda {
namespace {

using namespace act_math;  // act_f, act_df, gated, sigmoid

template <class T, Activation A>
__global__ void act_fwd_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (gated(A)) {
      const int64_t r = i / cols, c = i % cols;
      const float gt = to_f32(x[r * 2 * cols + c]), up = to_f32(x[r * 2 * cols + cols + c]);
      y[i] = from_f32<T>(act_f<A>(gt) * up);
    } else {
      y[i] = from_f32<T>(act_f<A>(to_f32(x[i])));
    }
  }
}

template <class T, Activation A>
__global__ void act_bwd_kernel(const T* dy, const T* x, T* dx, int64_t rows, int64_t cols) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float d = to_f32(dy[i]);
    if constexpr (gated(A)) {
      const int64_t r = i / cols, c = i % cols;
      const int64_t gi = r * 2 * cols + c, ui = gi + cols;
      const float gt = to_f32(x[gi]), up = to_f32(x[ui]);
      dx[gi] = from_f32<T>(d * up * act_df<A>(gt));
      dx[ui] = from_f32<T>(d * act_f<A>(gt));
    } else {
      dx[i] = from_f32<T>(d * act_df<A>(to_f32(x[i])));
    }
  }
}

// The same over 8-element units (cols % 8 == 0, pointers aligned for load8): 16-byte loads of
// bf16 and one index division per 8 elements; per element the arithmetic is the scalar kernel's.
template <class T, Activation A>
__global__ void act_fwd_vec_kernel(const T* x, T* y, int64_t rows, int64_t cols) {
  const int64_t units = rows * cols / 8;
  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units;
       u += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = 8 * u;
    float a[8], out[8];
    if constexpr (gated(A)) {
      const int64_t r = i / cols, c = i % cols;
      float b[8];
      load8(x + r * 2 * cols + c, a);
      load8(x + r * 2 * cols + cols + c, b);
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] = act_f<A>(a[k]) * b[k];
    } else {
      load8(x + i, a);
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] = act_f<A>(a[k]);
    }
    store8(y + i, out);
  }
}

template <class T, Activation A>
__global__ void act_bwd_vec_kernel(const T* dy, const T* x, T* dx, int64_t rows, int64_t cols) {
  const int64_t units = rows * cols / 8;
  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units;
       u += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = 8 * u;
    float d[8], a[8], o1[8];
    load8(dy + i, d);
    if constexpr (gated(A)) {
      const int64_t r = i / cols, c = i % cols;
      const int64_t gi = r * 2 * cols + c, ui = gi + cols;
      float b[8], o2[8];
      load8(x + gi, a);
      load8(x + ui, b);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        o1[k] = d[k] * b[k] * act_df<A>(a[k]);
        o2[k] = d[k] * act_f<A>(a[k]);
      }
      store8(dx + gi, o1);
      store8(dx + ui, o2);
    } else {
      load8(x + i, a);
#pragma unroll
      for (int k = 0; k < 8; ++k) o1[k] = d[k] * act_df<A>(a[k]);
      store8(dx + i, o1);
    }
  }
}

void launch_activation_fwd(const ActFwdParams& p) {
  const int64_t total = p.rows * p.cols;
  if (total == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.x, es) && aligned_for_8(p.y, es);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "activation_fwd", {
    with_activation(p.act, [&]<Activation A>() {
      if (vec)
        act_fwd_vec_kernel<T, A><<<grid_for(total / 8, 256), 256, 0, s>>>(
            static_cast<const T*>(p.x), static_cast<T*>(p.y), p.rows, p.cols);
      else
        act_fwd_kernel<T, A><<<grid_for(total, 256), 256, 0, s>>>(
            static_cast<const T*>(p.x), static_cast<T*>(p.y), p.rows, p.cols);
    });
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_activation_bwd(const ActBwdParams& p) {
  const int64_t total = p.rows * p.cols;
  if (total == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.dy, es) && aligned_for_8(p.x, es) &&
                   aligned_for_8(p.dx, es);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "activation_bwd", {
    with_activation(p.act, [&]<Activation A>() {
      if (vec)
        act_bwd_vec_kernel<T, A><<<grid_for(total / 8, 256), 256, 0, s>>>(
            static_cast<const T*>(p.dy), static_cast<const T*>(p.x), static_cast<T*>(p.dx), p.rows,
            p.cols);
      else
        act_bwd_kernel<T, A><<<grid_for(total, 256), 256, 0, s>>>(
            static_cast<const T*>(p.dy), static_cast<const T*>(p.x), static_cast<T*>(p.dx), p.rows,
            p.cols);
    });
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(activation_fwd, ActFwdParams, cuda::launch_activation_fwd);
GRAFT_REGISTER_CUDA_KERNEL(activation_bwd, ActBwdParams, cuda::launch_activation_bwd);
}  // namespace graft
