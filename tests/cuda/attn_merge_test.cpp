// CUDA attn_merge (kernels/attn_merge.h) against the CPU reference: three partial results of
// f32 or bf16 folded into f32 accumulators at a row offset, with fully masked partial rows
// (lse -inf) and accumulator rows that start empty.
#include "kernels/attn_merge.h"

#include <gtest/gtest.h>

#include <limits>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct MergeCase {
  const char* name;
  int64_t batch, seq_part, seq_acc, row0, heads, dim;
  DType dt;
};

class CudaAttnMerge : public ::testing::TestWithParam<MergeCase> {};

TEST_P(CudaAttnMerge, MatchesCpu) {
  GRAFT_REQUIRE_CUDA();
  const MergeCase c = GetParam();
  auto rng = rng_for(c.name);
  const float inf = std::numeric_limits<float>::infinity();
  const Shape acc_shape{c.batch, c.seq_acc, c.heads, c.dim}, lse_shape{c.batch, c.heads, c.seq_acc};
  Tensor acc_h = Tensor::zeros(acc_shape, DType::kF32);
  Tensor lse_h = Tensor::full(lse_shape, -inf, DType::kF32);
  Tensor acc_d = acc_h.to(gpu()), lse_d = lse_h.to(gpu());
  for (int part = 0; part < 3; ++part) {
    Tensor p = random_host({c.batch, c.seq_part, c.heads, c.dim}, rng, c.dt);
    Tensor pl = random_host({c.batch, c.heads, c.seq_part}, rng, DType::kF32, -3.0f, 3.0f);
    for (int64_t i = part; i < pl.numel(); i += 7) pl.data<float>()[i] = -inf;  // masked rows
    AttnMergeParams mc;
    mc.part = p.raw();
    mc.part_lse = pl.data<float>();
    mc.acc = acc_h.data<float>();
    mc.acc_lse = lse_h.data<float>();
    mc.batch = c.batch, mc.seq_part = c.seq_part, mc.seq_acc = c.seq_acc, mc.row0 = c.row0;
    mc.heads = c.heads, mc.head_dim = c.dim, mc.device = Device::cpu();
    attn_merge(mc);
    Tensor p_d = to_gpu(p, c.dt), pl_d = pl.to(gpu());
    AttnMergeParams mg = mc;
    mg.part = p_d.raw();
    mg.part_lse = static_cast<const float*>(pl_d.raw());
    mg.acc = static_cast<float*>(acc_d.raw());
    mg.acc_lse = static_cast<float*>(lse_d.raw());
    mg.dtype = c.dt, mg.device = gpu();
    attn_merge(mg);
  }
  // f32 weights exp(l - lse) on the GPU against f64 ones on the CPU: a few ulps per merge.
  expect_close(acc_d, acc_h, Tol{1e-6, 2e-6}, "acc");
  expect_close(lse_d, lse_h, Tol{1e-6, 2e-6}, "lse");
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttnMerge,
                         ::testing::Values(MergeCase{"f32", 2, 29, 29, 0, 4, 64, DType::kF32},
                                           MergeCase{"offset_f32", 3, 13, 41, 17, 2, 71,
                                                     DType::kF32},
                                           MergeCase{"bf16", 2, 32, 64, 32, 8, 128, DType::kBF16}),
                         [](const auto& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace graft
