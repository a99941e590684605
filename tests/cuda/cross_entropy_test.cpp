// CUDA softmax cross-entropy (forward/backward, ignore_index, mean/sum, row chunks, in place)
// against the CPU reference (f64).
#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct XentCase {
  int64_t n, vocab;
  Reduction red;
  DType dt;
  bool in_place;
};

class CudaXent : public ::testing::TestWithParam<XentCase> {};

TEST_P(CudaXent, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const XentCase c = GetParam();
  auto rng = rng_for(str(c.n, "_", c.vocab, static_cast<int>(c.red), dtype_name(c.dt)));
  Tensor logits = random_host({c.n, c.vocab}, rng, c.dt, -8.0f, 8.0f);
  std::uniform_int_distribution<int64_t> tdist(0, c.vocab - 1);
  std::vector<int64_t> tg(static_cast<size_t>(c.n));
  for (int64_t i = 0; i < c.n; ++i) tg[i] = i % 5 == 3 ? -100 : tdist(rng);
  Tensor targets = Tensor::from_vector(tg, {c.n});

  Tensor loss_h = Tensor::empty({1}, DType::kF32), lse_h = Tensor::empty({c.n}, DType::kF32);
  Tensor rl_h = Tensor::empty({c.n}, DType::kF32),
         dl_h = Tensor::empty({c.n, c.vocab}, DType::kF32);
  XentFwdParams f;
  f.n = c.n, f.vocab = c.vocab, f.reduction = c.red;
  XentBwdParams b;
  b.n = c.n, b.vocab = c.vocab, b.reduction = c.red, b.grad_scale = 0.5f;
  XentFwdParams fc = f;
  fc.logits = logits.raw(), fc.targets = targets.data<int64_t>(), fc.loss = loss_h.data<float>();
  fc.lse = lse_h.data<float>(), fc.row_loss = rl_h.data<float>();
  cross_entropy_fwd(fc);
  XentBwdParams bc = b;
  bc.logits = logits.raw(), bc.targets = targets.data<int64_t>(), bc.lse = lse_h.data<float>();
  bc.dlogits = dl_h.raw();
  cross_entropy_bwd(bc);

  Tensor lg_d = to_gpu(logits, c.dt), tg_d = targets.to(gpu());
  Tensor loss_d = poisoned({1}, DType::kF32), lse_d = poisoned({c.n}, DType::kF32);
  Tensor rl_d = poisoned({c.n}, DType::kF32);
  XentFwdParams fg = f;
  fg.logits = lg_d.raw(), fg.targets = static_cast<const int64_t*>(tg_d.raw());
  fg.loss = static_cast<float*>(loss_d.raw()), fg.lse = static_cast<float*>(lse_d.raw());
  fg.row_loss = static_cast<float*>(rl_d.raw()), fg.dtype = c.dt, fg.device = gpu();
  cross_entropy_fwd(fg);
  // Backward from the CPU's lse (checked on its own), in place over the logits when asked.
  Tensor lse_ref = lse_h.to(gpu());
  Tensor dl_d = c.in_place ? lg_d.clone() : poisoned({c.n, c.vocab}, c.dt);
  XentBwdParams bg = b;
  bg.logits = c.in_place ? dl_d.raw() : lg_d.raw();
  bg.targets = static_cast<const int64_t*>(tg_d.raw());
  bg.lse = static_cast<const float*>(lse_ref.raw()), bg.dlogits = dl_d.raw();
  bg.dtype = c.dt, bg.device = gpu();
  cross_entropy_bwd(bg);

  // lse: an f32 sum of `vocab` exponentials vs f64; loss: f32 row values summed in f64.
  Tol t_lse = kF32Tol;
  t_lse.atol += 4.0 * std::sqrt(static_cast<double>(c.vocab)) * kU32 * 8.0;
  expect_close(lse_d, lse_h, t_lse, "lse");
  expect_close(rl_d, rl_h, t_lse, "row_loss");
  expect_close(loss_d, loss_h, t_lse, "loss");
  Tol t = tol_for(c.dt);
  t.atol += kU32;  // dlogits ~ 1/(n vocab): exp of an f32 difference, a few ulp of 1
  expect_close(dl_d, dl_h, t, "dlogits");
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(Shapes, CudaXent,
                         ::testing::Values(XentCase{71, 229, Reduction::kMean, F, false},
                                           XentCase{29, 541, Reduction::kSum, F, false},
                                           XentCase{1, 4099, Reduction::kMean, F, true},
                                           XentCase{29, 32000, Reduction::kMean, F, false},
                                           XentCase{71, 229, Reduction::kMean, B, true},
                                           XentCase{29, 541, Reduction::kSum, B, false},
                                           // vocab % 8 == 0: the 16-byte vector path
                                           XentCase{33, 1032, Reduction::kMean, B, true},
                                           XentCase{7, 128256, Reduction::kMean, B, false},
                                           XentCase{5, 64, Reduction::kSum, F, true}));

// cross_entropy_fwd_bwd gives the bits of cross_entropy_fwd then cross_entropy_bwd (loss, lse,
// row_loss, dlogits), in place or not, for every divisor source: counted, host num_valid, and
// num_valid_at holding a count or -1; vocab % 8 != 0 (the element path) and the 1B's vocabulary.
TEST(CudaXentFused, EqualsForwardThenBackwardBitForBit) {
  GRAFT_REQUIRE_CUDA();
  struct Case {
    int64_t n, vocab;
    DType dt;
    bool in_place;
    int divisor;  // 0 counted, 1 host, 2 device count, 3 device -1 (with a wrong host value)
    Reduction red;
  };
  for (const Case c : {Case{300, 1032, DType::kBF16, true, 0, Reduction::kMean},
                       Case{71, 229, DType::kF32, false, 1, Reduction::kMean},
                       Case{29, 541, DType::kBF16, false, 2, Reduction::kMean},
                       Case{29, 541, DType::kBF16, true, 3, Reduction::kMean},
                       Case{140, 128256, DType::kBF16, true, 0, Reduction::kMean},
                       Case{33, 4099, DType::kF32, true, 0, Reduction::kSum}}) {
    SCOPED_TRACE(str(c.n, "x", c.vocab, " ", dtype_name(c.dt), " in_place ", c.in_place,
                     " divisor ", c.divisor));
    auto rng = rng_for(str(c.n, "_", c.vocab));
    Tensor lg = random_host({c.n, c.vocab}, rng, DType::kF32, -6.0f, 6.0f).to(c.dt).to(gpu());
    std::vector<int64_t> tg(static_cast<size_t>(c.n));
    for (int64_t i = 0; i < c.n; ++i) tg[i] = i % 6 == 1 ? -100 : (i * 7919) % c.vocab;
    Tensor targets = Tensor::from_vector(tg, {c.n}).to(gpu());
    Tensor at = Tensor::from_vector(std::vector<int64_t>{c.divisor == 3 ? -1 : 97}, {1}).to(gpu());
    XentFwdParams f;
    f.targets = static_cast<const int64_t*>(targets.raw());
    f.n = c.n, f.vocab = c.vocab, f.reduction = c.red, f.dtype = c.dt, f.device = gpu();
    if (c.divisor == 1) f.num_valid = 57;
    if (c.divisor >= 2) f.num_valid_at = static_cast<const int64_t*>(at.raw());
    if (c.divisor == 3) f.num_valid = 57;  // the device's -1 wins: count
    struct Out {
      Tensor logits, loss, lse, row_loss, dlogits;
    };
    auto outputs = [&] {
      Out o;
      o.logits = lg.clone();
      o.loss = poisoned({1}, DType::kF32), o.lse = poisoned({c.n}, DType::kF32);
      o.row_loss = poisoned({c.n}, DType::kF32);
      o.dlogits = c.in_place ? o.logits : poisoned({c.n, c.vocab}, c.dt);
      return o;
    };
    Out a = outputs(), b = outputs();
    XentFwdParams fa = f;
    fa.logits = a.logits.raw(), fa.loss = static_cast<float*>(a.loss.raw());
    fa.lse = static_cast<float*>(a.lse.raw()), fa.row_loss = static_cast<float*>(a.row_loss.raw());
    cross_entropy_fwd(fa);
    XentBwdParams ba;
    ba.logits = a.logits.raw(), ba.targets = f.targets, ba.lse = fa.lse,
    ba.dlogits = a.dlogits.raw();
    ba.n = c.n, ba.vocab = c.vocab, ba.reduction = c.red, ba.num_valid = f.num_valid;
    ba.num_valid_at = f.num_valid_at, ba.grad_scale = 0.25f, ba.dtype = c.dt, ba.device = gpu();
    cross_entropy_bwd(ba);
    XentFwdBwdParams p;
    p.fwd = f;
    p.fwd.logits = b.logits.raw(), p.fwd.loss = static_cast<float*>(b.loss.raw());
    p.fwd.lse = static_cast<float*>(b.lse.raw());
    p.fwd.row_loss = static_cast<float*>(b.row_loss.raw());
    p.dlogits = b.dlogits.raw(), p.grad_scale = 0.25f, p.device = gpu();
    cross_entropy_fwd_bwd(p);
    EXPECT_EQ(to_host_f32(a.loss).to_f32_vector(), to_host_f32(b.loss).to_f32_vector());
    EXPECT_EQ(to_host_f32(a.lse).to_f32_vector(), to_host_f32(b.lse).to_f32_vector());
    EXPECT_EQ(to_host_f32(a.row_loss).to_f32_vector(), to_host_f32(b.row_loss).to_f32_vector());
    EXPECT_EQ(to_host_f32(a.dlogits).to_f32_vector(), to_host_f32(b.dlogits).to_f32_vector());
    EXPECT_TRUE(std::isfinite(to_host_f32(b.loss).to_f32_vector()[0]));
  }
}

// Two row chunks (accumulate, global num_valid) give the loss and gradients of one call.
TEST(CudaXentChunks, ChunkedEqualsWhole) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 71, vocab = 541, split = 30;
  Tensor logits = random_host({n, vocab}, rng, DType::kF32, -4.0f, 4.0f);
  std::vector<int64_t> tg(n);
  std::uniform_int_distribution<int64_t> tdist(0, vocab - 1);
  int64_t valid = 0;
  for (int64_t i = 0; i < n; ++i) {
    tg[i] = i % 7 == 0 ? -100 : tdist(rng);
    valid += tg[i] != -100;
  }
  Tensor lg = logits.to(gpu()), targets = Tensor::from_vector(tg, {n}).to(gpu());
  Tensor whole = poisoned({1}, DType::kF32), chunked = poisoned({1}, DType::kF32);
  XentFwdParams p;
  p.logits = lg.raw(), p.targets = static_cast<const int64_t*>(targets.raw());
  p.n = n, p.vocab = vocab, p.device = gpu(), p.loss = static_cast<float*>(whole.raw());
  cross_entropy_fwd(p);
  const float* lbase = static_cast<const float*>(lg.raw());
  const int64_t* tbase = static_cast<const int64_t*>(targets.raw());
  for (int chunk = 0; chunk < 2; ++chunk) {
    XentFwdParams q = p;
    q.logits = lbase + (chunk ? split * vocab : 0), q.targets = tbase + (chunk ? split : 0);
    q.n = chunk ? n - split : split, q.num_valid = valid, q.accumulate = chunk == 1;
    q.loss = static_cast<float*>(chunked.raw());
    cross_entropy_fwd(q);
  }
  Tol t = kF32Tol;
  expect_close(chunked, whole, t, "chunked loss");
  // With every target ignored the loss is 0, not NaN.
  Tensor ign = Tensor::from_vector(std::vector<int64_t>(n, -100), {n}).to(gpu());
  XentFwdParams q = p;
  q.targets = static_cast<const int64_t*>(ign.raw());
  cross_entropy_fwd(q);
  EXPECT_EQ(to_host_f32(whole).to_f32_vector()[0], 0.0f);
}

