#include "framework/recipe/model_recipe.h"

#include <cstdlib>
#include <filesystem>

#include "framework/core/suggest.h"
#include "framework/model/architecture.h"
#include "framework/recipe/recipe_node.h"
#include "framework/registry/registry.h"

namespace graft {

nlohmann::json yaml_to_json(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json j = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it)
        j[it->first.Scalar()] = yaml_to_json(it->second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& e : node) j.push_back(yaml_to_json(e));
      return j;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      if (s == "null" || s == "~") return nullptr;
      char* end = nullptr;
      errno = 0;
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && *end == '\0' && errno == 0) return static_cast<int64_t>(i);
      const double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0') return d;
      return s;
    }
    default:
      return nullptr;
  }
}

namespace {

// model.config is checked like every other recipe key: a field its architecture does not read is
// an error naming file:line and the key, with the closest known field. (A config.json read from
// disk only reports such fields; see parse_hf_config.)
void check_config_fields(const YAML::Node& cfg, const nlohmann::json& j, const RecipeNode& n) {
  const std::set<std::string> known = known_hf_fields(j, n.where("config"));
  const RecipeNode view = n.view("config");
  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (known.count(k)) continue;
    throw InputError(str(view.where(k), ": unknown field of the ", j.value("model_type", ""),
                         " architecture",
                         did_you_mean(k, std::vector<std::string>(known.begin(), known.end()))));
  }
}

}  // namespace

ModelRecipe parse_model_recipe(RecipeNode& n) {
  ModelRecipe m;
  m.plugins = n.get<std::vector<std::string>>("plugins", {});
  for (const auto& p : m.plugins) {
    if (!std::filesystem::exists(p)) n.fail("plugins", str("names '", p, "': no such file"));
    load_plugin(p);
  }
  const std::string from = n.get<std::string>("from", "");
  YAML::Node cfg = n.raw("config");
  m.layers = n.get<std::string>("layers", "reference");
  if (m.layers != "reference" && m.layers != "te")
    n.fail("layers", str("= ", m.layers, ", expected reference or te"));
  const std::string attention = n.get<std::string>("attention", "auto");
  const AttnBackend attn = parse_attn_backend(attention, n.where("attention"));
  RecipeNode ov = n.child("overrides");
  std::vector<std::pair<std::string, std::string>> extra;
  if (n.has("overrides")) {
    YAML::Node raw_ov = n.raw("overrides");
    if (!raw_ov.IsMap()) n.fail("overrides", "expected a mapping {registry name: replacement}");
    for (auto it = raw_ov.begin(); it != raw_ov.end(); ++it) {
      const std::string k = it->first.Scalar();
      extra.emplace_back(k, ov.require<std::string>(k));
    }
  }
  n.finish();

  const bool has_cfg = cfg.IsDefined() && !cfg.IsNull();
  if (from.empty() == !has_cfg)
    n.fail(from.empty() ? "config" : "from",
           "expected exactly one of model.from (hf:PATH) or model.config (HF config.json keys)");
  if (!from.empty()) {
    if (from.rfind("hf:", 0) != 0) n.fail("from", str("= '", from, "', expected hf:PATH"));
    m.hf_dir = from.substr(3);
    const std::string cj = m.hf_dir + "/config.json";
    if (!std::filesystem::is_regular_file(cj))
      n.fail("from", str("= '", from, "': ", cj, " does not exist"));
    m.config = load_hf_config(cj);
  } else {
    if (!cfg.IsMap()) n.fail("config", "expected a mapping of HF config.json keys");
    const nlohmann::json j = yaml_to_json(cfg);
    check_config_fields(cfg, j, n);
    m.config = parse_hf_config(j, n.where("config"));
  }
  m.config.attention = attn;
  if (m.layers == "te") m.overrides.emplace_back(m.config.decoder_layer, "te.transformer_layer");
  for (auto& e : extra) {
    if (!Registry::global().find(e.second))
      ov.fail(e.first, str("= ", e.second, ": no layer registered under that name"));
    m.overrides.push_back(std::move(e));
  }
  return m;
}

std::unique_ptr<CausalLM> build_model_from_recipe(const ModelRecipe& m) {
  OverrideScope scope(m.overrides);
  return build_model(m.config);
}

std::unique_ptr<CausalLM> build_model_from_recipe(const ModelRecipe& m, const BuildContext& ctx) {
  OverrideScope scope(m.overrides);
  return build_model(m.config, ctx);
}

}  // namespace graft
