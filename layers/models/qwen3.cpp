// Qwen3 (Qwen3ForCausalLM): the Llama block with per-head RMSNorm on q and k (before RoPE),
// explicit head_dim, optional bias on q/k/v/o (attention_bias), sliding windows as Qwen2
// (use_sliding_window + layer_types / max_window_layers).
#include <memory>

#include "framework/model/architecture.h"
#include "framework/model/hf_config.h"

namespace graft {
namespace {

class Qwen3 : public Architecture {
 public:
  ModelConfig parse(HfConfigReader& r) const override {
    ModelConfig m;
    parse_common(r, m, {.rope_theta = 10000.0, .norm_eps = 1e-6, .tie_word_embeddings = false});
    const bool bias = r.get_bool("attention_bias", false);
    m.decoder.attention_bias = bias;
    m.decoder.attention_out_bias = bias;
    r.reject_if_set("mlp_bias", "Qwen3 MLP has no bias");
    m.decoder.qk_norm = true;
    m.layer_windows = parse_qwen_windows(r, m.num_layers);
    return m;
  }

  nlohmann::json tiny_config() const override {
    return {{"architectures", {"Qwen3ForCausalLM"}},
            {"model_type", "qwen3"},
            {"vocab_size", 59},
            {"hidden_size", 32},
            {"intermediate_size", 48},
            {"num_hidden_layers", 3},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"head_dim", 16},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-6},
            {"max_position_embeddings", 64},
            {"rope_parameters", {{"rope_theta", 1000000.0}, {"rope_type", "default"}}},
            {"use_sliding_window", true},
            {"sliding_window", 4},
            {"layer_types", {"full_attention", "sliding_attention", "full_attention"}},
            {"tie_word_embeddings", false}};
  }
};

RegisterArchitecture reg("qwen3", [] { return std::make_unique<Qwen3>(); });

}  // namespace
}  // namespace graft
