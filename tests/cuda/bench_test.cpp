// Kernel timings on the GPU (disabled by default: run with --gtest_also_run_disabled_tests).
// Each figure is the median of 10 timed runs after 3 warm-up runs, timed on the host around a
// device synchronisation (each run is long enough that the launch overhead is negligible).
// Inputs are random (never zeros). Printed figures only; nothing is asserted on speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

double median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  device_backend().synchronize(gpu());
  std::vector<double> t;
  for (int i = 0; i < 10; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    device_backend().synchronize(gpu());
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Random device tensor without a host round trip per element: one host tensor, copied.
Tensor rand_dev(const Shape& s, DType dt, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  return to_gpu(random_host(s, rng, DType::kF32, lo, hi), dt);
}

TEST(CudaBench, DISABLED_KernelTimings) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  {  // bf16 GEMM 8192^3, f32 accumulate, bf16 out
    const int64_t n = 8192;
    Tensor a = rand_dev({n, n}, DType::kBF16, rng), b = rand_dev({n, n}, DType::kBF16, rng);
    Tensor c = Tensor::empty({n, n}, DType::kBF16, gpu());
    GemmParams p;
    p.a = a.raw(), p.b = b.raw(), p.c = c.raw(), p.m = p.n = p.k = n, p.trans_b = true;
    p.dtype = p.c_dtype = DType::kBF16, p.device = gpu();
    const double ms = median_ms([&] { gemm(p); });
    std::printf("BENCH gemm bf16 8192^3: %.3f ms, %.1f TFLOP/s\n", ms, 2.0 * n * n * n / ms / 1e9);
  }
  {  // Llama-1B shape attention, unfused fallback: B=4, S=2048, 32/8 heads, D=64, causal
    const int64_t B = 4, S = 2048, Hq = 32, Hkv = 8, D = 64;
    Tensor q = rand_dev({B, S, Hq, D}, DType::kBF16, rng);
    Tensor k = rand_dev({B, S, Hkv, D}, DType::kBF16, rng);
    Tensor v = rand_dev({B, S, Hkv, D}, DType::kBF16, rng);
    Tensor o = Tensor::empty({B, S, Hq, D}, DType::kBF16, gpu());
    Tensor lse = Tensor::empty({B, Hq, S}, DType::kF32, gpu());
    Tensor dq = Tensor::empty({B, S, Hq, D}, DType::kBF16, gpu());
    Tensor dk = Tensor::empty({B, S, Hkv, D}, DType::kBF16, gpu());
    Tensor dv = Tensor::empty({B, S, Hkv, D}, DType::kBF16, gpu());
    AttnShape sh;
    sh.batch = B, sh.seq_q = sh.seq_kv = S, sh.heads_q = Hq, sh.heads_kv = Hkv, sh.head_dim = D;
    AttnFwdParams f;
    f.q = q.raw(), f.k = k.raw(), f.v = v.raw(), f.out = o.raw();
    f.lse = static_cast<float*>(lse.raw()), f.shape = sh, f.dtype = DType::kBF16;
    f.device = gpu();
    AttnBwdParams b;
    b.q = q.raw(), b.k = k.raw(), b.v = v.raw(), b.out = o.raw(), b.dout = o.raw();
    b.lse = static_cast<const float*>(lse.raw()), b.dq = dq.raw(), b.dk = dk.raw();
    b.dv = dv.raw(), b.shape = sh, b.dtype = DType::kBF16, b.device = gpu();
    for (AttnBackend want : {AttnBackend::kUnfused, AttnBackend::kCudnn}) {
      const char* backend = attn_backend_name(want);
      f.backend = b.backend = want;
      const double fwd = median_ms([&] { attn_fwd(f); });
      const double bwd = median_ms([&] { attn_bwd(b); });
      const double flops = 4.0 * B * Hq * S * S * D / 2;  // causal: half of the 2 GEMMs
      std::printf(
          "BENCH attention %s bf16 B4 S2048 H32/8 D64 causal: fwd %.3f ms (%.1f "
          "TFLOP/s), bwd %.3f ms (%.1f TFLOP/s)\n",
          backend, fwd, flops / fwd / 1e9, bwd, 2.5 * flops / bwd / 1e9);
    }
  }
  {  // cross-entropy over the Llama-3 vocabulary: 8192 tokens x 128256, bf16 logits
    const int64_t n = 8192, vocab = 128256;
    Tensor logits = rand_dev({n, vocab}, DType::kBF16, rng, -4.0f, 4.0f);
    std::vector<int64_t> tg(n);
    for (int64_t i = 0; i < n; ++i) tg[i] = (i * 7919) % vocab;
    Tensor targets = Tensor::from_vector(tg, {n}).to(gpu());
    Tensor loss = Tensor::empty({1}, DType::kF32, gpu()),
           lse = Tensor::empty({n}, DType::kF32, gpu());
    XentFwdParams f;
    f.logits = logits.raw(), f.targets = static_cast<const int64_t*>(targets.raw());
    f.loss = static_cast<float*>(loss.raw()), f.lse = static_cast<float*>(lse.raw());
    f.n = n, f.vocab = vocab, f.dtype = DType::kBF16, f.device = gpu();
    XentBwdParams b;
    b.logits = logits.raw(), b.targets = f.targets, b.lse = f.lse, b.dlogits = logits.raw();
    b.n = n, b.vocab = vocab, b.dtype = DType::kBF16, b.device = gpu();
    const double fwd = median_ms([&] { cross_entropy_fwd(f); });
    const double bwd = median_ms([&] { cross_entropy_bwd(b); });
    const double gb = n * vocab * 2.0 / 1e6;
    std::printf(
        "BENCH cross_entropy bf16 8192x128256: fwd %.2f ms (%.0f GB/s), bwd in place "
        "%.2f ms (%.0f GB/s)\n",
        fwd, gb / fwd, bwd, 2 * gb / bwd);
  }
  {  // RMSNorm forward+backward, 8192 x 2048 bf16
    const int64_t rows = 8192, cols = 2048;
    Tensor x = rand_dev({rows, cols}, DType::kBF16, rng), g = rand_dev({cols}, DType::kF32, rng);
    Tensor y = Tensor::empty({rows, cols}, DType::kBF16, gpu());
    Tensor rstd = Tensor::empty({rows}, DType::kF32, gpu()),
           dg = Tensor::zeros({cols}, DType::kF32, gpu());
    NormFwdParams f;
    f.x = x.raw(), f.gamma = g.raw(), f.y = y.raw(), f.rstd = static_cast<float*>(rstd.raw());
    f.rows = rows, f.cols = cols, f.dtype = DType::kBF16, f.device = gpu();
    NormBwdParams b;
    b.dy = y.raw(), b.x = x.raw(), b.gamma = g.raw(), b.rstd = f.rstd, b.dx = y.raw();
    b.dgamma = static_cast<float*>(dg.raw()), b.rows = rows, b.cols = cols;
    b.dtype = DType::kBF16, b.device = gpu();
    const double fwd = median_ms([&] { rmsnorm_fwd(f); });
    const double bwd = median_ms([&] { rmsnorm_bwd(b); });
    const double gb = rows * cols * 2.0 / 1e6;
    std::printf("BENCH rmsnorm bf16 8192x2048: fwd %.3f ms (%.0f GB/s), bwd %.3f ms (%.0f GB/s)\n",
                fwd, 2 * gb / fwd, bwd, 3 * gb / bwd);
  }
}

}  // namespace
}  // namespace graft
