// Vocab-parallel cross-entropy steps on CUDA (the math is in kernels/vocab_parallel_xent.h).
//
// One block per row for the three row passes (max + target logit, sum-exp, backward); the loss is
// summed by one block in f64 in a fixed order (deterministic), as kernels/cuda/cross_entropy.cu
// does. Nothing of size [n, cols] is allocated. A target outside [0, vocab_total) that is not
// ignore_index is reported (InputError at the next synchronisation) and its row ignored.
//   logits, dlogits: [n, cols] row stride ld in T;  targets [n] i64;  row stats [n] f32.
#include "kernels/cuda/common.cuh"
#include "kernels/vocab_parallel_xent.h"

namespace graft::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool valid_target(int64_t t, const VocabXentParams& p, int64_t row,
                                             InputErrorRecord* err, bool report) {
  if (t == p.ignore_index) return false;
  if (t < 0 || t >= p.vocab_total) {
    if (report) report_input_error(err, kBadTarget, t, row, p.vocab_total);
    return false;
  }
  return true;
}

template <class T>
__global__ void max_kernel(VocabXentParams p, int64_t ld, InputErrorRecord* err) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.logits) + r * ld;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < p.vocab; c += blockDim.x) m = fmaxf(m, to_f32(x[c]));
  m = block_max(m, scratch);
  if (threadIdx.x != 0) return;
  p.row_max[r] = m;
  const int64_t t = p.targets[r], local = t - p.vocab_start;
  const bool mine = valid_target(t, p, r, err, true) && local >= 0 && local < p.vocab;
  p.target_logit[r] = mine ? to_f32(x[local]) : 0.0f;
}

template <class T>
__global__ void sumexp_kernel(VocabXentParams p, int64_t ld) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* x = static_cast<const T*>(p.logits) + r * ld;
  const float m = p.row_max[r];
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < p.vocab; c += blockDim.x) s += expf(to_f32(x[c]) - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) p.sum_exp[r] = s;
}

// One block: lse per row, then the loss summed in f64 in a fixed order.
__global__ void finish_kernel(VocabXentParams p) {
  __shared__ double sh_sum[1024];
  __shared__ long long sh_cnt[1024];
  double s = 0.0;
  long long c = 0;
  for (int64_t r = threadIdx.x; r < p.n; r += blockDim.x) {
    const float lse = p.row_max[r] + logf(p.sum_exp[r]);
    p.lse[r] = lse;
    if (valid_target(p.targets[r], p, r, nullptr, false)) {
      s += static_cast<double>(lse) - p.target_logit[r];
      ++c;
    }
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
  const double d = static_cast<double>(p.num_valid >= 0 ? p.num_valid : sh_cnt[0]);
  *p.loss = d == 0.0 ? 0.0f : static_cast<float>(sh_sum[0] / d);
}

// One block: *count = rows with a valid target.
__global__ void count_kernel(VocabXentParams p, long long* count) {
  __shared__ long long sh[1024];
  long long c = 0;
  for (int64_t r = threadIdx.x; r < p.n; r += blockDim.x)
    c += valid_target(p.targets[r], p, r, nullptr, false) ? 1 : 0;
  sh[threadIdx.x] = c;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = sh[0];
}

template <class T>
__global__ void bwd_kernel(VocabXentParams p, int64_t ld, const long long* counted,
                           InputErrorRecord* err) {
  const int64_t r = blockIdx.x;
  const int64_t t = p.targets[r], local = t - p.vocab_start;
  const bool valid = valid_target(t, p, r, err, threadIdx.x == 0);
  const double d = static_cast<double>(p.num_valid >= 0 ? p.num_valid : *counted);
  const float k = (d == 0.0 || !valid) ? 0.0f : static_cast<float>(p.grad_scale / d);
  const float l = p.lse[r];
  const T* x = static_cast<const T*>(p.logits) + r * ld;
  T* dx = static_cast<T*>(p.dlogits) + r * ld;
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    const float pc = valid && c < p.vocab ? expf(to_f32(x[c]) - l) : 0.0f;
    const float hot = valid && c == local ? 1.0f : 0.0f;
    dx[c] = from_f32<T>(c < p.vocab ? k * (pc - hot) : 0.0f);
  }
}

void check(const VocabXentParams& p, const char* name) {
  GRAFT_CHECK(p.n >= 0 && p.vocab > 0 && p.vocab <= p.cols && (p.ld == 0 || p.ld >= p.cols) &&
                  p.vocab_total > 0,
              name, ": bad sizes n = ", p.n, ", vocab = ", p.vocab, ", cols = ", p.cols,
              ", ld = ", p.ld, ", vocab_total = ", p.vocab_total);
}

void launch_max(const VocabXentParams& p) {
  check(p, "vocab_xent_max");
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  InputErrorRecord* err = input_error_record(p.device.index);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "vocab_xent_max", {
    max_kernel<T><<<static_cast<unsigned>(p.n), kThreads, 0, s>>>(p, p.ld ? p.ld : p.cols, err);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_sumexp(const VocabXentParams& p) {
  check(p, "vocab_xent_sumexp");
  if (p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "vocab_xent_sumexp", {
    sumexp_kernel<T><<<static_cast<unsigned>(p.n), kThreads, 0, s>>>(p, p.ld ? p.ld : p.cols);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_finish(const VocabXentParams& p) {
  check(p, "vocab_xent_finish");
  DeviceGuard g(p.device.index);
  finish_kernel<<<1, 1024, 0, stream_of(p)>>>(p);
  GRAFT_CUDA_CHECK_LAUNCH();
}

void launch_bwd(const VocabXentParams& p) {
  check(p, "vocab_xent_bwd");
  if (p.n == 0) return;
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t s = stream_of(p);
  Scratch count(sizeof(long long), dev, s);
  if (p.num_valid < 0) {
    count_kernel<<<1, 1024, 0, s>>>(p, count.as<long long>());
    GRAFT_CUDA_CHECK_LAUNCH();
  }
  InputErrorRecord* err = input_error_record(dev);
  GRAFT_FLOAT_SWITCH(p.dtype, T, "vocab_xent_bwd", {
    bwd_kernel<T><<<static_cast<unsigned>(p.n), kThreads, 0, s>>>(p, p.ld ? p.ld : p.cols,
                                                                  count.as<long long>(), err);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(vocab_xent_max, VocabXentParams, cuda::launch_max);
GRAFT_REGISTER_CUDA_KERNEL(vocab_xent_sumexp, VocabXentParams, cuda::launch_sumexp);
GRAFT_REGISTER_CUDA_KERNEL(vocab_xent_finish, VocabXentParams, cuda::launch_finish);
GRAFT_REGISTER_CUDA_KERNEL(vocab_xent_bwd, VocabXentParams, cuda::launch_bwd);
}  // namespace graft
