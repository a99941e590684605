// The norm kernels with an f32 residual stream and bf16 activations (kernels/norm.h,
// residual_dtype; precision.residual: f32) on the CPU: each mixed combination against the f32
// kernel on the same values (exact: the CPU computes in f64 from whatever storage and rounds the
// outputs once to their dtype), the single-dtype bf16 add rounding the sum, and a deep residual
// stream driven through the kernels as the decoder layers drive them, where the f32 stream must
// land closer to an all-f32 run than the bf16 stream does.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "framework/core/dtype.h"
#include "kernel_test_util.h"
#include "kernels/norm.h"

namespace graft {
namespace {

using test::randn;

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}
std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

struct Case {
  bool layernorm;
  bool zero_centered;
};

class NormResidualCpu : public testing::TestWithParam<Case> {};

void fwd(const Case& c, const NormFwdParams& p) { c.layernorm ? layernorm_fwd(p) : rmsnorm_fwd(p); }
void bwd(const Case& c, const NormBwdParams& p) { c.layernorm ? layernorm_bwd(p) : rmsnorm_bwd(p); }

constexpr int64_t kRows = 13, kCols = 96;

NormFwdParams base_fwd(const Case& c) {
  NormFwdParams f;
  f.rows = kRows, f.cols = kCols, f.eps = 1e-5f, f.zero_centered_gamma = c.zero_centered;
  return f;
}

// Forward with a residual: x (the branch) bf16, residual f32 -> s = x + residual in f32, exactly
// the f32 sum of the same values; y bf16 is the f32 kernel's y on s rounded to bf16.
TEST_P(NormResidualCpu, FusedAddKeepsTheSumInF32) {
  const Case c = GetParam();
  const size_t n = kRows * kCols;
  const auto x16 = to_bf16(randn(n, 1, 0.3f));
  const auto res = randn(n, 2, 2.0f), beta = randn(kCols, 4);
  const auto gamma16 = to_bf16(randn(kCols, 3));
  std::vector<float> sum(n), x = widen(x16), gamma = widen(gamma16);
  for (size_t i = 0; i < n; ++i) sum[i] = x[i] + res[i];
  const auto beta16 = to_bf16(beta);
  const auto beta32 = widen(beta16);

  std::vector<float> y_ref(n), rstd_ref(kRows), mean_ref(kRows);
  NormFwdParams r = base_fwd(c);
  r.x = sum.data(), r.gamma = gamma.data(), r.beta = c.layernorm ? beta32.data() : nullptr;
  r.y = y_ref.data(), r.rstd = rstd_ref.data(), r.mean = c.layernorm ? mean_ref.data() : nullptr;
  fwd(c, r);

  std::vector<float> s_out(n, NAN), rstd(kRows, NAN), mean(kRows, NAN);
  std::vector<uint16_t> y(n, 0xffff);
  NormFwdParams f = base_fwd(c);
  f.x = x16.data(), f.residual = res.data(), f.residual_out = s_out.data();
  f.gamma = gamma16.data(), f.beta = c.layernorm ? beta16.data() : nullptr, f.y = y.data();
  f.rstd = rstd.data(), f.mean = c.layernorm ? mean.data() : nullptr;
  f.dtype = DType::kBF16, f.weight_dtype = DType::kBF16, f.residual_dtype = DType::kF32;
  fwd(c, f);
  EXPECT_EQ(s_out, sum);
  EXPECT_EQ(y, to_bf16(y_ref));
  EXPECT_EQ(rstd, rstd_ref);
}

// Forward without a residual: x is the f32 stream itself, y bf16.
TEST_P(NormResidualCpu, StreamInputF32OutputBf16) {
  const Case c = GetParam();
  const size_t n = kRows * kCols;
  const auto x = randn(n, 5, 2.0f);
  const auto gamma16 = to_bf16(randn(kCols, 6));
  const auto gamma = widen(gamma16);
  std::vector<float> y_ref(n), rstd_ref(kRows), mean_ref(kRows);
  NormFwdParams r = base_fwd(c);
  r.x = x.data(), r.gamma = gamma.data(), r.y = y_ref.data(), r.rstd = rstd_ref.data();
  r.mean = c.layernorm ? mean_ref.data() : nullptr;
  fwd(c, r);
  std::vector<uint16_t> y(n);
  std::vector<float> rstd(kRows), mean(kRows);
  NormFwdParams f = r;
  f.gamma = gamma16.data(), f.y = y.data(), f.rstd = rstd.data();
  f.mean = c.layernorm ? mean.data() : nullptr;
  f.dtype = DType::kBF16, f.weight_dtype = DType::kBF16, f.residual_dtype = DType::kF32;
  fwd(c, f);
  EXPECT_EQ(y, to_bf16(y_ref));
  EXPECT_EQ(rstd, rstd_ref);
}

// Backward: dy bf16; x, dresidual and dx f32 (the stream's gradient is never rounded to bf16).
TEST_P(NormResidualCpu, BackwardGradientOfTheStreamInF32) {
  const Case c = GetParam();
  const size_t n = kRows * kCols;
  const auto x = randn(n, 7, 2.0f), dres = randn(n, 8);
  const auto dy16 = to_bf16(randn(n, 9));
  const auto gamma16 = to_bf16(randn(kCols, 10));
  const auto dy = widen(dy16), gamma = widen(gamma16);
  std::vector<float> y(n), rstd(kRows), mean(kRows);
  NormFwdParams r = base_fwd(c);
  r.x = x.data(), r.gamma = gamma.data(), r.y = y.data(), r.rstd = rstd.data();
  r.mean = c.layernorm ? mean.data() : nullptr;
  fwd(c, r);

  std::vector<float> dx_ref(n), dg_ref(kCols, 0.0f), dx(n, NAN), dg(kCols, 0.0f);
  NormBwdParams b;
  b.rows = kRows, b.cols = kCols, b.zero_centered_gamma = c.zero_centered;
  b.x = x.data(), b.rstd = rstd.data(), b.mean = c.layernorm ? mean.data() : nullptr;
  b.dresidual = dres.data();
  NormBwdParams br = b;
  br.dy = dy.data(), br.gamma = gamma.data(), br.dx = dx_ref.data(), br.dgamma = dg_ref.data();
  bwd(c, br);
  b.dy = dy16.data(), b.gamma = gamma16.data(), b.dx = dx.data(), b.dgamma = dg.data();
  b.dtype = DType::kBF16, b.weight_dtype = DType::kBF16, b.residual_dtype = DType::kF32;
  bwd(c, b);
  EXPECT_EQ(dx, dx_ref);
  EXPECT_EQ(dg, dg_ref);
}

INSTANTIATE_TEST_SUITE_P(Kinds, NormResidualCpu,
                         testing::Values(Case{false, false}, Case{false, true}, Case{true, false}),
                         [](const testing::TestParamInfo<Case>& i) {
                           return std::string(i.param.layernorm ? "layernorm" : "rmsnorm") +
                                  (i.param.zero_centered ? "_zc" : "");
                         });

// Single-dtype bf16 on the CPU: s = x + residual is rounded to bf16, as a separate bf16 add
// would store it (and as the CUDA kernel does).
TEST(NormResidualCpu, Bf16StreamRoundsTheSum) {
  const size_t n = kRows * kCols;
  const auto x16 = to_bf16(randn(n, 11, 0.3f)), r16 = to_bf16(randn(n, 12, 2.0f));
  const auto g16 = to_bf16(randn(kCols, 13));
  std::vector<uint16_t> s(n), y(n);
  NormFwdParams f = base_fwd({false, false});
  f.x = x16.data(), f.residual = r16.data(), f.residual_out = s.data(), f.gamma = g16.data();
  f.y = y.data(), f.dtype = DType::kBF16, f.weight_dtype = DType::kBF16;
  rmsnorm_fwd(f);
  const auto x = widen(x16), r = widen(r16);
  int inexact = 0;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(s[i], f32_to_bf16(x[i] + r[i])) << i;
    inexact += bf16_to_f32(s[i]) != x[i] + r[i];
  }
  EXPECT_GT(inexact, static_cast<int>(n / 4));  // the rounding is really exercised
}

