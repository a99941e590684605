#include "framework/model/context_parallel.h"

#include <algorithm>
#include <cstring>

#include "kernels/elementwise.h"

namespace graft {

void check_cp_seq(int64_t seq, int cp, const char* what) {
  GRAFT_INPUT_CHECK(seq > 0 && seq % (2 * cp) == 0, what, ": sequence length ", seq,
                    " is not a multiple of 2 * parallel.cp = ", 2 * cp,
                    " (context parallelism cuts each row into 2 * cp equal chunks)");
}

std::vector<int64_t> cp_rows_of_rank(int64_t seq, int rank, int cp) {
  const int64_t c = seq / (2 * cp);
  std::vector<int64_t> rows;
  for (int64_t chunk : {int64_t{rank}, int64_t{2 * cp - 1 - rank}})
    for (int64_t i = 0; i < c; ++i) rows.push_back(chunk * c + i);
  return rows;
}

Tensor take_columns(const Tensor& t, const std::vector<int64_t>& cols) {
  GRAFT_CHECK(t.ndim() == 2, "take_columns: expected [B, S], got ", t.str());
  Tensor h = t.to(Device::cpu()).contiguous();
  const int64_t B = h.size(0), S = h.size(1), n = static_cast<int64_t>(cols.size());
  const size_t es = dtype_size(h.dtype());
  Tensor out = Tensor::empty({B, n}, h.dtype());
  const auto* src = static_cast<const char*>(h.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(dst + (b * n + i) * es, src + (b * S + cols[static_cast<size_t>(i)]) * es, es);
  return out.to(t.device());
}

LmInputs cp_split(const LmInputs& in, int rank, int cp) {
  GRAFT_INPUT_CHECK(in.input_ids.defined() && in.input_ids.ndim() == 2,
                    "context parallelism: input_ids must be [batch, seq]");
  const int64_t B = in.input_ids.size(0), S = in.input_ids.size(1);
  check_cp_seq(S, cp, "context parallelism");
  const std::vector<int64_t> cols = cp_rows_of_rank(S, rank, cp);
  auto take = [&](const Tensor& t, const char* name) {
    if (!t.defined()) return Tensor();
    GRAFT_INPUT_CHECK(t.shape() == in.input_ids.shape(), "context parallelism: ", name, " ",
                      t.str(), " does not match input_ids ", in.input_ids.str());
    return take_columns(t, cols);
  };
  LmInputs out;
  out.input_ids = take(in.input_ids, "input_ids");
  out.targets = take(in.targets, "targets");
  Tensor positions = in.positions;
  if (!positions.defined()) {
    std::vector<int64_t> pos(static_cast<size_t>(B * S));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0; s < S; ++s) pos[b * S + s] = s;
    positions = Tensor::from_vector(pos, {B, S});
  }
  out.positions = take(positions, "positions");
  out.segment_ids = take(in.segment_ids, "segment_ids");
  out.attention_mask = take(in.attention_mask, "attention_mask");
  auto count = [](const Tensor& t) {
    Tensor h = t.to(Device::cpu()).contiguous();
    int64_t n = 0;
    for (int64_t i = 0; i < h.numel(); ++i) n += h.data<int64_t>()[i] != -100;
    return n;
  };
  if (out.targets.defined()) {
    GRAFT_INPUT_CHECK(in.targets.dtype() == DType::kI64, "context parallelism: targets ",
                      in.targets.str(), " must be i64");
    out.num_targets = count(out.targets);
    out.loss_divisor =
        in.loss_divisor > 0 ? in.loss_divisor : std::max<int64_t>(1, count(in.targets));
  }
  return out;
}

Tensor cp_gather_rows(const Tensor& local, ProcessGroup& cp) {
  GRAFT_CHECK(local.ndim() == 3 && local.is_contiguous(),
              "cp_gather_rows: expected a contiguous "
              "[B, S/cp, X] tensor, got ",
              local.str());
  const int n = cp.size();
  const int64_t B = local.size(0), L = local.size(1), X = local.size(2), c = L / 2, S = L * n;
  Tensor all = Tensor::empty({n * local.numel()}, local.dtype(), local.device());
  cp.all_gather(local, all);
  Tensor out = Tensor::empty({B, S, X}, local.dtype(), local.device());
  const size_t es = dtype_size(local.dtype());
  for (int r = 0; r < n; ++r)
    for (int h = 0; h < 2; ++h) {
      const int64_t chunk = h == 0 ? r : 2 * n - 1 - r;
      Copy2dParams p;
      p.src = static_cast<const char*>(all.raw()) + (r * local.numel() + h * c * X) * es;
      p.dst = static_cast<char*>(out.raw()) + chunk * c * X * es;
      p.rows = B;
      p.cols = c * X;
      p.ld_src = L * X;
      p.ld_dst = S * X;
      p.dtype = local.dtype();
      p.device = local.device();
      if (p.rows > 0 && p.cols > 0) copy_2d(p);
    }
  return out;
}

}  // namespace graft
