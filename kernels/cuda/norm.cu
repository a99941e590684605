// RMSNorm and LayerNorm forward/backward on CUDA (the math is in kernels/norm.h).
//
// Forward: one block per row; statistics in f32 (LayerNorm two-pass: mean, then centred
// variance), y written directly in the activation dtype (the norm and its output cast are one
// kernel). Backward: one block per row for dx (=); dgamma/dbeta (+=) through the deterministic
// column sum of common.cuh, launched before dx so that dx may alias dy. With a residual the
// forward first writes s = x + residual (rounded to T) and normalises s; dresidual is added to dx
// in f32 before its one rounding. Rows of a multiple of 8 columns with aligned pointers take
// 16-byte vector loads (load8/store8 of common.cuh).
//   x, y, dy, dx: [rows, cols] in T;  gamma, beta: [cols] in W;  rstd, mean: [rows] f32.
#include "kernels/cuda/common.cuh"
#include "kernels/norm.h"

namespace graft::cuda {
namespace {

template <class T, class W, bool kLayer>
__global__ void norm_fwd_kernel(const T* x, const T* res, T* res_out, const W* gamma, const W* beta,
                                T* y, float* rstd_out, float* mean_out, int64_t cols, float eps,
                                bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  if (res) {  // s = x + residual, rounded to T; each thread later rereads only what it wrote
    const T* rr = res + row * cols;
    T* sr = res_out + row * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
      sr[j] = from_f32<T>(to_f32(xr[j]) + to_f32(rr[j]));
    xr = sr;
  }
  float mean = 0.0f;
  if (kLayer) {
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(xr[j]);
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = to_f32(xr[j]) - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(block_sum(ss, scratch) / static_cast<float>(cols) + eps);
  if (threadIdx.x == 0) {
    if (rstd_out) rstd_out[row] = rstd;
    if (kLayer && mean_out) mean_out[row] = mean;
  }
  const float g_off = zero_centered ? 1.0f : 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = (to_f32(xr[j]) - mean) * rstd * (to_f32(gamma[j]) + g_off);
    if (kLayer && beta) v += to_f32(beta[j]);
    yr[j] = from_f32<T>(v);
  }
}

template <class T, class W, bool kLayer>
__global__ void norm_bwd_dx_kernel(const T* dy, const T* x, const W* gamma, const float* rstd,
                                   const float* mean, const T* dres, T* dx, int64_t cols,
                                   bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* dyr = dy + row * cols;
  const T* xr = x + row * cols;
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
    dx[row * cols + j] = from_f32<T>(d);
  }
}

// The same two kernels over 8-element vectors (cols % 8 == 0, every row and weight pointer
// aligned for load8): 16-byte loads of bf16, one pass of the row held in registers per step.
template <class T, class W, bool kLayer>
__global__ void norm_fwd_vec_kernel(const T* x, const T* res, T* res_out, const W* gamma,
                                    const W* beta, T* y, float* rstd_out, float* mean_out,
                                    int64_t cols, float eps, bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, units = cols / 8;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  float xv[8];
  if (res) {
    const T* rr = res + row * cols;
    T* sr = res_out + row * cols;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      float rv[8];
      load8(xr + 8 * u, xv);
      load8(rr + 8 * u, rv);
#pragma unroll
      for (int k = 0; k < 8; ++k) xv[k] += rv[k];
      store8(sr + 8 * u, xv);
    }
    xr = sr;
  }
  float mean = 0.0f;
  if (kLayer) {
    float s = 0.0f;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      load8(xr + 8 * u, xv);
#pragma unroll
      for (int k = 0; k < 8; ++k) s += xv[k];
    }
    mean = block_sum(s, scratch) / static_cast<float>(cols);
  }
  float ss = 0.0f;
  for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
    load8(xr + 8 * u, xv);
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
    load8(xr + 8 * u, xv);
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

