// CUDA AdamW (single and multi-tensor, bf16 copies, per-tensor decay) and the global gradient
// norm against the CPU reference.
#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct Slot {
  Tensor p, g, m, v;  // host f32
  Tensor dp, dg, dm, dv, dcopy;
};

TEST(CudaAdamW, MultiTensorMatchesCpuOverSteps) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  // Many tensors of awkward sizes (more than one launch's worth) including empty ones.
  std::vector<int64_t> sizes;
  for (int i = 0; i < 170; ++i) sizes.push_back(i % 17 == 0 ? 0 : (i * 977) % 5003 + 1);
  sizes.push_back(71 * 229);
  std::vector<Slot> s(sizes.size());
  AdamWMultiParams cpu_p, gpu_p;
  cpu_p.copy_dtype = gpu_p.copy_dtype = DType::kBF16;
  gpu_p.device = gpu();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t n = sizes[i];
    s[i].p = random_host({n}, rng);
    s[i].g = random_host({n}, rng, DType::kF32, -0.1f, 0.1f);
    s[i].m = random_host({n}, rng, DType::kF32, -0.01f, 0.01f);
    s[i].v = random_host({n}, rng, DType::kF32, 0.0f, 0.001f);
    s[i].dp = s[i].p.to(gpu()), s[i].dg = s[i].g.to(gpu());
    s[i].dm = s[i].m.to(gpu()), s[i].dv = s[i].v.to(gpu());
    s[i].dcopy = poisoned({n}, DType::kBF16);
    const float wd = i % 3 == 0 ? 0.0f : 0.1f;
    cpu_p.tensors.push_back({s[i].p.data<float>(), s[i].g.data<float>(), s[i].m.data<float>(),
                             s[i].v.data<float>(), nullptr, n, wd});
    gpu_p.tensors.push_back({static_cast<float*>(s[i].dp.raw()),
                             static_cast<const float*>(s[i].dg.raw()),
                             static_cast<float*>(s[i].dm.raw()), static_cast<float*>(s[i].dv.raw()),
                             s[i].dcopy.raw(), n, wd});
  }
  for (int64_t step = 1; step <= 3; ++step) {
    AdamWHyper h;
    h.lr = 1e-2f, h.step = step, h.grad_scale = 0.8f;
    cpu_p.hyper = gpu_p.hyper = h;
    adamw_multi_step(cpu_p);
    adamw_multi_step(gpu_p);
  }
  // Same f32 formula on both sides; the GPU may contract a*b+c into one FMA (one rounding
  // instead of two), a difference of about an ulp per operation over 3 steps.
  Tol t{1e-6, 2e-5};
  for (size_t i = 0; i < s.size(); i += 7) {
    if (sizes[i] == 0) continue;
    expect_close(s[i].dp, s[i].p, t, str("param ", i));
    expect_close(s[i].dm, s[i].m, t, str("m ", i));
    expect_close(s[i].dv, s[i].v, t, str("v ", i));
    expect_close(s[i].dcopy, s[i].p, kBF16Tol, str("bf16 copy ", i));
  }
}

TEST(CudaAdamW, SingleTensorMatchesCpu) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 29 * 541;
  Tensor p = random_host({n}, rng), g = random_host({n}, rng), m = random_host({n}, rng);
  Tensor v = random_host({n}, rng, DType::kF32, 0.0f, 1.0f);
  Tensor dp = p.to(gpu()), dg = g.to(gpu()), dm = m.to(gpu()), dv = v.to(gpu());
  AdamWParams a;
  a.n = n, a.hyper.lr = 3e-3f, a.hyper.weight_decay = 0.05f, a.hyper.step = 7;
  AdamWParams c = a;
  c.param = p.data<float>(), c.grad = g.data<float>(), c.m = m.data<float>(), c.v = v.data<float>();
  adamw_step(c);
  AdamWParams d = a;
  d.param = static_cast<float*>(dp.raw()), d.grad = static_cast<const float*>(dg.raw());
  d.m = static_cast<float*>(dm.raw()), d.v = static_cast<float*>(dv.raw()), d.device = gpu();
  adamw_step(d);
  Tol t{1e-6, 2e-5};
  expect_close(dp, p, t, "param");
  expect_close(dm, m, t, "m");
  expect_close(dv, v, t, "v");
}

