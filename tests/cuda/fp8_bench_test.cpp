// FP8 cast timings on the GPU (disabled by default; run with
//   test_cuda --gtest_also_run_disabled_tests --gtest_filter=CudaBench.DISABLED_Fp8CastTimings).
// One line per kernel: name, shape, ms per call (each timed run is 20 back-to-back calls, so that
// the host round trip does not count; median of 10 runs after 3 warm-up runs, as bench_test.cpp),
// GB/s counting the bytes read once plus the bytes written, and that as a share of a
// device-to-device copy of 8192 x 16384 bf16 measured first. Shapes: the Llama 3.2 1B FP8
// step's (4 x 2048 tokens, hidden 2048, ffn 8192). Nothing is asserted on speed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "kernels/activation.h"
#include "kernels/elementwise.h"
#include "kernels/fp8.h"
#include "kernels/fp8_norm.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

Tensor rand_dev(const Shape& s, DType dt, std::mt19937& rng) {
  return to_gpu(random_host(s, rng, DType::kF32, -2.0f, 2.0f), dt);
}

double g_copy_gbs = 0.0;  // the copy's GB/s, for the shares

// ms per call of fn: the median run of 20 calls, divided by 20.
double per_call_ms(const std::function<void()>& fn) {
  constexpr int kCalls = 20;
  return median_ms([&] {
           for (int i = 0; i < kCalls; ++i) fn();
         }) /
         kCalls;
}

void report(const std::string& name, double ms, double bytes) {
  const double gbs = bytes / 1e6 / ms;
  std::printf("BENCH %-44s %8.3f ms %7.0f GB/s  %5.1f%% of copy\n", name.c_str(), ms, gbs,
              g_copy_gbs > 0 ? 100.0 * gbs / g_copy_gbs : 0.0);
}

