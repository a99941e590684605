// Attention: forward (out, lse) against a double-precision reference with the masks written out
// here; backward against central differences of that reference; GQA/MQA equal repeated kv heads;
// q_offset decoding equals the matching rows of a full causal pass; sliding window; fully
// masked rows; q/k/v as strided views into a fused qkv buffer.
#include "kernels/attention.h"

#include <cmath>
#include <limits>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;
using test::randn;

struct AttnCase {
  int64_t B, Sq, Skv, Hq, Hkv, D;
  AttnMask mask;
  int64_t window = 0, q_offset = 0;
  float scale = 0.0f;
};

std::string case_name(const testing::TestParamInfo<AttnCase>& i) {
  const AttnCase& c = i.param;
  return str("b", c.B, "_sq", c.Sq, "_skv", c.Skv, "_h", c.Hq, "_kv", c.Hkv, "_d", c.D, "_",
             attn_mask_name(c.mask), c.window ? str("_w", c.window) : "",
             c.q_offset ? str("_off", c.q_offset) : "");
}

// Inputs of one case, contiguous bshd, plus its key padding and arbitrary masks.
struct Inputs {
  AttnCase c;
  std::vector<float> q, k, v;
  std::vector<uint8_t> pad;  // [B, Skv], 1 = keep
  std::vector<uint8_t> arb;  // [B, Sq, Skv], 1 = masked
};

Inputs make_inputs(const AttnCase& c, uint32_t seed) {
  Inputs in{c,
            randn(c.B * c.Sq * c.Hq * c.D, seed),
            randn(c.B * c.Skv * c.Hkv * c.D, seed + 1),
            randn(c.B * c.Skv * c.Hkv * c.D, seed + 2),
            {},
            {}};
  std::mt19937 gen(seed + 3);
  for (int64_t b = 0; b < c.B; ++b)  // batch b has its first b keys padded (left padding)
    for (int64_t j = 0; j < c.Skv; ++j) in.pad.push_back(j >= b ? 1 : 0);
  for (int64_t i = 0; i < c.B * c.Sq * c.Skv; ++i) in.arb.push_back(gen() % 10 < 3);
  return in;
}

// The mask rules of kernels/attention.h, written out independently of the kernel.
bool masked(const Inputs& in, int64_t b, int64_t i, int64_t j) {
  const AttnCase& c = in.c;
  const int64_t a = c.q_offset + i;
  bool m = false;
  if (c.mask == AttnMask::kCausal || c.mask == AttnMask::kPaddingCausal) m |= j > a;
  if (c.mask == AttnMask::kPadding || c.mask == AttnMask::kPaddingCausal)
    m |= in.pad[b * c.Skv + j] == 0;
  if (c.mask == AttnMask::kArbitrary) m |= in.arb[(b * c.Sq + i) * c.Skv + j] != 0;
  if (c.window > 0) m |= j <= a - c.window;
  return m;
}

// softmax(scale q k^T + mask) v in double; lse [B, Hq, Sq].
void ref_attention(const Inputs& in, const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, std::vector<double>& out,
                   std::vector<double>* lse) {
  const AttnCase& c = in.c;
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(c.D));
  out.assign(q.size(), 0.0);
  if (lse) lse->assign(c.B * c.Hq * c.Sq, 0.0);
  std::vector<double> s(c.Skv);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.Hq; ++h) {
      const int64_t hk = h / (c.Hq / c.Hkv);
      for (int64_t i = 0; i < c.Sq; ++i) {
        const double* qi = &q[((b * c.Sq + i) * c.Hq + h) * c.D];
        double mx = -INFINITY;
        for (int64_t j = 0; j < c.Skv; ++j) {
          const double* kj = &k[((b * c.Skv + j) * c.Hkv + hk) * c.D];
          double d = 0;
          for (int64_t x = 0; x < c.D; ++x) d += qi[x] * kj[x];
          s[j] = masked(in, b, i, j) ? -INFINITY : scale * d;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < c.Skv; ++j) sum += mx == -INFINITY ? 0.0 : std::exp(s[j] - mx);
        if (lse)
          (*lse)[(b * c.Hq + h) * c.Sq + i] = mx == -INFINITY ? -INFINITY : mx + std::log(sum);
        if (mx == -INFINITY) continue;  // fully masked: zeros
        double* oi = &out[((b * c.Sq + i) * c.Hq + h) * c.D];
        for (int64_t j = 0; j < c.Skv; ++j) {
          const double p = std::exp(s[j] - mx) / sum;
          const double* vj = &v[((b * c.Skv + j) * c.Hkv + hk) * c.D];
          for (int64_t x = 0; x < c.D; ++x) oi[x] += p * vj[x];
        }
      }
    }
}

