// cuBLASLt handle, workspace and algorithm choice shared by the CUDA GEMM families.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>

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

// Algorithm choice for one matmul plan (descriptor + layouts, built once per shape).
//
// By default the heuristic's first algorithm is used, as cuBLAS does. With GRAFT_GEMM_TUNE=1 the
// heuristic's first kTuneCandidates algorithms are each timed on the plan's own operands (one
// warm-up and kTuneReps launches, CUDA events, when the plan is first built) and the fastest is
// kept — unless it beats the first by less than kTuneMinGain, so that timing noise does not
// change the choice from one run to the next. GRAFT_GEMM_TUNE=2 also prints one line per tuned
// plan (`what`, the first algorithm's and the chosen one's time). Algorithms differ in summation
// order, so a run is bit-reproducible only with the same choices: tuning is off unless asked.
// No tuning while the stream is being captured into a CUDA graph (nothing may synchronise then).
struct AlgoChoice {
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;  // bytes the algorithm needs (<= the preference's maximum)
};
constexpr int kTuneCandidates = 8;
constexpr int kTuneReps = 5;
constexpr double kTuneMinGain = 0.02;
// True when GRAFT_GEMM_TUNE asks for tuning (read once).
bool gemm_tuning_enabled();
// Returns the heuristic's algorithm for the plan or, when tuning, the fastest of its candidates
// as `run(algo)` (one launch of the matmul on `stream` with that algorithm) measures them. `found`
// is false when the heuristic has no algorithm at all. An empty `run` means no tuning.
AlgoChoice choose_algo(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                       cublasLtMatmulPreference_t pref, cudaStream_t stream,
                       const std::string& what,
                       const std::function<void(const cublasLtMatmulAlgo_t&)>& run, bool* found);

}  // namespace graft::cuda
