// CUDA element-wise ops (add, axpy, scale, fill, cast, copy_2d, sum_rows) against the CPU.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

class CudaElementwise : public ::testing::TestWithParam<DType> {};

TEST_P(CudaElementwise, AddAxpyScaleFillMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const DType dt = GetParam();
  auto rng = rng_for(dtype_name(dt));
  const int64_t n = 71 * 229;
  Tensor a = random_host({n}, rng, dt), b = random_host({n}, rng, dt);
  // CPU reference on f32 copies of the same values, rounded to dt after each op like the GPU.
  Tensor out_h = Tensor::empty({n}, dt);
  Tensor a_dt = a.to(dt), b_dt = b.to(dt);
  AddParams ap;
  ap.n = n, ap.dtype = dt;
  AddParams ac = ap;
  ac.a = a_dt.raw(), ac.b = b_dt.raw(), ac.out = out_h.raw();
  add(ac);
  Tensor a_d = to_gpu(a, dt), b_d = to_gpu(b, dt), out_d = poisoned({n}, dt);
  AddParams ag = ap;
  ag.a = a_d.raw(), ag.b = b_d.raw(), ag.out = out_d.raw(), ag.device = gpu();
  add(ag);
  expect_close(out_d, out_h, tol_for(dt), "add");

  AxpyParams xp;
  xp.n = n, xp.alpha = -0.37f, xp.dtype = dt;
  AxpyParams xc = xp;
  xc.x = a_dt.raw(), xc.y = out_h.raw();
  axpy(xc);
  AxpyParams xg = xp;
  xg.x = a_d.raw(), xg.y = out_d.raw(), xg.device = gpu();
  axpy(xg);
  expect_close(out_d, out_h, tol_for(dt), "axpy");

  ScaleParams sp;
  sp.n = n, sp.alpha = 1.7f, sp.dtype = dt;
  ScaleParams sc = sp;
  sc.x = out_h.raw();
  scale(sc);
  ScaleParams sg = sp;
  sg.x = out_d.raw(), sg.device = gpu();
  scale(sg);
  expect_close(out_d, out_h, tol_for(dt), "scale");

  FillParams fp;
  fp.n = n - 3, fp.value = 2.718f, fp.dtype = dt;
  FillParams fc = fp;
  fc.x = out_h.raw();
  fill(fc);
  FillParams fg = fp;
  fg.x = out_d.raw(), fg.device = gpu();
  fill(fg);
  expect_close(out_d, out_h, tol_for(dt), "fill");
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaElementwise, ::testing::Values(DType::kF32, DType::kBF16));

TEST(CudaElementwiseCast, AllPairsRoundLikeTheCpu) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 29 * 541;
  Tensor x = random_host({n}, rng, DType::kF32, -300.0f, 300.0f);
  for (DType s : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
      Tensor src = x.to(s);
      Tensor want = src.to(d);  // the CPU conversion: round to nearest even
      Tensor src_d = src.to(gpu()), dst_d = poisoned({n}, d);
      CastParams p;
      p.src = src_d.raw(), p.dst = dst_d.raw(), p.n = n, p.src_dtype = s, p.dst_dtype = d;
      p.device = gpu();
      cast(p);
      EXPECT_EQ(to_host_f32(dst_d).to_f32_vector(), to_host_f32(want).to_f32_vector())
          << dtype_name(s) << " -> " << dtype_name(d);
    }
  }
}

// Views one element into their buffers take the element path; full buffers the vector path plus
// the n % 8 tail (n = 29 * 541 above): both round like the CPU.
TEST(CudaElementwiseCast, MisalignedViewsTakeTheElementPath) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t n = 1001;
  Tensor x = random_host({n}, rng, DType::kF32, -3.0f, 3.0f);
  Tensor src_d = x.to(gpu()), dst_d = poisoned({n}, DType::kBF16);
  CastParams p;
  p.src = static_cast<const float*>(src_d.raw()) + 1;
  p.dst = static_cast<char*>(dst_d.raw()) + 2, p.n = n - 1;
  p.src_dtype = DType::kF32, p.dst_dtype = DType::kBF16, p.device = gpu();
  cast(p);
  const std::vector<float> got = to_host_f32(dst_d).to_f32_vector();
  const std::vector<float> want = to_host_f32(x.to(DType::kBF16)).to_f32_vector();
  EXPECT_TRUE(std::isnan(got[0]));  // untouched
  EXPECT_EQ(std::vector<float>(got.begin() + 1, got.end()),
            std::vector<float>(want.begin() + 1, want.end()));
}