// num_valid_at: the divisor read from device memory gives the bits num_valid gives (what a
// replayed CUDA graph relies on), forward and backward, bf16 logits.
TEST(CudaXentChunks, DivisorFromDeviceMemoryEqualsTheArgument) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 29, vocab = 541, divisor = 57;
  Tensor lg = random_host({n, vocab}, rng, DType::kF32, -4.0f, 4.0f).to(DType::kBF16).to(gpu());
  std::vector<int64_t> tg(n);
  for (int64_t i = 0; i < n; ++i) tg[i] = i % 5 == 0 ? -100 : (i * 37) % vocab;
  Tensor targets = Tensor::from_vector(tg, {n}).to(gpu());
  Tensor at = Tensor::from_vector(std::vector<int64_t>{divisor}, {1}).to(gpu());
  Tensor loss_a = poisoned({1}, DType::kF32), loss_b = poisoned({1}, DType::kF32);
  Tensor lse = Tensor::empty({n}, DType::kF32, gpu());
  Tensor da = Tensor::empty({n, vocab}, DType::kBF16, gpu()), db = da.clone();
  XentFwdParams f;
  f.logits = lg.raw(), f.targets = static_cast<const int64_t*>(targets.raw());
  f.n = n, f.vocab = vocab, f.device = gpu(), f.dtype = DType::kBF16;
  f.lse = static_cast<float*>(lse.raw());
  XentFwdParams fa = f, fb = f;
  fa.num_valid = divisor, fa.loss = static_cast<float*>(loss_a.raw());
  fb.num_valid_at = static_cast<const int64_t*>(at.raw()),
  fb.loss = static_cast<float*>(loss_b.raw());
  cross_entropy_fwd(fa);
  cross_entropy_fwd(fb);
  EXPECT_EQ(to_host_f32(loss_a).to_f32_vector(), to_host_f32(loss_b).to_f32_vector());
  XentBwdParams b;
  b.logits = lg.raw(), b.targets = f.targets, b.lse = f.lse, b.n = n, b.vocab = vocab;
  b.device = gpu(), b.dtype = DType::kBF16, b.grad_scale = 0.5f;
  XentBwdParams ba = b, bb = b;
  ba.num_valid = divisor, ba.dlogits = da.raw();
  bb.num_valid_at = fb.num_valid_at, bb.dlogits = db.raw();
  cross_entropy_bwd(ba);
  cross_entropy_bwd(bb);
  EXPECT_EQ(to_host_f32(da).to_f32_vector(), to_host_f32(db).to_f32_vector());

  // -1 in memory means "count this call's targets", whatever the host num_valid says: the
  // backward then divides by the count (here 23 of 29 valid), as a call with num_valid = -1 does.
  Tensor minus1 = Tensor::from_vector(std::vector<int64_t>{-1}, {1}).to(gpu());
  XentBwdParams bc = b, bd = b;
  bc.num_valid = -1, bc.dlogits = da.raw();
  bd.num_valid = divisor, bd.num_valid_at = static_cast<const int64_t*>(minus1.raw());
  bd.dlogits = db.raw();
  cross_entropy_bwd(bc);
  cross_entropy_bwd(bd);
  EXPECT_EQ(to_host_f32(da).to_f32_vector(), to_host_f32(db).to_f32_vector());
}

