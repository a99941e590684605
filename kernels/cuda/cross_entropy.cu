// Softmax cross-entropy from logits on CUDA (the math is in kernels/cross_entropy.h).
//
// Nothing of size [n, vocab] is ever allocated: the forward reads each logits row once with an
// online (max, sum-exp) reduction and keeps one f32 lse and one loss per row; the backward
// recomputes exp(logit - lse) on the fly and writes dlogits in the logits' dtype (in place when
// dlogits aliases logits); both read the rows as 16-byte vectors of 8 logits when the row stride
// and the pointers allow it. The scalar loss is reduced deterministically: one block sums the
// per-row losses in f64 in a fixed order. A target outside [0, vocab) that is not ignore_index is
// reported (InputError at the next synchronisation) and its row treated as ignored.
//   logits, dlogits: [n, vocab] row stride ld in T;  targets [n] i64;  lse, row_loss [n] f32.
#include "kernels/cross_entropy.h"
#include "kernels/cuda/common.cuh"

namespace graft::cuda {
namespace {

struct MaxSum {
  float m, s;
};
__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ bool target_valid(int64_t t, int64_t vocab, int64_t ignore_index,
                                             int64_t row, InputErrorRecord* err, bool report) {
  if (t == ignore_index) return false;
  if (t < 0 || t >= vocab) {
    if (report) report_input_error(err, kBadTarget, t, row, vocab);
    return false;
  }
  return true;
}

// kVec: rows read as 8-element 16-byte vectors (ld % 8 == 0, aligned logits), one running-max
// update per 8 logits; the vocab % 8 tail element by element.
template <class T, bool kVec>
__global__ void xent_rows_kernel(const T* logits, const int64_t* targets, float* lse_out,
                                 float* row_loss, float* loss_tmp, int* valid_tmp, int64_t vocab,
                                 int64_t ld, int64_t ignore_index, InputErrorRecord* err) {
  __shared__ MaxSum sh[32];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * ld;
  MaxSum acc{-INFINITY, 0.0f};
  const int64_t vec_end = kVec ? vocab / 8 * 8 : 0;
  if (kVec) {
    for (int64_t u = threadIdx.x; u < vocab / 8; u += blockDim.x) {
      float v[8];
      load8(x + 8 * u, v);
      float m8 = v[0];
#pragma unroll
      for (int k = 1; k < 8; ++k) m8 = fmaxf(m8, v[k]);
      if (m8 > acc.m) {  // new running max: rescale the sum (exp(-inf) = 0 the first time)
        acc.s *= expf(acc.m - m8);
        acc.m = m8;
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) acc.s += expf(v[k] - acc.m);
    }
  }
  for (int64_t j = vec_end + threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = to_f32(x[j]);
    if (v <= acc.m) {
      acc.s += expf(v - acc.m);
    } else {  // new running max: rescale the sum (exp(-inf) = 0 covers the first element)
      acc.s = acc.s * expf(acc.m - v) + 1.0f;
      acc.m = v;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o)};
    acc = combine(acc, other);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh[warp] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  MaxSum tot = sh[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) tot = combine(tot, sh[w]);
  const float lse = tot.m + logf(tot.s);
  const int64_t t = targets[r];
  const bool valid = target_valid(t, vocab, ignore_index, r, err, true);
  const float l = valid ? lse - to_f32(x[t]) : 0.0f;
  if (lse_out) lse_out[r] = lse;
  if (row_loss) row_loss[r] = l;
  loss_tmp[r] = l;
  valid_tmp[r] = valid ? 1 : 0;
}

// One block: loss = (accumulate ? loss : 0) + sum_r loss_r / d, in a fixed order (f64).
__global__ void xent_reduce_kernel(const float* loss_tmp, const int* valid_tmp, int64_t n,
                                   float* loss, bool mean, int64_t num_valid,
                                   const int64_t* num_valid_at, bool accumulate) {
  __shared__ double sh_sum[1024];
  __shared__ long long sh_cnt[1024];
  double s = 0.0;
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    s += loss_tmp[i];
    c += valid_tmp[i];
  }
  sh_sum[threadIdx.x] = s;
  sh_cnt[threadIdx.x] = c;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      sh_sum[threadIdx.x] += sh_sum[threadIdx.x + w];
      sh_cnt[threadIdx.x] += sh_cnt[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  if (num_valid_at) num_valid = *num_valid_at;
  const double d = mean ? static_cast<double>(num_valid >= 0 ? num_valid : sh_cnt[0]) : 1.0;
  const float v = d == 0.0 ? 0.0f : static_cast<float>(sh_sum[0] / d);
  *loss = accumulate ? *loss + v : v;
}

// One block: *count = number of rows with a valid target.
__global__ void xent_count_kernel(const int64_t* targets, int64_t n, int64_t vocab,
                                  int64_t ignore_index, long long* count) {
  __shared__ long long sh[1024];
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    c += target_valid(targets[i], vocab, ignore_index, i, nullptr, false) ? 1 : 0;
  }
  sh[threadIdx.x] = c;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = sh[0];
}

template <class T, bool kVec>
__global__ void xent_bwd_kernel(const T* logits, const int64_t* targets, const float* lse,
                                T* dlogits, int64_t vocab, int64_t ld, int64_t ignore_index,
                                float grad_scale, bool mean, int64_t num_valid,
                                const int64_t* num_valid_at, const long long* counted,
                                InputErrorRecord* err) {
  const int64_t r = blockIdx.x;
  const int64_t t = targets[r];
  const bool valid = target_valid(t, vocab, ignore_index, r, err, threadIdx.x == 0);
  if (num_valid_at) num_valid = *num_valid_at;
  const double d = mean ? static_cast<double>(num_valid >= 0 ? num_valid : *counted) : 1.0;
  const float k = (d == 0.0 || !valid) ? 0.0f : static_cast<float>(grad_scale / d);
  const float l = lse[r];
  const T* x = logits + r * ld;
  T* dx = dlogits + r * ld;
  const int64_t vec_end = kVec ? vocab / 8 * 8 : 0;
  if (kVec) {
    for (int64_t u = threadIdx.x; u < vocab / 8; u += blockDim.x) {
      float v[8];
      load8(x + 8 * u, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float pj = valid ? expf(v[e] - l) : 0.0f;
        v[e] = k * (pj - (8 * u + e == t ? 1.0f : 0.0f));
      }
      store8(dx + 8 * u, v);
    }
  }
  for (int64_t j = vec_end + threadIdx.x; j < vocab; j += blockDim.x) {
    const float pj = valid ? expf(to_f32(x[j]) - l) : 0.0f;
    dx[j] = from_f32<T>(k * (pj - (j == t ? 1.0f : 0.0f)));
  }
}

void launch_xent_fwd(const XentFwdParams& p) {
  GRAFT_CHECK(p.vocab > 0 && p.n >= 0, "cross_entropy_fwd: n = ", p.n, ", vocab = ", p.vocab);
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  const int64_t ld = p.ld ? p.ld : p.vocab;
  InputErrorRecord* err = input_error_record(dev);
  const size_t n = static_cast<size_t>(p.n);
  Scratch tmp(n * (sizeof(float) + sizeof(int)) + 16, dev, s);
  float* loss_tmp = tmp.as<float>();
  int* valid_tmp = reinterpret_cast<int*>(loss_tmp + n);
  if (p.n > 0) {
    const bool vec = ld % 8 == 0 && aligned_for_8(p.logits, dtype_size(p.dtype));
    GRAFT_FLOAT_SWITCH(p.dtype, T, "cross_entropy_fwd", {
      auto* kernel = vec ? xent_rows_kernel<T, true> : xent_rows_kernel<T, false>;
      kernel<<<static_cast<unsigned>(p.n), 1024, 0, s>>>(static_cast<const T*>(p.logits), p.targets,
                                                         p.lse, p.row_loss, loss_tmp, valid_tmp,
                                                         p.vocab, ld, p.ignore_index, err);
    });
    GRAFT_CUDA_CHECK_LAUNCH();
  }
  xent_reduce_kernel<<<1, 1024, 0, s>>>(loss_tmp, valid_tmp, p.n, p.loss,
                                        p.reduction == Reduction::kMean, p.num_valid,
                                        p.num_valid_at, p.accumulate);
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_xent_bwd(const XentBwdParams& p) {
  GRAFT_CHECK(p.vocab > 0 && p.n >= 0, "cross_entropy_bwd: n = ", p.n, ", vocab = ", p.vocab);
  if (p.n == 0) return;
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  const int64_t ld = p.ld ? p.ld : p.vocab;
  const bool mean = p.reduction == Reduction::kMean;
  Scratch count(sizeof(long long), dev, s);
  if (mean && (p.num_valid < 0 || p.num_valid_at)) {  // num_valid_at may hold -1
    xent_count_kernel<<<1, 1024, 0, s>>>(p.targets, p.n, p.vocab, p.ignore_index,
                                         count.as<long long>());
    GRAFT_CUDA_CHECK_LAUNCH();
  }
  InputErrorRecord* err = input_error_record(dev);
  const size_t es = dtype_size(p.dtype);
  const bool vec = ld % 8 == 0 && aligned_for_8(p.logits, es) && aligned_for_8(p.dlogits, es);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "cross_entropy_bwd", {
    auto* kernel = vec ? xent_bwd_kernel<T, true> : xent_bwd_kernel<T, false>;
    kernel<<<static_cast<unsigned>(p.n), 1024, 0, s>>>(
        static_cast<const T*>(p.logits), p.targets, p.lse, static_cast<T*>(p.dlogits), p.vocab, ld,
        p.ignore_index, p.grad_scale, mean, p.num_valid, p.num_valid_at, count.as<long long>(),
        err);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

__global__ void shift_labels_kernel(const int64_t* labels, int64_t* targets, int64_t total,
                                    int64_t seq, int64_t ignore_index) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    targets[i] = (i % seq) + 1 < seq ? labels[i + 1] : ignore_index;
}

void launch_shift_labels(const ShiftLabelsParams& p) {
  const int64_t total = p.batch * p.seq;
  if (total == 0) return;
  GRAFT_CHECK(p.labels && p.targets, "shift_labels: null pointers");
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  shift_labels_kernel<<<grid_for(total, 256), 256, 0, s>>>(p.labels, p.targets, total, p.seq,
                                                           p.ignore_index);
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(shift_labels, ShiftLabelsParams, cuda::launch_shift_labels);
GRAFT_REGISTER_CUDA_KERNEL(cross_entropy_fwd, XentFwdParams, cuda::launch_xent_fwd);
GRAFT_REGISTER_CUDA_KERNEL(cross_entropy_bwd, XentBwdParams, cuda::launch_xent_bwd);
}  // namespace graft
