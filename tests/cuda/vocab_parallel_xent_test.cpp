// CUDA vocab-parallel cross-entropy steps and the sharded embedding lookup against the CPU
// reference: one shard of a padded vocabulary (its last columns padding, filled with large values
// that must never count), every step fed the same inputs on both sides.
#include "kernels/vocab_parallel_xent.h"

#include <gtest/gtest.h>

#include "kernels/embedding.h"
#include "tests/cuda/cuda_test_util.h"

namespace graft {
namespace {

using namespace cuda_test;

struct Case {
  int64_t n, cols, valid, start;
  DType dt;
};

class CudaVocabXent : public ::testing::TestWithParam<Case> {};

TEST_P(CudaVocabXent, EveryStepMatchesCpu) {
  GRAFT_REQUIRE_CUDA();
  const Case c = GetParam();
  const int64_t total = c.start + c.valid + 3;  // tokens beyond this shard exist too
  auto rng = rng_for(str(c.n, "_", c.cols, dtype_name(c.dt)));
  Tensor logits = random_host({c.n, c.cols}, rng, c.dt, -8.0f, 8.0f);
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t j = c.valid; j < c.cols; ++j) logits.data<float>()[i * c.cols + j] = 100.0f;
  std::uniform_int_distribution<int64_t> tdist(0, total - 1);
  std::vector<int64_t> tg(static_cast<size_t>(c.n));
  for (int64_t i = 0; i < c.n; ++i) tg[i] = i % 5 == 3 ? -100 : tdist(rng);
  Tensor targets = Tensor::from_vector(tg, {c.n});
  Tensor row_max = random_host({c.n}, rng, DType::kF32, 7.0f, 9.0f);  // a "global" max
  Tensor target_logit = random_host({c.n}, rng),
         sum_exp = random_host({c.n}, rng, DType::kF32, 1, 9);
  Tensor lse = random_host({c.n}, rng, DType::kF32, 8.0f, 10.0f);

  VocabXentParams base;
  base.n = c.n, base.cols = c.cols, base.vocab = c.valid, base.vocab_start = c.start;
  base.vocab_total = total, base.grad_scale = 0.5f;
  // CPU.
  Tensor mx_h = Tensor::empty({c.n}, DType::kF32), tl_h = mx_h.clone(), se_h = mx_h.clone();
  Tensor lse_h = mx_h.clone(), loss_h = Tensor::empty({1}, DType::kF32);
  Tensor d_h = Tensor::empty({c.n, c.cols}, DType::kF32);
  VocabXentParams p = base;
  p.logits = logits.raw(), p.targets = targets.data<int64_t>();
  p.row_max = mx_h.data<float>(), p.target_logit = tl_h.data<float>();
  vocab_xent_max(p);
  p.row_max = row_max.data<float>(), p.sum_exp = se_h.data<float>();
  vocab_xent_sumexp(p);
  p.target_logit = target_logit.data<float>(), p.sum_exp = sum_exp.data<float>();
  p.lse = lse_h.data<float>(), p.loss = loss_h.data<float>();
  vocab_xent_finish(p);
  p.lse = lse.data<float>(), p.dlogits = d_h.raw();
  vocab_xent_bwd(p);
  // CUDA.
  Tensor lg = to_gpu(logits, c.dt), tg_d = targets.to(gpu());
  Tensor mx = poisoned({c.n}, DType::kF32), tl = poisoned({c.n}, DType::kF32);
  Tensor se = poisoned({c.n}, DType::kF32), ls = poisoned({c.n}, DType::kF32);
  Tensor loss = poisoned({1}, DType::kF32), d = poisoned({c.n, c.cols}, c.dt);
  Tensor rm_d = row_max.to(gpu()), tlg_d = target_logit.to(gpu()), seg_d = sum_exp.to(gpu());
  Tensor lse_d = lse.to(gpu());
  auto f = [](Tensor& t) { return static_cast<float*>(t.raw()); };
  VocabXentParams g = base;
  g.logits = lg.raw(), g.targets = static_cast<const int64_t*>(tg_d.raw());
  g.dtype = c.dt, g.device = gpu();
  g.row_max = f(mx), g.target_logit = f(tl);
  vocab_xent_max(g);
  g.row_max = f(rm_d), g.sum_exp = f(se);
  vocab_xent_sumexp(g);
  g.target_logit = f(tlg_d), g.sum_exp = f(seg_d), g.lse = f(ls), g.loss = f(loss);
  vocab_xent_finish(g);
  g.lse = f(lse_d), g.dlogits = d.raw();
  vocab_xent_bwd(g);

