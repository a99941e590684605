// Ring attention alone (layers/context_parallel/ring_attention.h) against one full attention
// call on the whole sequence, forward and backward, with cp = the world size (mpirun -np 2, 4):
// causal, sliding windows that cross chunk boundaries, GQA, key padding, document ids, no mask.
// Every rank draws the same whole-sequence tensors, keeps its two chunks (context_parallel.h's
// layout) and compares its rows of out, dq, dk, dv with the full call's.
//
// Tolerance 1e-5 relative per tensor: f32 throughout; the ring sums each row's softmax over
// chunk pairs (LSE merge in f32) and each dK/dV over ranks, the full call in one pass, so the
// results differ by a few roundings (measured ~1e-7). A wrong chunk, mask offset or a gradient
// returned to the wrong owner is an O(1) error.
#include "layers/context_parallel/ring_attention.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "framework/model/context_parallel.h"
#include "layers/reference/sdpa.h"
#include "tests/mpi/mpi_test_util.h"

namespace graft {
namespace {

struct RingCase {
  const char* name;
  int64_t heads_q, heads_kv;
  bool causal;
  int64_t window;
  bool padding, segments;
};

Tensor randn(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = d(rng);
  return Tensor::from_vector(v, shape);
}

// Rows `rows` (dim 1) of a contiguous [B, S, H, D] CPU tensor.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
  const int64_t B = t.size(0), S = t.size(1), row = t.size(2) * t.size(3);
  const int64_t n = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty({B, n, t.size(2), t.size(3)}, t.dtype());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(out.data<float>() + (b * n + i) * row,
                  t.data<float>() + (b * S + rows[static_cast<size_t>(i)]) * row,
                  static_cast<size_t>(row) * sizeof(float));
  return out;
}

double rel_err(const Tensor& a, const Tensor& b) {
  const auto x = a.to_f32_vector(), y = b.to_f32_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

class RingAttention : public ::testing::TestWithParam<RingCase> {};

TEST_P(RingAttention, MatchesFullAttentionForwardAndBackward) {
  const RingCase& rc = GetParam();
  ParallelConfig layout;
  layout.cp = world_info().size;
  layout.timeout_s = 120;
  auto groups = make_parallel_groups(layout, world_info(), Device::cpu(), "ring-test");
  ProcessGroup& cp = *groups->cp;
  const int64_t B = 2, S = 8 * cp.size(), D = 8, Hq = rc.heads_q, Hkv = rc.heads_kv;
  Tensor q = randn({B, S, Hq, D}, 1), k = randn({B, S, Hkv, D}, 2), v = randn({B, S, Hkv, D}, 3);
  Tensor dout = randn({B, S, Hq, D}, 4);
  std::vector<int64_t> pad(B * S, 1), seg(B * S, 0);
  for (int64_t s = 0; s < S; ++s) {
    if (s % 5 == 3 || s >= S - 3) pad[S + s] = 0;  // row 1: holes and a padded tail
    seg[s] = s < S / 3 ? 0 : (s < S / 2 + 1 ? 1 : 2);
    seg[S + s] = s * 3 / S;
  }
  Tensor padding = Tensor::from_vector(pad, {B, S}), segments = Tensor::from_vector(seg, {B, S});

  layers::SdpaOptions so;
  so.mask = rc.padding ? (rc.causal ? AttnMask::kPaddingCausal : AttnMask::kPadding)
                       : (rc.causal ? AttnMask::kCausal : AttnMask::kNoMask);
  so.window = rc.window;
  if (rc.padding) so.key_padding = padding;
  if (rc.segments) so.segment_ids = segments;
  Tensor full = Tensor::empty(q.shape(), DType::kF32);
  layers::SdpaSaved saved;
  layers::sdpa_forward(q, k, v, so, full, &saved);
  Tensor fdq = Tensor::empty(q.shape(), DType::kF32), fdk = Tensor::empty(k.shape(), DType::kF32),
         fdv = Tensor::empty(v.shape(), DType::kF32);
  layers::sdpa_backward(dout, saved, fdq, fdk, fdv);

  const auto rows = cp_rows_of_rank(S, cp.rank(), cp.size());
  layers::RingAttnOptions ro;
  ro.causal = rc.causal;
  ro.window = rc.window;
  std::shared_ptr<layers::RingAttnSaved> rs;
  Tensor out = layers::ring_attention_forward(
      cp, take_rows(q, rows), take_rows(k, rows), take_rows(v, rows),
      rc.padding ? take_columns(padding, rows) : Tensor(),
      rc.segments ? take_columns(segments, rows) : Tensor(), ro, &rs);
  Tensor dq, dk, dv;
  layers::ring_attention_backward(take_rows(dout, rows), *rs, dq, dk, dv);
  EXPECT_LE(rel_err(out, take_rows(full, rows)), 1e-5) << rc.name << " out";
  EXPECT_LE(rel_err(dq, take_rows(fdq, rows)), 1e-5) << rc.name << " dq";
  EXPECT_LE(rel_err(dk, take_rows(fdk, rows)), 1e-5) << rc.name << " dk";
  EXPECT_LE(rel_err(dv, take_rows(fdv, rows)), 1e-5) << rc.name << " dv";
  EXPECT_GT(rel_err(dk, Tensor::zeros(dk.shape(), DType::kF32)), 0.1) << "gradients reached";
}

INSTANTIATE_TEST_SUITE_P(Masks, RingAttention,
                         ::testing::Values(RingCase{"causal", 4, 4, true, 0, false, false},
                                           RingCase{"causal_gqa", 4, 2, true, 0, false, false},
                                           RingCase{"mqa_window3", 4, 1, true, 3, false, false},
                                           RingCase{"window6", 2, 2, true, 6, false, false},
                                           RingCase{"window11", 4, 2, true, 11, false, false},
                                           RingCase{"padding_causal", 4, 2, true, 0, true, false},
                                           RingCase{"documents", 4, 2, true, 0, false, true},
                                           RingCase{"documents_padding_window", 4, 2, true, 5, true,
                                                    true},
                                           RingCase{"no_mask", 2, 1, false, 0, false, false},
                                           RingCase{"padding", 2, 2, false, 0, true, false}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RingAttention, OddRowsPerRankIsAnInputError) {
  ParallelConfig layout;
  layout.cp = world_info().size;
  layout.timeout_s = 120;
  auto groups = make_parallel_groups(layout, world_info(), Device::cpu(), "ring-test");
  Tensor q = randn({1, 3, 2, 4}, 1);
  EXPECT_THROW(
      layers::ring_attention_forward(*groups->cp, q, q, q, Tensor(), Tensor(), {}, nullptr),
      InputError);
  EXPECT_THROW(check_cp_seq(12, 4, "test"), InputError);
  EXPECT_NO_THROW(check_cp_seq(16, 4, "test"));
}

}  // namespace
}  // namespace graft
