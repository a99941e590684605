#include "framework/model/hf_config.h"

#include <cmath>
#include <cstdio>

#include "framework/core/error.h"

namespace graft {

using nlohmann::json;

HfConfigReader::HfConfigReader(const json& config, std::string path)
    : config_(config), path_(std::move(path)) {
  if (!config_.is_object()) throw InputError(str(path_, ": expected a JSON object"));
}

void HfConfigReader::fail(const std::string& key, const std::string& what) const {
  throw InputError(str(path_, ": ", key, ": ", what));
}

const json* HfConfigReader::get(const std::string& key) {
  consumed_.insert(key);
  auto it = config_.find(key);
  if (it == config_.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t HfConfigReader::get_int(const std::string& key) {
  const json* v = get(key);
  if (!v) fail(key, "missing (a positive integer is required)");
  int64_t x = get_int(key, 0);
  if (x <= 0) fail(key, str("= ", v->dump(), ", expected a positive integer"));
  return x;
}

int64_t HfConfigReader::get_int(const std::string& key, int64_t fallback) {
  const json* v = get(key);
  if (!v) return fallback;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (std::floor(d) == d && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  fail(key, str("= ", v->dump(), ", expected an integer"));
}

double HfConfigReader::get_double(const std::string& key, double fallback) {
  const json* v = get(key);
  if (!v) return fallback;
  if (!v->is_number()) fail(key, str("= ", v->dump(), ", expected a number"));
  return v->get<double>();
}

bool HfConfigReader::get_bool(const std::string& key, bool fallback) {
  const json* v = get(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(key, str("= ", v->dump(), ", expected true or false"));
  return v->get<bool>();
}

std::string HfConfigReader::get_string(const std::string& key, const std::string& fallback) {
  const json* v = get(key);
  if (!v) return fallback;
  if (!v->is_string()) fail(key, str("= ", v->dump(), ", expected a string"));
  return v->get<std::string>();
}

void HfConfigReader::reject_if_set(const std::string& key, const std::string& why) {
  const json* v = get(key);
  if (!v) return;
  if (v->is_boolean() && !v->get<bool>()) return;
  if (v->is_number() && v->get<double>() == 0.0) return;
  if ((v->is_array() || v->is_object()) && v->empty()) return;
  fail(key, str("= ", v->dump(), " is not supported (", why, ")"));
}

void HfConfigReader::require_equal(const std::string& key, double allowed, const std::string& why) {
  const json* v = get(key);
  if (!v) return;
  if (!v->is_number() || v->get<double>() != allowed)
    fail(key, str("= ", v->dump(), " is not supported (", why, ")"));
}

void HfConfigReader::ignore(std::initializer_list<const char*> keys) {
  for (const char* k : keys) consumed_.insert(k);
}

void HfConfigReader::warn_unconsumed() const {
  std::string unknown;
  for (const auto& [k, v] : config_.items())
    if (!consumed_.count(k)) unknown += (unknown.empty() ? "" : ", ") + k;
  if (!unknown.empty())
    std::fprintf(stderr,
                 "graft: warning: %s: fields not read (assumed not to change the math): %s\n",
                 path_.c_str(), unknown.c_str());
}

std::string gated_activation(const HfConfigReader& r, const std::string& key,
                             const std::string& hf_act) {
  if (hf_act == "silu" || hf_act == "swish") return "swiglu";
  if (hf_act == "gelu_pytorch_tanh" || hf_act == "gelu_new") return "geglu";
  if (hf_act == "relu") return "reglu";
  r.fail(key, str("= \"", hf_act,
                  "\" is not supported (expected silu, gelu_pytorch_tanh, gelu_new or relu)"));
}

std::vector<int64_t> parse_layer_types(HfConfigReader& r, int64_t num_layers, int64_t window) {
  std::vector<int64_t> out;
  const json* lt = r.get("layer_types");
  if (!lt) return out;
  if (!lt->is_array() || static_cast<int64_t>(lt->size()) != num_layers)
    r.fail("layer_types", str("expected a list of num_hidden_layers = ", num_layers, " entries"));
  for (size_t i = 0; i < lt->size(); ++i) {
    const json& t = (*lt)[i];
    if (t == "full_attention") {
      out.push_back(0);
    } else if (t == "sliding_attention") {
      out.push_back(window);
    } else {
      r.fail(
          str("layer_types[", i, "]"),
          str("= ", t.dump(), " is not supported (expected full_attention or sliding_attention)"));
    }
  }
  return out;
}

std::vector<int64_t> parse_qwen_windows(HfConfigReader& r, int64_t num_layers) {
  const bool use = r.get_bool("use_sliding_window", false);
  const int64_t window = use ? r.get_int("sliding_window", 0) : 0;
  r.get("sliding_window");  // ignored when use_sliding_window is false
  if (use && window <= 0)
    r.fail("sliding_window", "must be a positive integer when use_sliding_window is true");
  std::vector<int64_t> w = parse_layer_types(r, num_layers, window);
  if (w.empty() && use) {
    const int64_t first = r.get_int("max_window_layers", num_layers);
    for (int64_t i = 0; i < num_layers; ++i) w.push_back(i >= first ? window : 0);
  }
  return w;
}

void parse_common(HfConfigReader& r, ModelConfig& m, const CommonDefaults& d,
                  const std::string& act_key) {
  m.arch = r.get_string("model_type", "");
  if (const json* a = r.get("architectures")) {
    if (!a->is_array() || a->size() != 1 || !(*a)[0].is_string())
      r.fail("architectures", str("= ", a->dump(), ", expected one class name"));
    m.hf_architecture = (*a)[0].get<std::string>();
    if (m.hf_architecture.size() < 11 ||
        m.hf_architecture.substr(m.hf_architecture.size() - 11) != "ForCausalLM")
      r.fail("architectures", str("= \"", m.hf_architecture, "\", expected a *ForCausalLM class"));
  }
  m.vocab_size = r.get_int("vocab_size");
  m.hidden_size = r.get_int("hidden_size");
  m.num_layers = r.get_int("num_hidden_layers");
  m.max_position_embeddings = r.get_int("max_position_embeddings", 2048);
  m.initializer_range = r.get_double("initializer_range", 0.02);
  m.tie_word_embeddings = r.get_bool("tie_word_embeddings", d.tie_word_embeddings);

  DecoderConfig& c = m.decoder;
  c.hidden_size = m.hidden_size;
  c.ffn_hidden_size = r.get_int("intermediate_size");
  c.num_attention_heads = r.get_int("num_attention_heads");
  c.num_kv_heads = r.get_int("num_key_value_heads", c.num_attention_heads);
  if (c.num_kv_heads <= 0 || c.num_attention_heads % c.num_kv_heads != 0)
    r.fail("num_key_value_heads",
           str("= ", c.num_kv_heads, " must divide num_attention_heads = ", c.num_attention_heads));
  const bool has_head_dim = r.get("head_dim") != nullptr;
  if (has_head_dim) {
    c.head_dim = r.get_int("head_dim");
  } else {
    if (m.hidden_size % c.num_attention_heads != 0)
      r.fail("num_attention_heads",
             str("= ", c.num_attention_heads, " does not divide hidden_size = ", m.hidden_size,
                 " and head_dim is not given"));
    c.head_dim = m.hidden_size / c.num_attention_heads;
  }
  c.normalization = NormType::kRMSNorm;
  c.norm_eps = r.get_double("rms_norm_eps", d.norm_eps);
  if (!(c.norm_eps > 0)) r.fail("rms_norm_eps", "must be positive");
  c.activation = gated_activation(r, act_key, r.get_string(act_key, "silu"));
  c.rope = parse_rope(r, d.rope_theta);

  if (const json* e = r.get("eos_token_id")) {
    if (e->is_number_integer()) {
      m.eos_token_ids = {e->get<int64_t>()};
    } else if (e->is_array()) {
      for (const json& x : *e) {
        if (!x.is_number_integer())
          r.fail("eos_token_id", str("= ", e->dump(), ", expected integers"));
        m.eos_token_ids.push_back(x.get<int64_t>());
      }
    } else {
      r.fail("eos_token_id", str("= ", e->dump(), ", expected an integer or a list"));
    }
  }
  m.bos_token_id = r.get_int("bos_token_id", -1);

  // Fields of neighbouring families that would change the math; none is implemented.
  r.reject_if_set("attn_logit_softcapping", "attention logit softcapping");
  r.reject_if_set("final_logit_softcapping", "final logit softcapping");
  r.reject_if_set("query_pre_attn_scalar", "custom attention scale");
  r.reject_if_set("use_bidirectional_attention", "bidirectional attention");
  r.reject_if_set("attention_dropout", "dropout");
  r.reject_if_set("hidden_dropout", "dropout");
  r.reject_if_set("resid_pdrop", "dropout");
  r.reject_if_set("embd_pdrop", "dropout");
  r.require_equal("partial_rotary_factor", 1.0, "partial rotary embeddings");
  r.reject_if_set("num_experts", "mixture of experts");
  r.reject_if_set("num_local_experts", "mixture of experts");
  r.reject_if_set("use_qk_norm", "llama4-style qk norm");
  r.reject_if_set("no_rope_layers", "layers without rotary embeddings");
  r.reject_if_set("logits_scaling", "scaled logits");
  r.reject_if_set("embedding_multiplier", "scaled embeddings");
  // Read and known not to change the math in float32 training/inference.
  r.ignore({"dtype",
            "torch_dtype",
            "transformers_version",
            "use_cache",
            "pad_token_id",
            "pretraining_tp",
            "_name_or_path",
            "output_attentions",
            "output_hidden_states",
            "return_dict",
            "is_decoder",
            "model_type",
            "_attn_implementation_autoset",
            "tokenizer_class",
            "max_window_layers",
            "use_return_dict",
            "torchscript",
            "attn_implementation",
            "chunk_size_feed_forward",
            "id2label",
            "label2id"});
}

}  // namespace graft
