// Cross-entropy: forward against the formula in double (mean and sum, ignore_index), backward
// against central differences of it, chunked calls equal one call, bad targets rejected.
#include "kernels/cross_entropy.h"

#include <cmath>

#include "kernel_test_util.h"

namespace graft {
namespace {

using test::max_rel_err;

struct Problem {
  int64_t n, vocab;
  std::vector<float> logits;
  std::vector<int64_t> targets;
};

Problem make(int64_t n, int64_t vocab, uint32_t seed, int every_ignored = 4) {
  Problem p{n, vocab, test::randn(n * vocab, seed, 2.0f), {}};
  std::mt19937 gen(seed + 100);
  for (int64_t r = 0; r < n; ++r)
    p.targets.push_back(r % every_ignored == 1 ? -100 : static_cast<int64_t>(gen() % vocab));
  return p;
}

// The loss written out: sum over non-ignored rows of (log sum exp - logit[target]), / count
// for the mean.
double ref_loss(const std::vector<double>& logits, const std::vector<int64_t>& t, int64_t vocab,
                Reduction red) {
  double total = 0.0;
  int64_t count = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] == -100) continue;
    double s = 0.0;
    for (int64_t c = 0; c < vocab; ++c) s += std::exp(logits[r * vocab + c]);
    total += std::log(s) - logits[r * vocab + t[r]];
    ++count;
  }
  return red == Reduction::kSum ? total : total / count;
}

struct XeCase {
  int64_t n, vocab;
  Reduction red;
};

class XentSweep : public testing::TestWithParam<XeCase> {};