// shift_labels on the device equals the CPU shift (odd sizes; ignored labels kept ignored).
TEST(CudaShiftLabels, MatchesCpu) {
  GRAFT_REQUIRE_CUDA();
  for (auto [B, S] : {std::pair<int64_t, int64_t>{3, 37}, {1, 1}, {5, 2049}}) {
    std::vector<int64_t> labels(static_cast<size_t>(B * S));
    for (size_t i = 0; i < labels.size(); ++i)
      labels[i] = i % 11 == 3 ? -100 : static_cast<int64_t>((i * 7919) % 50021);
    std::vector<int64_t> want(labels.size());
    ShiftLabelsParams c;
    c.labels = labels.data(), c.targets = want.data(), c.batch = B, c.seq = S;
    shift_labels(c);
    Tensor ld = Tensor::from_vector(labels, {B, S}).to(gpu());
    Tensor td = Tensor::empty({B, S}, DType::kI64, gpu());
    ShiftLabelsParams g = c;
    g.labels = static_cast<const int64_t*>(ld.raw()), g.targets = static_cast<int64_t*>(td.raw());
    g.device = gpu();
    shift_labels(g);
    Tensor back = td.to(Device::cpu());
    EXPECT_EQ(std::vector<int64_t>(back.data<int64_t>(), back.data<int64_t>() + B * S), want)
        << B << " x " << S;
  }
}

TEST(CudaXentInput, TargetOutOfRangeIsAnInputError) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  Tensor lg = to_gpu(random_host({2, 5}, rng), DType::kF32);
  Tensor targets = Tensor::from_vector(std::vector<int64_t>{1, 5}, {2}).to(gpu());
  Tensor loss = poisoned({1}, DType::kF32);
  XentFwdParams p;
  p.logits = lg.raw(), p.targets = static_cast<const int64_t*>(targets.raw());
  p.loss = static_cast<float*>(loss.raw()), p.n = 2, p.vocab = 5, p.device = gpu();
  cross_entropy_fwd(p);
  EXPECT_THROW(device_backend().synchronize(gpu()), InputError);
}

}  // namespace
}  // namespace graft
