// The FP8 GEMM through cuBLASLt (Hopper): TN layout, per-tensor scale-inverse pointers, f32
// accumulation, optional fast accumulation. Math and conventions: kernels/fp8.h.
//
// Row-major C[m, n] = A[m, k] B[n, k]^T is, column-major, C^T[n, m] = B[k, n]^T A[k, m]: cuBLASLt
// sees A' = our B with op T and B' = our A with op N — the "TN" form FP8 needs. Its A-scale is
// our b_scale_inv and its B-scale our a_scale_inv. cuBLASLt wants m, n, k multiples of 16 for
// FP8: other sizes are copied into zero-padded buffers (zero rows and columns add nothing) and C
// is copied back; the log is never needed because no other precision is ever used.
//
// Bias (the forward GEMM of a linear with a bias): cuBLASLt's CUBLASLT_EPILOGUE_BIAS adds a vector
// over its rows (M = our n), i.e. bias[j] to column j of our C, in f32 before D is rounded (as TE
// runs its FP8 fprop). The bias is read over the padded n, so a padded shape or a bias pointer
// that is not 16-byte aligned gets a zero-padded copy. Where the heuristic has no FP8 algorithm
// with the epilogue for these types (say an f32 bias with a bf16 C), the plan runs without it and
// fp8_gemm_add_bias adds the bias after the GEMM, and the log says so once per shape.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "framework/core/cuda/caching_allocator.h"
#include "framework/core/cuda/cuda_check.h"
#include "framework/core/cuda/stream.h"
#include "kernels/cuda/cublaslt_util.h"
#include "kernels/cuda/fp8_bias.h"
#include "kernels/fp8.h"

namespace graft::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::kF8E4M3:
      return CUDA_R_8F_E4M3;
    case DType::kF8E5M2:
      return CUDA_R_8F_E5M2;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF32:
      return CUDA_R_32F;
    default:
      GRAFT_CHECK(false, "fp8_gemm: unsupported dtype ", dtype_name(t));
  }
  return CUDA_R_32F;
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool fused_bias = false;  // the epilogue adds the bias (else none, or fp8_gemm_add_bias)
};

// m, n, k (padded), a, b, c dtypes, fast accumulation, the bias dtype (-1: no bias).
using PlanKey = std::tuple<int64_t, int64_t, int64_t, int, int, int, bool, int>;

// `run(plan, algo)` launches the matmul with `algo` for GRAFT_GEMM_TUNE (empty: no tuning).
using TuneRun = std::function<void(Plan&, const cublasLtMatmulAlgo_t&)>;

// with_bias: the plan has the bias epilogue (nullptr when the heuristic has no such algorithm,
// and the caller builds one without it).
std::unique_ptr<Plan> build_plan(const PlanKey& key, bool with_bias, cudaStream_t stream,
                                 const TuneRun& run) {
  const auto [m, n, k, at, bt, ct, fast, bias_t] = key;
  auto plan = std::make_unique<Plan>();
  plan->fused_bias = with_bias;
  GRAFT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  GRAFT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  GRAFT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  const int8_t fa = fast ? 1 : 0;
  GRAFT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fa, sizeof(fa)));
  if (with_bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                      &epi, sizeof(epi)));
    const cudaDataType_t bias_type = cuda_type(DType(bias_t));
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
  }
  // cuBLASLt's A is our B ([n, k] row-major = [k, n] column-major), its B is our A.
  GRAFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->la, cuda_type(DType(bt)), k, n, k));
  GRAFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->lb, cuda_type(DType(at)), k, m, k));
  GRAFT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->lc, cuda_type(DType(ct)), n, m, n));
  cublasLtMatmulPreference_t pref = nullptr;
  GRAFT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = kWorkspaceBytes;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  bool found = false;
  const std::string what =
      str("fp8_gemm m=", m, " n=", n, " k=", k, " ", dtype_name(DType(at)), " x ",
          dtype_name(DType(bt)), "->", dtype_name(DType(ct)), fast ? " fast-accum" : "",
          with_bias ? str(" +bias ", dtype_name(DType(bias_t))) : std::string());
  Plan* raw = plan.get();
  std::function<void(const cublasLtMatmulAlgo_t&)> tune_run;
  if (run) tune_run = [&](const cublasLtMatmulAlgo_t& algo) { run(*raw, algo); };
  const AlgoChoice choice = choose_algo(plan->desc, plan->la, plan->lb, plan->lc, plan->lc, pref,
                                        stream, what, tune_run, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (!found && with_bias) {
    std::fprintf(stderr,
                 "[graft] %s: cuBLASLt has no FP8 algorithm with the bias epilogue; the bias is "
                 "added by a separate kernel after the GEMM\n",
                 what.c_str());
    cublasLtMatrixLayoutDestroy(plan->la);
    cublasLtMatrixLayoutDestroy(plan->lb);
    cublasLtMatrixLayoutDestroy(plan->lc);
    cublasLtMatmulDescDestroy(plan->desc);
    return nullptr;
  }
  GRAFT_CHECK(found, "fp8_gemm: cuBLASLt has no FP8 algorithm for m=", m, " n=", n, " k=", k,
              " a=", dtype_name(DType(at)), " b=", dtype_name(DType(bt)),
              " c=", dtype_name(DType(ct)));
  plan->algo = choice.algo;
  return plan;
}

