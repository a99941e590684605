#include "framework/model/architecture.h"

#include <fstream>
#include <sstream>

#include "framework/model/hf_config.h"
#include "framework/registry/registry.h"

namespace graft {

RegisterArchitecture::RegisterArchitecture(const std::string& model_type,
                                           std::function<std::unique_ptr<Architecture>()> make) {
  Register<Architecture, ArchitectureArgs> reg(model_type, "architecture",
                                               [make](const ArchitectureArgs&) { return make(); });
}

std::vector<std::string> architecture_names() {
  return Registry::global().names_for(typeid(Architecture));
}

std::unique_ptr<Architecture> find_architecture(const std::string& model_type,
                                                const std::string& path) {
  const RegistryEntry* e =
      Registry::global().find(model_type, typeid(Architecture), typeid(ArchitectureArgs));
  if (!e) {
    std::string known;
    for (const auto& n : architecture_names()) known += (known.empty() ? "" : ", ") + n;
    throw InputError(str(path, ": model_type = \"", model_type,
                         "\" is not a registered architecture (known: ", known, ")"));
  }
  using F = Register<Architecture, ArchitectureArgs>::Factory;
  const F* f = std::any_cast<F>(&e->factory);
  GRAFT_CHECK(f != nullptr, "architecture entry '", model_type, "' has the wrong factory type");
  return (*f)(ArchitectureArgs{}, BuildContext{});
}

std::set<std::string> Architecture::known_fields() const {
  const nlohmann::json tiny = tiny_config();
  HfConfigReader r(tiny, "tiny_config()");
  parse(r);
  return r.consumed();
}

namespace {
std::string model_type_of(const nlohmann::json& config, const std::string& path) {
  if (!config.is_object()) throw InputError(str(path, ": expected a JSON object"));
  auto it = config.find("model_type");
  if (it == config.end() || !it->is_string())
    throw InputError(str(path, ": model_type: missing or not a string"));
  return it->get<std::string>();
}
}  // namespace

std::set<std::string> known_hf_fields(const nlohmann::json& config, const std::string& path) {
  return find_architecture(model_type_of(config, path), path)->known_fields();
}

ModelConfig parse_hf_config(const nlohmann::json& config, const std::string& path) {
  const std::string model_type = model_type_of(config, path);
  HfConfigReader r(config, path);
  ModelConfig m = find_architecture(model_type, path)->parse(r);
  r.warn_unconsumed();
  m.arch = model_type;
  m.hf_config = config;
  GRAFT_CHECK(
      m.layer_windows.empty() || static_cast<int64_t>(m.layer_windows.size()) == m.num_layers, path,
      ": ", m.layer_windows.size(), " layer windows for ", m.num_layers, " layers");
  return m;
}

ModelConfig load_hf_config(const std::string& config_json_path) {
  std::ifstream f(config_json_path);
  if (!f) throw InputError(str(config_json_path, ": cannot open"));
  std::stringstream ss;
  ss << f.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(str(config_json_path, ": invalid JSON: ", e.what()));
  }
  return parse_hf_config(j, config_json_path);
}

}  // namespace graft
