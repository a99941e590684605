// Reading tokenizer.json fields: every error names the file and the key path, e.g.
// "tok.json: pre_tokenizer.pretokenizers[0].pattern: expected {"String": ...} or {"Regex": ...}".
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "framework/data/tokenizer_regex.h"

namespace graft::tok {

// j[name]; InputError "file: key.name is missing" when absent or null.
const nlohmann::json& json_at(const nlohmann::json& j, const char* name, const std::string& file,
                              const std::string& key);
std::string json_string(const nlohmann::json& j, const char* name, const std::string& file,
                        const std::string& key);
// Absent or null -> fallback; anything but a boolean is an InputError.
bool json_bool(const nlohmann::json& j, const char* name, bool fallback, const std::string& file,
               const std::string& key);
// j["type"] of a component object.
std::string json_type(const nlohmann::json& j, const std::string& file, const std::string& key);
// j["pattern"]: {"String": s} (a literal) or {"Regex": r}, compiled.
std::unique_ptr<Regex> json_pattern(const nlohmann::json& j, const std::string& file,
                                    const std::string& key);

}  // namespace graft::tok
