// Model architectures as registry entries.
//
// Each architecture (layers/models/<arch>.cpp, or a plugin .so) registers an `Architecture` under
// its Hugging Face `model_type` ("llama", "gemma", "qwen2", "qwen3", "mistral") with kind
// "architecture". It turns a config.json into a ModelConfig (rejecting every math-changing field
// it does not support, naming the file and the field) and offers a tiny config of its family for
// the registry-wide sweep tests. The module tree itself is the shared CausalLM; the architecture
// only picks sizes, options and registry names.
//
//   static graft::RegisterArchitecture reg("llama", [] { return std::make_unique<Llama>(); });
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "framework/model/causal_lm.h"

namespace graft {

class Architecture {
 public:
  virtual ~Architecture() = default;
  // config: the parsed config.json (model_type already matched); path labels errors.
  virtual ModelConfig parse(const nlohmann::json& config, const std::string& path) const = 0;
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

}  // namespace graft