TEST(CudaGradNorm, MatchesCpuAndIsDeterministic) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  std::vector<int64_t> sizes;
  for (int i = 0; i < 200; ++i) sizes.push_back(i % 13 == 0 ? 0 : (i * 7919) % 20011 + 1);
  std::vector<Tensor> host, dev;
  GradNormParams c, g;
  for (int64_t n : sizes) {
    host.push_back(random_host({n}, rng));
    dev.push_back(host.back().to(gpu()));
    c.grads.push_back(host.back().data<float>());
    g.grads.push_back(static_cast<const float*>(dev.back().raw()));
  }
  c.sizes = g.sizes = sizes;
  for (bool squared : {false, true}) {
    Tensor out_h = Tensor::empty({1}, DType::kF32);
    c.out = out_h.data<float>(), c.squared = squared;
    grad_norm(c);
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      Tensor out_d = poisoned({1}, DType::kF32);
      g.out = static_cast<float*>(out_d.raw()), g.squared = squared, g.device = gpu();
      grad_norm(g);
      // Both accumulate in f64; only the final rounding to f32 remains.
      expect_close(out_d, out_h, kF32Tol, squared ? "sum of squares" : "norm");
      auto v = to_host_f32(out_d).to_f32_vector();
      if (run == 0)
        first = v;
      else
        EXPECT_EQ(v, first);
    }
  }
}

// The one-launch norm's edge cases: more tensors than one parameter block holds (two launches
// sharing one completion counter), views one float off 16-byte alignment (the element path),
// a tensor of several chunks (the unrolled float4 loop and its tail), empty tensors, and no
// elements at all (0). Both sides sum in f64, so only the final f32 rounding differs (kF32Tol).
TEST(CudaGradNorm, OneLaunchEdgeCasesMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  std::vector<int64_t> sizes;
  for (int i = 0; i < 1100; ++i) sizes.push_back(i % 17 == 0 ? 0 : (i * 104729) % 3001 + 1);
  sizes.push_back(5 * 16384 + 7);  // several chunks and a tail
  std::vector<Tensor> host, dev;
  GradNormParams c, g;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t off = i % 3 == 1 ? 1 : 0;  // every third view starts one float in
    host.push_back(random_host({sizes[i] + off}, rng));
    dev.push_back(host.back().to(gpu()));
    c.grads.push_back(host.back().data<float>() + off);
    g.grads.push_back(static_cast<const float*>(dev.back().raw()) + off);
  }
  c.sizes = g.sizes = sizes;
  Tensor out_h = Tensor::empty({1}, DType::kF32);
  c.out = out_h.data<float>();
  grad_norm(c);
  Tensor out_d = poisoned({1}, DType::kF32);
  g.out = static_cast<float*>(out_d.raw()), g.device = gpu();
  grad_norm(g);
  expect_close(out_d, out_h, kF32Tol, "norm over 1101 tensors");
  Tensor again = poisoned({1}, DType::kF32);
  g.out = static_cast<float*>(again.raw());
  grad_norm(g);  // the counter was re-zeroed: the same value again
  EXPECT_EQ(to_host_f32(again).to_f32_vector(), to_host_f32(out_d).to_f32_vector());

  GradNormParams none;
  none.grads = {g.grads[0]};
  none.sizes = {0};
  Tensor zero = poisoned({1}, DType::kF32);
  none.out = static_cast<float*>(zero.raw()), none.device = gpu();
  grad_norm(none);
  EXPECT_EQ(to_host_f32(zero).to_f32_vector(), std::vector<float>{0.0f});
}