  expect_close(mx, mx_h, Tol{0, 0}, "row max");       // a maximum: exact
  expect_close(tl, tl_h, Tol{0, 0}, "target logit");  // a copy: exact
  Tol t_sum = kF32Tol;
  t_sum.atol += 4.0 * std::sqrt(static_cast<double>(c.valid)) * kU32 * 8.0;
  expect_close(se, se_h, t_sum, "sum_exp");
  expect_close(ls, lse_h, kF32Tol, "lse");
  expect_close(loss, loss_h, kF32Tol, "loss");
  Tol t = tol_for(c.dt);
  t.atol += kU32;
  expect_close(d, d_h, t, "dlogits");
}

constexpr DType F = DType::kF32, B = DType::kBF16;
INSTANTIATE_TEST_SUITE_P(Shapes, CudaVocabXent,
                         ::testing::Values(Case{71, 229, 229, 0, F}, Case{29, 541, 538, 1082, F},
                                           Case{1, 4099, 4090, 4099, F},
                                           Case{71, 229, 226, 458, B}));

TEST(CudaEmbeddingShard, ForwardAndBackwardMatchCpu) {
  GRAFT_REQUIRE_CUDA();
  auto rng = rng_for();
  const int64_t total = 97, start = 40, rows = 25, hidden = 67, n = 131;
  Tensor w = random_host({rows, hidden}, rng);
  std::uniform_int_distribution<int64_t> idist(0, total - 1);
  std::vector<int64_t> ids(n);
  for (auto& i : ids) i = idist(rng);
  Tensor ids_h = Tensor::from_vector(ids, {n}), dy = random_host({n, hidden}, rng);
  Tensor out_h = Tensor::empty({n, hidden}, DType::kF32),
         dw_h = Tensor::zeros({rows, hidden}, DType::kF32);
  EmbeddingFwdParams fp;
  fp.ids = ids_h.raw(), fp.weight = w.raw(), fp.out = out_h.raw(), fp.n = n, fp.vocab = rows;
  fp.hidden = hidden, fp.vocab_start = start, fp.vocab_total = total, fp.scale = 1.5f;
  embedding_fwd(fp);
  EmbeddingBwdParams bp;
  bp.ids = ids_h.raw(), bp.dy = dy.raw(), bp.dweight = dw_h.data<float>(), bp.n = n;
  bp.vocab = rows, bp.hidden = hidden, bp.vocab_start = start, bp.vocab_total = total;
  bp.scale = 1.5f;
  embedding_bwd(bp);
  Tensor ids_d = ids_h.to(gpu()), w_d = w.to(gpu()), out_d = poisoned({n, hidden}, DType::kF32);
  Tensor dy_d = dy.to(gpu()), dw_d = Tensor::zeros({rows, hidden}, DType::kF32, gpu());
  EmbeddingFwdParams fg = fp;
  fg.ids = ids_d.raw(), fg.weight = w_d.raw(), fg.out = out_d.raw(), fg.device = gpu();
  embedding_fwd(fg);
  EmbeddingBwdParams bg = bp;
  bg.ids = ids_d.raw(), bg.dy = dy_d.raw(), bg.dweight = static_cast<float*>(dw_d.raw());
  bg.device = gpu();
  embedding_bwd(bg);
  expect_close(out_d, out_h, Tol{0, 0}, "embedding forward");  // scaled copies: exact
  expect_close(dw_d, dw_h, Tol{0, 0}, "embedding backward");   // same order of adds: exact
}

}  // namespace
}  // namespace graft
