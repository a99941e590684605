// CUDA RoPE (in place, forward and backward) against the CPU reference, including strided q/k
// inside a fused qkv buffer, partial rotary_dim and a shared position row.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct RopeCase {
  int64_t batch, seq, heads, head_dim, rotary_dim;
  bool fused;  // x lives in a [batch, seq, 3 * heads, head_dim] buffer (stride_s = 3 H D)
  bool shared_positions;
  DType dt;
};

class CudaRope : public ::testing::TestWithParam<RopeCase> {};

TEST_P(CudaRope, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const RopeCase c = GetParam();
  auto rng =
      rng_for(str(c.batch, c.seq, c.heads, c.head_dim, c.rotary_dim, c.fused, dtype_name(c.dt)));
  const int64_t max_pos = 97, rd = c.rotary_dim ? c.rotary_dim : c.head_dim;
  RopeFreqParams fp;
  fp.rotary_dim = rd;
  fp.theta = 500000.0;
  fp.scaling = RopeScaling::kLlama3;
  fp.factor = 8.0, fp.original_max_position_embeddings = 64;
  Tensor cos_t = Tensor::empty({max_pos, rd / 2}, DType::kF32);
  Tensor sin_t = Tensor::empty({max_pos, rd / 2}, DType::kF32);
  rope_cos_sin_table(fp, max_pos, cos_t.data<float>(), sin_t.data<float>());
  std::uniform_int_distribution<int64_t> pos_dist(0, max_pos - 1);
  const int64_t pos_rows = c.shared_positions ? 1 : c.batch;
  std::vector<int64_t> pos(static_cast<size_t>(pos_rows * c.seq));
  for (auto& v : pos) v = pos_dist(rng);
  Tensor positions = Tensor::from_vector(pos, {pos_rows, c.seq});

  const int64_t hs = c.fused ? 3 * c.heads : c.heads;
  const Shape buf_shape{c.batch, c.seq, hs, c.head_dim};
  Tensor buf = random_host(buf_shape, rng, c.dt);
  RopeParams p;
  p.batch = c.batch, p.seq = c.seq, p.heads = c.heads, p.head_dim = c.head_dim;
  p.rotary_dim = c.rotary_dim, p.max_positions = max_pos;
  if (c.fused) {  // rotate the "k" third of the fused buffer
    p.stride_h = c.head_dim, p.stride_s = hs * c.head_dim, p.stride_b = c.seq * hs * c.head_dim;
  }
  p.pos_stride_b = c.shared_positions ? 0 : -1;
  const int64_t x_off = c.fused ? c.heads * c.head_dim : 0;

  for (bool backward : {false, true}) {
    Tensor h = buf.clone();
    RopeParams cp = p;
    cp.x = static_cast<float*>(h.raw()) + x_off;
    cp.cos = cos_t.data<float>(), cp.sin = sin_t.data<float>();
    cp.positions = positions.data<int64_t>();
    backward ? rope_bwd(cp) : rope_fwd(cp);

    Tensor d = to_gpu(buf, c.dt), cos_d = cos_t.to(gpu()), sin_d = sin_t.to(gpu());
    Tensor pos_d = positions.to(gpu());
    RopeParams gp = p;
    gp.x = static_cast<char*>(d.raw()) + x_off * dtype_size(c.dt);
    gp.cos = static_cast<const float*>(cos_d.raw());
    gp.sin = static_cast<const float*>(sin_d.raw());
    gp.positions = static_cast<const int64_t*>(pos_d.raw());
    gp.dtype = c.dt, gp.device = gpu();
    backward ? rope_bwd(gp) : rope_fwd(gp);
    // Untouched channels and heads must come back bit-exact; rotated ones within tolerance
    // (two f32 products and a sum: a few ulp).
    Tol t = tol_for(c.dt);
    expect_close(d, h, t, backward ? "dx" : "y");
  }
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(Shapes, CudaRope,
                         ::testing::Values(RopeCase{2, 29, 3, 64, 0, false, false, F},
                                           RopeCase{1, 1, 4, 128, 0, false, false, F},
                                           RopeCase{3, 71, 2, 32, 16, true, false, F},
                                           RopeCase{2, 29, 5, 64, 0, true, true, F},
                                           RopeCase{2, 29, 3, 64, 0, false, false, B},
                                           RopeCase{3, 71, 2, 32, 16, true, true, B},
                                           // half % 8 != 0: the element path
                                           RopeCase{2, 7, 3, 12, 0, false, false, B},
                                           RopeCase{1, 5, 2, 20, 12, true, false, F}));

TEST(CudaRopeInput, PositionOutOfRangeIsAnInputError) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  Tensor x = to_gpu(random_host({1, 3, 2, 8}, rng), DType::kF32);
  Tensor cos_t = Tensor::full({4, 4}, 1.0f).to(gpu()), sin_t = Tensor::full({4, 4}, 0.0f).to(gpu());
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{0, 1, 4}, {1, 3}).to(gpu());
  RopeParams p;
  p.x = x.raw(), p.cos = static_cast<const float*>(cos_t.raw());
  p.sin = static_cast<const float*>(sin_t.raw());
  p.positions = static_cast<const int64_t*>(pos.raw());
  p.batch = 1, p.seq = 3, p.heads = 2, p.head_dim = 8, p.max_positions = 4, p.device = gpu();
  rope_fwd(p);
  EXPECT_THROW(device_backend().synchronize(gpu()), InputError);
  device_backend().synchronize(gpu());  // the record was cleared by the throw
}

}  // namespace
}  // namespace graft
