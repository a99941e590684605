// Qwen2 (Qwen2ForCausalLM): the Llama block with bias on q/k/v (always) and none on o; sliding
// window only when use_sliding_window is true, on the layers that layer_types marks
// "sliding_attention" (transformers 5.x) or on layers >= max_window_layers (4.x without
// layer_types).
#include <memory>

#include "framework/model/architecture.h"
#include "framework/model/hf_config.h"

namespace graft {
namespace {

class Qwen2 : public Architecture {
 public:
  ModelConfig parse(HfConfigReader& r) const override {
    ModelConfig m;
    parse_common(r, m, {.rope_theta = 10000.0, .norm_eps = 1e-6, .tie_word_embeddings = false});
    m.decoder.attention_bias = true;
    m.decoder.attention_out_bias = false;
    // Qwen2Attention hard-codes the biases and Qwen2MLP has none, whatever these fields say; a
    // checkpoint that disagrees fails to load (missing or unexpected bias tensors).
    r.ignore({"attention_bias", "mlp_bias"});
    m.layer_windows = parse_qwen_windows(r, m.num_layers);
    return m;
  }

  nlohmann::json tiny_config() const override {
    return {{"architectures", {"Qwen2ForCausalLM"}},
            {"model_type", "qwen2"},
            {"vocab_size", 71},
            {"hidden_size", 48},
            {"intermediate_size", 64},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 6},
            {"num_key_value_heads", 2},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-6},
            {"max_position_embeddings", 64},
            {"rope_theta", 1000000.0},
            {"rope_scaling", nullptr},
            {"use_sliding_window", false},
            {"sliding_window", 4096},
            {"max_window_layers", 28},
            {"tie_word_embeddings", true}};
  }
};

RegisterArchitecture reg("qwen2", [] { return std::make_unique<Qwen2>(); });

}  // namespace
}  // namespace graft
