// Element-wise ops on f32 and bf16 storage, strided copies for split/concat, column sums.
#include "kernels/elementwise.h"

#include <cmath>

#include "kernel_test_util.h"

namespace graft {
namespace {

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}

TEST(Elementwise, AddAxpyScaleFillF32) {
  const int64_t n = 229;
  const auto a = test::randn(n, 1), b = test::randn(n, 2);
  std::vector<float> out(n, NAN);
  AddParams ap;
  ap.a = a.data(), ap.b = b.data(), ap.out = out.data(), ap.n = n;
  add(ap);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], a[i] + b[i]);

  std::vector<float> y = a;
  AxpyParams xp;
  xp.x = b.data(), xp.y = y.data(), xp.alpha = -0.75f, xp.n = n;
  axpy(xp);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] + -0.75f * b[i]);

  ScaleParams sp;
  sp.x = y.data(), sp.alpha = 3.0f, sp.n = n;
  scale(sp);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 3.0f * (a[i] + -0.75f * b[i]));

  FillParams fp;
  fp.x = y.data(), fp.value = 2.5f, fp.n = n - 1;  // leaves the last element alone
  fill(fp);
  for (int64_t i = 0; i < n - 1; ++i) ASSERT_EQ(y[i], 2.5f);
  EXPECT_NE(y[n - 1], 2.5f);
}

TEST(Elementwise, Bf16ArithmeticRoundsOnceToNearestEven) {
  const int64_t n = 71;
  const auto a = test::randn(n, 3), b = test::randn(n, 4);
  const auto a16 = to_bf16(a), b16 = to_bf16(b);
  std::vector<uint16_t> out(n);
  AddParams ap;
  ap.a = a16.data(), ap.b = b16.data(), ap.out = out.data(), ap.n = n, ap.dtype = DType::kBF16;
  add(ap);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(out[i], f32_to_bf16(bf16_to_f32(a16[i]) + bf16_to_f32(b16[i])));
  auto y = a16;
  AxpyParams xp;
  xp.x = b16.data(), xp.y = y.data(), xp.alpha = 2.0f, xp.n = n, xp.dtype = DType::kBF16;
  axpy(xp);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(y[i], f32_to_bf16(bf16_to_f32(a16[i]) + 2.0f * bf16_to_f32(b16[i])));
}

TEST(Elementwise, CastBetweenF32Bf16F16) {
  const auto x = test::randn(541, 5, 100.0f);
  std::vector<uint16_t> bf(541), hf(541);
  std::vector<float> back(541);
  CastParams cp;
  cp.src = x.data(), cp.dst = bf.data(), cp.n = 541;
  cast(cp);
  EXPECT_EQ(bf, to_bf16(x));
  cp.dst = hf.data(), cp.dst_dtype = DType::kF16;
  cast(cp);
  for (int i = 0; i < 541; ++i) ASSERT_EQ(hf[i], f32_to_f16(x[i]));
  cp.src = hf.data(), cp.src_dtype = DType::kF16, cp.dst = back.data(), cp.dst_dtype = DType::kF32;
  cast(cp);
  for (int i = 0; i < 541; ++i) ASSERT_EQ(back[i], f16_to_f32(hf[i]));
  cp.dst_dtype = DType::kI32;
  EXPECT_THROW(cast(cp), Error);
}

// Splitting a fused [rows, q | k | v] projection into three matrices and concatenating back.
TEST(Elementwise, Copy2dSplitsAndConcatenatesFusedColumns) {
  const int64_t rows = 7, q = 24, kv = 8, w = q + 2 * kv;
  const auto fused = test::randn(rows * w, 6);
  std::vector<float> qm(rows * q), km(rows * kv), vm(rows * kv), back(rows * w, NAN);
  Copy2dParams c;
  c.rows = rows, c.ld_src = w;
  c.src = fused.data(), c.dst = qm.data(), c.cols = q;
  copy_2d(c);
  c.src = fused.data() + q, c.dst = km.data(), c.cols = kv;
  copy_2d(c);
  c.src = fused.data() + q + kv, c.dst = vm.data();
  copy_2d(c);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < q; ++j) ASSERT_EQ(qm[r * q + j], fused[r * w + j]);
    for (int64_t j = 0; j < kv; ++j) ASSERT_EQ(vm[r * kv + j], fused[r * w + q + kv + j]);
  }
  Copy2dParams d;
  d.rows = rows, d.ld_dst = w, d.ld_src = 0;
  for (auto [src, off, cols] : {std::tuple{&qm, int64_t{0}, q}, {&km, q, kv}, {&vm, q + kv, kv}}) {
    d.src = src->data(), d.dst = back.data() + off, d.cols = cols;
    copy_2d(d);
  }
  EXPECT_EQ(back, fused);
  // Any dtype is copied bytewise (here i64 ids).
  const std::vector<int64_t> ids = {1, 2, 3, 4, 5, 6};
  std::vector<int64_t> col(3);
  Copy2dParams e;
  e.src = ids.data(), e.dst = col.data(), e.rows = 3, e.cols = 1, e.ld_src = 2, e.ld_dst = 1;
  e.dtype = DType::kI64;
  copy_2d(e);
  EXPECT_EQ(col, (std::vector<int64_t>{1, 3, 5}));
}

TEST(Elementwise, SumRowsAccumulatesColumnSums) {
  const int64_t rows = 71, cols = 229, ld = 233;
  const auto x = test::randn(rows * ld, 7);
  auto out = test::randn(cols, 8);
  const auto out0 = out;
  SumRowsParams p;
  p.x = x.data(), p.out = out.data(), p.rows = rows, p.cols = cols, p.ld = ld;
  sum_rows(p);
  for (int64_t c = 0; c < cols; ++c) {
    double s = out0[c];
    for (int64_t r = 0; r < rows; ++r) s += x[r * ld + c];
    // f64 sum, f32 rounding of the column sum and of the final add: 1e-6 of the magnitude.
    ASSERT_NEAR(out[c], s, 1e-6 * (std::abs(s) + rows));
  }
}

// accumulate = false writes the sums (a stale gradient's first contribution): the old contents,
// NaN here, are never read, and the result is bit for bit the accumulate into zeros.
TEST(Elementwise, SumRowsWritesWithoutReading) {
  const int64_t rows = 29, cols = 71;
  const auto x = test::randn(rows * cols, 9);
  std::vector<float> written(cols, std::nanf("")), added(cols, 0.0f);
  SumRowsParams p;
  p.x = x.data(), p.rows = rows, p.cols = cols;
  SumRowsParams w = p;
  w.out = written.data(), w.accumulate = false;
  sum_rows(w);
  p.out = added.data();
  sum_rows(p);
  EXPECT_EQ(written, added);
  w.rows = 0;  // an empty sum writes zeros
  sum_rows(w);
  EXPECT_EQ(written, std::vector<float>(cols, 0.0f));
}

}  // namespace
}  // namespace graft
