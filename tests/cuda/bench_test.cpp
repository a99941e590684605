// Kernel timings on the GPU (disabled by default: run with --gtest_also_run_disabled_tests).
// Each figure is the median of 10 timed runs after 3 warm-up runs, timed on the host around a
// device synchronisation (each run is long enough that the launch overhead is negligible).
// Inputs are random (never zeros). Printed figures only; nothing is asserted on speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "kernels/activation.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/norm.h"
#include "kernels/qkv.h"
#include "kernels/rope.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

// Random device tensor without a host round trip per element: one host tensor, copied.
Tensor rand_dev(const Shape& s, DType dt, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  return to_gpu(random_host(s, rng, DType::kF32, lo, hi), dt);
}

// The 1B step's qkv split + RoPE on `rows` tokens (32 query / 8 KV heads of 64, grouped,
// positions 0..2047 per sequence): the tensors and the params of the forward split.
struct QkvRope1B {
  static constexpr int64_t hq = 32, hkv = 8, d = 64, w = (hq + 2 * hkv) * d, maxpos = 2048;
  Tensor qkv, q, k, v, cs_d, sn_d, pos;
  QkvSplitParams p;
  QkvRope1B(int64_t rows, std::mt19937& rng) {
    qkv = rand_dev({rows, w}, DType::kBF16, rng);
    q = Tensor::empty({rows, hq * d}, DType::kBF16, gpu());
    k = Tensor::empty({rows, hkv * d}, DType::kBF16, gpu());
    v = k.clone();
    Tensor cs = Tensor::empty({maxpos, d / 2}, DType::kF32), sn = cs.clone();
    RopeFreqParams fp;
    fp.rotary_dim = d;
    rope_cos_sin_table(fp, maxpos, cs.data<float>(), sn.data<float>());
    cs_d = cs.to(gpu());
    sn_d = sn.to(gpu());
    std::vector<int64_t> pv(rows);
    for (int64_t i = 0; i < rows; ++i) pv[i] = i % maxpos;
    pos = Tensor::from_vector(pv, {rows / maxpos, maxpos}).to(gpu());
    p.qkv = qkv.raw(), p.q = q.raw(), p.k = k.raw(), p.v = v.raw(), p.rows = rows;
    p.heads_q = hq, p.heads_kv = hkv, p.head_dim = d, p.grouped = true;
    p.dtype = DType::kBF16, p.device = gpu();
    p.rope.cos = static_cast<const float*>(cs_d.raw());
    p.rope.sin = static_cast<const float*>(sn_d.raw());
    p.rope.positions = static_cast<const int64_t*>(pos.raw()), p.rope.seq = maxpos;
    p.rope.max_positions = maxpos;
  }
};

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

// The fused kernels of issue 11 at the Llama 3.2 1B step's shapes (4 x 2048 tokens): residual
// add + RMSNorm (forward: read x and r, write s and y; backward: read dy, x, dres, write dx; the
// dgamma pass reads dy and x again), qkv split with RoPE (read qkv, write q, k, v, and back), and
// the global gradient norm over the 1B's gradient shapes (1.24e9 f32, 4.9 GB read once).
TEST(CudaBench, DISABLED_FusedKernelTimings) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t rows = 8192, H = 2048;
  {
    Tensor x = rand_dev({rows, H}, DType::kBF16, rng), r = rand_dev({rows, H}, DType::kBF16, rng);
    Tensor g = rand_dev({H}, DType::kBF16, rng), dres = rand_dev({rows, H}, DType::kBF16, rng);
    Tensor s = Tensor::empty({rows, H}, DType::kBF16, gpu()), y = s.clone();
    Tensor dx = s.clone(), rstd = Tensor::empty({rows}, DType::kF32, gpu());
    Tensor dg = Tensor::zeros({H}, DType::kF32, gpu());
    NormFwdParams f;
    f.x = x.raw(), f.residual = r.raw(), f.residual_out = s.raw(), f.gamma = g.raw();
    f.y = y.raw(), f.rstd = static_cast<float*>(rstd.raw()), f.rows = rows, f.cols = H;
    f.dtype = f.weight_dtype = DType::kBF16, f.device = gpu();
    NormBwdParams b;
    b.dy = y.raw(), b.x = s.raw(), b.gamma = g.raw(), b.rstd = f.rstd, b.dx = dx.raw();
    b.dresidual = dres.raw(), b.dgamma = static_cast<float*>(dg.raw()), b.rows = rows;
    b.cols = H, b.dtype = b.weight_dtype = DType::kBF16, b.device = gpu();
    const double fwd = median_ms([&] { rmsnorm_fwd(f); });
    const double bwd = median_ms([&] { rmsnorm_bwd(b); });
    const double gb = rows * H * 2.0 / 1e6;
    std::printf(
        "BENCH add+rmsnorm bf16 8192x2048: fwd %.3f ms (%.0f GB/s), bwd %.3f ms (%.0f GB/s)\n", fwd,
        4 * gb / fwd, bwd, 6 * gb / bwd);
  }
  {
    QkvRope1B qr(rows, rng);
    const QkvSplitParams& p = qr.p;
    const int64_t w = qr.w;
    const double split = median_ms([&] { qkv_split(p); });
    QkvSplitParams m = p;
    m.merge = true;
    const double merge = median_ms([&] { qkv_split(m); });
    const double gb = rows * w * 2.0 * 2 / 1e6;
    std::printf(
        "BENCH qkv split+rope bf16 8192x3072: split %.3f ms (%.0f GB/s), merge %.3f ms "
        "(%.0f GB/s)\n",
        split, gb / split, merge, gb / merge);
  }
  {
    std::vector<int64_t> sizes = {128256 * H, H};  // embedding, final norm
    for (int l = 0; l < 16; ++l)
      for (int64_t n : {H, 3072 * H, H * H, H, 16384 * H, H * 8192}) sizes.push_back(n);
    int64_t total = 0;
    for (int64_t n : sizes) total += n;
    Tensor flat = Tensor::empty({total}, DType::kF32, gpu());
    FillParams fl;
    fl.x = flat.raw(), fl.value = 0.5f, fl.n = total, fl.device = gpu();
    fill(fl);
    GradNormParams gp;
    const float* base = static_cast<const float*>(flat.raw());
    for (int64_t n : sizes) {
      gp.grads.push_back(base);
      gp.sizes.push_back(n);
      base += n;
    }
    Tensor out = Tensor::empty({1}, DType::kF32, gpu());
    gp.out = static_cast<float*>(out.raw()), gp.device = gpu();
    const double ms = median_ms([&] { grad_norm(gp); });
    const float norm = to_host_f32(out).to_f32_vector()[0];
    std::printf(
        "BENCH grad_norm %zu tensors, %.3g f32: %.3f ms (%.0f GB/s), norm %.6g (want %.6g)\n",
        sizes.size(), static_cast<double>(total), ms, total * 4.0 / 1e6 / ms, norm,
        0.5 * std::sqrt(static_cast<double>(total)));
  }
}