// Clipping and skipping decided on the device (AdamWHyper::norm_sq/loss) equal the CPU
// reference's prologue: clipped, unclipped, and skipped (non-finite norm or loss: untouched).
TEST(CudaAdamW, DeviceClipAndSkipMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 71 * 229;
  Tensor g = random_host({n}, rng, DType::kF32, -0.1f, 0.1f);
  double sq = 0;
  for (float x : g.to_f32_vector()) sq += static_cast<double>(x) * x;
  const double norm = std::sqrt(sq);
  struct Case {
    float norm_sq, loss;
    double max_norm;
  };
  for (const Case c :
       {Case{static_cast<float>(sq), 2.0f, norm / 4}, Case{static_cast<float>(sq), 2.0f, norm * 4},
        Case{INFINITY, 2.0f, 1.0}, Case{static_cast<float>(sq), NAN, 1.0}}) {
    SCOPED_TRACE(str(c.norm_sq, " ", c.loss, " ", c.max_norm));
    Tensor p = random_host({n}, rng), m = random_host({n}, rng, DType::kF32, -0.01f, 0.01f);
    Tensor v = random_host({n}, rng, DType::kF32, 0.0f, 0.001f);
    Tensor p0 = p.clone();
    Tensor dp = p.to(gpu()), dg = g.to(gpu()), dm = m.to(gpu()), dv = v.to(gpu());
    Tensor scal = Tensor::from_vector(std::vector<float>{c.norm_sq, c.loss}, {2}).to(gpu());
    AdamWMultiParams cp, gp;
    cp.hyper.lr = gp.hyper.lr = 1e-2f;
    cp.hyper.step = gp.hyper.step = 2;
    cp.hyper.max_norm = gp.hyper.max_norm = c.max_norm;
    const float host_scal[2] = {c.norm_sq, c.loss};
    cp.hyper.norm_sq = &host_scal[0], cp.hyper.loss = &host_scal[1];
    gp.hyper.norm_sq = static_cast<const float*>(scal.raw());
    gp.hyper.loss = gp.hyper.norm_sq + 1;
    gp.device = gpu();
    cp.tensors.push_back(
        {p.data<float>(), g.data<float>(), m.data<float>(), v.data<float>(), nullptr, n, 0.1f});
    gp.tensors.push_back({static_cast<float*>(dp.raw()), static_cast<const float*>(dg.raw()),
                          static_cast<float*>(dm.raw()), static_cast<float*>(dv.raw()), nullptr, n,
                          0.1f});
    adamw_multi_step(cp);
    adamw_multi_step(gp);
    expect_close(dp, p, Tol{1e-6, 2e-5}, "param");
    expect_close(dm, m, Tol{1e-6, 2e-5}, "m");
    if (!std::isfinite(c.norm_sq) || !std::isfinite(c.loss))
      expect_close(dp, p0, Tol{0, 0}, "skipped: untouched");
  }
}

