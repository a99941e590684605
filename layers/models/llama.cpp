// Llama (LlamaForCausalLM): RMSNorm, SwiGLU, RoPE (default / linear / llama3 scaling), GQA,
// optional q/k/v/o bias (attention_bias) and MLP bias (mlp_bias), explicit head_dim, tied or
// untied embeddings.
#include <memory>

#include "framework/model/architecture.h"
#include "framework/model/hf_config.h"

namespace graft {
namespace {

class Llama : public Architecture {
 public:
  ModelConfig parse(HfConfigReader& r) const override {
    ModelConfig m;
    parse_common(r, m, {.rope_theta = 10000.0, .norm_eps = 1e-6, .tie_word_embeddings = false});
    const bool bias = r.get_bool("attention_bias", false);
    m.decoder.attention_bias = bias;
    m.decoder.attention_out_bias = bias;  // LlamaAttention: o_proj bias = attention_bias
    m.decoder.mlp_bias = r.get_bool("mlp_bias", false);
    r.reject_if_set("sliding_window", "Llama has no sliding-window attention");
    return m;
  }

  nlohmann::json tiny_config() const override {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", 61},
            {"hidden_size", 32},
            {"intermediate_size", 40},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"head_dim", 8},
            {"hidden_act", "silu"},
            {"rms_norm_eps", 1e-5},
            {"attention_bias", true},
            {"mlp_bias", true},
            {"max_position_embeddings", 64},
            {"rope_scaling",
             {{"rope_type", "llama3"},
              {"factor", 8.0},
              {"low_freq_factor", 1.0},
              {"high_freq_factor", 4.0},
              {"original_max_position_embeddings", 16}}},
            {"rope_theta", 500000.0},
            {"tie_word_embeddings", false}};
  }
};

RegisterArchitecture reg("llama", [] { return std::make_unique<Llama>(); });

}  // namespace
}  // namespace graft
