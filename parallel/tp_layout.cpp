#include "parallel/tp_layout.h"

#include "framework/core/error.h"

namespace graft {

TpHeads tp_heads(int64_t heads, int64_t kv_heads, const ProcessGroup& tp,
                 const std::string& layer) {
  const int64_t T = tp.size(), r = tp.rank();
  TpHeads h;
  auto fail = [&](const char* why) {
    throw InputError(str(layer, ": num_attention_heads = ", heads,
                         ", num_key_value_heads = ", kv_heads, ", parallel.tp = ", T, ": ", why));
  };
  if (heads % T != 0) fail("tp must divide the number of attention heads");
  h.q = heads / T;
  h.q_offset = r * h.q;
  if (T <= kv_heads) {
    if (kv_heads % T != 0)
      fail("tp must divide the number of KV heads (or be a multiple of it, to replicate them)");
    h.kv = kv_heads / T;
    h.kv_offset = r * h.kv;
  } else {
    if (T % kv_heads != 0)
      fail(
          "tp is larger than the number of KV heads and not a multiple of it (each KV head "
          "must be replicated on a whole number of ranks)");
    h.kv = 1;
    h.kv_replicas = T / kv_heads;
    h.kv_offset = r / h.kv_replicas;
    h.kv_replica = r % h.kv_replicas;
  }
  return h;
}

int64_t tp_divide(int64_t n, const ProcessGroup& tp, const std::string& layer, const char* what) {
  GRAFT_INPUT_CHECK(n % tp.size() == 0, layer, ": ", what, " = ", n,
                    " is not divisible by parallel.tp = ", tp.size());
  return n / tp.size();
}

VocabShard vocab_shard(int64_t vocab, const ProcessGroup& tp, const std::string& layer) {
  const int64_t T = tp.size();
  VocabShard v;
  v.vocab = vocab;
  v.padded = (vocab + T - 1) / T * T;
  v.rows = v.padded / T;
  v.start = tp.rank() * v.rows;
  v.valid = std::max<int64_t>(0, std::min(v.rows, vocab - v.start));
  GRAFT_INPUT_CHECK(vocab - (T - 1) * v.rows > 0, layer, ": vocab_size = ", vocab,
                    " is too small to split over parallel.tp = ", T,
                    " (the last rank would hold only padding)");
  return v;
}

ShardSpec tp_split_spec(const Shape& global, int dim, int64_t offset, int64_t replica) {
  ShardSpec s = ShardSpec::split(global, dim, LayoutGroup::kTP, offset);
  s.replica = replica;
  return s;
}

ShardSpec tp_partial_grad_spec(const Shape& shape) {
  ShardSpec s = ShardSpec::replicated(shape);
  s.grad_sum_over.push_back(LayoutGroup::kTP);
  return s;
}

}  // namespace graft
