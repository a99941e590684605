// CPU embedding gather and its deterministic (+=, in token order) backward.
// Math: kernels/embedding.h.
#include "kernels/embedding.h"

#include "kernels/cpu/cpu_util.h"

namespace graft::cpu {
namespace {

int64_t id_at(const void* ids, DType t, int64_t i) {
  return t == DType::kI64 ? static_cast<const int64_t*>(ids)[i]
                          : static_cast<const int32_t*>(ids)[i];
}

void check(const Device& dev, DType ids_dtype, DType dtype, int64_t n, int64_t vocab,
           int64_t hidden, const char* name) {
  detail::check_cpu(dev, name);
  detail::check_f32(dtype, name, "weight/activations");
  GRAFT_CHECK(ids_dtype == DType::kI64 || ids_dtype == DType::kI32, name, ": ids dtype ",
              dtype_name(ids_dtype), " must be i64 or i32");
  GRAFT_CHECK(n >= 0 && vocab > 0 && hidden > 0, name, ": bad sizes n = ", n, ", vocab = ", vocab,
              ", hidden = ", hidden);
}

// The row of the id at position i in this shard, or -1 when another vocab-parallel rank owns it.
template <class P>
int64_t checked_row(const P& p, int64_t i, const char* name) {
  const int64_t id = id_at(p.ids, p.ids_dtype, i);
  const int64_t total = p.vocab_total > 0 ? p.vocab_total : p.vocab;
  GRAFT_INPUT_CHECK(id >= 0 && id < total, name, ": token id ", id, " at position ", i,
                    " is outside the vocabulary [0, ", total, ")");
  const int64_t row = p.vocab_total > 0 ? id - p.vocab_start : id;
  return row >= 0 && row < p.vocab ? row : -1;
}

}  // namespace

void embedding_fwd(const EmbeddingFwdParams& p) {
  check(p.device, p.ids_dtype, p.dtype, p.n, p.vocab, p.hidden, "embedding_fwd");
  if (p.n == 0) return;
  GRAFT_CHECK(p.ids && p.weight && p.out, "embedding_fwd: null ids, weight or out");
  const auto* w = static_cast<const float*>(p.weight);
  auto* out = static_cast<float*>(p.out);
  for (int64_t t = 0; t < p.n; ++t) {
    const int64_t r = checked_row(p, t, "embedding_fwd");
    float* o = out + t * p.hidden;
    if (r < 0) {
      for (int64_t c = 0; c < p.hidden; ++c) o[c] = 0.0f;
      continue;
    }
    const float* row = w + r * p.hidden;
    for (int64_t c = 0; c < p.hidden; ++c) o[c] = p.scale * row[c];
  }
}

void embedding_bwd(const EmbeddingBwdParams& p) {
  check(p.device, p.ids_dtype, p.dtype, p.n, p.vocab, p.hidden, "embedding_bwd");
  if (p.n == 0) return;
  GRAFT_CHECK(p.ids && p.dy && p.dweight, "embedding_bwd: null ids, dy or dweight");
  // Validate every id before touching dweight, so an error leaves it unchanged.
  for (int64_t t = 0; t < p.n; ++t) checked_row(p, t, "embedding_bwd");
  const auto* dy = static_cast<const float*>(p.dy);
  for (int64_t t = 0; t < p.n; ++t) {
    const int64_t r = checked_row(p, t, "embedding_bwd");
    if (r < 0) continue;
    float* row = p.dweight + r * p.hidden;
    const float* g = dy + t * p.hidden;
    for (int64_t c = 0; c < p.hidden; ++c) row[c] += p.scale * g[c];
  }
}

}  // namespace graft::cpu
