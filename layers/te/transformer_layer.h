// te.transformer_layer: TransformerEngine's TransformerLayer, a decoder layer built from fused
// modules. Registered twice under one name: from its own TransformerLayerConfig, and as a
// DecoderLayer factory from DecoderConfig (so OverrideScope {"llama.decoder_layer" ->
// "te.transformer_layer"} swaps it into any architecture).
//
//   a = self_attention(x)          MultiheadAttention with input_layernorm (LayerNormLinear qkv)
//   h = r1 + a                     r1 = x, or the attention's layernorm output when
//                                  apply_residual_connection_post_layernorm
//   m = layernorm_mlp(h)           LayerNormMLP
//   y = r2 + m                     r2 = h, or the MLP's layernorm output (post-LN residual)
//   y = layernorm(y)               only with output_layernorm (then the attention has no input
//                                  norm: self_attention.qkv instead of layernorm_qkv)
//   parallel_attention_mlp: y = x + self_attention(x) + layernorm_mlp(x)
//
// Fused layout (TE names), H = hidden, D = kv_channels, Hq heads, Hkv = num_gqa_groups,
// n = Hq / Hkv, F = ffn_hidden_size:
//   self_attention.layernorm_qkv.layer_norm_weight [H]          <- HF input_layernorm.weight
//   self_attention.layernorm_qkv.weight [(Hq + 2·Hkv)·D, H]     grouped per KV head: for each
//       group g, rows of q heads g·n .. g·n+n-1, then k head g, then v head g (each D rows),
//       <- HF q_proj / k_proj / v_proj; a TP rank owns a contiguous block of whole groups
//   self_attention.layernorm_qkv.bias [(Hq + 2·Hkv)·D]          same grouping (q/k/v bias)
//   self_attention.q_norm.weight, k_norm.weight [D]             <- HF self_attn.q_norm / k_norm
//   self_attention.proj.weight [H, Hq·D] (+ bias)               <- HF o_proj
//   layernorm_mlp.layer_norm_weight [H]                         <- HF post_attention_layernorm
//   layernorm_mlp.fc1_weight [2F, H] = [gate; up] (+ fc1_bias)  <- HF gate_proj, up_proj; a TP
//       rank owns [gate_r; up_r] (its ShardSpec views fc1 as [2, F, H], split along F)
//   layernorm_mlp.fc2_weight [H, F] (+ fc2_bias)                <- HF down_proj
// hf_weight_map() returns exactly these pieces (layers/weight_map.h).
//
// Supported options: see TransformerLayerConfig. Rejected with an InputError naming the option:
// hidden_dropout / attention_dropout != 0, self_attn_mask_type arbitrary, layer_type decoder
// (cross-attention), qkv_format other than bshd, sequence_parallel without tp, tp_size other
// than the build context's tp group, parallel_attention_mlp together with
// apply_residual_connection_post_layernorm, fp32_residual_connection together with
// apply_residual_connection_post_layernorm or output_layernorm.
// Tensor parallelism (the context's tp group): self_attention and layernorm_mlp split heads and
// the MLP (column-parallel qkv / fc1, row-parallel proj / fc2); with sequence_parallel the
// layer's input, output, residual adds and norms are sequence shards [B, S/T, H].
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "framework/registry/build_context.h"
#include "layers/decoder.h"
#include "layers/te/te_common.h"

namespace graft::te {

class MultiheadAttention;
class LayerNormMLP;

struct TransformerLayerConfig {
  int64_t hidden_size = 0;
  int64_t ffn_hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_gqa_groups = 0;  // 0 = num_attention_heads
  int64_t kv_channels = 0;     // 0 = hidden_size / num_attention_heads
  double layernorm_epsilon = 1e-5;
  double hidden_dropout = 0.0;
  double attention_dropout = 0.0;
  std::string normalization = "LayerNorm";
  std::string activation = "gelu";
  bool bias = true;
  // graft extensions: per-block bias overriding `bias` when set (Qwen2: q/k/v bias only).
  std::optional<bool> qkv_bias, proj_bias, mlp_bias;
  bool fuse_qkv_params = true;  // TE's default is false; graft's fused layout is the default
  bool rotary = false;          // apply RoPE from AttentionInputs.positions
  RopeConfig rope;
  std::string self_attn_mask_type = "causal";
  std::pair<int64_t, int64_t> window_size{-1, -1};
  bool zero_centered_gamma = false;
  bool apply_residual_connection_post_layernorm = false;
  bool output_layernorm = false;
  bool parallel_attention_mlp = false;
  int64_t layer_number = 1;  // 1-based, as TE; KV cache entry layer_number - 1
  std::string qk_norm_type;  // "", "RMSNorm", "LayerNorm"
  double qk_norm_eps = 1e-6;
  bool qk_norm_before_rope = false;
  double softmax_scale = 0.0;          // 0 = 1/sqrt(kv_channels)
  std::string layer_type = "encoder";  // "decoder" (cross-attention) rejected
  std::string attn_input_format = "bshd";
  InitMethod init_method, output_layer_init_method;
  uint64_t init_seed = 0;
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  bool sequence_parallel = false;
  int64_t tp_size = 1;
  // TE's fp32_residual_connection (precision.residual: f32): the layer's input and output (the
  // residual stream) and their gradients are f32; the attention's and the MLP's outputs (in
  // params_dtype) are widened before each residual add, which runs in f32 (inside the MLP's norm
  // kernel for h = x + a), and the gradient reaching a branch is rounded to params_dtype. No
  // effect with f32 parameters. Rejected with apply_residual_connection_post_layernorm and
  // output_layernorm (the stream would be a norm's params_dtype output).
  bool fp32_residual_connection = false;
  DType residual_dtype() const { return fp32_residual_connection ? DType::kF32 : params_dtype; }
};

// DecoderConfig (HF semantics) -> the equivalent TransformerLayerConfig.
TransformerLayerConfig transformer_layer_config(const DecoderConfig& c);

class TransformerLayer : public DecoderLayer {
 public:
  TransformerLayer(const TransformerLayerConfig& config, const BuildContext& ctx);
  const TransformerLayerConfig& config() const { return config_; }

  Tensor forward(const Tensor& x, const AttentionInputs& in,
                 std::unique_ptr<LayerCtx>* save) override;
  Tensor backward(const Tensor& dy, LayerCtx& ctx) override;
  // The HF Llama-family layout of this layer (see the table above). InputError when the layer
  // has parts HF's decoder layer cannot hold (output_layernorm, a non-gated activation).
  WeightMap hf_weight_map() const override;
  bool takes_fp32_residual() const override { return true; }

 private:
  TransformerLayerConfig config_;
  BuildContext ctx_;
  MultiheadAttention* self_attention_;
  LayerNormMLP* layernorm_mlp_;
  Module* layernorm_ = nullptr;  // output_layernorm
};

}  // namespace graft::te
