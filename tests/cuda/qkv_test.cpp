// qkv_split / merge on CUDA against the CPU reference: both layouts, bf16 and f32, the 16-byte
// path (head_dim % 8 == 0) and the element path (odd head_dim, a misaligned view); with RoPE in
// the pass (qkv_split_rope / qkv_merge_rope) against the CPU split + rope_fwd / rope_bwd + merge.
#include "kernels/qkv.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/rope.h"
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

// RoPE inside the split and merge. B sequences of S tokens, positions (i * 5 + 1) % maxpos.
// Tolerance: each output is self * cos -+ partner * sin in f32 on both sides, but the GPU may
// contract one product into an FMA, so f32 results differ by an ulp or two (kF32Tol); in bf16
// that can move the one final rounding by one bf16 ulp (kBF16Tol's 1e-2 relative). v (dv) is a
// copy and must match exactly.
struct RopeCase {
  int64_t batch, seq, hq, hkv, d, rd, pad;
  bool grouped;
  DType dt;
  int64_t offset = 0;  // elements: qkv and dqkv start this far into their allocations
};

// A device copy of host f32 values in `dt` starting `offset` elements into its allocation
// (`keep` owns it); offset 1 misaligns every row for 16-byte units.
Tensor offset_gpu(const Tensor& host, DType dt, int64_t offset, Tensor& keep) {
  std::vector<float> v = host.to_f32_vector();
  v.insert(v.begin(), static_cast<size_t>(offset), 0.0f);
  keep = to_gpu(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}), dt);
  return Tensor::from_blob(static_cast<char*>(keep.raw()) + offset * dtype_size(dt), host.shape(),
                           dt, gpu());
}

class CudaQkvSplitRope : public ::testing::TestWithParam<RopeCase> {};

