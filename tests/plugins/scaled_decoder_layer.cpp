// Example plugin: "example.scaled_decoder_layer", a decoder layer that runs the reference
// llama.decoder_layer and scales its output by 1/2:
//   y = ½ · llama(x);   dx = llamaᵀ(½ · dy)
// Its parameters live under "inner." and its HF weight map strips that prefix, so it loads any
// Llama-family checkpoint. Load with `graft ... --plugin graft_example_plugin.so` (or
// graft::load_plugin) and select with an override {"llama.decoder_layer" ->
// "example.scaled_decoder_layer"}; `graft layers --plugin ...` lists it with the plugin's path.
#include <memory>

#include "framework/registry/registry.h"
#include "kernels/elementwise.h"
#include "layers/reference/decoder_layer.h"

namespace example {

using namespace graft;

constexpr float kScale = 0.5f;

void scale_in_place(Tensor& t) {
  ScaleParams p;
  p.x = t.raw();
  p.alpha = kScale;
  p.n = t.numel();
  p.device = t.device();
  scale(p);
}

class ScaledDecoderLayer : public DecoderLayer {
 public:
  ScaledDecoderLayer(const DecoderConfig& c, const BuildContext& ctx)
      : DecoderLayer("example.scaled_decoder_layer") {
    // Built directly, not through the registry: the override that selects this layer renames
    // llama.decoder_layer, so asking the registry for it would come back here.
    inner_ = &add_child("inner", std::make_unique<LlamaDecoderLayer>(c, ctx));
  }
  Tensor forward(const Tensor& x, const AttentionInputs& in,
                 std::unique_ptr<LayerCtx>* save) override {
    Tensor y = inner_->forward(x, in, save);
    scale_in_place(y);
    return y;
  }
  Tensor backward(const Tensor& dy, LayerCtx& ctx) override {
    Tensor d = dy.clone();
    scale_in_place(d);
    return inner_->backward(d, ctx);
  }
  WeightMap hf_weight_map() const override {
    WeightMap map = inner_->hf_weight_map();
    for (auto& e : map) e.param = "inner." + e.param;
    return map;
  }

 private:
  LlamaDecoderLayer* inner_;
};

static Register<DecoderLayer, DecoderConfig> reg("example.scaled_decoder_layer", "decoder_layer",
                                                 [](const DecoderConfig& c,
                                                    const BuildContext& ctx) {
                                                   return std::make_unique<ScaledDecoderLayer>(c,
                                                                                               ctx);
                                                 });

}  // namespace example
