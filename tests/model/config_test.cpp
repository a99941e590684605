// config.json parsing for every architecture: fixture configs, both RoPE forms, the fields that
// must be rejected with the file and field named, and the fields each architecture knows.
#include <cmath>
#include <set>

#include "framework/model/architecture.h"
#include "tests/model/test_util.h"

namespace graft {
namespace {

using nlohmann::json;
using test::expect_input_error;

const char* kPath = "cfg/config.json";

ModelConfig parse(const json& j) { return parse_hf_config(j, kPath); }

json llama_base() { return find_architecture("llama", kPath)->tiny_config(); }

TEST(ModelConfig, LlamaFixture) {
  ModelConfig m = load_hf_config(test::fixture_dir("llama-gqa") + "/config.json");
  EXPECT_EQ(m.arch, "llama");
  EXPECT_EQ(m.hf_architecture, "LlamaForCausalLM");
  EXPECT_EQ(m.vocab_size, 128);
  EXPECT_EQ(m.num_layers, 2);
  EXPECT_EQ(m.decoder.num_attention_heads, 4);
  EXPECT_EQ(m.decoder.num_kv_heads, 2);
  EXPECT_EQ(m.decoder.head_dim, 16);
  EXPECT_EQ(m.decoder.ffn_hidden_size, 128);
  EXPECT_EQ(m.decoder.activation, "swiglu");
  EXPECT_DOUBLE_EQ(m.decoder.norm_eps, 1e-5);
  EXPECT_EQ(m.decoder.rope.type, "default");
  EXPECT_DOUBLE_EQ(m.decoder.rope.theta, 10000.0);
  EXPECT_FALSE(m.tie_word_embeddings);
  EXPECT_FALSE(m.decoder.attention_bias);
  EXPECT_FALSE(m.decoder.qk_norm);
  EXPECT_EQ(m.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_DOUBLE_EQ(m.embedding_scale, 1.0);
  EXPECT_EQ(m.hf_config["model_type"], "llama");
}

TEST(ModelConfig, GemmaFixture) {
  ModelConfig m = load_hf_config(test::fixture_dir("gemma-mqa") + "/config.json");
  EXPECT_EQ(m.arch, "gemma");
  EXPECT_EQ(m.decoder.num_kv_heads, 1);
  EXPECT_EQ(m.decoder.head_dim, 16);
  EXPECT_EQ(m.decoder.activation, "geglu");
  EXPECT_TRUE(m.decoder.zero_centered_gamma);
  EXPECT_TRUE(m.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(m.embedding_scale, 8.0);  // sqrt(64)
  EXPECT_DOUBLE_EQ(m.decoder.norm_eps, 1e-6);
}

TEST(ModelConfig, Qwen3Fixture) {
  ModelConfig m = load_hf_config(test::fixture_dir("qwen3-qknorm") + "/config.json");
  EXPECT_EQ(m.arch, "qwen3");
  EXPECT_TRUE(m.decoder.qk_norm);
  EXPECT_EQ(m.decoder.head_dim, 32);
  EXPECT_EQ(m.hidden_size, 64);
  EXPECT_EQ(m.vocab_size, 160);
  EXPECT_DOUBLE_EQ(m.decoder.rope.theta, 1e6);
  EXPECT_EQ(m.layer_windows, (std::vector<int64_t>{0, 0}));
  EXPECT_TRUE(m.eos_token_ids.empty());
}

TEST(ModelConfig, RopeFormsAgree) {
  json v4 = llama_base();  // rope_theta + rope_scaling (transformers 4.x)
  json v5 = llama_base();
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  v5["rope_parameters"] = {{"rope_theta", 500000.0},  {"rope_type", "llama3"},
                           {"factor", 8.0},           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 16}};
  for (const json& j : {v4, v5}) {
    const RopeConfig r = parse(j).decoder.rope;
    EXPECT_EQ(r.type, "llama3");
    EXPECT_DOUBLE_EQ(r.theta, 500000.0);
    EXPECT_DOUBLE_EQ(r.factor, 8.0);
    EXPECT_DOUBLE_EQ(r.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(r.high_freq_factor, 4.0);
    EXPECT_EQ(r.original_max_position_embeddings, 16);
  }
  json linear = llama_base();
  linear["rope_scaling"] = {{"type", "linear"}, {"factor", 2.5}};  // old "type" spelling
  EXPECT_EQ(parse(linear).decoder.rope.type, "linear");
  EXPECT_DOUBLE_EQ(parse(linear).decoder.rope.factor, 2.5);
  json none = llama_base();
  none["rope_scaling"] = nullptr;
  none["rope_theta"] = 1234.0;
  EXPECT_EQ(parse(none).decoder.rope.type, "default");
  EXPECT_DOUBLE_EQ(parse(none).decoder.rope.theta, 1234.0);
}

TEST(ModelConfig, RejectsUnsupportedRope) {
  json j = llama_base();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_input_error([&] { parse(j); }, {kPath, "rope_scaling.rope_type", "yarn"});
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 4.0}};
  expect_input_error([&] { parse(j); }, {kPath, "dynamic"});
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_theta", 1e4}, {"rope_type", "llama3"}, {"factor", 8.0}};
  expect_input_error([&] { parse(j); }, {kPath, "rope_parameters.low_freq_factor"});
  j["rope_parameters"] = {{"rope_theta", 1e4}, {"rope_type", "default"}, {"attention_factor", 2}};
  expect_input_error([&] { parse(j); }, {kPath, "rope_parameters.attention_factor"});
  j["rope_parameters"] = {{"rope_theta", 1e4}, {"partial_rotary_factor", 0.5}};
  expect_input_error([&] { parse(j); }, {kPath, "partial_rotary_factor"});
}

TEST(ModelConfig, RejectsMathChangingFields) {
  struct Case {
    const char* arch;
    const char* key;
    json value;
  };
  const std::vector<Case> cases = {
      {"gemma", "attn_logit_softcapping", 50.0},
      {"gemma", "final_logit_softcapping", 30.0},
      {"gemma", "use_bidirectional_attention", true},
      {"gemma", "query_pre_attn_scalar", 256},
      {"gemma", "hidden_act", "gelu"},
      {"gemma", "hidden_activation", "silu"},
      {"llama", "hidden_act", "gelu"},
      {"llama", "attention_dropout", 0.1},
      {"llama", "partial_rotary_factor", 0.5},
      {"llama", "sliding_window", 128},
      {"llama", "num_key_value_heads", 3},
      {"qwen3", "layer_types", {"full_attention", "chunked_attention", "full_attention"}},
      {"qwen3", "layer_types", {"full_attention"}},
      {"mistral", "rope_scaling", {{"rope_type", "longrope"}}},
      {"qwen2", "hidden_act", "gelu"},
      {"llama", "num_local_experts", 8},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.arch) + "." + c.key);
    json j = find_architecture(c.arch, kPath)->tiny_config();
    j[c.key] = c.value;
    expect_input_error([&] { parse(j); }, {kPath, c.key});
  }
  json j = llama_base();
  j.erase("vocab_size");
  expect_input_error([&] { parse(j); }, {kPath, "vocab_size", "missing"});
  j = llama_base();
  j["model_type"] = "gpt2";
  expect_input_error([&] { parse(j); }, {kPath, "model_type", "gpt2", "llama"});
  j = llama_base();
  j["hidden_size"] = "64";
  expect_input_error([&] { parse(j); }, {kPath, "hidden_size"});
}

