#include "framework/train/checkpoint_model.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "framework/registry/registry.h"
#include "framework/train/checkpoint.h"

namespace graft {

std::string resolve_checkpoint(const std::string& path) {
  if (is_complete_checkpoint(path)) return path;
  GRAFT_INPUT_CHECK(std::filesystem::is_directory(path), path, ": no such checkpoint folder");
  const std::string latest = find_latest_checkpoint(path);
  GRAFT_INPUT_CHECK(!latest.empty(), path,
                    ": not a complete checkpoint and holds none (expected step-N/ with COMMIT, "
                    "manifest.json and trainer_state.json)");
  return latest;
}

std::unique_ptr<CausalLM> load_checkpoint_model(const std::string& checkpoint, Device device,
                                                bool prefer_master,
                                                std::shared_ptr<const ParallelGroups> groups) {
  ModelConfig config = load_hf_config(checkpoint + "/config.json");
  config.decoder.device = device;
  std::vector<std::pair<std::string, std::string>> overrides;
  bool fp32_residual = false;  // the run's precision.residual: generate as it trained
  const std::string recipe_path = checkpoint + "/recipe.yaml";
  try {
    YAML::Node r = YAML::LoadFile(recipe_path);
    YAML::Node m = r["model"];
    if (m && m["plugins"])
      for (const auto& p : m["plugins"]) load_plugin(p.as<std::string>());
    if (m && m["layers"] && m["layers"].as<std::string>() == "te")
      overrides.emplace_back(config.decoder_layer, "te.transformer_layer");
    if (r["precision"] && r["precision"]["residual"])
      fp32_residual = r["precision"]["residual"].as<std::string>() == "f32";
    if (m && m["overrides"] && m["overrides"].IsMap())
      for (auto it = m["overrides"].begin(); it != m["overrides"].end(); ++it)
        overrides.emplace_back(it->first.as<std::string>(), it->second.as<std::string>());
  } catch (const YAML::Exception& e) {
    throw InputError(str(recipe_path, ": ", e.what()));
  }
  std::unique_ptr<CausalLM> model;
  {
    OverrideScope scope(overrides);
    BuildContext ctx = groups ? BuildContext{device, config.decoder.params_dtype, groups, nullptr}
                              : local_context(config.decoder);
    ctx.fp32_residual = fp32_residual;
    model = build_model(config, ctx);
  }
  load_model_weights(*model, checkpoint, prefer_master);
  return model;
}

std::unique_ptr<Tokenizer> load_checkpoint_tokenizer(const std::string& checkpoint) {
  TrainerState s = read_trainer_state(checkpoint);
  if (s.tokenizer == "byte") return make_tokenizer("byte");
  return make_tokenizer(checkpoint + "/tokenizer.json");
}

}  // namespace graft
