// qkv_split / merge on CUDA against the CPU reference: both layouts, bf16 and f32, the 16-byte
// path (head_dim % 8 == 0) and the element path (odd head_dim, a misaligned view).
#include "kernels/qkv.h"

#include <gtest/gtest.h>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct Case {
  int64_t rows, hq, hkv, d, pad;
  bool grouped;
  DType dt;
  int64_t offset;  // elements: the fused buffer starts this far into its allocation
};

class CudaQkvSplit : public ::testing::TestWithParam<Case> {};

TEST_P(CudaQkvSplit, SplitAndMergeMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const Case c = GetParam();
  auto rng = rng_for();
  const int64_t w = (c.hq + 2 * c.hkv) * c.d, ld = w + c.pad;
  Tensor host = random_host({c.offset + c.rows * ld}, rng, c.dt);  // f32 holding dt values
  Tensor q = Tensor::empty({c.rows, c.hq * c.d}, DType::kF32);
  Tensor k = Tensor::empty({c.rows, c.hkv * c.d}, DType::kF32), v = k.clone();
  QkvSplitParams p;
  p.qkv = host.data<float>() + c.offset, p.q = q.raw(), p.k = k.raw(), p.v = v.raw();
  p.rows = c.rows, p.heads_q = c.hq, p.heads_kv = c.hkv, p.head_dim = c.d, p.ld = ld;
  p.grouped = c.grouped, p.dtype = DType::kF32;
  qkv_split(p);

  Tensor dev = to_gpu(host, c.dt);
  Tensor dq = poisoned({c.rows, c.hq * c.d}, c.dt), dk = poisoned({c.rows, c.hkv * c.d}, c.dt);
  Tensor dv = poisoned({c.rows, c.hkv * c.d}, c.dt);
  QkvSplitParams g = p;
  g.qkv = static_cast<char*>(dev.raw()) + c.offset * dtype_size(c.dt);
  g.q = dq.raw(), g.k = dk.raw(), g.v = dv.raw(), g.dtype = c.dt, g.device = gpu();
  qkv_split(g);
  expect_close(dq, q, Tol{0, 0}, "q");
  expect_close(dk, k, Tol{0, 0}, "k");
  expect_close(dv, v, Tol{0, 0}, "v");
  // Merge back into a poisoned buffer: the qkv columns equal the original, padding untouched.
  Tensor merged = to_gpu(Tensor::zeros({c.offset + c.rows * ld}, DType::kF32), c.dt);
  g.qkv = static_cast<char*>(merged.raw()) + c.offset * dtype_size(c.dt), g.merge = true;
  qkv_split(g);
  Tensor back = to_host_f32(merged);
  const float* a = back.data<float>() + c.offset;
  const float* b = host.data<float>() + c.offset;
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t j = 0; j < ld; ++j)
      ASSERT_EQ(a[r * ld + j], j < w ? b[r * ld + j] : 0.0f) << r << " " << j;
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(
    Layouts, CudaQkvSplit,
    ::testing::Values(Case{257, 32, 8, 64, 0, true, B, 0}, Case{257, 32, 8, 64, 0, false, B, 0},
                      Case{71, 4, 2, 5, 3, true, B, 0}, Case{29, 6, 1, 16, 0, true, B, 1},
                      Case{29, 4, 2, 8, 4, false, F, 0}, Case{3, 3, 3, 7, 1, false, F, 1}));

}  // namespace
}  // namespace graft