TEST(CudaBench, DISABLED_Fp8CastTimings) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t T = 8192, H = 2048, F = 8192;
  Tensor scale = Tensor::from_vector(std::vector<float>{64.0f}, {1}).to(gpu());
  Tensor amax = Tensor::zeros({1}, DType::kF32, gpu()), si = Tensor::zeros({1}, DType::kF32, gpu());
  {  // the reference: a device-to-device copy of 8192 x 16384 bf16
    Tensor a = rand_dev({T, 2 * F}, DType::kBF16, rng),
           b = Tensor::empty({T, 2 * F}, DType::kBF16, gpu());
    const double ms = per_call_ms([&] { b.copy_from(a); });
    g_copy_gbs = 2.0 * a.nbytes() / 1e6 / ms;
    report("copy bf16 [8192,16384]", ms, 2.0 * a.nbytes());
  }
  // fp8_quantize: q only, q + qt, and the weights' q + qt.
  struct Cast {
    const char* name;
    int64_t rows, cols;
    bool qt;
  };
  for (Cast c : {Cast{"cast bf16->e4m3 [8192,16384] q", T, 2 * F, false},
                 Cast{"cast+transpose [8192,16384] q+qt", T, 2 * F, true},
                 Cast{"cast+transpose [8192,2048] q+qt", T, H, true},
                 Cast{"cast+transpose [8192,3072] q+qt", T, 3072, true},
                 Cast{"weight cast+transpose [16384,2048] q+qt", 2 * F, H, true},
                 Cast{"weight cast+transpose [2048,8192] q+qt", H, F, true},
                 Cast{"weight cast+transpose [3072,2048] q+qt", 3072, H, true}}) {
    Tensor x = rand_dev({c.rows, c.cols}, DType::kBF16, rng);
    Tensor q = Tensor::empty({c.rows, c.cols}, DType::kF8E4M3, gpu());
    Tensor qt = Tensor::empty({c.cols, c.rows}, DType::kF8E4M3, gpu());
    Fp8QuantizeParams p;
    p.x = x.raw();
    p.x_dtype = DType::kBF16;
    p.q = q.raw();
    p.qt = c.qt ? qt.raw() : nullptr;
    p.rows = c.rows;
    p.cols = c.cols;
    p.scale = static_cast<const float*>(scale.raw());
    p.amax = static_cast<float*>(amax.raw());
    p.scale_inv = static_cast<float*>(si.raw());
    p.device = gpu();
    const double n = static_cast<double>(c.rows * c.cols);
    report(c.name, per_call_ms([&] { fp8_quantize(p); }), n * (2 + 1 + (c.qt ? 1 : 0)));
  }
  // fp8_quantize_dbias: a grad-output cast + transpose with the bias gradient (E5M2), against
  // the cast + transpose followed by sum_rows, the pair it replaces. [8192, 4608]: Qwen2-7B's qkv
  // (3584 + 2 x 512, three segments); [8192, 2048]: one bias over a 1B-wide output.
  for (int64_t cols : {int64_t{4608}, H}) {
    Tensor x = rand_dev({T, cols}, DType::kBF16, rng);
    Tensor q = Tensor::empty({T, cols}, DType::kF8E5M2, gpu()), qt = q.clone();
    Tensor db = Tensor::zeros({cols}, DType::kF32, gpu());
    Fp8QuantizeDbiasParams p;
    p.x = x.raw();
    p.x_dtype = DType::kBF16;
    p.q = q.raw();
    p.qt = qt.raw();
    p.fp8 = DType::kF8E5M2;
    p.rows = T;
    p.cols = cols;
    p.scale = static_cast<const float*>(scale.raw());
    p.amax = static_cast<float*>(amax.raw());
    p.scale_inv = static_cast<float*>(si.raw());
    p.device = gpu();
    auto* d = static_cast<float*>(db.raw());
    if (cols == 4608)
      p.dbias = {{d, 0, 3584, false}, {d + 3584, 3584, 512, false}, {d + 4096, 4096, 512, false}};
    else
      p.dbias = {{d, 0, cols, false}};
    const double bytes = T * cols * (2.0 + 1.0 + 1.0);
    const std::string shape = str("[", T, ",", cols, "]");
    report("cast+transpose+dbias " + shape, per_call_ms([&] { fp8_quantize_dbias(p); }), bytes);
    report("cast+transpose, then sum_rows " + shape, per_call_ms([&] {
             fp8_quantize(p);
             for (const Fp8DbiasSegment& s : p.dbias) {
               SumRowsParams r;
               r.x = static_cast<const char*>(x.raw()) + 2 * s.offset;
               r.out = s.out;
               r.rows = T;
               r.cols = s.size;
               r.ld = cols;
               r.accumulate = false;
               r.dtype = DType::kBF16;
               r.device = gpu();
               sum_rows(r);
             }
           }),
           bytes);
  }
  {  // amax_reduce, current scaling's pass before the cast
    Tensor x = rand_dev({T, 2 * F}, DType::kBF16, rng);
    AmaxParams a;
    a.x = x.raw();
    a.dtype = DType::kBF16;
    a.n = x.numel();
    a.amax = static_cast<float*>(amax.raw());
    a.device = gpu();
    report("amax_reduce bf16 [8192,16384]", per_call_ms([&] { amax_reduce(a); }), 2.0 * x.numel());
  }
  {  // fp8_act_quantize: SwiGLU of fc1's [8192, 2 x 8192] into fc2's q + qt [8192, 8192]
    Tensor h = rand_dev({T, 2 * F}, DType::kBF16, rng);
    Tensor q = Tensor::empty({T, F}, DType::kF8E4M3, gpu()), qt = q.clone();
    Fp8ActQuantizeParams p;
    p.h = h.raw();
    p.h_dtype = DType::kBF16;
    p.act = Activation::kSwiglu;
    p.q = q.raw();
    p.qt = qt.raw();
    p.rows = T;
    p.cols = F;
    p.scale = static_cast<const float*>(scale.raw());
    p.amax = static_cast<float*>(amax.raw());
    p.scale_inv = static_cast<float*>(si.raw());
    p.device = gpu();
    report("act+cast swiglu [8192,2x8192]->q+qt", per_call_ms([&] { fp8_act_quantize(p); }),
           T * F * (4.0 + 2.0));
  }
  {  // fp8_act_bwd_quantize: SwiGLU's backward (da [8192, 8192], h [8192, 2 x 8192]) into fc1's
     // grad-output q + qt [8192, 2 x 8192] E5M2, against activation_bwd + the cast it replaces
    Tensor h = rand_dev({T, 2 * F}, DType::kBF16, rng), da = rand_dev({T, F}, DType::kBF16, rng);
    Tensor q = Tensor::empty({T, 2 * F}, DType::kF8E5M2, gpu()), qt = q.clone();
    Tensor dh = Tensor::empty({T, 2 * F}, DType::kBF16, gpu());
    Fp8ActBwdQuantizeParams p;
    p.da = da.raw();
    p.h = h.raw();
    p.dtype = DType::kBF16;
    p.act = Activation::kSwiglu;
    p.q = q.raw();
    p.qt = qt.raw();
    p.fp8 = DType::kF8E5M2;
    p.rows = T;
    p.cols = F;
    p.scale = static_cast<const float*>(scale.raw());
    p.amax = static_cast<float*>(amax.raw());
    p.scale_inv = static_cast<float*>(si.raw());
    p.device = gpu();
    const double bytes = T * F * (2.0 + 4.0 + 4.0);
    setenv("GRAFT_FP8_FUSED_ACT_BWD", "1", 1);
    report("dswiglu+cast fused [8192,8192]->q+qt", per_call_ms([&] { fp8_act_bwd_quantize(p); }),
           bytes);
    unsetenv("GRAFT_FP8_FUSED_ACT_BWD");
    report("dswiglu+cast default [8192,8192]->q+qt", per_call_ms([&] { fp8_act_bwd_quantize(p); }),
           bytes);
    ActBwdParams b;
    b.dy = da.raw(), b.x = h.raw(), b.dx = dh.raw(), b.rows = T, b.cols = F;
    b.act = Activation::kSwiglu, b.dtype = DType::kBF16, b.device = gpu();
    Fp8QuantizeParams c;
    c.x = dh.raw(), c.x_dtype = DType::kBF16, c.q = q.raw(), c.qt = qt.raw(),
    c.fp8 = DType::kF8E5M2;
    c.rows = T, c.cols = 2 * F, c.scale = p.scale, c.amax = p.amax, c.scale_inv = p.scale_inv;
    c.device = gpu();
    report("  unfused: activation_bwd, then the cast", per_call_ms([&] {
             activation_bwd(b);
             fp8_quantize(c);
           }),
           bytes);
  }
  {  // fp8_norm_quantize: RMSNorm of [8192, 2048] bf16 into q + qt (delayed scaling: one pass)
    Tensor x = rand_dev({T, H}, DType::kBF16, rng), g = rand_dev({H}, DType::kBF16, rng);
    Tensor q = Tensor::empty({T, H}, DType::kF8E4M3, gpu()), qt = q.clone();
    Tensor rstd = Tensor::empty({T}, DType::kF32, gpu());
    Fp8NormQuantizeParams p;
    p.x = x.raw();
    p.gamma = g.raw();
    p.rstd = static_cast<float*>(rstd.raw());
    p.q = q.raw();
    p.qt = qt.raw();
    p.scale = static_cast<const float*>(scale.raw());
    p.amax = static_cast<float*>(amax.raw());
    p.scale_inv = static_cast<float*>(si.raw());
    p.rows = T;
    p.cols = H;
    p.dtype = p.weight_dtype = DType::kBF16;
    p.device = gpu();
    report("rmsnorm+cast [8192,2048]->q+qt", per_call_ms([&] { fp8_norm_quantize(p); }),
           T * H * (2.0 + 2.0) + T * 4.0);
  }
}

}  // namespace
}  // namespace graft
