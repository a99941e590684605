// AdamW against torch.optim.AdamW's update written out in double, over several steps; the
// multi-tensor form equals per-tensor steps; global gradient norm against a double sum.
#include "kernels/adamw.h"

#include <cmath>

#include "kernel_test_util.h"

namespace graft {
namespace {

// torch/optim/adamw.py (_single_tensor_adamw), transcribed for one element.
struct TorchAdamW {
  double p, m = 0, v = 0;
  void step(double g, double lr, double b1, double b2, double eps, double wd, int64_t t) {
    p *= 1 - lr * wd;
    m = m * b1 + (1 - b1) * g;  // exp_avg.lerp_(grad, 1 - beta1)
    v = v * b2 + (1 - b2) * g * g;
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    const double step_size = lr / bc1;
    const double denom = std::sqrt(v) / std::sqrt(bc2) + eps;
    p -= step_size * m / denom;
  }
};

TEST(AdamW, FiveStepsMatchTorchFormula) {
  const int64_t n = 229;
  auto param = test::randn(n, 1);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<uint16_t> copy(n);
  std::vector<TorchAdamW> ref;
  for (float x : param) ref.push_back({x});
  const double lr = 3e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
  for (int64_t t = 1; t <= 5; ++t) {
    const auto grad = test::randn(n, 10 + t);
    AdamWParams p;
    p.param = param.data(), p.grad = grad.data(), p.m = m.data(), p.v = v.data();
    p.param_copy = copy.data(), p.n = n;
    p.hyper = {float(lr), float(b1), float(b2), float(eps), float(wd), t, float(gs)};
    adamw_step(p);
    for (int64_t i = 0; i < n; ++i) ref[i].step(grad[i] * gs, lr, b1, b2, eps, wd, t);
  }
  // The kernel runs in f32 (as torch does); each step moves a weight by ~lr, so f32 rounding of
  // p (~1e-7 relative) and of the step (~1e-7 * lr) bound the drift over 5 steps well below 1e-6.
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_NEAR(param[i], ref[i].p, 1e-6 * std::max(1.0, std::abs(ref[i].p))) << i;
    // m and v are sums of per-step terms (1 - beta) g ~ 0.05 and (1 - beta2) g² ~ 0.02 that can
    // cancel: their f32 rounding is absolute (~3e-9 per step), hence absolute floors.
    ASSERT_NEAR(m[i], ref[i].m, 1e-6 * std::abs(ref[i].m) + 1e-7) << i;
    ASSERT_NEAR(v[i], ref[i].v, 1e-6 * std::abs(ref[i].v) + 1e-8) << i;
    ASSERT_EQ(copy[i], f32_to_bf16(param[i]));
  }
}

TEST(AdamW, MultiTensorEqualsSingleStepsWithPerTensorDecay) {
  const std::vector<int64_t> sizes = {71, 1, 24};
  const std::vector<float> decay = {0.1f, 0.0f, 0.05f};
  std::vector<std::vector<float>> pa, pb, ma, mb, va, vb, g;
  for (size_t t = 0; t < sizes.size(); ++t) {
    pa.push_back(test::randn(sizes[t], 20 + t)), pb.push_back(pa.back());
    g.push_back(test::randn(sizes[t], 30 + t));
    ma.push_back(test::randn(sizes[t], 40 + t)), mb.push_back(ma.back());
    va.push_back(test::uniform(sizes[t], 50 + t, 0.0f, 1.0f)), vb.push_back(va.back());
  }
  AdamWHyper h;
  h.lr = 1e-2f, h.step = 7, h.grad_scale = 0.25f;
  AdamWMultiParams multi;
  multi.hyper = h;
  for (size_t t = 0; t < sizes.size(); ++t) {
    multi.tensors.push_back(
        {pa[t].data(), g[t].data(), ma[t].data(), va[t].data(), nullptr, sizes[t], decay[t]});
    AdamWParams one;
    one.param = pb[t].data(), one.grad = g[t].data(), one.m = mb[t].data(), one.v = vb[t].data();
    one.n = sizes[t], one.hyper = h;
    one.hyper.weight_decay = decay[t];
    adamw_step(one);
  }
  adamw_multi_step(multi);
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(ma, mb);
  EXPECT_EQ(va, vb);
}

// The device clip/skip prologue: with norm_sq the update equals the host's clipped update (the
// scale the trainer computes on the host, in double, rounded to float) bit for bit; a non-finite
// norm or loss leaves everything untouched; below max_norm the scale is 1.
TEST(AdamW, DeviceClipEqualsHostClipAndSkipsNonFinite) {
  const int64_t n = 37;
  const std::vector<float> g = test::randn(n, 70);
  double sq = 0;
  for (float x : g) sq += static_cast<double>(x) * x;
  const float norm_sq = static_cast<float>(sq);
  const double norm = std::sqrt(static_cast<double>(norm_sq));
  for (double max_norm : {norm / 3, norm * 2, 0.0}) {
    SCOPED_TRACE(max_norm);
    std::vector<float> pa = test::randn(n, 71), pb = pa, ma(n, 0.1f), mb = ma, va(n, 0.2f), vb = va;
    AdamWHyper h;
    h.lr = 1e-2f, h.step = 3;
    AdamWMultiParams host, dev;
    host.hyper = dev.hyper = h;
    host.hyper.grad_scale =
        static_cast<float>((max_norm > 0 && norm > max_norm) ? max_norm / norm : 1.0);
    dev.hyper.norm_sq = &norm_sq, dev.hyper.max_norm = max_norm;
    host.tensors.push_back({pa.data(), g.data(), ma.data(), va.data(), nullptr, n, 0.1f});
    dev.tensors.push_back({pb.data(), g.data(), mb.data(), vb.data(), nullptr, n, 0.1f});
    adamw_multi_step(host);
    adamw_multi_step(dev);
    EXPECT_EQ(pa, pb);
    EXPECT_EQ(ma, mb);
    EXPECT_EQ(va, vb);
  }
  for (float bad_loss : {NAN, INFINITY}) {
    std::vector<float> p = test::randn(n, 72), p0 = p, m(n, 0.1f), v(n, 0.2f);
    const float ok_sq = 1.0f, inf_sq = INFINITY;
    for (int which = 0; which < 2; ++which) {
      AdamWParams a;
      a.param = p.data(), a.grad = g.data(), a.m = m.data(), a.v = v.data(), a.n = n;
      a.hyper.norm_sq = which == 0 ? &ok_sq : &inf_sq;
      const float loss = which == 0 ? bad_loss : 1.0f;
      a.hyper.loss = &loss;
      adamw_step(a);
      EXPECT_EQ(p, p0) << "a non-finite " << (which == 0 ? "loss" : "norm") << " must skip";
      EXPECT_EQ(m, std::vector<float>(n, 0.1f));
    }
  }
}

TEST(GradNorm, GlobalNormAndSquaredNormOverTensors) {
  const auto a = test::randn(71 * 229, 60), b = test::randn(3, 61), c = test::randn(1, 62);
  double ss = 0;
  for (const auto* v : {&a, &b, &c})
    for (float x : *v) ss += double(x) * x;
  float out = NAN;
  GradNormParams p;
  p.grads = {a.data(), b.data(), c.data()};
  p.sizes = {int64_t(a.size()), int64_t(b.size()), int64_t(c.size())};
  p.out = &out;
  grad_norm(p);
  EXPECT_NEAR(out, std::sqrt(ss), 1e-6 * std::sqrt(ss));  // f64 sum, one f32 rounding
  p.squared = true;
  grad_norm(p);
  EXPECT_NEAR(out, ss, 1e-6 * ss);
}

TEST(GradNorm, EmptyTensorsCountAsZeroAndANullPointerIsAnError) {
  const std::vector<float> a = {3.0f, 4.0f};
  float out = NAN;
  GradNormParams p;
  p.out = &out;
  grad_norm(p);  // no tensors at all
  EXPECT_EQ(out, 0.0f);
  p.grads = {nullptr, a.data(), nullptr};
  p.sizes = {0, 2, 0};
  grad_norm(p);
  EXPECT_EQ(out, 5.0f);  // exact: 9 + 16 = 25
  p.sizes = {1, 2, 0};
  EXPECT_THROW(grad_norm(p), Error);
}

TEST(AdamW, RejectsStepZero) {
  float x = 0;
  AdamWParams p;
  p.param = &x, p.grad = &x, p.m = &x, p.v = &x, p.n = 1, p.hyper.step = 0;
  EXPECT_THROW(adamw_step(p), Error);
}

}  // namespace
}  // namespace graft