TEST(ModelConfig, FamilyOptions) {
  ModelConfig l = parse(llama_base());
  EXPECT_TRUE(l.decoder.attention_bias);
  EXPECT_TRUE(l.decoder.attention_out_bias);  // Llama: o_proj bias follows attention_bias
  EXPECT_TRUE(l.decoder.mlp_bias);

  json q2 = find_architecture("qwen2", kPath)->tiny_config();
  ModelConfig a = parse(q2);
  EXPECT_TRUE(a.decoder.attention_bias);
  EXPECT_FALSE(a.decoder.attention_out_bias);
  EXPECT_TRUE(a.layer_windows.empty());  // use_sliding_window false: sliding_window ignored
  EXPECT_EQ(a.decoder.sliding_window, 0);
  q2["use_sliding_window"] = true;
  q2["sliding_window"] = 16;
  q2["max_window_layers"] = 1;  // 4.x form: layers >= 1 slide
  EXPECT_EQ(parse(q2).layer_windows, (std::vector<int64_t>{0, 16}));

  ModelConfig q3 = parse(find_architecture("qwen3", kPath)->tiny_config());
  EXPECT_TRUE(q3.decoder.qk_norm);
  EXPECT_EQ(q3.layer_windows, (std::vector<int64_t>{0, 4, 0}));

  ModelConfig mi = parse(find_architecture("mistral", kPath)->tiny_config());
  EXPECT_EQ(mi.decoder.sliding_window, 3);
  EXPECT_EQ(mi.decoder.head_dim, 8);  // head_dim null -> hidden / heads
  EXPECT_FALSE(mi.decoder.attention_bias);

  ModelConfig g = parse(find_architecture("gemma", kPath)->tiny_config());
  EXPECT_DOUBLE_EQ(g.embedding_scale, std::sqrt(32.0));
  json g2 = find_architecture("gemma", kPath)->tiny_config();
  g2.erase("tie_word_embeddings");
  EXPECT_TRUE(parse(g2).tie_word_embeddings);  // Gemma ties by default
}