TEST(NormResidualCpu, RejectsNonFloatStorage) {
  float v[4] = {1, 1, 1, 1};
  NormFwdParams f;
  f.x = v, f.gamma = v, f.y = v, f.rows = 1, f.cols = 1, f.dtype = DType::kF8E4M3;
  EXPECT_THROW(rmsnorm_fwd(f), Error);
  f.dtype = DType::kBF16, f.residual_dtype = DType::kI32;
  EXPECT_THROW(rmsnorm_fwd(f), Error);
}

// A residual stream of L layers driven as the decoder layers drive it: n_0 = norm(h_0), then per
// layer a branch b = round_act(n_l * w_l) (a stand-in for attention / MLP: bf16 output of bf16
// inputs) and the fused h_{l+1} = h_l + b, n_{l+1} = norm(h_{l+1}). Three runs of the same
// inputs: all f32 (the reference), bf16 activations with a bf16 stream, and with an f32 stream.
// The bf16 stream rounds |h| ~ 1 by u = 2^-9 every layer; the f32 stream only sees the branches'
// roundings, of |b| ~ 0.1, so its error is several times smaller. Gate: less than half.
// The backward runs the same chain down: from a gradient g_L at the top, per layer the branch's
// gradient round_act(g_{l+1} * v_l) goes through that layer's norm backward (at the saved sum,
// with its rstd), which adds the stream's gradient g_{l+1} and writes g_l in the stream's dtype,
// as the TE layers' norm backward does. The bf16 stream rounds the accumulated g every layer.
struct StreamRun {
  std::vector<double> h, n, g0;  // the last stream, its normalised rows, the first gradient
};

