// Typed, checked reading of one YAML mapping of a recipe.
//
// A RecipeNode is a view of one mapping ("optim") with its file and key path. Each typed read
// records the key as known and writes the resolved value (the default when absent) into a
// parallel "resolved" tree, so that:
//   - finish() rejects every key that no reader asked for (unknown or misplaced keys), naming
//     file, line and key path;
//   - the resolved tree, printed, is exactly the configuration the run uses (--print-config), and
//     its hash identifies the run (checkpoints refuse to resume under a different one).
// Wrong types and impossible values are InputErrors naming "file:line: key.path = value".
// Values that came from `--set a.b=c` have no line; errors name the --set argument instead.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "framework/core/error.h"

namespace graft {

// Shared by every node of one recipe: the file name and which paths came from --set.
struct RecipeSource {
  std::string file;
  std::map<std::string, std::string> set_args;  // "optim.lr" -> "--set optim.lr=3e-4"
};

class RecipeNode {
 public:
  RecipeNode(YAML::Node node, YAML::Node resolved, std::string path,
             std::shared_ptr<const RecipeSource> source);

  // Typed reads. get() returns `def` when the key is absent; require() fails when absent.
  // Supported T: bool, int64_t, double, std::string, std::vector<std::string>,
  // std::vector<double>.
  template <class T>
  T get(const std::string& key, const T& def);
  template <class T>
  T require(const std::string& key);
  bool has(const std::string& key) const;

  // A nested mapping (an empty one when absent). Its keys are checked by its own finish().
  RecipeNode child(const std::string& key);
  // A list of mappings (empty when absent), element i named "path.key[i]"; each element's keys
  // are checked by its own finish().
  std::vector<RecipeNode> children(const std::string& key);
  // A subtree copied verbatim into the resolved tree, for free-form maps (model.config).
  YAML::Node raw(const std::string& key);
  // A view of the nested mapping `key` for messages about its keys (where, fail): it reads and
  // resolves nothing (pair it with raw(key)). InputError when `key` is not a mapping.
  RecipeNode view(const std::string& key) const;

  // Throws InputError for the first key present in the mapping that was never read.
  void finish() const;

  // "file:line: path.key" (or "--set path.key=v") for messages about `key`.
  std::string where(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  const std::string& path() const { return path_; }
  const std::string& file() const { return source_->file; }

 private:
  std::string full(const std::string& key) const;
  YAML::Node lookup(const std::string& key) const;
  template <class T>
  T convert(const std::string& key, const YAML::Node& n) const;

  YAML::Node node_;
  YAML::Node resolved_;
  std::string path_;
  std::shared_ptr<const RecipeSource> source_;
  mutable std::set<std::string> read_;
};

// Applies "a.b.c=value" to `root` (value parsed as YAML: numbers, lists, maps) and records it in
// `source`. Intermediate keys are created as mappings; a scalar in the way is an InputError.
void apply_set_override(YAML::Node root, const std::string& assignment, RecipeSource& source);

// Positive-value helpers with standard messages.
int64_t require_positive(RecipeNode& n, const std::string& key, int64_t value);

}  // namespace graft
