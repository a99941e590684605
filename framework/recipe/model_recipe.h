// The model section of a recipe.
//
//   model:
//     from: hf:PATH       # load an HF checkpoint folder (config.json + safetensors), or
//     config:             # HF config.json keys, parsed by the architecture's own parser;
//       model_type: llama #   a key the architecture does not know is an error (with the
//       hidden_size: 256  #   closest known one), unlike a config.json from disk (a warning)
//       ...
//     layers: reference   # reference | te (OverrideScope llama.decoder_layer ->
//                         #   te.transformer_layer)
//     attention: auto     # auto | cudnn | unfused: the CUDA attention backend (auto = cuDNN
//                         #   where it supports the problem, else unfused, said on stderr;
//                         #   cudnn = strict: an error saying why when it cannot run)
//     overrides: {a: b}   # extra registry overrides, applied while the model is built
//     plugins: [lib.so]   # shared libraries loaded (graft::load_plugin) before parsing
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "framework/model/causal_lm.h"

namespace graft {

class RecipeNode;

struct ModelRecipe {
  std::string hf_dir;  // from `from: hf:PATH`; "" when built from `config`
  ModelConfig config;  // parsed (from the HF folder's config.json or from `config`)
  std::string layers = "reference";
  std::vector<std::pair<std::string, std::string>> overrides;  // includes the `layers` one
  std::vector<std::string> plugins;
};

ModelRecipe parse_model_recipe(RecipeNode& n);

// Builds the model inside an OverrideScope holding the recipe's overrides. Weights are
// uninitialised: call init_weights or load a checkpoint.
std::unique_ptr<CausalLM> build_model_from_recipe(const ModelRecipe& m);
// The same under a layout: device, dtype and process groups from `ctx`.
std::unique_ptr<CausalLM> build_model_from_recipe(const ModelRecipe& m, const BuildContext& ctx);

// YAML -> JSON with scalar typing (quoted scalars stay strings; true/false, null, integers and
// floats are typed).
nlohmann::json yaml_to_json(const YAML::Node& node);

}  // namespace graft
