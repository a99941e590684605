#include "kernels/cuda/common.cuh"

namespace graft::cuda {

__global__ void column_finish_kernel(const double* partials, float* out, int64_t chunks,
                                     int64_t cols, bool accumulate) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= cols) return;
  double acc = accumulate ? out[c] : 0.0;
  for (int64_t k = 0; k < chunks; ++k) acc += partials[k * cols + c];
  out[c] = static_cast<float>(acc);
}

}  // namespace graft::cuda
