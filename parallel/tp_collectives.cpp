// The tensor/sequence-parallel mappings (tp_collectives.h). Sequence shards are [B, S/T, ...];
// the collectives move rank-major buffers [T, B, S/T, ...], so a gather is followed (and a
// reduce-scatter preceded) by T strided copies that interleave the shards per batch row. With
// B == 1 the two layouts coincide and the copies are skipped.
#include "parallel/tp_collectives.h"

#include "framework/core/error.h"
#include "kernels/elementwise.h"

namespace graft {
namespace {

Tensor contiguous(const Tensor& t) { return t.is_contiguous() ? t : t.contiguous(); }

// Elements per batch row of a [B, S', ...] tensor: S' times the trailing sizes.
int64_t row_elems(const Tensor& t) { return t.size(0) == 0 ? 0 : t.numel() / t.size(0); }

void copy_rows(const Tensor& src, int64_t src_off, int64_t ld_src, Tensor& dst, int64_t dst_off,
               int64_t ld_dst, int64_t rows, int64_t cols) {
  const size_t es = dtype_size(src.dtype());
  Copy2dParams p;
  p.src = static_cast<const char*>(src.raw()) + src_off * es;
  p.dst = static_cast<char*>(dst.raw()) + dst_off * es;
  p.rows = rows;
  p.cols = cols;
  p.ld_src = ld_src;
  p.ld_dst = ld_dst;
  p.dtype = src.dtype();
  p.device = src.device();
  if (rows > 0 && cols > 0) copy_2d(p);
}

Shape with_seq(const Tensor& t, int64_t seq) {
  Shape s = t.shape();
  s[1] = seq;
  return s;
}

void check_bsx(const Tensor& t, const char* what) {
  GRAFT_CHECK(t.defined() && t.ndim() >= 2, what, ": expected a [batch, seq, ...] tensor, got ",
              t.defined() ? t.str() : "an undefined tensor");
}

// [B, S, ...] -> this rank-major [T, B, S/T, ...] buffer (a view of x when B == 1).
Tensor to_rank_major(const Tensor& x, int64_t T) {
  const int64_t B = x.size(0), row = row_elems(x) / T;
  if (B == 1) return x.view({x.numel()});
  Tensor buf = Tensor::empty({x.numel()}, x.dtype(), x.device());
  for (int64_t r = 0; r < T; ++r) copy_rows(x, r * row, T * row, buf, r * B * row, row, B, row);
  return buf;
}

}  // namespace

void check_sp_divisible(int64_t seq, const ProcessGroup& g, const char* what) {
  GRAFT_INPUT_CHECK(seq % g.size() == 0, what, ": sequence length ", seq,
                    " is not divisible by tp = ", g.size(),
                    " (sequence parallelism splits the sequence over the tensor-parallel ranks; "
                    "use a multiple of tp for data.seq_len)");
}

Tensor copy_to_tp(const Tensor& x, ProcessGroup&) { return x; }

Tensor copy_to_tp_backward(Tensor dx, ProcessGroup& g) {
  if (g.size() == 1) return dx;
  Tensor c = contiguous(dx);
  g.all_reduce(c, ReduceOp::kSum)->wait();
  return c;
}

std::unique_ptr<Work> copy_to_tp_backward_async(Tensor& dx, ProcessGroup& g) {
  if (g.size() == 1) return completed_work();
  GRAFT_CHECK(dx.is_contiguous(), "copy_to_tp_backward_async: dx must be contiguous, got ",
              dx.str());
  return g.all_reduce(dx, ReduceOp::kSum, /*async=*/true);
}

Tensor reduce_from_tp(Tensor y, ProcessGroup& g) {
  if (g.size() == 1) return y;
  Tensor c = contiguous(y);
  g.all_reduce(c, ReduceOp::kSum)->wait();
  return c;
}

Tensor gather_from_sp(const Tensor& x_in, ProcessGroup& g) {
  if (g.size() == 1) return x_in;
  check_bsx(x_in, "gather_from_sp");
  const Tensor x = contiguous(x_in);
  const int64_t T = g.size(), B = x.size(0), row = row_elems(x);
  Tensor out = Tensor::empty(with_seq(x, x.size(1) * T), x.dtype(), x.device());
  Tensor flat = x.view({x.numel()});
  if (B == 1) {
    Tensor o = out.view({out.numel()});
    g.all_gather(flat, o)->wait();
    return out;
  }
  Tensor buf = Tensor::empty({out.numel()}, x.dtype(), x.device());
  g.all_gather(flat, buf)->wait();
  for (int64_t r = 0; r < T; ++r) copy_rows(buf, r * B * row, row, out, r * row, T * row, B, row);
  return out;
}

Tensor reduce_scatter_to_sp(const Tensor& y_in, ProcessGroup& g) {
  if (g.size() == 1) return y_in;
  check_bsx(y_in, "reduce_scatter_to_sp");
  check_sp_divisible(y_in.size(1), g, "reduce_scatter_to_sp");
  const Tensor y = contiguous(y_in);
  const int64_t T = g.size();
  Tensor buf = to_rank_major(y, T);
  Tensor out = Tensor::empty(with_seq(y, y.size(1) / T), y.dtype(), y.device());
  Tensor o = out.view({out.numel()});
  g.reduce_scatter(buf, o, ReduceOp::kSum)->wait();
  return out;
}

Tensor gather_from_sp_backward(const Tensor& dy, ProcessGroup& g) {
  return reduce_scatter_to_sp(dy, g);
}

Tensor reduce_scatter_to_sp_backward(const Tensor& dy, ProcessGroup& g) {
  return gather_from_sp(dy, g);
}

Tensor sp_shard(const Tensor& x_in, ProcessGroup& g) {
  if (g.size() == 1) return x_in;
  check_bsx(x_in, "sp_shard");
  check_sp_divisible(x_in.size(1), g, "sp_shard");
  const Tensor x = contiguous(x_in);
  const int64_t T = g.size(), B = x.size(0), row = row_elems(x) / T;
  Tensor out = Tensor::empty(with_seq(x, x.size(1) / T), x.dtype(), x.device());
  copy_rows(x, g.rank() * row, T * row, out, 0, row, B, row);
  return out;
}

}  // namespace graft