TEST_P(XentSweep, ForwardMatchesFormulaAndBackwardMatchesFiniteDifferences) {
  const XeCase c = GetParam();
  const Problem pr = make(c.n, c.vocab, 1);
  float loss = NAN;
  std::vector<float> lse(c.n, NAN), row(c.n, NAN);
  XentFwdParams f;
  f.logits = pr.logits.data(), f.targets = pr.targets.data(), f.loss = &loss, f.lse = lse.data();
  f.row_loss = row.data(), f.n = c.n, f.vocab = c.vocab, f.reduction = c.red;
  cross_entropy_fwd(f);
  const auto ld = test::to_double(pr.logits);
  const double want = ref_loss(ld, pr.targets, c.vocab, c.red);
  // f64 sums over f32 logits, one rounding of the result: 1e-6 relative.
  EXPECT_NEAR(loss, want, 1e-6 * std::abs(want));
  for (int64_t r = 0; r < c.n; ++r) {
    double s = 0.0;
    for (int64_t v = 0; v < c.vocab; ++v) s += std::exp(ld[r * c.vocab + v]);
    EXPECT_NEAR(lse[r], std::log(s), 1e-6 * std::max(1.0, std::abs(std::log(s))));
    const double want_row =
        pr.targets[r] == -100 ? 0.0 : std::log(s) - ld[r * c.vocab + pr.targets[r]];
    EXPECT_NEAR(row[r], want_row, 1e-6 * std::max(1.0, std::abs(want_row)));
  }

  std::vector<float> dl(pr.logits.size(), NAN);
  XentBwdParams b;
  b.logits = pr.logits.data(), b.targets = pr.targets.data(), b.lse = lse.data();
  b.dlogits = dl.data(), b.n = c.n, b.vocab = c.vocab, b.reduction = c.red, b.grad_scale = 0.75f;
  cross_entropy_bwd(b);
  if (c.n * c.vocab > 3000) return;  // finite differences on the small shapes
  const auto g = test::numeric_grad(
      [&](const std::vector<double>& v) { return 0.75 * ref_loss(v, pr.targets, c.vocab, c.red); },
      ld);
  // Kernel: f32 lse and f32 output (~1e-7 relative); FD error ~1e-10 absolute. The 1e-4 floor
  // covers vocab = 1, where every gradient is exactly 0 and FD gives only ~1e-10 noise; other
  // cases have gradient entries >= ~0.75 / n >= 1e-2.
  EXPECT_LT(max_rel_err(dl, g, 1e-4), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, XentSweep,
    testing::Values(XeCase{71, 229, Reduction::kMean}, XeCase{71, 229, Reduction::kSum},
                    XeCase{9, 31, Reduction::kMean}, XeCase{9, 31, Reduction::kSum},
                    XeCase{3, 1, Reduction::kMean}, XeCase{2, 1000, Reduction::kSum}));

// The causal shift: position t predicts labels[t + 1], the last position is ignored; an ignored
// label stays ignored; rows do not leak into each other.
TEST(ShiftLabels, ShiftsEachRowAndIgnoresTheLastPosition) {
  const std::vector<int64_t> labels = {5, 6, -100, 8, 9, 1, 2, 3, 4, 7};  // [2, 5]
  std::vector<int64_t> t(10, 42);
  ShiftLabelsParams p;
  p.labels = labels.data(), p.targets = t.data(), p.batch = 2, p.seq = 5;
  shift_labels(p);
  EXPECT_EQ(t, (std::vector<int64_t>{6, -100, 8, 9, -100, 2, 3, 4, 7, -100}));
}

TEST(CrossEntropy, ChunkedRowsEqualOneCall) {
  const Problem pr = make(23, 50, 2);
  int64_t valid = 0;
  for (int64_t t : pr.targets) valid += t != -100;
  for (Reduction red : {Reduction::kMean, Reduction::kSum}) {
    float whole = 0, chunked = 0;
    std::vector<float> lse(23), dl_whole(pr.logits.size()), dl_chunked(pr.logits.size());
    XentFwdParams f;
    f.logits = pr.logits.data(), f.targets = pr.targets.data(), f.loss = &whole;
    f.lse = lse.data(), f.n = 23, f.vocab = 50, f.reduction = red;
    cross_entropy_fwd(f);
    XentBwdParams b;
    b.logits = pr.logits.data(), b.targets = pr.targets.data(), b.lse = lse.data();
    b.dlogits = dl_whole.data(), b.n = 23, b.vocab = 50, b.reduction = red;
    cross_entropy_bwd(b);
    for (int64_t r0 = 0; r0 < 23; r0 += 5) {  // chunks of 5 rows (the last has 3)
      const int64_t n = std::min<int64_t>(5, 23 - r0);
      f.logits = pr.logits.data() + r0 * 50, f.targets = pr.targets.data() + r0, f.n = n;
      f.lse = lse.data() + r0, f.loss = &chunked, f.num_valid = valid, f.accumulate = r0 > 0;
      cross_entropy_fwd(f);
      b.logits = f.logits, b.targets = f.targets, b.lse = f.lse, b.n = n, b.num_valid = valid;
      b.dlogits = dl_chunked.data() + r0 * 50;
      cross_entropy_bwd(b);
    }
    // Same terms, partial sums rounded to f32 per chunk: a few ulp.
    EXPECT_NEAR(chunked, whole, 1e-6 * std::abs(whole));
    EXPECT_EQ(dl_chunked, dl_whole);
  }
}

// num_valid_at (kernels/cross_entropy.h): the divisor read from memory equals the argument.
TEST(CrossEntropy, DivisorFromMemoryEqualsTheArgument) {
  const Problem pr = make(23, 50, 3);
  const int64_t divisor = 40;
  float la = 0, lb = 0;
  std::vector<float> lse(23), da(pr.logits.size()), db(pr.logits.size());
  XentFwdParams f;
  f.logits = pr.logits.data(), f.targets = pr.targets.data(), f.lse = lse.data();
  f.n = 23, f.vocab = 50;
  XentFwdParams fa = f, fb = f;
  fa.num_valid = divisor, fa.loss = &la;
  fb.num_valid_at = &divisor, fb.loss = &lb;
  cross_entropy_fwd(fa);
  cross_entropy_fwd(fb);
  EXPECT_EQ(la, lb);
  XentBwdParams b;
  b.logits = pr.logits.data(), b.targets = pr.targets.data(), b.lse = lse.data();
  b.n = 23, b.vocab = 50;
  XentBwdParams ba = b, bb = b;
  ba.num_valid = divisor, ba.dlogits = da.data();
  bb.num_valid_at = &divisor, bb.dlogits = db.data();
  cross_entropy_bwd(ba);
  cross_entropy_bwd(bb);
  EXPECT_EQ(da, db);
  EXPECT_NE(la, 0.0f);
}

// cross_entropy_fwd_bwd: the loss and dlogits of the two calls (lse may be omitted), in place.
TEST(CrossEntropy, FusedForwardBackwardEqualsTheTwoCalls) {
  const Problem pr = make(23, 50, 3);
  float la = 0, lb = 0;
  std::vector<float> lse(23), da(pr.logits.size()), db = pr.logits;
  XentFwdParams f;
  f.logits = pr.logits.data(), f.targets = pr.targets.data(), f.lse = lse.data();
  f.n = 23, f.vocab = 50, f.loss = &la;
  cross_entropy_fwd(f);
  XentBwdParams b;
  b.logits = pr.logits.data(), b.targets = pr.targets.data(), b.lse = lse.data();
  b.n = 23, b.vocab = 50, b.dlogits = da.data(), b.grad_scale = 0.5f;
  cross_entropy_bwd(b);
  XentFwdBwdParams p;
  p.fwd = f;
  p.fwd.logits = db.data(), p.fwd.lse = nullptr, p.fwd.loss = &lb;
  p.dlogits = db.data(), p.grad_scale = 0.5f;
  cross_entropy_fwd_bwd(p);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(da, db);
  EXPECT_NE(da, pr.logits);
}

TEST(CrossEntropy, InPlaceBackwardAndAllIgnored) {
  Problem pr = make(6, 10, 3);
  std::vector<float> lse(6), out(60);
  float loss = 0;
  XentFwdParams f;
  f.logits = pr.logits.data(), f.targets = pr.targets.data(), f.loss = &loss, f.lse = lse.data();
  f.n = 6, f.vocab = 10;
  cross_entropy_fwd(f);
  XentBwdParams b;
  b.logits = pr.logits.data(), b.targets = pr.targets.data(), b.lse = lse.data();
  b.dlogits = out.data(), b.n = 6, b.vocab = 10;
  cross_entropy_bwd(b);
  b.dlogits = pr.logits.data();  // in place
  cross_entropy_bwd(b);
  EXPECT_EQ(pr.logits, out);

  const std::vector<int64_t> none(6, -100);
  f.targets = none.data(), b.targets = none.data(), b.dlogits = out.data();
  cross_entropy_fwd(f);
  cross_entropy_bwd(b);
  EXPECT_EQ(loss, 0.0f);
  EXPECT_EQ(out, std::vector<float>(60, 0.0f));
}

TEST(CrossEntropy, TargetOutsideVocabularyIsInputError) {
  const Problem pr = make(2, 5, 4);
  const std::vector<int64_t> bad = {1, 5};
  float loss;
  XentFwdParams f;
  f.logits = pr.logits.data(), f.targets = bad.data(), f.loss = &loss, f.n = 2, f.vocab = 5;
  try {
    cross_entropy_fwd(f);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("target 5 at row 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace graft