StreamRun run_stream(int layers, DType act, DType stream) {
  const int64_t rows = 16, cols = 256;
  const size_t sz = rows * cols;
  auto buf = [&](DType t) { return std::vector<float>(t == DType::kF32 ? sz : sz / 2 + 1); };
  const auto h0 = widen(to_bf16(randn(sz, 100)));  // bf16-exact, as an embedding row
  auto gamma_f = randn(cols, 101, 0.1f);
  for (float& v : gamma_f) v += 1.0f;
  const auto gamma16 = to_bf16(gamma_f);  // every run uses these bf16 values
  const auto gamma_act = widen(gamma16);
  const void* gam =
      act == DType::kF32 ? static_cast<const void*>(gamma_act.data()) : gamma16.data();
  // Storage: f32 vectors, or bf16 halves packed in a float vector's bytes.
  std::vector<float> h = stream == DType::kF32 ? h0 : buf(stream);
  if (stream == DType::kBF16) {
    auto b = to_bf16(h0);
    std::memcpy(h.data(), b.data(), b.size() * 2);
  }
  std::vector<float> h_next = buf(stream), n = buf(act);
  NormFwdParams f;
  f.rows = rows, f.cols = cols, f.eps = 1e-5f;
  f.gamma = gam, f.dtype = act, f.weight_dtype = act;
  if (stream != act) f.residual_dtype = stream;
  f.x = h.data(), f.y = n.data();
  rmsnorm_fwd(f);
  auto elem = [](const std::vector<float>& v, DType t, size_t i) {
    return t == DType::kF32 ? v[i] : bf16_to_f32(reinterpret_cast<const uint16_t*>(v.data())[i]);
  };
  std::vector<float> b = buf(act);
  std::vector<std::vector<float>> saved_h, saved_rstd;  // per layer: the sum s, its rstd
  for (int l = 0; l < layers; ++l) {
    const auto w = randn(cols, 200 + l, 0.1f);
    for (size_t i = 0; i < sz; ++i) {
      const float v = elem(n, act, i) * w[i % cols];
      if (act == DType::kF32)
        b[i] = v;
      else
        reinterpret_cast<uint16_t*>(b.data())[i] = f32_to_bf16(v);
    }
    NormFwdParams a = f;
    std::vector<float> rstd(rows);
    a.x = b.data(), a.residual = h.data(), a.residual_out = h_next.data(), a.y = n.data();
    a.rstd = rstd.data();
    rmsnorm_fwd(a);
    std::swap(h, h_next);
    saved_h.push_back(h);
    saved_rstd.push_back(rstd);
  }
  StreamRun out;
  for (size_t i = 0; i < sz; ++i) {
    out.h.push_back(elem(h, stream, i));
    out.n.push_back(elem(n, act, i));
  }
  // Backward from a bf16-exact g_L (the stream's gradient arriving from the final norm).
  const auto g_top = widen(to_bf16(randn(sz, 300)));
  std::vector<float> g = buf(stream), g_next = buf(stream), db = buf(act);
  for (size_t i = 0; i < sz; ++i) {
    if (stream == DType::kF32)
      g[i] = g_top[i];
    else
      reinterpret_cast<uint16_t*>(g.data())[i] = f32_to_bf16(g_top[i]);
  }
  for (int l = layers - 1; l >= 0; --l) {
    const auto v = randn(cols, 400 + l, 0.1f);
    for (size_t i = 0; i < sz; ++i) {
      const float d = elem(g, stream, i) * v[i % cols];
      if (act == DType::kF32)
        db[i] = d;
      else
        reinterpret_cast<uint16_t*>(db.data())[i] = f32_to_bf16(d);
    }
    NormBwdParams bp;
    bp.rows = rows, bp.cols = cols, bp.gamma = gam, bp.dtype = act, bp.weight_dtype = act;
    if (stream != act) bp.residual_dtype = stream;
    bp.dy = db.data(), bp.x = saved_h[l].data(), bp.rstd = saved_rstd[l].data();
    bp.dresidual = g.data(), bp.dx = g_next.data();
    rmsnorm_bwd(bp);
    std::swap(g, g_next);
  }
  for (size_t i = 0; i < sz; ++i) out.g0.push_back(elem(g, stream, i));
  return out;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

TEST(NormResidualCpu, F32StreamAndItsGradientLandCloserToF32ThanBf16) {
  const int L = 48;
  const StreamRun ref = run_stream(L, DType::kF32, DType::kF32);
  const StreamRun low = run_stream(L, DType::kBF16, DType::kBF16);
  const StreamRun wide = run_stream(L, DType::kBF16, DType::kF32);
  const double e_low = rel_err(low.h, ref.h), e_wide = rel_err(wide.h, ref.h);
  const double n_low = rel_err(low.n, ref.n), n_wide = rel_err(wide.n, ref.n);
  const double g_low = rel_err(low.g0, ref.g0), g_wide = rel_err(wide.g0, ref.g0);
  std::printf(
      "rel err over %d layers, bf16 stream -> f32 stream: stream %.3e -> %.3e, "
      "normalised %.3e -> %.3e, stream gradient %.3e -> %.3e\n",
      L, e_low, e_wide, n_low, n_wide, g_low, g_wide);
  EXPECT_GT(e_low, 0.0);
  EXPECT_LT(e_wide, 0.5 * e_low);
  EXPECT_LT(n_wide, 0.5 * n_low);
  EXPECT_LT(g_wide, 0.5 * g_low);
}

}  // namespace
}  // namespace graft
