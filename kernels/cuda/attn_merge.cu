// Log-sum-exp merge of partial attention results on CUDA (the math is in kernels/attn_merge.h).
// One block per (b, s, h) row: every thread reads the row's two statistics, scales its channels,
// and after a barrier thread 0 writes the merged lse.
#include "kernels/attn_merge.h"
#include "kernels/cuda/common.cuh"

namespace graft::cuda {
namespace {

template <class T>
__global__ void attn_merge_kernel(const T* part, const float* part_lse, float* acc, float* acc_lse,
                                  int64_t seq_part, int64_t seq_acc, int64_t row0, int64_t heads,
                                  int64_t dim) {
  const int64_t row = blockIdx.x;  // (b * seq_part + s) * heads + h
  const int64_t h = row % heads, s = (row / heads) % seq_part, b = row / (heads * seq_part);
  const float lp = part_lse[(b * heads + h) * seq_part + s];
  float* la = acc_lse + (b * heads + h) * seq_acc + row0 + s;
  if (lp == -INFINITY) return;  // the whole block leaves together
  const float lo = *la;
  const float m = fmaxf(lo, lp);
  const float l = m + logf(expf(lo - m) + expf(lp - m));
  const float wo = expf(lo - l), wp = expf(lp - l);
  const T* pr = part + row * dim;
  float* ar = acc + ((b * seq_acc + row0 + s) * heads + h) * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) ar[d] = wo * ar[d] + wp * to_f32(pr[d]);
  __syncthreads();
  if (threadIdx.x == 0) *la = l;
}

void launch_attn_merge(const AttnMergeParams& p) {
  const int64_t rows = p.batch * p.seq_part * p.heads;
  if (rows == 0 || p.head_dim == 0) return;
  GRAFT_CHECK(p.row0 >= 0 && p.row0 + p.seq_part <= p.seq_acc, "attn_merge: rows ", p.row0, " + ",
              p.seq_part, " exceed the accumulator's ", p.seq_acc);
  DeviceGuard g(p.device.index);
  cudaStream_t s = stream_of(p);
  const int threads = p.head_dim >= 128 ? 128 : p.head_dim >= 64 ? 64 : 32;
  GRAFT_FLOAT_SWITCH(p.dtype, T, "attn_merge", {
    attn_merge_kernel<T><<<static_cast<unsigned>(rows), threads, 0, s>>>(
        static_cast<const T*>(p.part), p.part_lse, p.acc, p.acc_lse, p.seq_part, p.seq_acc, p.row0,
        p.heads, p.head_dim);
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(attn_merge, AttnMergeParams, cuda::launch_attn_merge);
}  // namespace graft