AttnShape shape_of(const Inputs& in) {
  const AttnCase& c = in.c;
  AttnShape s;
  s.batch = c.B, s.seq_q = c.Sq, s.seq_kv = c.Skv, s.heads_q = c.Hq, s.heads_kv = c.Hkv;
  s.head_dim = c.D, s.mask = c.mask, s.window = c.window, s.q_offset = c.q_offset,
  s.scale = c.scale;
  s.key_padding = in.pad.data(), s.arbitrary_mask = in.arb.data(), s.mask_batch = c.B;
  return s;
}

struct Fwd {
  std::vector<float> out, lse;
};

Fwd run_fwd(const Inputs& in) {
  Fwd f{std::vector<float>(in.q.size(), NAN), std::vector<float>(in.c.B * in.c.Hq * in.c.Sq, NAN)};
  AttnFwdParams p;
  p.q = in.q.data(), p.k = in.k.data(), p.v = in.v.data(), p.out = f.out.data();
  p.lse = f.lse.data(), p.shape = shape_of(in);
  attn_fwd(p);
  return f;
}

struct Grads {
  std::vector<float> dq, dk, dv;
};

Grads run_bwd(const Inputs& in, const Fwd& f, const std::vector<float>& dout) {
  Grads g{std::vector<float>(in.q.size(), NAN), std::vector<float>(in.k.size(), NAN),
          std::vector<float>(in.v.size(), NAN)};
  AttnBwdParams p;
  p.q = in.q.data(), p.k = in.k.data(), p.v = in.v.data(), p.out = f.out.data();
  p.dout = dout.data(), p.lse = f.lse.data(), p.dq = g.dq.data(), p.dk = g.dk.data();
  p.dv = g.dv.data(), p.shape = shape_of(in);
  attn_bwd(p);
  return g;
}

void expect_lse_near(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], -std::numeric_limits<float>::infinity()) << i;
    } else {
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i]))) << i;
    }
  }
}

class AttnSweep : public testing::TestWithParam<AttnCase> {};

// Scores are f32 BLAS dot products over D <= 64 terms of unit-variance inputs (error ~D 2^-24
// |q||k| ~ 1e-6 of the logits), softmax sums in f64, P·V in f32: 1e-5 relative to the output's
// largest entry leaves an order of magnitude of margin.
TEST_P(AttnSweep, ForwardMatchesReference) {
  const Inputs in = make_inputs(GetParam(), 10);
  const Fwd f = run_fwd(in);
  std::vector<double> out, lse;
  ref_attention(in, test::to_double(in.q), test::to_double(in.k), test::to_double(in.v), out, &lse);
  EXPECT_LT(max_rel_err(f.out, out), 1e-5);
  expect_lse_near(f.lse, lse);
}

INSTANTIATE_TEST_SUITE_P(Cases, AttnSweep,
                         testing::Values(AttnCase{2, 7, 7, 4, 2, 24, AttnMask::kCausal},
                                         AttnCase{1, 1, 1, 1, 1, 8, AttnMask::kNoMask},
                                         AttnCase{2, 9, 9, 6, 1, 16, AttnMask::kPaddingCausal},
                                         AttnCase{3, 6, 6, 2, 2, 8, AttnMask::kPadding},
                                         AttnCase{1, 5, 9, 2, 2, 8, AttnMask::kCausal, 0, 4},
                                         AttnCase{2, 11, 11, 4, 4, 24, AttnMask::kCausal, 3},
                                         AttnCase{2, 6, 10, 2, 1, 8, AttnMask::kArbitrary},
                                         AttnCase{1, 4, 12, 2, 1, 8, AttnMask::kCausal, 5, 8},
                                         AttnCase{1, 3, 5, 3, 1, 24, AttnMask::kNoMask, 0, 0, 0.3f},
                                         AttnCase{2, 71, 71, 6, 2, 24, AttnMask::kCausal},
                                         AttnCase{2, 67, 67, 4, 2, 64, AttnMask::kPaddingCausal,
                                                  16}),
                         case_name);

class AttnGradSweep : public testing::TestWithParam<AttnCase> {};