template <class T, class W, bool kLayer>
__global__ void norm_bwd_dx_vec_kernel(const T* dy, const T* x, const W* gamma, const float* rstd,
                                       const float* mean, const T* dres, T* dx, int64_t cols,
                                       bool zero_centered) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x, units = cols / 8;
  const T* dyr = dy + row * cols;
  const T* xr = x + row * cols;
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

// Column-sum terms for the weight gradients.
template <class T>
struct DGammaTerm {
  const T* dy;
  const T* x;
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

template <bool kLayer>
void norm_fwd(const NormFwdParams& p) {
  const char* name = kLayer ? "layernorm_fwd" : "rmsnorm_fwd";
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": rows = ", p.rows, ", cols = ", p.cols);
  GRAFT_CHECK(!p.residual || (p.residual_out && p.residual_out != p.y), name,
              ": a residual needs residual_out, distinct from y");
  if (p.rows == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype), ws = dtype_size(p.weight_dtype);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.x, es) && aligned_for_8(p.y, es) &&
                   aligned_for_8(p.residual, es) && aligned_for_8(p.residual_out, es) &&
                   aligned_for_8(p.gamma, ws) && aligned_for_8(p.beta, ws);
  const int threads = row_threads(vec ? p.cols / 8 : p.cols);
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, name, {
      auto* kernel = vec ? norm_fwd_vec_kernel<T, W, kLayer> : norm_fwd_kernel<T, W, kLayer>;
      kernel<<<static_cast<unsigned>(p.rows), threads, 0, s>>>(
          static_cast<const T*>(p.x), static_cast<const T*>(p.residual),
          static_cast<T*>(p.residual_out), static_cast<const W*>(p.gamma),
          static_cast<const W*>(p.beta), static_cast<T*>(p.y), p.rstd, p.mean, p.cols, p.eps,
          p.zero_centered_gamma);
    });
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

template <bool kLayer>
void norm_bwd(const NormBwdParams& p) {
  const char* name = kLayer ? "layernorm_bwd" : "rmsnorm_bwd";
  GRAFT_CHECK(p.rows >= 0 && p.cols > 0, name, ": rows = ", p.rows, ", cols = ", p.cols);
  GRAFT_CHECK(p.rstd && (!kLayer || p.mean), name, ": the forward statistics are required");
  if (p.rows == 0) return;
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  const size_t es = dtype_size(p.dtype), ws = dtype_size(p.weight_dtype);
  const bool vec = p.cols % 8 == 0 && aligned_for_8(p.dy, es) && aligned_for_8(p.x, es) &&
                   aligned_for_8(p.dx, es) && aligned_for_8(p.dresidual, es) &&
                   aligned_for_8(p.gamma, ws);
  const int threads = row_threads(vec ? p.cols / 8 : p.cols);
  GRAFT_FLOAT_SWITCH(p.dtype, T, name, {
    const T* dy = static_cast<const T*>(p.dy);
    const T* x = static_cast<const T*>(p.x);
    if (p.dgamma) {
      column_sum_accumulate(DGammaTerm<T>{dy, x, p.rstd, kLayer ? p.mean : nullptr, p.cols},
                            p.dgamma, p.rows, p.cols, dev, s, p.accumulate);
    }
    if (kLayer && p.dbeta) {
      column_sum_accumulate(DBetaTerm<T>{dy, p.cols}, p.dbeta, p.rows, p.cols, dev, s,
                            p.accumulate);
    }
    GRAFT_FLOAT_SWITCH(p.weight_dtype, W, name, {
      auto* kernel = vec ? norm_bwd_dx_vec_kernel<T, W, kLayer> : norm_bwd_dx_kernel<T, W, kLayer>;
      kernel<<<static_cast<unsigned>(p.rows), threads, 0, s>>>(
          dy, x, static_cast<const W*>(p.gamma), p.rstd, p.mean, static_cast<const T*>(p.dresidual),
          static_cast<T*>(p.dx), p.cols, p.zero_centered_gamma);
    });
  });
  GRAFT_CUDA_CHECK_LAUNCH();
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
