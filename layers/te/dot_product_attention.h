// te.dot_product_attention: TransformerEngine's DotProductAttention (no parameters).
//
//   out = softmax(q kᵀ · softmax_scale + mask) v, grouped-query: query head h reads kv head
//   h / (num_attention_heads / num_gqa_groups).
//   qkv_format: bshd (q [B, S, H, D]) or sbhd (q [S, B, H, D]); the output is [B, S, H·D] or
//   [S, B, H·D]; or thd: packed variable-length sequences, q [Tq, H, D], k/v [Tkv, G, D] with
//   host offsets cu_seqlens_q / cu_seqlens_kv (AttentionMasks; sequence i is rows
//   [cu[i], cu[i+1])), output [Tq, H·D]; each sequence attends only within itself, so the
//   padding mask types act as their unpadded forms and arbitrary is rejected.
//   attn_mask_type: no_mask, causal, padding, padding_causal, arbitrary. Padding masks take a
//   key padding tensor [B, Skv] with 1 = token, 0 = padding (graft's convention, not TE's
//   boolean "true = masked"); an absent tensor means nothing is padded. arbitrary takes a
//   u8/bool [1 or B, Sq, Skv] mask, true = masked (TE's convention).
//   window_size (left, right), -1 = unbounded: key j is visible from query i when
//   i - left <= j (and j <= i + right). Supported: right = 0 or -1 with a causal mask (same
//   thing), right = -1 otherwise; left = -1 or >= 0. (HF's sliding_window W is left = W - 1.)
//   attention_dropout must be 0.
//
// Inside te.multihead_attention (its `core_attention` child, built through the registry so an
// override of this name replaces it) the attention runs through forward_self / backward_self:
// bshd q/k/v of a decoder layer with the masks, positions and KV cache of AttentionInputs, and
// under context parallelism the ring attention over the build context's cp group.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "framework/registry/build_context.h"
#include "framework/registry/module.h"
#include "kernels/attention.h"
#include "layers/decoder.h"

namespace graft::te {

struct DotProductAttentionConfig {
  int64_t num_attention_heads = 0;
  int64_t kv_channels = 0;
  int64_t num_gqa_groups = 0;  // 0 = num_attention_heads
  double attention_dropout = 0.0;
  std::string attn_mask_type = "causal";
  std::pair<int64_t, int64_t> window_size{-1, -1};
  std::string qkv_format = "sbhd";
  double softmax_scale = 0.0;  // 0 = 1/sqrt(kv_channels)
  int64_t layer_number = 1;
  std::string attention_type = "self";  // "self" or "cross"
  int64_t tp_size = 1;                  // accepted only at 1
};

struct AttentionMasks {
  Tensor key_padding;  // padding types: [B, Skv], 1 = token
  Tensor arbitrary;    // arbitrary: [1 or B, Sq, Skv], true = masked
  // thd: sequence offsets on the host (they decide the launches), n + 1 ascending entries from
  // 0 to T. TE passes them as device tensors; graft keeps them where the loop runs.
  std::vector<int64_t> cu_seqlens_q, cu_seqlens_kv;
};

class DotProductAttention : public Module {
 public:
  explicit DotProductAttention(const DotProductAttentionConfig& config,
                               const BuildContext& ctx = BuildContext{});
  const DotProductAttentionConfig& config() const { return config_; }
  AttnMask mask() const { return mask_; }
  int64_t kernel_window() const { return window_; }  // kernels/attention.h's W (0 = none)

  Tensor forward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMasks& masks,
                 std::unique_ptr<LayerCtx>* save);
  struct Grads {
    Tensor dq, dk, dv;  // shaped like q, k, v (in qkv_format)
  };
  Grads backward(const Tensor& dout, LayerCtx& ctx);

  // Self-attention of a decoder layer: q [B, S, Hq, D], k, v [B, S, G, D] (bshd, RoPE applied)
  // -> [B, S, Hq, D] (new, contiguous), with this layer's mask type and window and the key
  // padding, document ids and KV cache of `in` (layers/reference/self_attention.h); the ring
  // attention when `in` is split for context parallelism. `layer` names the caller in errors.
  virtual Tensor forward_self(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionInputs& in, std::unique_ptr<LayerCtx>* save,
                              const char* layer = "te.dot_product_attention");
  // dq, dk, dv [B, S, H, D] (new, contiguous) from dout [B, S, Hq, D].
  virtual Grads backward_self(const Tensor& dout, LayerCtx& ctx);

 private:
  Tensor forward_thd(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMasks& m,
                     std::unique_ptr<LayerCtx>* save);
  Grads backward_thd(const Tensor& dout, LayerCtx& ctx);

 public:
 private:
  DotProductAttentionConfig config_;
  BuildContext ctx_;
  AttnMask mask_;
  int64_t window_ = 0;
  bool sbhd_ = false;
  bool thd_ = false;
};

// TE mask name -> AttnMask; InputError naming `layer`.`option` otherwise.
AttnMask parse_mask_type(const std::string& layer, const std::string& option,
                         const std::string& value);
// TE (left, right) window -> kernels/attention.h's left window W (0 = none).
int64_t parse_window(const std::string& layer, std::pair<int64_t, int64_t> window, AttnMask mask);

}  // namespace graft::te
