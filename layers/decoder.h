// The contract between a model architecture and its decoder layers.
//
// An architecture (layers/models/<arch>.cpp) fills a DecoderConfig from the HF config.json and
// asks the registry for its decoder layer by name ("llama.decoder_layer"); an OverrideScope may
// resolve that name to "te.transformer_layer". Both implementations take the same config, hold
// the same math, and expose their parameters in their own layout; the architecture's weight map
// (data, see framework/model/weight_map.h) says how each layout maps to HF names.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/registry/module.h"
#include "kernels/attention.h"
#include "layers/weight_map.h"

namespace graft {

enum class NormType { kRMSNorm, kLayerNorm };

// Rotary embedding frequency table (rotate-half form, HF convention).
struct RopeConfig {
  double theta = 10000.0;
  std::string type = "default";                     // "default", "llama3", "linear"
  double factor = 1.0;                              // linear / llama3
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
  int64_t rotary_dim = 0;                           // 0 = whole head_dim
};

struct DecoderConfig {
  int64_t hidden_size = 0;
  int64_t ffn_hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_kv_heads = 0;  // == heads: MHA; 1: MQA; otherwise GQA
  int64_t head_dim = 0;      // kv_channels
  NormType normalization = NormType::kRMSNorm;
  double norm_eps = 1e-5;
  bool zero_centered_gamma = false;   // Gemma: y = x̂ · (1 + w)
  std::string activation = "swiglu";  // gated: swiglu, geglu (tanh gelu), reglu; or gelu, relu, ...
  bool attention_bias = false;        // bias on q/k/v
  bool attention_out_bias = false;    // bias on o
  bool mlp_bias = false;
  bool qk_norm = false;  // Qwen3: per-head RMSNorm on q and k before RoPE
  RopeConfig rope;
  int64_t sliding_window = 0;  // 0 = full causal attention; else attend to last W tokens
  double softmax_scale = 0.0;  // 0 = 1/sqrt(head_dim)
  int64_t layer_number = 0;    // 0-based index in the stack
  DType params_dtype = DType::kF32;
  Device device = Device::cpu();
  // Sequence parallelism (with a tp group > 1 in the build context): the layer's input and output
  // are this rank's sequence shards [B, S/T, hidden]; norms and residual adds run on the shards.
  // Set by CausalLM from the layout (parallel.sequence_parallel).
  bool sequence_parallel = false;
  // precision.residual: f32 (TE's / Megatron's fp32_residual_connection): the residual stream
  // between the layers (each layer's input and output) is f32 while the parameters, the GEMMs and
  // the normalised activations keep params_dtype; the stream's gradient is f32 too. No effect
  // with f32 parameters. Set by CausalLM from the build context.
  bool fp32_residual = false;
  DType residual_dtype() const { return fp32_residual ? DType::kF32 : params_dtype; }
};

// Per-call attention inputs shared by every layer of a forward pass.
struct AttentionInputs {
  int64_t batch = 0;
  int64_t seq = 0;          // query length of this call
  Tensor positions;         // i64 [batch, seq] rotary positions
  Tensor key_padding_mask;  // optional i64/u8 [batch, kv_len]: 1 = token, 0 = padding
  // Optional i64 [batch, seq] document ids of packed sequences: a query attends only to keys of
  // its own document (positions should restart per document too). Training only (no cache).
  Tensor segment_ids;
  // Generation with a KV cache: keys/values of earlier tokens are read from `cache` and this
  // call's keys/values appended at `cache_offset`. Nullptr when training.
  struct KVCache* cache = nullptr;
  int64_t cache_offset = 0;
  // The attention backend the model was configured with (model.attention) and where the attention
  // kernels report what ran (owned by the model; null = not reported).
  AttnBackend attention = AttnBackend::kAuto;
  AttnReport* attention_report = nullptr;
  // Context parallelism: the rows are this rank's two chunks of the sequence (positions,
  // key_padding_mask and segment_ids reordered alike, framework/model/context_parallel.h), so
  // attention runs as a ring over the layer's cp group. False: the rows are the whole sequence.
  bool context_parallel = false;
};

// Per-layer key/value cache, [batch, max_len, kv_heads, head_dim] each, on the model's device in
// the activations' dtype. Written and read only through device-aware copies and the attention
// kernel (layers/reference/self_attention.cpp), never through host pointers.
struct KVCache {
  std::vector<Tensor> k, v;  // one per layer
  int64_t max_len = 0;
};

class DecoderLayer : public Module {
 public:
  using Module::Module;
  // x: [batch, seq, hidden] -> [batch, seq, hidden], both in the residual stream's dtype
  // (DecoderConfig::residual_dtype). When `save` is non-null the layer stores what backward needs
  // in *save.
  virtual Tensor forward(const Tensor& x, const AttentionInputs& in,
                         std::unique_ptr<LayerCtx>* save) = 0;
  // dy: [batch, seq, hidden] -> dx (written), both in the residual stream's dtype; parameter
  // grads accumulated (+=).
  virtual Tensor backward(const Tensor& dy, LayerCtx& ctx) = 0;
  // How this layer's parameters map to the HF decoder layer's tensors (names relative to
  // "model.layers.N." on the HF side and to this layer on ours). Declared beside the layer.
  virtual WeightMap hf_weight_map() const = 0;
  // Whether the layer honours DecoderConfig::fp32_residual (an f32 stream in and out). A plugin
  // layer that does not say so is refused under precision.residual: f32 (CausalLM).
  virtual bool takes_fp32_residual() const { return false; }
};

}  // namespace graft
