// GEMM through cuBLASLt: C = alpha * op(A) op(B) + beta * C (+ bias), row-major, strided-batched.
// (The full contract is in kernels/gemm.h.) Accumulation is f32 (CUBLAS_COMPUTE_32F, TF32 off, so
// f32 inputs give f32-exact products up to summation order).
//
// Row-major vs cuBLAS's column-major — the one place this is handled:
//   A row-major [r, c] matrix with row stride ld is, byte for byte, the column-major [c, r]
//   matrix (its transpose) with leading dimension ld. So the row-major product
//       C[m, n] = op(A)[m, k] op(B)[k, n]
//   is computed as the column-major product of the transposes
//       C^T[n, m] = op(B)^T[n, k] op(A)^T[k, m]
//   i.e. cuBLASLt's "A" is our B, its "B" is our A, its (M, N, K) = (n, m, k), and each operand
//   keeps its own transpose flag (our trans_b becomes its transa, our trans_a its transb). The
//   bias epilogue adds a vector over cuBLASLt's rows (M = n), i.e. bias[j] to column j of our C.
//
// Plans (descriptors + the heuristic's algorithm) are cached per shape/dtype/alignment key; the
// 32 MiB workspace per (device, stream) comes from the caching allocator once.
#include <cublasLt.h>

#include <functional>
#include <map>
#include <memory>
#include <tuple>

#include "framework/core/cuda/caching_allocator.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cublaslt_util.h"
#include "kernels/gemm.h"

namespace graft::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

cudaDataType_t cuda_type(DType t, const char* what) {
  switch (t) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      GRAFT_CHECK(false, "gemm: ", what, " dtype ", dtype_name(t), " not supported on CUDA");
  }
  return CUDA_R_32F;
}

// Largest power of two (<= 256) dividing the byte address of every batch entry.
int alignment(const void* p, int64_t stride_elems, int64_t batch, size_t elem) {
  uint64_t v = reinterpret_cast<uint64_t>(p);
  if (batch > 1) v |= static_cast<uint64_t>(stride_elems) * elem;
  int a = 1;
  while (a < 256 && (v & static_cast<uint64_t>(a * 2 - 1)) == 0) a *= 2;
  return a;
}

using PlanKey =
    std::tuple<int, int, int, int, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, int64_t,
               int64_t, int64_t, int64_t, int64_t, bool, bool, int, int, int>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fused_bias = false;
  ~Plan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
  }
};

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l = nullptr;
  GRAFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld));
  if (batch > 1) {
    int32_t b = static_cast<int32_t>(batch);
    GRAFT_CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof(b)));
    GRAFT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  }
  return l;
}