// Analytic dq, dk, dv vs central differences (h = 1e-6) of the double reference of
// L = sum(out * w). FD error ~1e-9; the kernel's f32 scores and probabilities carry ~1e-6
// relative error into sums of Skv terms: 1e-4 relative to the largest gradient entry, with a
// 1e-2 floor (entries here are O(0.1 .. 1)) for Skv = 1, where dq = dk = 0 exactly and the
// kernel returns the f32 cancellation p (dp - delta) ~ 1e-8.
TEST_P(AttnGradSweep, BackwardMatchesFiniteDifferences) {
  const Inputs in = make_inputs(GetParam(), 20);
  const Fwd f = run_fwd(in);
  const auto w = randn(in.q.size(), 30);
  const Grads g = run_bwd(in, f, w);
  const auto qd = test::to_double(in.q), kd = test::to_double(in.k), vd = test::to_double(in.v);
  const auto wd = test::to_double(w);
  std::vector<double> out;
  auto loss = [&](const std::vector<double>& q, const std::vector<double>& k,
                  const std::vector<double>& v) {
    ref_attention(in, q, k, v, out, nullptr);
    return test::dot(out, wd);
  };
  EXPECT_LT(max_rel_err(
                g.dq, test::numeric_grad([&](const auto& x) { return loss(x, kd, vd); }, qd), 1e-2),
            1e-4);
  EXPECT_LT(max_rel_err(
                g.dk, test::numeric_grad([&](const auto& x) { return loss(qd, x, vd); }, kd), 1e-2),
            1e-4);
  EXPECT_LT(max_rel_err(
                g.dv, test::numeric_grad([&](const auto& x) { return loss(qd, kd, x); }, vd), 1e-2),
            1e-4);
}

INSTANTIATE_TEST_SUITE_P(Small, AttnGradSweep,
                         testing::Values(AttnCase{2, 5, 5, 4, 2, 8, AttnMask::kCausal},
                                         AttnCase{1, 1, 1, 1, 1, 4, AttnMask::kNoMask},
                                         AttnCase{2, 6, 6, 3, 1, 8, AttnMask::kPaddingCausal},
                                         AttnCase{2, 4, 4, 2, 2, 8, AttnMask::kPadding},
                                         AttnCase{1, 3, 7, 2, 1, 8, AttnMask::kCausal, 0, 4},
                                         AttnCase{1, 7, 7, 2, 2, 8, AttnMask::kCausal, 2},
                                         AttnCase{2, 4, 6, 2, 1, 8, AttnMask::kArbitrary},
                                         AttnCase{1, 4, 5, 3, 3, 24, AttnMask::kNoMask, 0, 0, 0.3f},
                                         // More rows than one CPU block (64 query rows):
                                         // blocks see different key ranges.
                                         AttnCase{1, 70, 70, 1, 1, 4, AttnMask::kCausal, 20},
                                         AttnCase{2, 66, 66, 1, 1, 4, AttnMask::kPaddingCausal}),
                         case_name);

// Repeats each kv head Hq/Hkv times: [B, S, Hkv, D] -> [B, S, Hq, D].
std::vector<float> repeat_kv(const std::vector<float>& x, const AttnCase& c) {
  std::vector<float> r;
  const int64_t g = c.Hq / c.Hkv;
  for (int64_t t = 0; t < c.B * c.Skv; ++t)
    for (int64_t h = 0; h < c.Hq; ++h)
      r.insert(r.end(), x.begin() + (t * c.Hkv + h / g) * c.D,
               x.begin() + (t * c.Hkv + h / g + 1) * c.D);
  return r;
}

TEST(Attention, GqaAndMqaEqualRepeatedKvHeads) {
  for (int64_t hkv : {2, 1}) {  // GQA (group 3), MQA
    const AttnCase c{2, 9, 9, 6, hkv, 16, AttnMask::kCausal};
    const Inputs gqa = make_inputs(c, 40);
    Inputs mha = gqa;
    mha.c.Hkv = 6, mha.k = repeat_kv(gqa.k, c), mha.v = repeat_kv(gqa.v, c);
    const Fwd fg = run_fwd(gqa), fm = run_fwd(mha);
    EXPECT_LT(max_rel_err(fg.out, fm.out), 1e-6);
    const auto dout = randn(gqa.q.size(), 41);
    const Grads gg = run_bwd(gqa, fg, dout), gm = run_bwd(mha, fm, dout);
    EXPECT_LT(max_rel_err(gg.dq, gm.dq), 1e-6);
    // The GQA kv gradient is the sum over the group of the repeated heads' gradients.
    std::vector<double> dk(gg.dk.size(), 0.0), dv(gg.dv.size(), 0.0);
    for (int64_t t = 0; t < c.B * c.Skv; ++t)
      for (int64_t h = 0; h < c.Hq; ++h)
        for (int64_t x = 0; x < c.D; ++x) {
          dk[(t * hkv + h / (c.Hq / hkv)) * c.D + x] += gm.dk[(t * c.Hq + h) * c.D + x];
          dv[(t * hkv + h / (c.Hq / hkv)) * c.D + x] += gm.dv[(t * c.Hq + h) * c.D + x];
        }
    EXPECT_LT(max_rel_err(gg.dk, dk), 1e-5);
    EXPECT_LT(max_rel_err(gg.dv, dv), 1e-5);
  }
}

