// Model architectures as registry entries.
//
// Each architecture (layers/models/<arch>.cpp, or a plugin .so) registers an `Architecture` under
// its Hugging Face `model_type` ("llama", "gemma", "qwen2", "qwen3", "mistral") with kind
// "architecture". It turns a config.json into a ModelConfig (rejecting every math-changing field
// it does not support, naming the file and the field) and offers a tiny config of its family for
// the registry-wide sweep tests. The module tree itself is the shared CausalLM; the architecture
// only picks sizes, options and registry names.
//
// Fields: parse() reads through an HfConfigReader that the caller owns, and every field it asks
// the reader about (present or not, used or ignored) is a field the architecture knows. What
// happens to the others is the caller's policy (parse_hf_config): a config.json from disk reports
// them once on stderr; a recipe's model.config refuses them (known_hf_fields, model_recipe.cpp).
//
//   static graft::RegisterArchitecture reg("llama", [] { return std::make_unique<Llama>(); });
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "framework/model/causal_lm.h"

namespace graft {

class HfConfigReader;

class Architecture {
 public:
  virtual ~Architecture() = default;
  // Reads the config.json behind `r` (model_type already matched; r.path() labels errors). Reads
  // each of its fields unconditionally (a field read only under some condition must also be
  // passed to r.get() or r.ignore() otherwise), so that known_fields() is complete.
  virtual ModelConfig parse(HfConfigReader& r) const = 0;
  // Every top-level config.json field this architecture reads: its own and the common ones
  // (parse_common: sizes, token ids, rope, and keys such as torch_dtype or use_cache that do not
  // change the math). Found by parsing tiny_config() and asking the reader what was read.
  std::set<std::string> known_fields() const;
  // A small valid config.json of this family (a few layers, hidden 32..64, odd vocabulary)
  // exercising its distinctive features; used by tests that sweep every architecture.
  virtual nlohmann::json tiny_config() const = 0;
};

// The (empty) construction argument of architecture registry entries.
struct ArchitectureArgs {};

struct RegisterArchitecture {
  RegisterArchitecture(const std::string& model_type,
                       std::function<std::unique_ptr<Architecture>()> make);
};

// The architecture registered under `model_type`; InputError listing the known ones otherwise.
std::unique_ptr<Architecture> find_architecture(const std::string& model_type,
                                                const std::string& path);
// Names of every registered architecture, sorted.
std::vector<std::string> architecture_names();

// known_fields() of the architecture named by config's model_type. InputError (naming path) when
// model_type is missing or unregistered.
std::set<std::string> known_hf_fields(const nlohmann::json& config, const std::string& path);

}  // namespace graft