// The float4 path (aligned chunks) and the element path (a view one element into its buffer,
// so no chunk is 16-byte aligned) compute the same bits, and both match the CPU.
TEST(CudaAdamW, VectorAndElementPathsAgree) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 3 * 4096 + 37;
  Tensor p = random_host({n}, rng), g = random_host({n}, rng, DType::kF32, -0.1f, 0.1f);
  Tensor m = random_host({n}, rng, DType::kF32, -0.01f, 0.01f);
  Tensor v = random_host({n}, rng, DType::kF32, 0.0f, 0.001f);
  // The same n values placed at element `off` of an n + 1 buffer: off 0 is 16-byte aligned (the
  // float4 path), off 1 is not (the element path); both must give the same bits.
  auto placed = [n](const Tensor& t, int off) {
    std::vector<float> h(static_cast<size_t>(n + 1), 0.0f);
    const std::vector<float> src = t.to_f32_vector();
    std::copy(src.begin(), src.end(), h.begin() + off);
    return Tensor::from_vector(h, {n + 1}).to(gpu());
  };
  Tensor out[2];
  for (int off = 0; off < 2; ++off) {
    Tensor dp = placed(p, off), dg = placed(g, off), dm = placed(m, off), dv = placed(v, off);
    Tensor copy = poisoned({n + 1}, DType::kBF16);
    AdamWMultiParams a;
    a.hyper.lr = 1e-2f, a.hyper.step = 3, a.device = gpu();
    a.tensors.push_back({static_cast<float*>(dp.raw()) + off,
                         static_cast<const float*>(dg.raw()) + off,
                         static_cast<float*>(dm.raw()) + off, static_cast<float*>(dv.raw()) + off,
                         static_cast<char*>(copy.raw()) + 2 * off, n, 0.1f});
    adamw_multi_step(a);
    out[off] = dp.to(Device::cpu()).slice(0, off, n).contiguous();
  }
  expect_close(out[0], out[1], Tol{0, 0}, "float4 vs element path");
  AdamWMultiParams c;
  c.hyper.lr = 1e-2f, c.hyper.step = 3;
  Tensor pc = p.clone(), mc = m.clone(), vc = v.clone();
  c.tensors.push_back(
      {pc.data<float>(), g.data<float>(), mc.data<float>(), vc.data<float>(), nullptr, n, 0.1f});
  adamw_multi_step(c);
  expect_close(out[0], pc, Tol{1e-6, 2e-5}, "vs cpu");
}

// hyper.step_scalars on the GPU: lr and the bias corrections read from a device buffer give the
// same bits as the launch arguments (the buffer is what a replayed CUDA graph reads; the kernel's
// arithmetic is the same instructions either way).
TEST(CudaAdamW, StepScalarsFromDeviceMemoryEqualLaunchArguments) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 4099;
  Tensor p = random_host({n}, rng), g = random_host({n}, rng, DType::kF32, -0.1f, 0.1f);
  Tensor pa = p.to(gpu()), pb = p.to(gpu()), dg = g.to(gpu());
  Tensor ma = Tensor::zeros({n}, DType::kF32, gpu()), mb = ma.clone();
  Tensor va = Tensor::zeros({n}, DType::kF32, gpu()), vb = va.clone();
  Tensor sc = Tensor::empty({3}, DType::kF32, gpu());
  for (int64_t t = 1; t <= 3; ++t) {
    const float lr = 3e-3f * static_cast<float>(t);
    AdamWMultiParams a, b;
    a.device = b.device = gpu();
    a.tensors = {{static_cast<float*>(pa.raw()), static_cast<const float*>(dg.raw()),
                  static_cast<float*>(ma.raw()), static_cast<float*>(va.raw()), nullptr, n, 0.1f}};
    b.tensors = {{static_cast<float*>(pb.raw()), static_cast<const float*>(dg.raw()),
                  static_cast<float*>(mb.raw()), static_cast<float*>(vb.raw()), nullptr, n, 0.1f}};
    a.hyper.lr = lr, a.hyper.step = t;
    b.hyper = a.hyper;
    b.hyper.lr = 1.0f, b.hyper.step = 1;  // ignored: the kernel reads sc
    const AdamWStepScalars s = adamw_step_scalars(lr, a.hyper.beta1, a.hyper.beta2, t);
    sc.copy_from(Tensor::from_vector(std::vector<float>{s.lr, s.step_size, s.bc2_sqrt}, {3}));
    b.hyper.step_scalars = static_cast<const float*>(sc.raw());
    adamw_multi_step(a);
    adamw_multi_step(b);
  }
  EXPECT_EQ(pa.to(Device::cpu()).to_f32_vector(), pb.to(Device::cpu()).to_f32_vector());
  EXPECT_EQ(ma.to(Device::cpu()).to_f32_vector(), mb.to(Device::cpu()).to_f32_vector());
  EXPECT_EQ(va.to(Device::cpu()).to_f32_vector(), vb.to(Device::cpu()).to_f32_vector());
}

}  // namespace
}  // namespace graft
