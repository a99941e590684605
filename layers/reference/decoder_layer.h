// Reference decoder layer, registered as "llama.decoder_layer".
#pragma once

#include <memory>

#include "framework/registry/build_context.h"
#include "layers/reference/attention.h"
#include "layers/reference/mlp.h"
#include "layers/reference/norm.h"

namespace graft {

// Reference decoder layer ("llama.decoder_layer"; serves Llama, Gemma, Qwen2, Qwen3, Mistral):
//   h = x + self_attn(input_layernorm(x));  y = h + mlp(post_attention_layernorm(h))
// Its hf_weight_map() is the identity rename table of the HF decoder layer.
class LlamaDecoderLayer : public DecoderLayer {
 public:
  LlamaDecoderLayer(const DecoderConfig& config, const BuildContext& ctx);
  Tensor forward(const Tensor& x, const AttentionInputs& in,
                 std::unique_ptr<LayerCtx>* save) override;
  Tensor backward(const Tensor& dy, LayerCtx& ctx) override;
  WeightMap hf_weight_map() const override;
  bool takes_fp32_residual() const override { return true; }

 private:
  DecoderConfig config_;
  BuildContext ctx_;
  Norm *input_layernorm_, *post_attention_layernorm_;
  Attention* self_attn_;
  GatedMLP* mlp_;
};

}  // namespace graft
