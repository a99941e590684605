// Shared helpers for the trainer tests: temporary folders, a micro model recipe, small text data.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/recipe/recipe.h"

namespace graft::test {

// Runs `f` and returns the InputError message ("" when it did not throw one).
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// A fresh folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = (std::filesystem::temp_directory_path() /
             ("graft-train-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

// Deterministic pseudo-English text of about `bytes` bytes.
inline std::string sample_text(size_t bytes, unsigned seed = 1) {
  static const char* words[] = {"the",     "license", "software",   "you", "may",
                                "copy",    "and",     "distribute", "of",  "this",
                                "program", "under",   "terms",      "free"};
  std::string s;
  unsigned x = seed;
  while (s.size() < bytes) {
    x = x * 1103515245u + 12345u;
    s += words[(x >> 16) % 14];
    s += ((x >> 8) % 9 == 0) ? ".\n" : " ";
  }
  return s;
}

// A recipe for a micro Llama (vocab 258, hidden 32, 2 layers) on text files under `dir`.
// The text files and the data cache live in dir; `extra` is appended (more sections).
inline std::string micro_recipe(const std::string& dir, const std::string& extra = "") {
  if (!std::filesystem::exists(dir + "/a.txt")) {
    write_text(dir + "/a.txt", sample_text(3000, 1));
    write_text(dir + "/b.txt", sample_text(2000, 2));
  }
  return "model:\n"
         "  config:\n"
         "    model_type: llama\n"
         "    vocab_size: 258\n"
         "    hidden_size: 32\n"
         "    intermediate_size: 64\n"
         "    num_hidden_layers: 2\n"
         "    num_attention_heads: 4\n"
         "    num_key_value_heads: 2\n"
         "    hidden_act: silu\n"
         "    max_position_embeddings: 64\n"
         "    rms_norm_eps: 1.0e-5\n"
         "data:\n"
         "  text: [" +
         dir +
         "/*.txt]\n"
         "  cache_dir: " +
         dir +
         "/cache\n"
         "  seq_len: 16\n"
         "train:\n"
         "  steps: 6\n"
         "  batch_size: 2\n"
         "  sample_tokens: 0\n"
         "optim:\n"
         "  lr: 1.0e-2\n"
         "schedule:\n"
         "  type: cosine\n"
         "  warmup_steps: 2\n"
         "logging:\n"
         "  every: 1\n"
         "  progress: plain\n" +
         extra;
}

// Parses `text` as the recipe file dir/recipe.yaml (written there so errors name it).
inline Recipe micro(const std::string& dir, const std::vector<std::string>& sets = {},
                    const std::string& extra = "") {
  const std::string path = dir + "/recipe.yaml";
  write_text(path, micro_recipe(dir, extra));
  return load_recipe(path, sets);
}

// The micro recipe with another model: `config` (HF config.json keys, e.g. an architecture's
// tiny_config() with vocab_size 258 for the micro data's bytes) built from `layers`.
inline Recipe micro_with_config(const std::string& dir, const nlohmann::json& config,
                                const std::string& layers, const std::vector<std::string>& sets,
                                const std::string& extra = "") {
  std::string text = micro_recipe(dir, extra);
  text = "model:\n  layers: " + layers + "\n  config: " + config.dump() + "\n" +
         text.substr(text.find("data:\n"));
  const std::string path = dir + "/recipe.yaml";
  write_text(path, text);
  return load_recipe(path, sets);
}

}  // namespace graft::test