int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

// Copies a [rows, cols] row-major matrix of `elem`-byte elements into the top-left of a
// [prow, pcol] zero-filled one (or back, when `back`).
void copy_pad(void* padded, const void* src, int64_t rows, int64_t cols, int64_t pcols, size_t elem,
              cudaStream_t s, bool back) {
  if (back) {
    GRAFT_CUDA_CHECK(cudaMemcpy2DAsync(const_cast<void*>(src), cols * elem, padded, pcols * elem,
                                       cols * elem, rows, cudaMemcpyDeviceToDevice, s));
  } else {
    GRAFT_CUDA_CHECK(cudaMemcpy2DAsync(padded, pcols * elem, src, cols * elem, cols * elem, rows,
                                       cudaMemcpyDeviceToDevice, s));
  }
}

void launch_fp8_gemm(const Fp8GemmParams& p) {
  GRAFT_CHECK(!(p.a_dtype == DType::kF8E5M2 && p.b_dtype == DType::kF8E5M2),
              "fp8_gemm: E5M2 x E5M2 is not supported by cuBLASLt (one operand must be E4M3)");
  GRAFT_CHECK(p.c_dtype == DType::kBF16 || p.c_dtype == DType::kF32,
              "fp8_gemm: C must be bf16 "
              "or f32, got ",
              dtype_name(p.c_dtype));
  GRAFT_CHECK(!p.bias || p.bias_dtype == DType::kBF16 || p.bias_dtype == DType::kF32,
              "fp8_gemm: the bias must be bf16 or f32, got ", dtype_name(p.bias_dtype));
  if (p.m == 0 || p.n == 0) return;
  DeviceGuard g(p.device.index);
  cudaStream_t stream = stream_or_current(p.stream, p.device);
  auto& alloc = CachingAllocator::instance();
  const int64_t mp = round16(p.m), np = round16(p.n), kp = round16(std::max<int64_t>(p.k, 1));
  const bool pad = mp != p.m || np != p.n || kp != p.k;
  const size_t cb = dtype_size(p.c_dtype);
  const void *a = p.a, *b = p.b;
  void* c = p.c;
  void *pa = nullptr, *pb = nullptr, *pc = nullptr;
  if (pad) {
    pa = alloc.allocate(mp * kp, p.device.index, stream);
    pb = alloc.allocate(np * kp, p.device.index, stream);
    pc = alloc.allocate(mp * np * cb, p.device.index, stream);
    GRAFT_CUDA_CHECK(cudaMemsetAsync(pa, 0, mp * kp, stream));
    GRAFT_CUDA_CHECK(cudaMemsetAsync(pb, 0, np * kp, stream));
    GRAFT_CUDA_CHECK(cudaMemsetAsync(pc, 0, mp * np * cb, stream));
    if (p.k > 0) {
      copy_pad(pa, p.a, p.m, p.k, kp, 1, stream, false);
      copy_pad(pb, p.b, p.n, p.k, kp, 1, stream, false);
    }
    if (p.beta != 0.0f) copy_pad(pc, p.c, p.m, p.n, np, cb, stream, false);
    a = pa;
    b = pb;
    c = pc;
  }
  // The epilogue reads np bias entries from a 16-byte aligned pointer.
  const void* bias = p.bias;
  void* pbias = nullptr;
  const size_t bb = p.bias ? dtype_size(p.bias_dtype) : 0;
  if (p.bias && (np != p.n || reinterpret_cast<uintptr_t>(p.bias) % 16 != 0)) {
    pbias = alloc.allocate(np * bb, p.device.index, stream);
    GRAFT_CUDA_CHECK(cudaMemsetAsync(pbias, 0, np * bb, stream));
    GRAFT_CUDA_CHECK(cudaMemcpyAsync(pbias, p.bias, p.n * bb, cudaMemcpyDeviceToDevice, stream));
    bias = pbias;
  }
  const PlanKey key{mp,
                    np,
                    kp,
                    static_cast<int>(p.a_dtype),
                    static_cast<int>(p.b_dtype),
                    static_cast<int>(p.c_dtype),
                    p.fast_accum,
                    p.bias ? static_cast<int>(p.bias_dtype) : -1};
  static std::mutex mu;
  static auto* cache = new std::map<PlanKey, std::unique_ptr<Plan>>();  // leaked: used until exit
  std::lock_guard<std::mutex> lock(mu);  // the cached descriptor gets this call's scale pointers
  const float alpha = p.alpha, beta = p.beta;
  void* ws = cublaslt_workspace(p.device.index, stream, kWorkspaceBytes);
  auto launch = [&](Plan& plan, const cublasLtMatmulAlgo_t& algo, void* out) {
    if (plan.fused_bias)
      GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &p.b_scale_inv, sizeof(p.b_scale_inv)));
    GRAFT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &p.a_scale_inv, sizeof(p.a_scale_inv)));
    GRAFT_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(), plan.desc, &alpha, b, plan.la, a, plan.lb,
                                      &beta, out, plan.lc, out, plan.lc, &algo, ws, kWorkspaceBytes,
                                      stream));
  };
  auto it = cache->find(key);
  if (it == cache->end()) {
    // Tuning candidates write C itself when beta = 0 (the real launch overwrites it), else a
    // scratch of C's size when that is small, else there is no tuning (cublaslt_util.h).
    constexpr size_t kMaxTuneScratch = size_t{256} << 20;
    const size_t c_bytes = static_cast<size_t>(mp * np) * cb;
    void* scratch = nullptr;
    void* c_tune = c;
    if (beta != 0.0f && gemm_tuning_enabled()) {
      if (c_bytes <= kMaxTuneScratch) {
        scratch = alloc.allocate(c_bytes, p.device.index, stream);
        c_tune = scratch;
      } else {
        c_tune = nullptr;
      }
    }
    TuneRun run;
    if (c_tune) {
      run = [&](Plan& plan, const cublasLtMatmulAlgo_t& algo) { launch(plan, algo, c_tune); };
    }
    std::unique_ptr<Plan> built;
    if (p.bias) built = build_plan(key, true, stream, run);
    if (!built) built = build_plan(key, false, stream, run);
    it = cache->emplace(key, std::move(built)).first;
    if (scratch) alloc.release(scratch);
  }
  Plan* plan = it->second.get();
  launch(*plan, plan->algo, c);
  if (pad) {
    copy_pad(pc, p.c, p.m, p.n, np, cb, stream, true);
    alloc.release(pa);
    alloc.release(pb);
    alloc.release(pc);
  }
  if (p.bias && !plan->fused_bias)
    fp8_gemm_add_bias(p.c, p.c_dtype, p.bias, p.bias_dtype, p.m, p.n, stream);
  if (pbias) alloc.release(pbias);
}

}  // namespace
}  // namespace graft::cuda

namespace graft {
GRAFT_REGISTER_CUDA_KERNEL(fp8_gemm, Fp8GemmParams, cuda::launch_fp8_gemm);
}  // namespace graft
