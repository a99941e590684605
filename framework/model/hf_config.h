// Reading Hugging Face config.json files: a field reader that names the file and the field in
// every error, and the parsing shared by the Llama-like families (sizes, attention shape, RoPE in
// both the transformers 4.x form (rope_theta + rope_scaling) and the 5.x form (rope_parameters),
// tied embeddings, special tokens, and the fields no supported family implements).
//
// Architectures call parse_common() and then read their own fields in straight-line code
// (see layers/models/*.cpp). Fields the reader never consumed are reported once on stderr by
// warn_unconsumed() (parse_hf_config calls it after the architecture's parse); the common fields
// known not to change the math are consumed by parse_common.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "framework/model/causal_lm.h"

namespace graft {

class HfConfigReader {
 public:
  HfConfigReader(const nlohmann::json& config, std::string path);

  const std::string& path() const { return path_; }
  // The value of `key`, or nullptr when absent or JSON null. Marks the key consumed.
  const nlohmann::json* get(const std::string& key);
  int64_t get_int(const std::string& key);  // required, > 0
  int64_t get_int(const std::string& key, int64_t fallback);
  double get_double(const std::string& key, double fallback);
  bool get_bool(const std::string& key, bool fallback);
  std::string get_string(const std::string& key, const std::string& fallback);
  // Errors unless `key` is absent, null, false, 0 or equal to `allowed` (when given).
  void reject_if_set(const std::string& key, const std::string& why);
  void require_equal(const std::string& key, double allowed, const std::string& why);
  // Marks keys as read without using them (they do not change the math).
  void ignore(std::initializer_list<const char*> keys);
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  // Prints the keys never consumed (one line on stderr), if any.
  void warn_unconsumed() const;
  // Every key asked about so far (get, get_*, reject_if_set, require_equal, ignore).
  const std::set<std::string>& consumed() const { return consumed_; }

 private:
  const nlohmann::json& config_;
  std::string path_;
  std::set<std::string> consumed_;
};

struct CommonDefaults {
  double rope_theta = 10000.0;
  double norm_eps = 1e-6;
  bool tie_word_embeddings = false;
};

// Fills arch, hf_architecture, sizes, heads/kv heads/head_dim, norm eps, RoPE, tie, token ids,
// initializer_range, max_position_embeddings, the SwiGLU/GeGLU/ReGLU activation from `act_key`,
// and rejects fields that no supported family implements (softcapping, dropout, partial rotary,
// bidirectional attention, mixture of experts, ...). The caller sets the family's own options.
void parse_common(HfConfigReader& r, ModelConfig& m, const CommonDefaults& d,
                  const std::string& act_key = "hidden_act");

// "silu" -> "swiglu", "gelu_pytorch_tanh"/"gelu_new" -> "geglu", "relu" -> "reglu";
// InputError naming path and key otherwise.
std::string gated_activation(const HfConfigReader& r, const std::string& key,
                             const std::string& hf_act);

// Reads "rope_parameters" (5.x) or "rope_theta" + "rope_scaling" (4.x) into a RopeConfig.
RopeConfig parse_rope(HfConfigReader& r, double default_theta);

// Per-layer windows from "layer_types" ("full_attention" | "sliding_attention") and a window
// size (0 = no sliding window configured). Empty result when layer_types is absent.
std::vector<int64_t> parse_layer_types(HfConfigReader& r, int64_t num_layers, int64_t window);

// Qwen2/Qwen3 windows: none unless use_sliding_window; then layer_types (5.x) or, without it,
// layers >= max_window_layers (4.x) use sliding_window.
std::vector<int64_t> parse_qwen_windows(HfConfigReader& r, int64_t num_layers);

}  // namespace graft
