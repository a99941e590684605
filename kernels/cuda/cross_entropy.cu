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
#include <optional>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/common.cuh"

namespace graft::cuda {
namespace {

// e^(v - m) for the softmax terms as one FFMA and one MUFU.EX2: 2^(v log2(e) - m log2(e)) with
// ml = m log2(e) computed once per running max. The exponential is what bounds these kernels (two
// per logit, fwd and bwd, against 4 bytes of traffic), and expf costs about 8 instructions where
// this costs 2. Relative error: ex2.approx's 2^-22 plus the rounding of v log2(e) inside the FFMA,
// |v| 2^-24 (logits of tens: under 1e-6), far below bf16's 2^-8 and the f32 tests' tolerances.
constexpr float kLog2e = 1.4426950408889634f;
__device__ __forceinline__ float exp_minus(float v, float ml) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(fmaf(v, kLog2e, -ml)));
  return y;
}

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

// Every thread's running (max, sum-exp) over its share of the row, combined over the block in a
// fixed order; the lse reaches every thread through `sh_lse`. kVec: the row is read as 8-element
// 16-byte vectors (ld % 8 == 0, aligned logits), two in flight per thread, one running-max update
// per 8 logits; the vocab % 8 tail element by element. Ends with a __syncthreads after which
// thread 0 alone may still use `sh`.
template <class T, bool kVec>
__device__ float row_lse(const T* x, int64_t vocab, MaxSum* sh, float* sh_lse) {
  MaxSum acc{-INFINITY, 0.0f};
  auto add8 = [&](const float(&v)[8]) {
    float m8 = v[0];
#pragma unroll
    for (int k = 1; k < 8; ++k) m8 = fmaxf(m8, v[k]);
    if (m8 > acc.m) {  // new running max: rescale the sum (exp(-inf) = 0 the first time)
      acc.s *= expf(acc.m - m8);
      acc.m = m8;
    }
    const float ml = acc.m * kLog2e;
#pragma unroll
    for (int k = 0; k < 8; ++k) acc.s += exp_minus(v[k], ml);
  };
  const int64_t units = kVec ? vocab / 8 : 0, vec_end = 8 * units;
  if (kVec) {
    int64_t u = threadIdx.x;
    for (; u + blockDim.x < units; u += 2 * blockDim.x) {
      float a[8], b[8];
      load8(x + 8 * u, a);
      load8(x + 8 * (u + blockDim.x), b);
      add8(a);
      add8(b);
    }
    if (u < units) {
      float a[8];
      load8(x + 8 * u, a);
      add8(a);
    }
  }
  for (int64_t j = vec_end + threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = to_f32(x[j]);
    if (v <= acc.m) {
      acc.s += exp_minus(v, acc.m * kLog2e);
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
  if (threadIdx.x == 0) {
    MaxSum tot = sh[0];
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) tot = combine(tot, sh[w]);
    *sh_lse = tot.m + logf(tot.s);
  }
  __syncthreads();
  return *sh_lse;
}

template <class T, bool kVec>
__global__ void xent_rows_kernel(const T* logits, const int64_t* targets, float* lse_out,
                                 float* row_loss, float* loss_tmp, int* valid_tmp, int64_t vocab,
                                 int64_t ld, int64_t ignore_index, InputErrorRecord* err) {
  __shared__ MaxSum sh[32];
  __shared__ float sh_lse;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * ld;
  const float lse = row_lse<T, kVec>(x, vocab, sh, &sh_lse);
  if (threadIdx.x != 0) return;
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

// dx[j] = k (exp(x[j] - l) - [j == t]) over one row, by the block; k = 0 writes zeros. Reads
// x[j] before writing dx[j] (they may alias).
template <class T, bool kVec>
__device__ __forceinline__ void row_grad(const T* x, T* dx, int64_t vocab, int64_t t, bool valid,
                                         float k, float l) {
  const int64_t units = kVec ? vocab / 8 : 0, vec_end = 8 * units;
  const float ll = l * kLog2e;
  auto grad8 = [&](float(&v)[8], int64_t u) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float pj = valid ? exp_minus(v[e], ll) : 0.0f;
      v[e] = k * (pj - (8 * u + e == t ? 1.0f : 0.0f));
    }
  };
  if (kVec) {  // two 16-byte vectors in flight per thread
    int64_t u = threadIdx.x;
    for (; u + blockDim.x < units; u += 2 * blockDim.x) {
      float a[8], b[8];
      load8(x + 8 * u, a);
      load8(x + 8 * (u + blockDim.x), b);
      grad8(a, u);
      grad8(b, u + blockDim.x);
      store8(dx + 8 * u, a);
      store8(dx + 8 * (u + blockDim.x), b);
    }
    if (u < units) {
      float a[8];
      load8(x + 8 * u, a);
      grad8(a, u);
      store8(dx + 8 * u, a);
    }
  }
  for (int64_t j = vec_end + threadIdx.x; j < vocab; j += blockDim.x) {
    const float pj = valid ? exp_minus(to_f32(x[j]), ll) : 0.0f;
    dx[j] = from_f32<T>(k * (pj - (j == t ? 1.0f : 0.0f)));
  }
}

// The gradient's scale grad_scale / d (0 for an ignored row or d = 0), d as the forward's.
__device__ __forceinline__ float grad_factor(bool mean, int64_t num_valid,
                                             const int64_t* num_valid_at, const long long* counted,
                                             float grad_scale, bool valid) {
  if (num_valid_at) num_valid = *num_valid_at;
  const double d = mean ? static_cast<double>(num_valid >= 0 ? num_valid : *counted) : 1.0;
  return (d == 0.0 || !valid) ? 0.0f : static_cast<float>(grad_scale / d);
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
  const float k = grad_factor(mean, num_valid, num_valid_at, counted, grad_scale, valid);
  row_grad<T, kVec>(logits + r * ld, dlogits + r * ld, vocab, t, valid, k, lse[r]);
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

// The forward's launch, then the backward's: measured on the H200 (session 5,
// CudaBench.DISABLED_MemoryBoundKernelTimings, 8192 x 128256 bf16 in place) at 1.575 ms, where a
// single persistent pass (one block per SM, so the rows stay in L2 between the lse and the
// gradient) took 1.636 ms: with one block per SM the exponential-bound and the memory-bound
// halves of each row no longer overlap. One call for the step all the same, with no host read
// between the two and the lse in a temporary when the caller keeps none.
void launch_xent_fwd_bwd(const XentFwdBwdParams& p) {
  const XentFwdParams& f = p.fwd;
  GRAFT_CHECK(p.device == f.device, "cross_entropy_fwd_bwd: device ", p.device.str(),
              " but fwd.device ", f.device.str());
  GRAFT_CHECK(f.n == 0 || p.dlogits, "cross_entropy_fwd_bwd: null dlogits");
  GRAFT_CHECK(!p.stream || p.stream == f.stream,
              "cross_entropy_fwd_bwd: stream differs from fwd.stream (the kernels run on fwd's)");
  DeviceGuard g(f.device.index);
  XentFwdParams fl = f;
  std::optional<Scratch> lse;  // a temporary when the caller keeps none
  if (!fl.lse) {
    lse.emplace(static_cast<size_t>(f.n) * sizeof(float) + 16, f.device.index, stream_of(f));
    fl.lse = lse->as<float>();
  }
  launch_xent_fwd(fl);
  launch_xent_bwd(xent_bwd_params(p, fl.lse));
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
GRAFT_REGISTER_CUDA_KERNEL(cross_entropy_fwd_bwd, XentFwdBwdParams, cuda::launch_xent_fwd_bwd);
}  // namespace graft