// Builds a plan; returns nullptr when the heuristic finds no algorithm (with a fused bias the
// caller retries without it).
std::unique_ptr<Plan> build_plan(const GemmParams& p, int64_t lda, int64_t ldb, int64_t ldc,
                                 bool with_bias, const int align[3]) {
  auto plan = std::make_unique<Plan>();
  const cudaDataType_t ab = cuda_type(p.dtype, "A/B"), ct = cuda_type(p.c_dtype, "C");
  GRAFT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Swapped operands (see the top of this file): cuBLASLt's A is our B, its B is our A.
  cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  GRAFT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  GRAFT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (with_bias) {
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epi, sizeof(epi)));
    cudaDataType_t bt = cuda_type(p.bias_dtype, "bias");
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
  }
  // Column-major shapes of the stored operands (rows, cols) = (stored row length, stored rows).
  const int64_t a_rows = p.trans_b ? p.k : p.n, a_cols = p.trans_b ? p.n : p.k;  // our B
  const int64_t b_rows = p.trans_a ? p.m : p.k, b_cols = p.trans_a ? p.k : p.m;  // our A
  plan->la = make_layout(ab, a_rows, a_cols, ldb, p.batch, p.stride_b);
  plan->lb = make_layout(ab, b_rows, b_cols, lda, p.batch, p.stride_a);
  plan->lc = make_layout(ct, p.n, p.m, ldc, p.batch, p.stride_c);

  cublasLtMatmulPreference_t pref = nullptr;
  GRAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws_max = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_max,
                                       sizeof(ws_max));
  uint32_t al_a = align[1], al_b = align[0], al_c = align[2];  // swapped like the operands
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                       sizeof(al_a));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                       sizeof(al_b));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
                                       sizeof(al_c));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
                                       sizeof(al_c));
  // With GRAFT_GEMM_TUNE the candidates run on this call's operands (cublaslt_util.h): into C
  // itself when beta = 0 (the real launch overwrites it), else into a scratch copy of C's extent
  // when that is small (a large scratch would raise the step's peak memory), else not at all.
  const size_t cb = dtype_size(p.c_dtype);
  const size_t c_bytes =
      static_cast<size_t>((p.batch - 1) * p.stride_c + (p.m - 1) * ldc + p.n) * cb;
  constexpr size_t kMaxTuneScratch = size_t{256} << 20;
  cudaStream_t stream = stream_of(p);
  void* c_tune = p.c;
  void* scratch = nullptr;
  if (p.beta != 0.0f && gemm_tuning_enabled()) {
    if (c_bytes <= kMaxTuneScratch) {
      scratch = CachingAllocator::instance().allocate(c_bytes, p.device.index, stream);
      c_tune = scratch;
    } else {
      c_tune = nullptr;
    }
  }
  if (with_bias) {
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                      &p.bias, sizeof(p.bias)));
  }
  void* ws = cublaslt_workspace(p.device.index, stream, kWorkspaceBytes);
  const float alpha = p.alpha, beta = p.beta;
  auto run = [&](const cublasLtMatmulAlgo_t& algo) {
    GRAFT_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(), plan->desc, &alpha, p.b, plan->la, p.a,
                                      plan->lb, &beta, c_tune, plan->lc, c_tune, plan->lc, &algo,
                                      ws, kWorkspaceBytes, stream));
  };
  bool found = false;
  const std::string what = str("gemm m=", p.m, " n=", p.n, " k=", p.k, p.trans_a ? " T" : " N",
                               p.trans_b ? "T" : "N", " batch=", p.batch, " ", dtype_name(p.dtype),
                               "->", dtype_name(p.c_dtype), p.beta != 0.0f ? " +=" : "");
  std::function<void(const cublasLtMatmulAlgo_t&)> tune_run;
  if (c_tune) tune_run = run;
  const AlgoChoice choice = choose_algo(plan->desc, plan->la, plan->lb, plan->lc, plan->lc, pref,
                                        stream, what, tune_run, &found);
  if (scratch) CachingAllocator::instance().release(scratch);
  cublasLtMatmulPreferenceDestroy(pref);
  if (!found) {
    GRAFT_CHECK(with_bias, "gemm: cuBLASLt found no algorithm for m=", p.m, " n=", p.n, " k=", p.k,
                " batch=", p.batch, " dtype=", dtype_name(p.dtype),
                " c_dtype=", dtype_name(p.c_dtype));
    return nullptr;
  }
  plan->algo = choice.algo;
  plan->fused_bias = with_bias;
  return plan;
}

// Adds bias[j] to every row of each batch entry of C (used when no fused-bias algorithm exists).
template <class TC, class TB>
__global__ void add_bias_kernel(TC* c, const TB* bias, int64_t m, int64_t n, int64_t ldc,
                                int64_t batch, int64_t stride_c) {
  const int64_t total = batch * m * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % n, row = (i / n) % m, b = i / (n * m);
    TC* e = c + b * stride_c + row * ldc + j;
    *e = from_f32<TC>(to_f32(*e) + to_f32(bias[j]));
  }
}

