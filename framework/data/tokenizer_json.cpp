#include "framework/data/tokenizer_json.h"

#include "framework/core/error.h"

namespace graft::tok {

using nlohmann::json;

const json& json_at(const json& j, const char* name, const std::string& file,
                    const std::string& key) {
  GRAFT_INPUT_CHECK(j.is_object(), file, ": ", key, ": expected an object, got ", j.dump());
  auto it = j.find(name);
  GRAFT_INPUT_CHECK(it != j.end() && !it->is_null(), file, ": ", key, ".", name, " is missing");
  return *it;
}

std::string json_string(const json& j, const char* name, const std::string& file,
                        const std::string& key) {
  const json& v = json_at(j, name, file, key);
  GRAFT_INPUT_CHECK(v.is_string(), file, ": ", key, ".", name, " = ", v.dump(),
                    ", expected a string");
  return v.get<std::string>();
}

bool json_bool(const json& j, const char* name, bool fallback, const std::string& file,
               const std::string& key) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  GRAFT_INPUT_CHECK(it->is_boolean(), file, ": ", key, ".", name, " = ", it->dump(),
                    ", expected true or false");
  return it->get<bool>();
}

std::string json_type(const json& j, const std::string& file, const std::string& key) {
  return json_string(j, "type", file, key);
}

std::unique_ptr<Regex> json_pattern(const json& j, const std::string& file,
                                    const std::string& key) {
  const json& p = json_at(j, "pattern", file, key);
  const std::string where = str(file, ": ", key, ".pattern");
  if (p.is_object() && p.size() == 1 && p.begin().value().is_string()) {
    if (p.contains("String")) return std::make_unique<Regex>(p["String"], true, where);
    if (p.contains("Regex")) return std::make_unique<Regex>(p["Regex"], false, where);
  }
  throw InputError(str(where, " = ", p.dump(), ", expected {\"String\": ...} or {\"Regex\": ...}"));
}

}  // namespace graft::tok
