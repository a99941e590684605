// te.multihead_attention: TransformerEngine's MultiheadAttention (self-attention, bshd).
//
//   [ln =] norm(x)                       (input_layernorm)
//   qkv = ln Wqkvᵀ + b                    (layernorm_qkv: LayerNormLinear; or qkv: Linear)
//   q, k = q_norm(q), k_norm(k)           (qk_norm_type RMSNorm | LayerNorm, over kv_channels;
//                                          before RoPE when qk_norm_before_rope, else after)
//   q, k = rope(q), rope(k)               (when rotary; positions from AttentionInputs)
//   o = core_attention(q, k, v)           (te.dot_product_attention, built through the registry:
//                                          mask, window, softmax_scale, KV cache, ring under cp)
//   y = o Wprojᵀ + b                      (proj: Linear)
//
// Fused QKV layout (fuse_qkv_params = true), weight [(Hq + 2·Hkv)·D, H]: grouped per KV head.
// For kv group g (g = 0 .. Hkv-1) with n = Hq/Hkv query heads per group, rows
//   [g·(n+2)·D, g·(n+2)·D + n·D)  the query heads g·n .. g·n+n-1,
//   the next D rows                 key head g,
//   the next D rows                 value head g,
// so a tensor-parallel rank owns a contiguous block of whole groups. The bias follows the rows.
// fuse_qkv_params = false keeps TE's split parameters query_weight [Hq·D, H], key_weight,
// value_weight [Hkv·D, H] (and *_bias), stacked in that order.
//
// Parameters (TE names): layernorm_qkv.layer_norm_weight (+ layer_norm_bias),
// layernorm_qkv.weight (+ bias) — or qkv.weight without input_layernorm —, q_norm.weight,
// k_norm.weight, proj.weight [H, Hq·D] (+ proj.bias).
// Tensor parallelism (the build context's tp group, T > 1): heads split over tp
// (parallel/tp_layout.h tp_heads: T divides the heads, and divides the KV heads or is a multiple of
// them), the qkv projection column-parallel (T <= Hkv: rank r owns whole KV groups, a contiguous
// block of rows of the grouped layout; with fuse_qkv_params = false each of query/key/value is
// split by heads), proj row-parallel, q/k norm gradients summed over tp. T > Hkv: each KV head is
// replicated on the m = T/Hkv ranks whose query heads read it, its gradient summed over tp; the
// fused qkv then holds the rank's query rows as `weight` and its group's key/value rows as a second
// part `weight_kv` (one box each of the grouped tensor: ShardSpec::part_of,
// framework/core/parameter.h; bias and bias_kv likewise), fuse_qkv_params = false replicates
// key_weight / value_weight. The local qkv output is the grouped (q | k | v) layout of the rank's
// heads either way. With sequence_parallel x and the output are sequence shards [B, S/T, H]
// (AttentionInputs.seq is the whole length). Rejected: attention_type cross, qkv_format other than
// bshd, attention_dropout != 0, sequence_parallel without tp, tp_size other than the group's.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "framework/registry/build_context.h"
#include "layers/decoder.h"
#include "layers/te/dot_product_attention.h"
#include "layers/te/te_common.h"

namespace graft::te {

class LayerNormLinear;
class Linear;

struct MultiheadAttentionConfig {
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t kv_channels = 0;     // 0 = hidden_size / num_attention_heads
  int64_t num_gqa_groups = 0;  // 0 = num_attention_heads
  double attention_dropout = 0.0;
  double layernorm_epsilon = 1e-5;
  int64_t layer_number = 1;  // 1-based (TE); the KV cache entry is layer_number - 1
  std::string attn_mask_type = "causal";
  std::pair<int64_t, int64_t> window_size{-1, -1};
  bool input_layernorm = false;
  std::string normalization = "LayerNorm";
  bool zero_centered_gamma = false;  // also used by q_norm / k_norm
  bool bias = true;
  // graft extensions: per-projection bias, overriding `bias` when set (Qwen2: q/k/v only).
  std::optional<bool> qkv_bias, proj_bias;
  bool return_bias = false;
  bool return_layernorm_output = false;
  bool fuse_qkv_params = true;  // TE's default is false; graft's fused layout is the default
  std::string qkv_format = "bshd";
  std::string attention_type = "self";
  std::string qk_norm_type;  // "", "RMSNorm" or "LayerNorm"
  double qk_norm_eps = 1e-6;
  bool qk_norm_before_rope = false;
  bool rotary = false;
  RopeConfig rope;
  double softmax_scale = 0.0;
  InitMethod init_method, output_layer_init_method;
  uint64_t init_seed = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  bool sequence_parallel = false;
  int64_t tp_size = 1;
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(const MultiheadAttentionConfig& config, const BuildContext& ctx);
  const MultiheadAttentionConfig& config() const { return config_; }
  int64_t heads_kv() const { return kv_; }
  int64_t head_dim() const { return d_; }

  // x [B, S, H] -> out [B, S, H] (+ bias / ln_out per the options).
  TEOutput forward(const Tensor& x, const AttentionInputs& in, std::unique_ptr<LayerCtx>* save);
  // A defined `d_residual` (x's shape) is added to the returned dx: inside the input norm's
  // backward kernel with input_layernorm, by an add otherwise.
  Tensor backward(const Tensor& dy, LayerCtx& ctx, const Tensor& d_ln_out = Tensor(),
                  const Tensor& d_residual = Tensor());

 private:
  MultiheadAttentionConfig config_;
  BuildContext ctx_;
  int64_t kv_ = 0, d_ = 0, hq_ = 0;  // local KV heads, head dim, local query heads
  LayerNormLinear* layernorm_qkv_ = nullptr;
  Linear* qkv_ = nullptr;
  Module *q_norm_ = nullptr, *k_norm_ = nullptr;
  DotProductAttention* core_ = nullptr;
  Linear* proj_ = nullptr;
};

}  // namespace graft::te
