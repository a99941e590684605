// Row softmax on CUDA, forward and backward (the math is in kernels/softmax.h).
// One block per row, f32 statistics: max, then sum of exp, then the normalised write (three
// passes over the row; the later ones hit L1/L2). A row whose scaled entries are all -inf is
// written as zeros. Backward: dot = sum_k dy_k y_k, then dx = s y (dy - dot).
//   x, y, dy, dx: [rows, cols] in T.
#include "kernels/cuda/common.cuh"
#include "kernels/softmax.h"

namespace graft::cuda {
namespace {

template <class T>
__global__ void softmax_fwd_kernel(const T* x, T* y, int64_t cols, float scale) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, scale * to_f32(xr[j]));
  m = block_max(m, scratch);
  float s = 0.0f;
  if (m != -INFINITY) {
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(scale * to_f32(xr[j]) - m);
  }
  s = block_sum(s, scratch);
  const float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    yr[j] = from_f32<T>(m == -INFINITY ? 0.0f : expf(scale * to_f32(xr[j]) - m) * inv);
  }
}

template <class T>
__global__ void softmax_bwd_kernel(const T* dy, const T* y, T* dx, int64_t cols, float scale) {
  __shared__ float scratch[32];
  const int64_t off = blockIdx.x * cols;
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    dot += to_f32(dy[off + j]) * to_f32(y[off + j]);
  }
  dot = block_sum(dot, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float yv = to_f32(y[off + j]);
    dx[off + j] = from_f32<T>(scale * yv * (to_f32(dy[off + j]) - dot));
  }
}

void launch_softmax_fwd(const SoftmaxFwdParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "softmax_fwd", {
    softmax_fwd_kernel<T><<<static_cast<unsigned>(p.rows), row_threads(p.cols), 0, s>>>(
        static_cast<const T*>(p.x), static_cast<T*>(p.y), p.cols, p.scale);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_softmax_bwd(const SoftmaxBwdParams& p) {
  if (p.rows == 0 || p.cols == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "softmax_bwd", {
    softmax_bwd_kernel<T><<<static_cast<unsigned>(p.rows), row_threads(p.cols), 0, s>>>(
        static_cast<const T*>(p.dy), static_cast<const T*>(p.y), static_cast<T*>(p.dx), p.cols,
        p.scale);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(softmax_fwd, SoftmaxFwdParams, cuda::launch_softmax_fwd);
GRAFT_REGISTER_CUDA_KERNEL(softmax_bwd, SoftmaxBwdParams, cuda::launch_softmax_bwd);
}  // namespace graft