// Decoding: the last Sq rows of a full causal pass over Skv tokens equal a pass of those Sq
// queries at q_offset = Skv - Sq against all Skv keys (with and without a sliding window).
TEST(Attention, QOffsetDecodingEqualsRowsOfFullCausalPass) {
  for (int64_t window : {0, 4}) {
    const AttnCase full_c{2, 10, 10, 4, 2, 8, AttnMask::kCausal, window};
    const Inputs full = make_inputs(full_c, 50);
    const Fwd ff = run_fwd(full);
    for (int64_t sq : {4, 1}) {
      const int64_t off = 10 - sq;
      Inputs dec = full;
      dec.c.Sq = sq, dec.c.q_offset = off;
      dec.q.clear();
      for (int64_t b = 0; b < 2; ++b)
        dec.q.insert(dec.q.end(), full.q.begin() + (b * 10 + off) * 4 * 8,
                     full.q.begin() + (b * 10 + 10) * 4 * 8);
      const Fwd fd = run_fwd(dec);
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t i = 0; i < sq * 4 * 8; ++i)
          ASSERT_NEAR(fd.out[b * sq * 32 + i], ff.out[(b * 10 + off) * 32 + i], 1e-6)
              << "window " << window << " sq " << sq;
    }
  }
}

TEST(Attention, SlidingWindowHidesKeysOutsideIt) {
  const int64_t W = 3, S = 8, i = 6;  // query 6 sees keys 4, 5, 6
  const AttnCase c{1, S, S, 1, 1, 8, AttnMask::kCausal, W};
  const Inputs base = make_inputs(c, 60);
  const Fwd f0 = run_fwd(base);
  for (int64_t j : {3, 4}) {
    Inputs changed = base;
    for (int64_t x = 0; x < 8; ++x) changed.v[j * 8 + x] += 1.0f;
    const Fwd f1 = run_fwd(changed);
    const bool same =
        std::equal(f0.out.begin() + i * 8, f0.out.begin() + (i + 1) * 8, f1.out.begin() + i * 8);
    EXPECT_EQ(same, j == i - W) << "key " << j;
  }
}

TEST(Attention, FullyMaskedRowsGiveZerosAndZeroGradients) {
  // Batch 1 pads every key; batch 0 has an arbitrary mask whose query row 2 hides every key.
  const AttnCase c{2, 4, 5, 2, 1, 8, AttnMask::kPadding};
  Inputs in = make_inputs(c, 70);
  std::fill(in.pad.begin() + 5, in.pad.end(), 0);
  const Fwd f = run_fwd(in);
  const auto dout = randn(in.q.size(), 71);
  const Grads g = run_bwd(in, f, dout);
  for (const auto* v : {&f.out, &g.dq, &g.dk, &g.dv}) EXPECT_TRUE(test::all_finite(*v));
  for (int64_t i = 4 * 2 * 8; i < 2 * 4 * 2 * 8; ++i) ASSERT_EQ(f.out[i], 0.0f);
  for (int64_t i = 4 * 2 * 8; i < 2 * 4 * 2 * 8; ++i) ASSERT_EQ(g.dq[i], 0.0f);
  for (int64_t i = 5 * 8; i < 2 * 5 * 8; ++i) ASSERT_EQ(g.dk[i], 0.0f);
  for (int64_t i = 2 * 4; i < 2 * 2 * 4; ++i) EXPECT_EQ(f.lse[i], -INFINITY);  // batch 1's lse

  Inputs arb = make_inputs({1, 4, 5, 2, 1, 8, AttnMask::kArbitrary}, 72);
  std::fill(arb.arb.begin() + 2 * 5, arb.arb.begin() + 3 * 5, 1);
  const Fwd fa = run_fwd(arb);
  EXPECT_TRUE(test::all_finite(fa.out));
  for (int64_t x = 0; x < 2 * 8; ++x) ASSERT_EQ(fa.out[2 * 2 * 8 + x], 0.0f);

  // Queries at positions 10.. with a window of 3 see none of the 4 keys: every row is masked.
  const Inputs far = make_inputs({1, 2, 4, 2, 1, 8, AttnMask::kCausal, 3, 10}, 73);
  const Fwd ff = run_fwd(far);
  const Grads gf = run_bwd(far, ff, randn(far.q.size(), 74));
  for (const auto* v : {&ff.out, &gf.dq, &gf.dk, &gf.dv})
    EXPECT_EQ(*v, std::vector<float>(v->size(), 0.0f));
  EXPECT_EQ(ff.lse, std::vector<float>(ff.lse.size(), -INFINITY));
}

