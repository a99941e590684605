// Mistral (MistralForCausalLM): the Llama block without biases, with sliding-window attention on
// every layer when sliding_window is set (token i attends to j with i - W < j <= i, as HF's
// sliding-window causal mask).
#include <memory>

#include "framework/model/architecture.h"
#include "framework/model/hf_config.h"

namespace graft {
namespace {

class Mistral : public Architecture {
 public:
  ModelConfig parse(HfConfigReader& r) const override {
    ModelConfig m;
    parse_common(r, m, {.rope_theta = 10000.0, .norm_eps = 1e-6, .tie_word_embeddings = false});
    // MistralAttention/MLP hard-code bias-free projections, whatever these fields say; a
    // checkpoint with biases fails to load (unexpected tensors).
    r.ignore({"attention_bias", "mlp_bias"});
    m.decoder.sliding_window = r.get_int("sliding_window", 0);
    if (m.decoder.sliding_window < 0) r.fail("sliding_window", "must be positive or null");
    m.layer_windows = parse_layer_types(r, m.num_layers, m.decoder.sliding_window);
    return m;
  }

  nlohmann::json tiny_config() const override {
    return {{"architectures", {"MistralForCausalLM"}},
            {"model_type", "mistral"},
            {"vocab_size", 67},
            {"hidden_size", 32},
            {"intermediate_size", 48},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 1},
            {"head_dim", nullptr},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"sliding_window", 3},
            {"max_position_embeddings", 64},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}};
  }
};

RegisterArchitecture reg("mistral", [] { return std::make_unique<Mistral>(); });

}  // namespace
}  // namespace graft