TEST_P(CudaQkvSplitRope, SplitAndMergeWithRopeMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const RopeCase c = GetParam();
  auto rng = rng_for();
  const int64_t rows = c.batch * c.seq, w = (c.hq + 2 * c.hkv) * c.d, ld = w + c.pad;
  const int64_t maxpos = 64, half = c.rd / 2;
  Tensor cos_h = Tensor::empty({maxpos, half}, DType::kF32), sin_h = cos_h.clone();
  RopeFreqParams fp;
  fp.rotary_dim = c.rd;
  rope_cos_sin_table(fp, maxpos, cos_h.data<float>(), sin_h.data<float>());
  std::vector<int64_t> pv(rows);
  for (int64_t i = 0; i < rows; ++i) pv[i] = (i * 5 + 1) % maxpos;
  Tensor pos_h = Tensor::from_vector(pv, {c.batch, c.seq});
  Tensor qkv_h = random_host({rows, ld}, rng, c.dt);
  Tensor q = Tensor::empty({rows, c.hq * c.d}, DType::kF32);
  Tensor k = Tensor::empty({rows, c.hkv * c.d}, DType::kF32), v = k.clone();
  QkvSplitParams p;
  p.qkv = qkv_h.raw(), p.q = q.raw(), p.k = k.raw(), p.v = v.raw();
  p.rows = rows, p.heads_q = c.hq, p.heads_kv = c.hkv, p.head_dim = c.d, p.ld = ld;
  p.grouped = c.grouped, p.dtype = DType::kF32;
  p.rope.cos = cos_h.data<float>(), p.rope.sin = sin_h.data<float>();
  p.rope.positions = pos_h.data<int64_t>(), p.rope.seq = c.seq, p.rope.rotary_dim = c.rd;
  p.rope.max_positions = maxpos;
  qkv_split(p);
  Tensor dq_h = random_host(q.shape(), rng, c.dt), dk_h = random_host(k.shape(), rng, c.dt);
  Tensor dv_h = random_host(v.shape(), rng, c.dt), dqkv_h = Tensor::zeros({rows, ld}, DType::kF32);
  QkvSplitParams m = p;
  m.qkv = dqkv_h.raw(), m.q = dq_h.raw(), m.k = dk_h.raw(), m.v = dv_h.raw(), m.merge = true;
  qkv_split(m);

  Tensor cos_d = cos_h.to(gpu()), sin_d = sin_h.to(gpu()), pos_d = pos_h.to(gpu());
  Tensor keep_qkv, keep_dqkv;
  Tensor qkv_d = offset_gpu(qkv_h, c.dt, c.offset, keep_qkv);
  Tensor q_d = poisoned(q.shape(), c.dt), k_d = poisoned(k.shape(), c.dt);
  Tensor v_d = poisoned(v.shape(), c.dt);
  QkvSplitParams g = p;
  g.qkv = qkv_d.raw(), g.q = q_d.raw(), g.k = k_d.raw(), g.v = v_d.raw();
  g.rope.cos = static_cast<const float*>(cos_d.raw());
  g.rope.sin = static_cast<const float*>(sin_d.raw());
  g.rope.positions = static_cast<const int64_t*>(pos_d.raw());
  g.dtype = c.dt, g.device = gpu();
  qkv_split(g);
  expect_close(q_d, q, tol_for(c.dt), "q");
  expect_close(k_d, k, tol_for(c.dt), "k");
  expect_close(v_d, v, Tol{0, 0}, "v");
  Tensor dq_d = to_gpu(dq_h, c.dt), dk_d = to_gpu(dk_h, c.dt), dv_d = to_gpu(dv_h, c.dt);
  Tensor dqkv_d = offset_gpu(Tensor::zeros({rows, ld}, DType::kF32), c.dt, c.offset,
                             keep_dqkv);  // padding stays 0
  QkvSplitParams gm = g;
  gm.qkv = dqkv_d.raw(), gm.q = dq_d.raw(), gm.k = dk_d.raw(), gm.v = dv_d.raw(), gm.merge = true;
  qkv_split(gm);
  expect_close(dqkv_d, dqkv_h, tol_for(c.dt), "dqkv");
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CudaQkvSplitRope,
    ::testing::Values(RopeCase{2, 129, 32, 8, 64, 64, 0, true, B},  // Llama 1B heads, 16 B units
                      RopeCase{2, 33, 8, 8, 64, 64, 0, false, B},
                      RopeCase{1, 71, 4, 2, 64, 32, 8, true, B},  // partial rotary, padded rows
                      RopeCase{3, 7, 4, 2, 16, 16, 0, true, F},   // f32, 8-element units
                      RopeCase{2, 9, 6, 3, 12, 12, 0, true, B},   // half = 6: the element path
                      RopeCase{1, 5, 3, 3, 10, 6, 1, false, F},
                      // Llama 8B heads: 448 units a row, two blocks of 256 threads per row
                      RopeCase{1, 65, 32, 8, 128, 128, 0, true, B},
                      // the element path over two blocks a row, partial rotary, not grouped
                      RopeCase{1, 17, 16, 4, 24, 12, 3, false, B},
                      // misaligned views (every Llama divisibility holds): the element path
                      RopeCase{2, 33, 32, 8, 64, 64, 0, true, B, 1},
                      RopeCase{1, 19, 8, 2, 64, 32, 8, false, B, 3}));

TEST(CudaQkvSplitRopeInput, PositionOutOfRangeIsAnInputError) {
  GRAFT_REQUIRE_CUDA();
  Tensor qkv = Tensor::full({3, 3 * 8}, 1.0f).to(gpu());
  Tensor q = poisoned({3, 8}, DType::kF32), k = poisoned({3, 8}, DType::kF32);
  Tensor v = poisoned({3, 8}, DType::kF32);
  Tensor cs = Tensor::full({4, 4}, 1.0f).to(gpu());
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{0, 1, 4}, {1, 3}).to(gpu());
  QkvSplitParams p;
  p.qkv = qkv.raw(), p.q = q.raw(), p.k = k.raw(), p.v = v.raw();
  p.rows = 3, p.heads_q = 1, p.heads_kv = 1, p.head_dim = 8, p.grouped = true;
  p.dtype = DType::kF32, p.device = gpu();
  p.rope.cos = static_cast<const float*>(cs.raw()), p.rope.sin = p.rope.cos;
  p.rope.positions = static_cast<const int64_t*>(pos.raw()), p.rope.seq = 3;
  p.rope.max_positions = 4;
  qkv_split(p);
  EXPECT_THROW(device_backend().synchronize(gpu()), InputError);
  device_backend().synchronize(gpu());  // the record was cleared by the throw
}

}  // namespace
}  // namespace graft
