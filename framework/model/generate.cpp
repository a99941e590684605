// CausalLM::generate / generate_batch: prompt in, one token per step out, with a KV cache on the
// model's device.
//
// A batch of B prompts is a [B, C] grid of columns, C = longest prompt L + max_new_tokens. Rows
// are left-padded: row b's prompt fills columns L - len_b .. L - 1, so every row's last prompt
// token, and then every step's new token, sits in the same column and the whole batch advances
// one column per step. Per row, each column carries a token, a rotary position (its index among
// the row's real tokens; 0 for padding) and a key-padding bit (1 = token, 0 = padding). The
// attention kernel masks by column (causal, sliding window) and by the padding bit, and columns
// of one row are consecutive positions, so a row sees exactly what it would see alone.
//
// A row that emits a stop id is finished: its later columns are padding (never attended to) and
// its output is not extended; generation ends when every row has finished or after
// max_new_tokens steps. The key-padding mask is passed only when some column is padding, so one
// prompt alone computes exactly as before batching existed.
//
// Steps: cached, the first forward runs all L prompt columns and fills the cache; each later one
// runs only the newest column at cache_offset = its index. Uncached, every step recomputes all
// columns so far. The host holds the small per-step inputs (ids, positions, mask: B x C
// integers), copied to the device each step; the cache tensors never leave the device.
#include <algorithm>

#include "framework/model/causal_lm.h"
#include "framework/model/sampling.h"
#include "layers/reference/common.h"

namespace graft {
namespace {

// Columns [begin, end) of a row-major [rows, cols] host grid, as an i64 tensor on `device`.
Tensor columns(const std::vector<int64_t>& grid, int64_t rows, int64_t cols, int64_t begin,
               int64_t end, Device device) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(rows * (end - begin)));
  for (int64_t r = 0; r < rows; ++r)
    out.insert(out.end(), grid.begin() + r * cols + begin, grid.begin() + r * cols + end);
  return Tensor::from_vector(out, {rows, end - begin}).to(device);
}

}  // namespace

std::vector<float> CausalLM::next_token_logits(const Tensor& ids, const AttentionInputs& in) {
  Tensor normed = hidden(ids, in, nullptr);  // [B, S, hidden]
  const int64_t B = ids.size(0), S = ids.size(1);
  // The last column of every row, gathered into B contiguous rows (a view when B = 1; one device
  // copy per row otherwise: device copies need contiguous sources).
  const int64_t H = config_.hidden_size;
  Tensor last;
  if (B == 1) {
    last = normed.slice(1, S - 1, 1).view({1, H});
  } else {
    last = Tensor::empty({B, H}, normed.dtype(), normed.device());
    for (int64_t b = 0; b < B; ++b)
      last.slice(0, b, 1).copy_from(normed.slice(0, b, 1).slice(1, S - 1, 1).view({1, H}));
  }
  // Under tp each rank holds its vocabulary shard of the logits: gathered, every rank samples the
  // same token from the same whole row.
  return whole_logits(head(last, nullptr)).to(Device::cpu()).to_f32_vector();
}

std::vector<int64_t> CausalLM::generate(const std::vector<int64_t>& prompt,
                                        const GenerateOptions& opt) {
  GRAFT_INPUT_CHECK(!prompt.empty(), "generate: empty prompt");
  return generate_batch({prompt}, opt).front();
}

std::vector<std::vector<int64_t>> CausalLM::generate_batch(
    const std::vector<std::vector<int64_t>>& prompts, const GenerateOptions& opt) {
  GRAFT_INPUT_CHECK(!prompts.empty(), "generate: no prompts");
  GRAFT_INPUT_CHECK(!sp_,
                    "generate: parallel.sequence_parallel = true splits the sequence, which "
                    "a KV-cached decode step of one token cannot do; generate with tp only");
  GRAFT_INPUT_CHECK(opt.max_new_tokens >= 0, "generate: max_new_tokens = ", opt.max_new_tokens,
                    ", expected >= 0");
  const int64_t B = static_cast<int64_t>(prompts.size()), V = config_.vocab_size;
  int64_t L = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    const int64_t P = static_cast<int64_t>(prompts[b].size());
    GRAFT_INPUT_CHECK(P > 0, "generate: prompt ", b, " is empty");
    for (int64_t id : prompts[b])
      GRAFT_INPUT_CHECK(id >= 0 && id < V, "generate: prompt ", b, ": token ", id,
                        " is outside the vocabulary (", V, ")");
    GRAFT_INPUT_CHECK(config_.max_position_embeddings <= 0 ||
                          P + opt.max_new_tokens <= config_.max_position_embeddings,
                      "generate: prompt ", b, " (", P, " tokens) + max_new_tokens (",
                      opt.max_new_tokens, ") = ", P + opt.max_new_tokens,
                      " exceeds max_position_embeddings = ", config_.max_position_embeddings);
    L = std::max(L, P);
  }
  const int64_t C = L + opt.max_new_tokens;
  // Host grids [B, C]: token, rotary position and key-padding bit of every column.
  std::vector<int64_t> tok(static_cast<size_t>(B * C), 0), pos(tok.size(), 0), keep(tok.size(), 0);
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t pad = L - static_cast<int64_t>(p.size());
    padded = padded || pad > 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const int64_t at = b * C + pad + static_cast<int64_t>(i);
      tok[at] = p[i];
      pos[at] = static_cast<int64_t>(i);
      keep[at] = 1;
    }
  }
  std::vector<TokenSampler> samplers(static_cast<size_t>(B), TokenSampler(opt));
  std::vector<std::vector<int64_t>> out = prompts;
  std::vector<bool> done(static_cast<size_t>(B), false);

  KVCache cache;
  // Under tp each rank caches the KV heads its query heads read.
  const int64_t kv_heads =
      tp_heads(config_.decoder.num_attention_heads, config_.decoder.num_kv_heads, *tp_, "generate")
          .kv;
  if (opt.use_cache) {
    cache.max_len = C;
    const DecoderConfig& d = config_.decoder;  // the activations' dtype, on the model's device
    for (size_t i = 0; i < layers_.size(); ++i) {
      cache.k.push_back(Tensor::zeros({B, C, kv_heads, d.head_dim}, d.params_dtype, device()));
      cache.v.push_back(Tensor::zeros({B, C, kv_heads, d.head_dim}, d.params_dtype, device()));
    }
  }
  int64_t end = L;  // columns filled
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    const int64_t begin = (opt.use_cache && step > 0) ? end - 1 : 0;
    AttentionInputs in;
    in.batch = B;
    in.seq = end - begin;
    in.attention = config_.attention;
    in.positions = columns(pos, B, C, begin, end, device());
    if (padded) in.key_padding_mask = columns(keep, B, C, 0, end, device());
    if (opt.use_cache) {
      in.cache = &cache;
      in.cache_offset = begin;
    }
    const std::vector<float> logits =
        next_token_logits(columns(tok, B, C, begin, end, device()), in);
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;  // its column `end` stays padding
      const auto row = logits.begin() + b * V;
      const int64_t next = samplers[b].pick(std::vector<float>(row, row + V));
      out[b].push_back(next);
      done[b] = std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end();
      if (done[b]) continue;
      all_done = false;
      const int64_t at = b * C + end;
      tok[at] = next;
      pos[at] = static_cast<int64_t>(out[b].size()) - 1;
      keep[at] = 1;
    }
    if (all_done) break;
    ++end;
    padded = padded || std::find(done.begin(), done.end(), true) != done.end();
  }
  return out;
}

}  // namespace graft