// One line per memory-bound kernel of the Llama 3.2 1B step (4 x 2048 tokens, hidden 2048, 32 q
// and 8 kv heads of 64): name, shape, ms and GB/s counted as the bytes each must read and write
// (activations, weights, statistics; not the scratch partials nor the L2-resident RoPE tables),
// and that as a share of a device-to-device copy measured here. Each figure is the median over
// 10 samples of 20 back-to-back calls, so the host synchronisation is amortised.
double median_ms_of(const std::function<void()>& fn, int reps = 20) {
  return median_ms([&] {
           for (int i = 0; i < reps; ++i) fn();
         }) /
         reps;
}

TEST(CudaBench, DISABLED_MemoryBoundKernelTimings) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t rows = 8192, H = 2048;
  const double act = rows * H * 2.0;  // one [8192, 2048] bf16 activation, bytes
  double copy_gbs = 0.0;
  auto line = [&](const char* name, const char* shape, double ms, double bytes) {
    const double gbs = bytes / 1e6 / ms;
    std::printf("BENCH %-16s %-28s %8.4f ms %7.0f GB/s %5.1f %% of copy\n", name, shape, ms, gbs,
                copy_gbs > 0 ? 100.0 * gbs / copy_gbs : 100.0);
  };
  {  // the reference: one 128 MiB device-to-device copy (well past the 50 MB L2)
    const int64_t n = int64_t{1} << 26;
    Tensor a = rand_dev({n}, DType::kBF16, rng), b = Tensor::empty({n}, DType::kBF16, gpu());
    Copy2dParams c;
    c.src = a.raw(), c.dst = b.raw(), c.rows = 1, c.cols = n, c.dtype = DType::kBF16;
    c.device = gpu();
    const double ms = median_ms_of([&] { copy_2d(c); }, 5);
    copy_gbs = 2.0 * n * 2 / 1e6 / ms;
    line("copy", "2^26 bf16", ms, 2.0 * n * 2);
  }
  Tensor x = rand_dev({rows, H}, DType::kBF16, rng), r = rand_dev({rows, H}, DType::kBF16, rng);
  Tensor g = rand_dev({H}, DType::kBF16, rng, 0.5f, 1.5f);
  Tensor dres = rand_dev({rows, H}, DType::kBF16, rng), dy = rand_dev({rows, H}, DType::kBF16, rng);
  Tensor s = Tensor::empty({rows, H}, DType::kBF16, gpu()), y = s.clone(), dx = s.clone();
  Tensor rstd = Tensor::empty({rows}, DType::kF32, gpu());
  Tensor dg = Tensor::zeros({H}, DType::kF32, gpu());
  const double stats = rows * 4.0, wts = H * 2.0;
  NormFwdParams f;
  f.x = x.raw(), f.gamma = g.raw(), f.y = y.raw(), f.rstd = static_cast<float*>(rstd.raw());
  f.rows = rows, f.cols = H, f.dtype = f.weight_dtype = DType::kBF16, f.device = gpu();
  line("rmsnorm_fwd", "8192x2048 bf16", median_ms_of([&] { rmsnorm_fwd(f); }),
       2 * act + wts + stats);
  f.residual = r.raw(), f.residual_out = s.raw();
  line("rmsnorm_fwd_add", "8192x2048 bf16", median_ms_of([&] { rmsnorm_fwd(f); }),
       4 * act + wts + stats);
  NormBwdParams b;
  b.dy = dy.raw(), b.x = s.raw(), b.gamma = g.raw(), b.rstd = f.rstd, b.dx = dx.raw();
  b.dgamma = static_cast<float*>(dg.raw()), b.rows = rows, b.cols = H;
  b.dtype = b.weight_dtype = DType::kBF16, b.device = gpu();
  line("rmsnorm_bwd", "8192x2048 bf16", median_ms_of([&] { rmsnorm_bwd(b); }),
       3 * act + wts + stats + H * 8.0);
  b.dresidual = dres.raw();
  line("rmsnorm_bwd_add", "8192x2048 bf16", median_ms_of([&] { rmsnorm_bwd(b); }),
       4 * act + wts + stats + H * 8.0);
  AddParams ad;
  ad.a = x.raw(), ad.b = r.raw(), ad.out = s.raw(), ad.n = rows * H, ad.dtype = DType::kBF16;
  ad.device = gpu();
  line("add", "8192x2048 bf16", median_ms_of([&] { add(ad); }), 3 * act);
  {
    QkvRope1B qr(rows, rng);
    const QkvSplitParams& p = qr.p;
    const int64_t w = qr.w;
    const double bytes = rows * w * 2.0 * 2 + rows * 8.0;
    line("qkv_split_rope", "8192x3072 bf16 32/8x64", median_ms_of([&] { qkv_split(p); }), bytes);
    QkvSplitParams m = p;
    m.merge = true;
    line("qkv_merge_rope", "8192x3072 bf16 32/8x64", median_ms_of([&] { qkv_split(m); }), bytes);
  }
  {  // SwiGLU at the 1B's ffn (8192): forward reads gate | up and writes h; backward reads dh,
     // gate | up and writes dgate | dup.
    const int64_t F = 8192;
    Tensor gu = rand_dev({rows, 2 * F}, DType::kBF16, rng),
           h = rand_dev({rows, F}, DType::kBF16, rng);
    Tensor dgu = Tensor::empty({rows, 2 * F}, DType::kBF16, gpu());
    ActFwdParams af;
    af.x = gu.raw(), af.y = h.raw(), af.rows = rows, af.cols = F, af.dtype = DType::kBF16;
    af.device = gpu();
    const double hb = rows * F * 2.0;
    line("swiglu_fwd", "8192x8192 bf16", median_ms_of([&] { activation_fwd(af); }), 3 * hb);
    ActBwdParams ab;
    ab.dy = h.raw(), ab.x = gu.raw(), ab.dx = dgu.raw(), ab.rows = rows, ab.cols = F;
    ab.dtype = DType::kBF16, ab.device = gpu();
    line("swiglu_bwd", "8192x8192 bf16", median_ms_of([&] { activation_bwd(ab); }), 5 * hb);
  }
  {  // Cross-entropy over the 1B's vocabulary, in place: the bytes that must move are one read of
     // the logits and one write of dlogits (the two kernels read the logits twice).
    const int64_t V = 128256;
    Tensor lg = rand_dev({rows, V}, DType::kBF16, rng, -4.0f, 4.0f);
    std::vector<int64_t> tg(rows);
    for (int64_t i = 0; i < rows; ++i) tg[i] = (i * 7919) % V;
    Tensor t = Tensor::from_vector(tg, {rows}).to(gpu());
    Tensor loss = Tensor::zeros({1}, DType::kF32, gpu()),
           lse = Tensor::empty({rows}, DType::kF32, gpu());
    XentFwdParams xf;
    xf.logits = lg.raw(), xf.targets = static_cast<const int64_t*>(t.raw());
    xf.loss = static_cast<float*>(loss.raw()), xf.lse = static_cast<float*>(lse.raw());
    xf.n = rows, xf.vocab = V, xf.dtype = DType::kBF16, xf.device = gpu();
    XentBwdParams xb;
    xb.logits = lg.raw(), xb.targets = xf.targets, xb.lse = xf.lse, xb.dlogits = lg.raw();
    xb.n = rows, xb.vocab = V, xb.dtype = DType::kBF16, xb.device = gpu();
    const double bytes = 2.0 * rows * V * 2;
    line("xent_fwd+bwd", "8192x128256 bf16",
         median_ms_of(
             [&] {
               cross_entropy_fwd(xf);
               cross_entropy_bwd(xb);
             },
             5),
         bytes);
  }
}

}  // namespace
}  // namespace graft
