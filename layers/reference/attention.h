// Reference self-attention, faithful to transformers' LlamaAttention / Qwen2 / Qwen3 / Mistral /
// Gemma attention:
//
//   q = q_proj(x), k = k_proj(x), v = v_proj(x)         (bias per DecoderConfig.attention_bias)
//   Qwen3: q = q_norm(q), k = k_norm(k)                 (RMSNorm over head_dim, before RoPE)
//   q, k = rope(q, positions), rope(k, positions)       (rotate-half)
//   o = softmax(q kᵀ · scale + mask) v                  (GQA: head h reads kv head h / (Hq/Hkv))
//   y = o_proj(o)                                        (bias per attention_out_bias)
//
// Mask: causal, plus the sliding window (DecoderConfig.sliding_window) and the key padding mask
// of AttentionInputs. With AttentionInputs.cache set, this call's keys/values are written to
// cache->k/v[layer_number] at [cache_offset, cache_offset + seq) and the queries attend to the
// cache prefix [0, cache_offset + seq); backward is not available through a cache.
//
// Parameters (HF names): q_proj.weight [Hq·D, H], k_proj.weight [Hkv·D, H], v_proj.weight,
// o_proj.weight [H, Hq·D], optional *.bias, q_norm.weight [D], k_norm.weight [D].
//
// Tensor parallelism (the context's tp group, parallel/tp_layout.h: tp_heads): q/k/v_proj are
// column-parallel over heads (rank r computes its query heads and the KV heads they read; a KV
// head shared by several ranks when tp > KV heads is replicated there, its gradient summed over
// them), o_proj is row-parallel; q_norm / k_norm are whole on every rank with their gradients
// summed over tp. With sequence parallelism x and y are sequence shards (the projections gather
// and reduce-scatter; AttentionInputs.seq is the whole length).
#pragma once

#include <memory>

#include "framework/registry/build_context.h"
#include "layers/decoder.h"
#include "layers/reference/linear.h"
#include "layers/reference/norm.h"
#include "parallel/tp_layout.h"

namespace graft {

class Attention : public Module {
 public:
  Attention(const DecoderConfig& config, const BuildContext& ctx);
  // x: [B, S, hidden] -> [B, S, hidden].
  Tensor forward(const Tensor& x, const AttentionInputs& in, std::unique_ptr<LayerCtx>* save);
  Tensor backward(const Tensor& dy, LayerCtx& ctx);

 private:
  DecoderConfig config_;
  BuildContext ctx_;
  Linear *q_proj_, *k_proj_, *v_proj_, *o_proj_;
  Norm *q_norm_ = nullptr, *k_norm_ = nullptr;
  TpHeads heads_;
};

// Checks a DecoderConfig's sizes (InputError naming the field); shared with te.transformer_layer.
void validate_decoder_config(const DecoderConfig& c, const std::string& layer);

}  // namespace graft