// known_fields() is what a recipe's model.config may hold: every field of the tiny config, every
// field the parser reads, and the common HF keys that do not change the math.
TEST(ModelConfig, KnownFieldsCoverWhatTheParserReads) {
  for (const std::string& arch : architecture_names()) {
    SCOPED_TRACE(arch);
    auto a = find_architecture(arch, kPath);
    const std::set<std::string> known = a->known_fields();
    const json tiny = a->tiny_config();
    for (const auto& [k, v] : tiny.items()) EXPECT_TRUE(known.count(k)) << k;
    for (const char* k : {"architectures",        "model_type",          "torch_dtype",
                          "transformers_version", "use_cache",           "bos_token_id",
                          "eos_token_id",         "pad_token_id",        "vocab_size",
                          "hidden_size",          "num_key_value_heads", "head_dim",
                          "rope_theta",           "rope_scaling",        "rope_parameters",
                          "tie_word_embeddings",  "initializer_range",   "max_position_embeddings",
                          "attention_dropout",    "num_experts"})
      EXPECT_TRUE(known.count(k)) << k;
    EXPECT_FALSE(known.count("num_key_value_head"));
    EXPECT_EQ(known_hf_fields(tiny, kPath), known);
  }
  EXPECT_TRUE(find_architecture("mistral", kPath)->known_fields().count("sliding_window"));
  EXPECT_TRUE(find_architecture("gemma", kPath)->known_fields().count("hidden_activation"));
  EXPECT_FALSE(find_architecture("llama", kPath)->known_fields().count("hidden_activation"));
  expect_input_error([] { known_hf_fields(json{{"model_type", "gpt2"}}, kPath); }, {kPath, "gpt2"});
}

// A config.json (from disk, not a recipe) with a field nobody reads still parses: the field is
// reported on stderr, not refused.
TEST(ModelConfig, UnknownFieldOfAConfigJsonIsOnlyReported) {
  json j = llama_base();
  j["num_key_value_head"] = 2;
  j["some_future_field"] = "x";
  ::testing::internal::CaptureStderr();
  ModelConfig m = parse(j);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(m.decoder.num_kv_heads, 2);
  EXPECT_NE(err.find("num_key_value_head, some_future_field"), std::string::npos) << err;
  EXPECT_NE(err.find(kPath), std::string::npos) << err;
}

TEST(ModelConfig, EveryArchitectureRegistered) {
  const auto names = architecture_names();
  for (const char* a : {"gemma", "llama", "mistral", "qwen2", "qwen3"})
    EXPECT_NE(std::find(names.begin(), names.end(), a), names.end()) << a;
}

}  // namespace
}  // namespace graft