// q, k, v (and dq, dk, dv) as views into fused [B, S, (Hq + 2 Hkv) D] buffers give exactly what
// contiguous copies give.
TEST(Attention, StridedViewsIntoFusedQkvBuffer) {
  const AttnCase c{2, 7, 7, 4, 2, 8, AttnMask::kCausal};
  const int64_t W = (c.Hq + 2 * c.Hkv) * c.D, qw = c.Hq * c.D, kw = c.Hkv * c.D;
  const auto fused = randn(c.B * c.Sq * W, 80);
  Inputs in = make_inputs(c, 81);
  in.q.clear(), in.k.clear(), in.v.clear();
  for (int64_t t = 0; t < c.B * c.Sq; ++t) {
    in.q.insert(in.q.end(), fused.begin() + t * W, fused.begin() + t * W + qw);
    in.k.insert(in.k.end(), fused.begin() + t * W + qw, fused.begin() + t * W + qw + kw);
    in.v.insert(in.v.end(), fused.begin() + t * W + qw + kw, fused.begin() + (t + 1) * W);
  }
  const Fwd f = run_fwd(in);
  const auto dout = randn(in.q.size(), 82);
  const Grads g = run_bwd(in, f, dout);

  const BshdStrides st{c.Sq * W, W, c.D};
  std::vector<float> out(in.q.size()), lse(f.lse.size()), dqkv(fused.size(), NAN);
  AttnFwdParams p;
  p.q = fused.data(), p.k = fused.data() + qw, p.v = fused.data() + qw + kw;
  p.q_strides = p.k_strides = p.v_strides = st;
  p.out = out.data(), p.lse = lse.data(), p.shape = shape_of(in);
  attn_fwd(p);
  EXPECT_EQ(out, f.out);
  AttnBwdParams b;
  b.q = p.q, b.k = p.k, b.v = p.v, b.q_strides = b.k_strides = b.v_strides = st;
  b.out = out.data(), b.dout = dout.data(), b.lse = lse.data(), b.shape = p.shape;
  b.dq = dqkv.data(), b.dk = dqkv.data() + qw, b.dv = dqkv.data() + qw + kw;
  b.dq_strides = b.dk_strides = b.dv_strides = st;
  attn_bwd(b);
  for (int64_t t = 0; t < c.B * c.Sq; ++t) {
    for (int64_t x = 0; x < qw; ++x) ASSERT_EQ(dqkv[t * W + x], g.dq[t * qw + x]);
    for (int64_t x = 0; x < kw; ++x) ASSERT_EQ(dqkv[t * W + qw + x], g.dk[t * kw + x]);
    for (int64_t x = 0; x < kw; ++x) ASSERT_EQ(dqkv[t * W + qw + kw + x], g.dv[t * kw + x]);
  }
}

TEST(Attention, RejectsHeadsNotDivisibleAndMissingMasks) {
  const Inputs in = make_inputs({1, 2, 2, 3, 2, 4, AttnMask::kCausal}, 90);
  std::vector<float> out(in.q.size());
  AttnFwdParams p;
  p.q = in.q.data(), p.k = in.k.data(), p.v = in.v.data(), p.out = out.data();
  p.shape = shape_of(in);
  EXPECT_THROW(attn_fwd(p), Error);
  p.shape.heads_kv = 1, p.shape.mask = AttnMask::kPadding, p.shape.key_padding = nullptr;
  EXPECT_THROW(attn_fwd(p), Error);
}

}  // namespace
}  // namespace graft
