// cuBLASLt handle and workspace shared by the CUDA kernel families.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "framework/core/error.h"

#define GRAFT_CUBLAS_CHECK(expr)                                                           \
  do {                                                                                     \
    cublasStatus_t graft_s_ = (expr);                                                      \
    GRAFT_CHECK(graft_s_ == CUBLAS_STATUS_SUCCESS, #expr, " failed: cuBLAS status ",       \
                static_cast<int>(graft_s_), " (", cublasLtGetStatusString(graft_s_), ")"); \
  } while (0)

namespace graft::cuda {

// One cuBLASLt handle per process (cuBLASLt handles are not tied to a device).
cublasLtHandle_t cublaslt_handle();
// A workspace of at least `bytes` for (device, stream), from the caching allocator, kept for the
// life of the process so steady-state GEMMs allocate nothing.
void* cublaslt_workspace(int device, cudaStream_t stream, size_t bytes);

}  // namespace graft::cuda
