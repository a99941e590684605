// Gemma (GemmaForCausalLM): GeGLU with tanh GELU, RMSNorm with (1 + w) weights (decoder and
// final norm), embedding output multiplied by sqrt(hidden_size) rounded to the parameter dtype
// (HF: normalizer = tensor(hidden_size ** 0.5, dtype)), tied embeddings by default.
#include <cmath>
#include <memory>

#include "framework/model/architecture.h"
#include "framework/model/hf_config.h"

namespace graft {
namespace {

class Gemma : public Architecture {
 public:
  ModelConfig parse(HfConfigReader& r) const override {
    ModelConfig m;
    // GemmaMLP applies hidden_act; hidden_activation, when set, must agree with it.
    parse_common(r, m, {.rope_theta = 10000.0, .norm_eps = 1e-6, .tie_word_embeddings = true},
                 "hidden_act");
    if (r.get("hidden_activation")) {
      const std::string a = r.get_string("hidden_activation", "");
      if (gated_activation(r, "hidden_activation", a) != m.decoder.activation)
        r.fail("hidden_activation", str("= \"", a, "\" disagrees with hidden_act"));
    }
    if (m.decoder.activation != "geglu")
      r.fail("hidden_act", "Gemma expects gelu_pytorch_tanh (GeGLU with tanh GELU)");
    const bool bias = r.get_bool("attention_bias", false);
    m.decoder.attention_bias = bias;
    m.decoder.attention_out_bias = bias;
    r.reject_if_set("mlp_bias", "Gemma MLP has no bias");
    r.reject_if_set("sliding_window", "Gemma (1) has no sliding-window attention");
    m.decoder.zero_centered_gamma = true;
    m.embedding_scale = std::sqrt(static_cast<double>(m.hidden_size));
    return m;
  }

  nlohmann::json tiny_config() const override {
    return {{"architectures", {"GemmaForCausalLM"}},
            {"model_type", "gemma"},
            {"vocab_size", 53},
            {"hidden_size", 32},
            {"intermediate_size", 56},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 1},
            {"head_dim", 12},
            {"hidden_act", "gelu_pytorch_tanh"},
            {"hidden_activation", "gelu_pytorch_tanh"},
            {"rms_norm_eps", 1e-6},
            {"max_position_embeddings", 64},
            {"rope_parameters", {{"rope_theta", 10000.0}, {"rope_type", "default"}}},
            {"use_bidirectional_attention", nullptr},
            {"tie_word_embeddings", true}};
  }
};

RegisterArchitecture reg("gemma", [] { return std::make_unique<Gemma>(); });

}  // namespace
}  // namespace graft
