#include "kernels/cuda/cublaslt_util.h"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/env.h"

namespace graft::cuda {

cublasLtHandle_t cublaslt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t x = nullptr;
    GRAFT_CUBLAS_CHECK(cublasLtCreate(&x));
    return x;
  }();
  return h;
}

void* cublaslt_workspace(int device, cudaStream_t stream, size_t bytes) {
  static std::mutex mu;
  static auto* spaces = new std::map<std::pair<int, cudaStream_t>, std::pair<void*, size_t>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*spaces)[{device, stream}];
  if (slot.second < bytes) {
    CachingAllocator::instance().release(slot.first);
    slot.first = CachingAllocator::instance().allocate(bytes, device, stream);
    slot.second = bytes;
  }
  return slot.first;
}

namespace {

int tune_level() {
  static const int level = env_choice("GRAFT_GEMM_TUNE", {"0", "1", "2"});
  return level;
}

// Mean ms of kTuneReps launches of `algo` after one warm-up launch.
float time_algo(const cublasLtMatmulAlgo_t& algo, cudaStream_t stream,
                const std::function<void(const cublasLtMatmulAlgo_t&)>& run) {
  cudaEvent_t start = nullptr, end = nullptr;
  GRAFT_CUDA_CHECK(cudaEventCreate(&start));
  GRAFT_CUDA_CHECK(cudaEventCreate(&end));
  run(algo);
  GRAFT_CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < kTuneReps; ++i) run(algo);
  GRAFT_CUDA_CHECK(cudaEventRecord(end, stream));
  GRAFT_CUDA_CHECK(cudaEventSynchronize(end));
  float ms = 0;
  GRAFT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, end));
  cudaEventDestroy(start);
  cudaEventDestroy(end);
  return ms / kTuneReps;
}

}  // namespace

bool gemm_tuning_enabled() { return tune_level() > 0; }

AlgoChoice choose_algo(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                       cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                       cublasLtMatmulPreference_t pref, cudaStream_t stream,
                       const std::string& what,
                       const std::function<void(const cublasLtMatmulAlgo_t&)>& run, bool* found) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  GRAFT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  const bool tune = gemm_tuning_enabled() && run && capture == cudaStreamCaptureStatusNone;
  std::vector<cublasLtMatmulHeuristicResult_t> res(tune ? kTuneCandidates : 1);
  int n = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      cublaslt_handle(), desc, a, b, c, d, pref, static_cast<int>(res.size()), res.data(), &n);
  AlgoChoice out;
  *found = st == CUBLAS_STATUS_SUCCESS && n > 0 && res[0].state == CUBLAS_STATUS_SUCCESS;
  if (!*found) return out;
  out.algo = res[0].algo;
  out.workspace = res[0].workspaceSize;
  if (!tune || n == 1) return out;
  const float first = time_algo(res[0].algo, stream, run);
  float best = first;
  int best_i = 0;
  for (int i = 1; i < n; ++i) {
    if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const float ms = time_algo(res[i].algo, stream, run);
    if (ms < best) best = ms, best_i = i;
  }
  if (best_i != 0 && best < first * (1.0 - kTuneMinGain)) {
    out.algo = res[best_i].algo;
    out.workspace = res[best_i].workspaceSize;
  } else {
    best_i = 0;
    best = first;
  }
  if (tune_level() >= 2) {
    std::fprintf(stderr, "gemm tune: %s: heuristic #1 %.4f ms, chose #%d %.4f ms (%d candidates)\n",
                 what.c_str(), first, best_i + 1, best, n);
  }
  return out;
}

}  // namespace graft::cuda
