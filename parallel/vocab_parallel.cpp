#include "parallel/vocab_parallel.h"

#include "framework/core/error.h"
#include "kernels/elementwise.h"
#include "kernels/vocab_parallel_xent.h"

namespace graft {
namespace {

VocabXentParams params(const Tensor& logits, const Tensor& targets, const VocabShard& shard,
                       int64_t num_valid) {
  GRAFT_CHECK(logits.ndim() == 2 && logits.size(1) == shard.rows && logits.strides()[1] == 1 &&
                  targets.dtype() == DType::kI64 && targets.numel() == logits.size(0) &&
                  targets.is_contiguous(),
              "vocab-parallel cross-entropy: logits ", logits.str(), " targets ", targets.str(),
              " for a shard of ", shard.rows, " columns");
  VocabXentParams p;
  p.logits = logits.raw();
  p.targets = static_cast<const int64_t*>(targets.raw());
  p.n = logits.size(0);
  p.cols = shard.rows;
  p.ld = logits.strides()[0];
  p.vocab = shard.valid;
  p.vocab_start = shard.start;
  p.vocab_total = shard.vocab;
  p.num_valid = num_valid;
  p.dtype = logits.dtype();
  p.device = logits.device();
  return p;
}

}  // namespace

double vocab_parallel_xent_fwd(const Tensor& logits, const Tensor& targets, const VocabShard& shard,
                               int64_t num_valid, ProcessGroup& tp, Tensor& lse) {
  VocabXentParams p = params(logits, targets, shard, num_valid);
  const Device dev = logits.device();
  Tensor stats = Tensor::empty({3, p.n}, DType::kF32, dev);  // row max, target logit, sum-exp
  Tensor row_max = stats.slice(0, 0, 1).view({p.n}), target = stats.slice(0, 1, 1).view({p.n}),
         sum_exp = stats.slice(0, 2, 1).view({p.n});
  lse = Tensor::empty({p.n}, DType::kF32, dev);
  Tensor loss = Tensor::zeros({1}, DType::kF32, dev);
  p.row_max = static_cast<float*>(row_max.raw());
  p.target_logit = static_cast<float*>(target.raw());
  p.sum_exp = static_cast<float*>(sum_exp.raw());
  p.lse = static_cast<float*>(lse.raw());
  p.loss = static_cast<float*>(loss.raw());
  vocab_xent_max(p);
  if (p.n > 0) {
    tp.all_reduce(row_max, ReduceOp::kMax)->wait();
    tp.all_reduce(target, ReduceOp::kSum)->wait();
  }
  vocab_xent_sumexp(p);
  if (p.n > 0) tp.all_reduce(sum_exp, ReduceOp::kSum)->wait();
  vocab_xent_finish(p);
  return loss.to(Device::cpu()).item({0});
}

void vocab_parallel_xent_bwd(Tensor& logits, const Tensor& targets, const Tensor& lse,
                             const VocabShard& shard, int64_t num_valid, double grad_scale) {
  VocabXentParams p = params(logits, targets, shard, num_valid);
  p.lse = const_cast<float*>(static_cast<const float*>(lse.raw()));
  p.dlogits = logits.raw();
  p.grad_scale = static_cast<float>(grad_scale);
  vocab_xent_bwd(p);
}

Tensor gather_vocab(const Tensor& local_in, const VocabShard& shard, ProcessGroup& tp) {
  if (tp.size() == 1) return local_in;
  const Tensor local = local_in.is_contiguous() ? local_in : local_in.contiguous();
  GRAFT_CHECK(local.ndim() == 2 && local.size(1) == shard.rows, "gather_vocab: ", local.str(),
              " for shards of ", shard.rows, " columns");
  const int64_t T = tp.size(), N = local.size(0), rows = shard.rows;
  Tensor buf = Tensor::empty({T * N * rows}, local.dtype(), local.device());
  tp.all_gather(local.view({N * rows}), buf)->wait();
  Tensor out = Tensor::empty({N, shard.vocab}, local.dtype(), local.device());
  const size_t es = dtype_size(local.dtype());
  for (int64_t r = 0; r < T; ++r) {
    const int64_t cols = std::max<int64_t>(0, std::min(rows, shard.vocab - r * rows));
    Copy2dParams c;
    c.src = static_cast<const char*>(buf.raw()) + r * N * rows * es;
    c.dst = static_cast<char*>(out.raw()) + r * rows * es;
    c.rows = N;
    c.cols = cols;
    c.ld_src = rows;
    c.ld_dst = shard.vocab;
    c.dtype = local.dtype();
    c.device = local.device();
    if (N > 0 && cols > 0) copy_2d(c);
  }
  return out;
}

}  // namespace graft