namespace graft {
namespace {

// kernels/adamw.h step_scalars: the update reading lr and the bias corrections from memory gives
// the same bits as the one taking lr and step (what a replayed CUDA graph relies on), step by
// step with a changing lr.
TEST(AdamW, StepScalarsFromMemoryEqualHostLrAndStep) {
  const int64_t n = 71;
  auto pa = test::randn(n, 3), pb = pa;
  std::vector<float> ma(n, 0.0f), mb(n, 0.0f), va(n, 0.0f), vb(n, 0.0f);
  for (int64_t t = 1; t <= 4; ++t) {
    const auto grad = test::randn(n, 30 + t);
    const float lr = 1e-2f / static_cast<float>(t);
    AdamWMultiParams a, b;
    a.tensors = {{pa.data(), grad.data(), ma.data(), va.data(), nullptr, n, 0.1f}};
    b.tensors = {{pb.data(), grad.data(), mb.data(), vb.data(), nullptr, n, 0.1f}};
    a.hyper.lr = lr, a.hyper.step = t, a.hyper.beta2 = 0.95f;
    b.hyper = a.hyper;
    b.hyper.lr = 123.0f;  // ignored: read from `sc`
    const AdamWStepScalars sc = adamw_step_scalars(lr, a.hyper.beta1, a.hyper.beta2, t);
    b.hyper.step_scalars = &sc.lr;
    adamw_multi_step(a);
    adamw_multi_step(b);
    ASSERT_EQ(pa, pb) << "step " << t;
    ASSERT_EQ(ma, mb) << "step " << t;
    ASSERT_EQ(va, vb) << "step " << t;
  }
}

}  // namespace
}  // namespace graft
