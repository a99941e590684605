// CUDA embedding forward and deterministic backward against the CPU reference.
#include "kernels/embedding.h"

#include <gtest/gtest.h>

#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct EmbCase {
  int64_t n, vocab, hidden;
  DType dt, ids_dt;
};

class CudaEmbedding : public ::testing::TestWithParam<EmbCase> {};

TEST_P(CudaEmbedding, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  const EmbCase c = GetParam();
  auto rng = rng_for(str(c.n, "_", c.vocab, "_", c.hidden, dtype_name(c.dt), dtype_name(c.ids_dt)));
  // Few distinct ids so that many tokens share a row: the backward's duplicate handling matters.
  std::uniform_int_distribution<int64_t> id_dist(0, std::min<int64_t>(c.vocab, 17) - 1);
  std::vector<int64_t> ids(static_cast<size_t>(c.n));
  for (auto& v : ids) v = id_dist(rng) * (c.vocab / 17 > 0 ? c.vocab / 17 : 1);
  Tensor ids_h = Tensor::from_vector(ids, {c.n});
  Tensor ids_dt = ids_h.to(c.ids_dt);
  Tensor w = random_host({c.vocab, c.hidden}, rng, c.dt);
  Tensor dy = random_host({c.n, c.hidden}, rng, c.dt);
  Tensor dw0 = random_host({c.vocab, c.hidden}, rng);
  const float scale = 1.5f;

  Tensor out_h = Tensor::empty({c.n, c.hidden}, DType::kF32), dw_h = dw0.clone();
  EmbeddingFwdParams f;
  f.n = c.n, f.vocab = c.vocab, f.hidden = c.hidden, f.scale = scale, f.ids_dtype = c.ids_dt;
  EmbeddingBwdParams b;
  b.n = c.n, b.vocab = c.vocab, b.hidden = c.hidden, b.scale = scale, b.ids_dtype = c.ids_dt;
  EmbeddingFwdParams fc = f;
  fc.ids = ids_dt.raw(), fc.weight = w.raw(), fc.out = out_h.raw();
  embedding_fwd(fc);
  EmbeddingBwdParams bc = b;
  bc.ids = ids_dt.raw(), bc.dy = dy.raw(), bc.dweight = dw_h.data<float>();
  embedding_bwd(bc);

  Tensor ids_d = ids_dt.to(gpu()), w_d = to_gpu(w, c.dt), dy_d = to_gpu(dy, c.dt);
  Tensor out_d = poisoned({c.n, c.hidden}, c.dt);
  EmbeddingFwdParams fg = f;
  fg.ids = ids_d.raw(), fg.weight = w_d.raw(), fg.out = out_d.raw(), fg.dtype = c.dt;
  fg.device = gpu();
  embedding_fwd(fg);
  expect_close(out_d, out_h, tol_for(c.dt), "out");
  // Deterministic: two runs give bit-identical gradients, and the same f32 additions in the same
  // order as the CPU (ascending token index per row) give the CPU's bits too.
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dw_d = dw0.to(gpu());
    EmbeddingBwdParams bg = b;
    bg.ids = ids_d.raw(), bg.dy = dy_d.raw(), bg.dweight = static_cast<float*>(dw_d.raw());
    bg.dtype = c.dt, bg.device = gpu();
    embedding_bwd(bg);
    expect_close(dw_d, dw_h, kF32Tol, "dweight");
    std::vector<float> v = to_host_f32(dw_d).to_f32_vector();
    if (run == 0)
      first = v;
    else
      EXPECT_EQ(v, first) << "embedding backward is not deterministic";
  }
}

constexpr DType F = DType::kF32, B = DType::kBF16, I64 = DType::kI64, I32 = DType::kI32;
INSTANTIATE_TEST_SUITE_P(Shapes, CudaEmbedding,
                         ::testing::Values(EmbCase{71, 229, 29, F, I64},
                                           EmbCase{541, 1000, 71, F, I32},
                                           EmbCase{1, 29, 541, F, I64},
                                           EmbCase{300, 229, 2048, B, I64}));

TEST(CudaEmbeddingInput, IdOutOfRangeIsAnInputError) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 7, 3}, {3}).to(gpu());
  Tensor w = to_gpu(random_host({5, 8}, rng), DType::kF32);
  Tensor out = poisoned({3, 8}, DType::kF32);
  EmbeddingFwdParams p;
  p.ids = ids.raw(), p.weight = w.raw(), p.out = out.raw();
  p.n = 3, p.vocab = 5, p.hidden = 8, p.device = gpu();
  embedding_fwd(p);
  try {
    device_backend().synchronize(gpu());
    ADD_FAILURE() << "no InputError for id 7 with vocab 5";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("7"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace graft