TEST(CudaElementwiseCopy2d, StridedBlockCopy) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  Tensor src = random_host({71, 229}, rng, DType::kBF16);
  Tensor src_d = to_gpu(src, DType::kBF16), dst_d = poisoned({71, 300}, DType::kBF16);
  Copy2dParams p;
  p.src = static_cast<const char*>(src_d.raw()) + 5 * 2, p.dst = dst_d.raw();
  p.rows = 71, p.cols = 200, p.ld_src = 229, p.ld_dst = 300, p.dtype = DType::kBF16;
  p.device = gpu();
  copy_2d(p);
  Tensor got = to_host_f32(dst_d).slice(1, 0, 200).contiguous();
  Tensor want = src.slice(1, 5, 200).contiguous();
  EXPECT_EQ(got.to_f32_vector(), want.to_f32_vector());
}

TEST(CudaElementwiseSumRows, ColumnSumsAccumulateDeterministically) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  for (DType dt : {DType::kF32, DType::kBF16}) {
    const int64_t rows = 541, cols = 229, ld = 240;
    Tensor x = random_host({rows, ld}, rng, dt);
    Tensor out0 = random_host({cols}, rng);
    Tensor out_h = out0.clone();
    SumRowsParams p;
    p.rows = rows, p.cols = cols, p.ld = ld;
    SumRowsParams c = p;
    c.x = x.raw(), c.out = out_h.data<float>();
    sum_rows(c);
    Tensor x_d = to_gpu(x, dt);
    std::vector<float> first;
    for (int run = 0; run < 2; ++run) {
      Tensor out_d = out0.to(gpu());
      SumRowsParams g = p;
      g.x = x_d.raw(), g.out = static_cast<float*>(out_d.raw()), g.dtype = dt, g.device = gpu();
      sum_rows(g);
      Tol t = kF32Tol;  // f32 partial sums of 64 rows, then chunks; the CPU sums in f64
      t.atol += 4.0 * std::sqrt(static_cast<double>(rows)) * kU32;
      expect_close(out_d, out_h, t, str("sum_rows ", dtype_name(dt)));
      auto v = to_host_f32(out_d).to_f32_vector();
      if (run == 0)
        first = v;
      else
        EXPECT_EQ(v, first);
    }
  }
}

// accumulate = false (a stale gradient's first contribution) never reads the output (NaN here) and
// gives the accumulate into zeros bit for bit; with no rows it writes zeros.
TEST(CudaElementwiseSumRows, WritesWithoutReading) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t rows = 131, cols = 229;
  Tensor x_d = to_gpu(random_host({rows, cols}, rng, DType::kBF16), DType::kBF16);
  Tensor nan = Tensor::full({cols}, std::nanf(""), DType::kF32);
  Tensor written = nan.to(gpu()), added = Tensor::zeros({cols}, DType::kF32, gpu());
  SumRowsParams p;
  p.x = x_d.raw(), p.rows = rows, p.cols = cols, p.dtype = DType::kBF16, p.device = gpu();
  SumRowsParams w = p;
  w.out = static_cast<float*>(written.raw()), w.accumulate = false;
  sum_rows(w);
  p.out = static_cast<float*>(added.raw());
  sum_rows(p);
  EXPECT_EQ(to_host_f32(written).to_f32_vector(), to_host_f32(added).to_f32_vector());
  Tensor empty = nan.to(gpu());
  w.out = static_cast<float*>(empty.raw()), w.rows = 0;
  sum_rows(w);
  EXPECT_EQ(to_host_f32(empty).to_f32_vector(), std::vector<float>(cols, 0.0f));
}

}  // namespace
}  // namespace graft