void launch_gemm(const GemmParams& p) {
  GRAFT_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0 && p.batch >= 1, "gemm: bad sizes m=", p.m,
              " n=", p.n, " k=", p.k, " batch=", p.batch);
  GRAFT_CHECK(p.bias_dtype == DType::kF32 || p.bias_dtype == p.c_dtype, "gemm: bias dtype ",
              dtype_name(p.bias_dtype), " must be f32 or the C dtype");
  if (p.m == 0 || p.n == 0) return;
  const int dev = p.device.index;
  DeviceGuard g(dev);
  cudaStream_t stream = stream_of(p);
  const int64_t lda = p.lda ? p.lda : (p.trans_a ? p.m : p.k);
  const int64_t ldb = p.ldb ? p.ldb : (p.trans_b ? p.k : p.n);
  const int64_t ldc = p.ldc ? p.ldc : p.n;
  if (p.k == 0) {  // C = beta * C (+ bias) with an empty sum; cuBLASLt rejects k = 0
    GRAFT_CHECK(p.beta == 0.0f, "gemm: k = 0 is supported only with beta = 0");
    const size_t cb = dtype_size(p.c_dtype);
    for (int64_t b = 0; b < p.batch; ++b) {
      GRAFT_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(p.c) + b * p.stride_c * cb, ldc * cb, 0,
                                         p.n * cb, p.m, stream));
    }
  } else {
    const size_t ab = dtype_size(p.dtype), cb = dtype_size(p.c_dtype);
    const int align[3] = {alignment(p.a, p.stride_a, p.batch, ab),
                          alignment(p.b, p.stride_b, p.batch, ab),
                          alignment(p.c, p.stride_c, p.batch, cb)};
    const bool want_bias = p.bias != nullptr;
    const bool bias_aligned = want_bias && (reinterpret_cast<uint64_t>(p.bias) % 16 == 0);
    PlanKey key{dev,
                static_cast<int>(p.dtype),
                static_cast<int>(p.c_dtype),
                static_cast<int>(p.bias_dtype),
                p.m,
                p.n,
                p.k,
                p.trans_a,
                p.trans_b,
                lda,
                ldb,
                ldc,
                p.batch,
                p.stride_a,
                p.stride_b,
                p.stride_c,
                want_bias,
                bias_aligned,
                align[0],
                align[1],
                align[2]};
    // One plan cache per thread, so no lock is held across the launch (the cached descriptor
    // gets this call's bias pointer, which another thread's launch must not overwrite).
    static thread_local std::map<PlanKey, std::unique_ptr<Plan>>* cache =
        new std::map<PlanKey, std::unique_ptr<Plan>>();  // leaked: used until the thread exits
    auto it = cache->find(key);
    if (it == cache->end()) {
      std::unique_ptr<Plan> pl;
      if (bias_aligned) pl = build_plan(p, lda, ldb, ldc, true, align);
      if (!pl) pl = build_plan(p, lda, ldb, ldc, false, align);
      it = cache->emplace(key, std::move(pl)).first;
    }
    Plan* plan = it->second.get();
    if (plan->fused_bias) {
      GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)));
    }
    const float alpha = p.alpha, beta = p.beta;
    void* ws = cublaslt_workspace(dev, stream, kWorkspaceBytes);
    // Swapped operands: cuBLASLt's A is our b, its B is our a.
    GRAFT_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(), plan->desc, &alpha, p.b, plan->la, p.a,
                                      plan->lb, &beta, p.c, plan->lc, p.c, plan->lc, &plan->algo,
                                      ws, kWorkspaceBytes, stream));
    if (!want_bias || plan->fused_bias) return;
  }
  if (!p.bias) return;
  const int threads = 256;
  const unsigned blocks = grid_for(p.batch * p.m * p.n, threads);
  GRAFT_FLOAT_SWITCH(p.c_dtype, TC, "gemm bias", {
    if (p.bias_dtype == DType::kF32) {
      add_bias_kernel<TC, float>
          <<<blocks, threads, 0, stream>>>(static_cast<TC*>(p.c), static_cast<const float*>(p.bias),
                                           p.m, p.n, ldc, p.batch, p.stride_c);
    } else {
      add_bias_kernel<TC, TC><<<blocks, threads, 0, stream>>>(static_cast<TC*>(p.c),
                                                              static_cast<const TC*>(p.bias), p.m,
                                                              p.n, ldc, p.batch, p.stride_c);
    }
  });
  GRAFT_CUDA_CHECK_LAUNCH();
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(gemm, GemmParams, cuda::launch_gemm);
}  // namespace graft
